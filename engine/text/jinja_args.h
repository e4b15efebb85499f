// Argument access for the chat-template builtins: Python's binding of an argument by position or
// by keyword, with the type checks the builtins need. Internal to engine/text.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_ARGS_H_
#define KVSERVE_ENGINE_TEXT_JINJA_ARGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_value.h"

namespace kvserve::engine::jinja {

// An InvalidArgumentError from the concatenated parts.
inline absl::Status BuiltinError(std::string_view a, std::string_view b = "",
                                 std::string_view c = "") {
  return absl::InvalidArgumentError(absl::StrCat(std::string(a), std::string(b), std::string(c)));
}

// The argument at `pos`, or the keyword argument `name`, or null.
inline const Value* Arg(const CallArgs& args, size_t pos, std::string_view name) {
  if (pos < args.positional.size()) return &args.positional[pos];
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

inline absl::StatusOr<std::string> StringArg(const CallArgs& args, size_t pos,
                                             std::string_view name, std::string_view fallback,
                                             std::string_view fn) {
  const Value* v = Arg(args, pos, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return std::string(fallback);
  if (!v->is_string())
    return BuiltinError(fn, ": argument '", std::string(name) + "' must be a string");
  return v->as_string();
}

inline absl::StatusOr<int64_t> IntArg(const CallArgs& args, size_t pos, std::string_view name,
                                      int64_t fallback, std::string_view fn) {
  const Value* v = Arg(args, pos, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return fallback;
  if (!v->is_int())
    return BuiltinError(fn, ": argument '", std::string(name) + "' must be an integer");
  return v->as_int();
}

inline bool BoolArg(const CallArgs& args, size_t pos, std::string_view name, bool fallback) {
  const Value* v = Arg(args, pos, name);
  return v == nullptr || v->is_undefined() ? fallback : v->Truthy();
}

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_ARGS_H_
