#include "engine/text/jinja_text_ops.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "engine/text/jinja_value.h"

namespace kvserve::engine::jinja {

// ASCII-only case mapping: chat templates apply it to role names and keywords.
std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string Capitalize(std::string s) {
  s = Lower(std::move(s));
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}
// Python str.title(): a letter after a non-letter is upper-cased, every other letter lowered.
std::string Title(std::string s) {
  bool prev_letter = false;
  for (char& c : s) {
    bool letter = std::isalpha(static_cast<unsigned char>(c));
    if (letter) c = static_cast<char>(prev_letter ? std::tolower(static_cast<unsigned char>(c)) : std::toupper(static_cast<unsigned char>(c)));
    prev_letter = letter;
  }
  return s;
}

bool IsPySpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Python str.strip / lstrip / rstrip; `chars` empty means whitespace.
std::string Strip(const std::string& s, const std::string* chars, bool left, bool right) {
  auto strip_char = [&](char c) { return chars ? chars->find(c) != std::string::npos : IsPySpace(c); };
  size_t a = 0, b = s.size();
  if (left) while (a < b && strip_char(s[a])) ++a;
  if (right) while (b > a && strip_char(s[b - 1])) --b;
  return s.substr(a, b - a);
}

std::optional<std::string> Replace(const std::string& s, const std::string& from, const std::string& to,
                                   int64_t count, size_t max_size) {
  // Count the replacements first so an explosive replace fails before allocating.
  std::vector<size_t> at;  // byte offsets where `from` is replaced
  if (from.empty()) {      // Python inserts `to` before every character and at the end
    std::vector<size_t> cps = CodePointOffsets(s);
    for (size_t i = 0; i < cps.size() && (count < 0 || static_cast<int64_t>(at.size()) < count); ++i) {
      at.push_back(cps[i]);
    }
  } else {
    for (size_t pos = s.find(from); pos != std::string::npos && (count < 0 || static_cast<int64_t>(at.size()) < count);
         pos = s.find(from, pos + from.size())) {
      at.push_back(pos);
    }
  }
  long double size = static_cast<long double>(s.size()) +
                     static_cast<long double>(at.size()) * (static_cast<long double>(to.size()) - from.size());
  if (size > static_cast<long double>(max_size)) return std::nullopt;
  std::string out;
  out.reserve(static_cast<size_t>(size));
  size_t pos = 0;
  for (size_t p : at) {
    out.append(s, pos, p - pos);
    out += to;
    pos = p + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

List Split(const std::string& s, const std::string* sep, int64_t maxsplit) {
  List out;
  if (sep == nullptr) {  // runs of whitespace, no empty pieces
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsPySpace(s[i])) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(Value::String(Strip(s.substr(i), nullptr, false, true)));
        break;
      }
      size_t j = i;
      while (j < s.size() && !IsPySpace(s[j])) ++j;
      out.push_back(Value::String(s.substr(i, j - i)));
      i = j;
    }
    return out;
  }
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t found = s.find(*sep, pos);
    if (found == std::string::npos) break;
    out.push_back(Value::String(s.substr(pos, found - pos)));
    pos = found + sep->size();
  }
  out.push_back(Value::String(s.substr(pos)));
  return out;
}

// Python's `int(str)` accepting surrounding whitespace, a sign and underscores between digits.
std::optional<int64_t> ParseInt(const std::string& s) {
  std::string t = Strip(s, nullptr, true, true);
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return v;
}
std::optional<double> ParseFloat(const std::string& s) {
  std::string t = Strip(s, nullptr, true, true);
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return v;
}

// Lines of `s` as Python's splitlines() splits them (\n, \r\n, \r).
std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

}  // namespace kvserve::engine::jinja
