#include "engine/text/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_text_ops.h"

namespace kvserve::engine::jinja {
namespace {

// Python's `prefix` argument of startswith / endswith: a string or a tuple of strings.
absl::StatusOr<bool> AffixMatch(const std::string& s, const Value* arg, bool prefix,
                                std::string_view fn) {
  if (arg == nullptr) return BuiltinError(fn, "() takes at least 1 argument");
  auto match = [&](const std::string& affix) {
    if (affix.size() > s.size()) return false;
    return prefix ? s.compare(0, affix.size(), affix) == 0
                  : s.compare(s.size() - affix.size(), affix.size(), affix) == 0;
  };
  if (arg->is_string()) return match(arg->as_string());
  if (arg->is_list()) {
    for (const Value& v : arg->list()) {
      if (!v.is_string()) return BuiltinError(fn, "() tuple elements must be strings");
      if (match(v.as_string())) return true;
    }
    return false;
  }
  return BuiltinError(fn, "() argument must be a string or a tuple of strings");
}

}  // namespace

absl::StatusOr<bool> ApplyTest(Interpreter& in, const std::string& name, const Value& v,
                               CallArgs& args) {
  if (absl::Status s = in.Step(); !s.ok()) return s;
  const Value* arg = Arg(args, 0, "value");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "callable") return v.is_function();
  if (name == "odd" || name == "even") {
    if (!v.is_int()) return BuiltinError("test '", name, "' needs an integer");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    if (!v.is_int() || arg == nullptr || !arg->is_int() || arg->as_int() == 0) {
      return BuiltinError("test 'divisibleby' needs integers and a non-zero divisor");
    }
    return v.as_int() % arg->as_int() == 0;
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    return v.as_string() == (name == "lower" ? Lower(v.as_string()) : Upper(v.as_string()));
  }
  static constexpr std::string_view kWithArgument[] = {
      "equalto", "eq", "==", "sameas", "ne",          "!=",      "in",
      "gt",      "ge", "lt", "le",     "greaterthan", "lessthan"};
  if (std::find(std::begin(kWithArgument), std::end(kWithArgument), name) ==
      std::end(kWithArgument)) {
    return BuiltinError("unknown test '", name, "'");
  }
  if (arg == nullptr) return BuiltinError("test '", name, "' needs an argument");
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return Equals(v, *arg);
  if (name == "ne" || name == "!=") return !Equals(v, *arg);
  if (name == "in") {
    if (arg->is_list())
      return std::any_of(arg->list().begin(), arg->list().end(),
                         [&](const Value& x) { return Equals(v, x); });
    if (arg->is_string() && v.is_string())
      return arg->as_string().find(v.as_string()) != std::string::npos;
    if (arg->is_dict()) return v.is_string() && arg->dict().Find(v.as_string()) != nullptr;
    return BuiltinError("test 'in' needs a container");
  }
  if (name == "gt" || name == "ge" || name == "lt" || name == "le" || name == "greaterthan" ||
      name == "lessthan") {
    if (!v.is_number() || !arg->is_number()) return BuiltinError("test '", name, "' needs numbers");
    double x = v.as_number(), y = arg->as_number();
    if (name == "gt" || name == "greaterthan") return x > y;
    if (name == "ge") return x >= y;
    if (name == "lt" || name == "lessthan") return x < y;
    return x <= y;
  }
  return BuiltinError("unknown test '", name, "'");
}

absl::StatusOr<std::optional<Value>> CallMethod(Interpreter& in, const Value& object,
                                                const std::string& name, CallArgs& args) {
  if (absl::Status s = in.Step(); !s.ok()) return s;
  if (object.is_string()) {
    const std::string& s = object.as_string();
    if (name == "startswith" || name == "endswith") {
      auto r = AffixMatch(s, Arg(args, 0, "prefix"), name == "startswith", name);
      if (!r.ok()) return r.status();
      return Value::Bool(*r);
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value* chars = Arg(args, 0, "chars");
      if (chars && !chars->is_string() && !chars->is_none())
        return BuiltinError(name, "() argument must be a string or none");
      const std::string* set = chars && chars->is_string() ? &chars->as_string() : nullptr;
      return Value::String(Strip(s, set, name != "rstrip", name != "lstrip"));
    }
    if (name == "split") {
      const Value* sep = Arg(args, 0, "sep");
      if (sep && !sep->is_string() && !sep->is_none())
        return BuiltinError("split() separator must be a string or none");
      if (sep && sep->is_string() && sep->as_string().empty())
        return BuiltinError("split(): empty separator");
      auto maxsplit = IntArg(args, 1, "maxsplit", -1, "split");
      if (!maxsplit.ok()) return maxsplit.status();
      List parts = Split(s, sep && sep->is_string() ? &sep->as_string() : nullptr, *maxsplit);
      if (absl::Status st = in.Step(static_cast<int64_t>(parts.size())); !st.ok()) return st;
      return Value::MakeList(std::move(parts));
    }
    if (name == "upper") return Value::String(Upper(s));
    if (name == "lower") return Value::String(Lower(s));
    if (name == "title") return Value::String(Title(s));
    if (name == "capitalize") return Value::String(Capitalize(s));
    if (name == "replace") {
      const Value* from = Arg(args, 0, "old");
      const Value* to = Arg(args, 1, "new");
      if (!from || !to || !from->is_string() || !to->is_string())
        return BuiltinError("replace() needs two strings");
      auto count = IntArg(args, 2, "count", -1, "replace");
      if (!count.ok()) return count.status();
      auto out = Replace(s, from->as_string(), to->as_string(), *count,
                         static_cast<size_t>(in.limits().max_output_bytes));
      if (!out) return in.CheckSize(static_cast<size_t>(in.limits().max_output_bytes) + 1);
      return Value::String(std::move(*out));
    }
    if (name == "join") {
      const Value* items = Arg(args, 0, "iterable");
      if (!items) return BuiltinError("join() takes one argument");
      auto list = in.Materialize(*items);
      if (!list.ok()) return list.status();
      std::string out;
      for (size_t i = 0; i < list->size(); ++i) {
        if (!(*list)[i].is_string()) return BuiltinError("join(): sequence item is not a string");
        if (i > 0) out += s;
        out += (*list)[i].as_string();
        if (absl::Status st = in.CheckSize(out.size()); !st.ok()) return st;
      }
      return Value::String(std::move(out));
    }
    return std::nullopt;
  }
  if (object.is_dict() && !object.is_namespace()) {
    if (name == "items") return Items(object);
    if (name == "keys" || name == "values") {
      List out;
      for (const auto& [k, item] : object.dict().items())
        out.push_back(name == "keys" ? Value::String(k) : item);
      return Value::MakeList(std::move(out));
    }
    if (name == "get") {
      const Value* key = Arg(args, 0, "key");
      if (!key) return BuiltinError("get() takes at least 1 argument");
      const Value* found = key->is_string() ? object.dict().Find(key->as_string()) : nullptr;
      if (found) return *found;
      const Value* fallback = Arg(args, 1, "default");
      return fallback ? *fallback : Value::None();
    }
  }
  return std::nullopt;
}

