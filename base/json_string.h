// AppendJsonQuoted: a string as a JSON string literal, the one escaping rule of the code base (the
// chat template's `tojson` filter, engine/text/jinja_value.cc, and the request log,
// server/request_log.cc).
//
// The bytes are kept as they are (UTF-8 stays UTF-8, as Python's json.dumps with
// ensure_ascii=False, which the Jinja filter must match); `"` and `\` are escaped, and the control
// characters below 0x20 are written as \n, \r, \t, \b, \f or else \u00xx. The result is valid JSON
// whenever the input is valid UTF-8.
//
// Thread-safety: a pure function.
#ifndef KVSERVE_BASE_JSON_STRING_H_
#define KVSERVE_BASE_JSON_STRING_H_

#include <string>
#include <string_view>

namespace kvserve::base {

// Appends the JSON string literal of `s`, quotes included, to `out`.
void AppendJsonQuoted(std::string_view s, std::string& out);

}  // namespace kvserve::base

#endif  // KVSERVE_BASE_JSON_STRING_H_
