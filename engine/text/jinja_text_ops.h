// Python str operations for the chat-template builtins: the same results as Python's str methods
// for ASCII text. Case mapping is ASCII-only (non-ASCII letters are left as they are); whitespace
// is ASCII whitespace; strip's `chars` is a set of bytes.
//
// Thread-safety: pure functions.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_TEXT_OPS_H_
#define KVSERVE_ENGINE_TEXT_JINJA_TEXT_OPS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/text/jinja_value.h"

namespace kvserve::engine::jinja {

std::string Upper(std::string s);
std::string Lower(std::string s);
std::string Capitalize(std::string s);  // str.capitalize()
std::string Title(std::string s);       // str.title()
bool IsPySpace(char c);
// str.strip / lstrip / rstrip; `chars` null means whitespace.
std::string Strip(const std::string& s, const std::string* chars, bool left, bool right);
// str.replace(from, to, count); count < 0 replaces all. nullopt if the result would be longer
// than `max_size` (checked before it is built).
std::optional<std::string> Replace(const std::string& s, const std::string& from, const std::string& to,
                                   int64_t count, size_t max_size);
// str.split(sep, maxsplit); `sep` null splits on runs of whitespace. REQUIRES: *sep non-empty.
List Split(const std::string& s, const std::string* sep, int64_t maxsplit);
// str.splitlines() for \n, \r\n and \r.
std::vector<std::string> SplitLines(const std::string& s);
// int(str) / float(str): surrounding whitespace allowed; nullopt when Python would raise.
std::optional<int64_t> ParseInt(const std::string& s);
std::optional<double> ParseFloat(const std::string& s);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_TEXT_OPS_H_