void AddGlobals(Interpreter& in, Dict& globals) {
  Interpreter* interp = &in;
  globals.Set(
      "range", Value::MakeFunction([interp](CallArgs& args) -> absl::StatusOr<Value> {
        int64_t p[3] = {0, 0, 1};
        size_t n = args.positional.size();
        if (n < 1 || n > 3) return BuiltinError("range expected 1 to 3 arguments");
        for (size_t i = 0; i < n; ++i) {
          if (!args.positional[i].is_int())
            return BuiltinError("range() arguments must be integers");
        }
        if (n == 1)
          p[1] = args.positional[0].as_int();
        else
          for (size_t i = 0; i < n; ++i) p[i] = args.positional[i].as_int();
        if (p[2] == 0) return BuiltinError("range() step must not be zero");
        // Count first and charge it, so range(10**9) fails at once instead of allocating. Unsigned
        // differences are exact for any int64 pair.
        uint64_t span =
            p[2] > 0
                ? (p[1] > p[0] ? static_cast<uint64_t>(p[1]) - static_cast<uint64_t>(p[0]) : 0)
                : (p[0] > p[1] ? static_cast<uint64_t>(p[0]) - static_cast<uint64_t>(p[1]) : 0);
        uint64_t stride = p[2] > 0 ? static_cast<uint64_t>(p[2]) : 0 - static_cast<uint64_t>(p[2]);
        uint64_t num_items = span / stride + (span % stride != 0);
        int64_t count = static_cast<int64_t>(std::min<uint64_t>(num_items, INT64_MAX));
        if (absl::Status s = interp->Step(count); !s.ok()) return s;
        List items;
        items.reserve(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {  // unsigned: no overflow past the last item
          items.push_back(Value::Int(
              static_cast<int64_t>(static_cast<uint64_t>(p[0]) +
                                   static_cast<uint64_t>(i) * static_cast<uint64_t>(p[2]))));
        }
        return Value::MakeList(std::move(items));
      }));
  auto make_dict = [](bool is_namespace) {
    return [is_namespace](CallArgs& args) -> absl::StatusOr<Value> {
      Dict dict;
      if (args.positional.size() > 1) return BuiltinError("expected at most 1 positional argument");
      if (!args.positional.empty()) {
        if (!args.positional[0].is_dict()) return BuiltinError("expected a mapping argument");
        if (absl::Status s = CheckNesting(args.positional[0]); !s.ok()) return s;
        for (const auto& [k, v] : args.positional[0].dict().items()) dict.Set(k, v);
      }
      for (const auto& [k, v] : args.keyword) {
        if (absl::Status s = CheckNesting(v); !s.ok()) return s;
        dict.Set(k, v);
      }
      return is_namespace ? Value::MakeNamespace(std::move(dict))
                          : Value::MakeDict(std::move(dict));
    };
  };
  globals.Set("namespace", Value::MakeFunction(make_dict(true)));
  globals.Set("dict", Value::MakeFunction(make_dict(false)));
  globals.Set("raise_exception", Value::MakeFunction([](CallArgs& args) -> absl::StatusOr<Value> {
                const Value* message = Arg(args, 0, "message");
                // The template's own words go to the client unchanged.
                return Located(absl::InvalidArgumentError(message ? ToStr(*message)
                                                                  : "raise_exception called"));
              }));
  globals.Set(
      "strftime_now", Value::MakeFunction([interp](CallArgs& args) -> absl::StatusOr<Value> {
        const Value* format = Arg(args, 0, "format");
        if (!format || !format->is_string())
          return BuiltinError("strftime_now() needs a format string");
        return Value::String(
            absl::FormatTime(format->as_string(), interp->limits().now, absl::LocalTimeZone()));
      }));
}

}  // namespace kvserve::engine::jinja
