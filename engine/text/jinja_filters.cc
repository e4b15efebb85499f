#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_builtins.h"
#include "engine/text/jinja_text_ops.h"

namespace kvserve::engine::jinja {
namespace {

// select / reject / selectattr / rejectattr: keep items whose test (truthiness when none is
// named) gives `keep`. `attr_args` says whether args[0] names the attribute to test.
absl::StatusOr<Value> SelectFilter(Interpreter& in, const Value& operand, CallArgs& args, bool keep,
                                   bool by_attr, std::string_view fn) {
  auto items = in.Materialize(operand);
  if (!items.ok()) return items.status();
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return BuiltinError(fn, ": the first argument must name an attribute");
    }
    attr = args.positional[0].as_string();
    next = 1;
  }
  std::string test;
  if (args.positional.size() > next) {
    if (!args.positional[next].is_string())
      return BuiltinError(fn, ": the test name must be a string");
    test = args.positional[next].as_string();
  }
  CallArgs test_args;
  for (size_t i = next + 1; i < args.positional.size(); ++i)
    test_args.positional.push_back(args.positional[i]);
  List out;
  for (const Value& item : *items) {
    Value subject = by_attr ? Interpreter::GetAttr(item, attr) : item;
    bool result = subject.Truthy();
    if (!test.empty()) {
      auto r = ApplyTest(in, test, subject, test_args);
      if (!r.ok()) return r.status();
      result = *r;
    }
    if (result == keep) out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

// Python ordering for sort / dictsort: numbers with numbers, strings with strings (lowered unless
// case_sensitive); anything else cannot be ordered.
bool Less(const Value& a, const Value& b, bool case_sensitive, bool& comparable) {
  if ((a.is_number() || a.is_bool()) && (b.is_number() || b.is_bool())) {
    double x = a.is_bool() ? a.as_bool() : a.as_number();
    double y = b.is_bool() ? b.as_bool() : b.as_number();
    return x < y;
  }
  if (a.is_string() && b.is_string()) {
    if (case_sensitive) return a.as_string() < b.as_string();
    return Lower(a.as_string()) < Lower(b.as_string());
  }
  comparable = false;
  return false;
}

// Sorts `items` by `key(item)`; stable, as Python's sorted().
template <typename KeyFn>
absl::Status SortBy(List& items, KeyFn key, bool case_sensitive, bool reverse,
                    std::string_view fn) {
  bool comparable = true;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? Less(key(b), key(a), case_sensitive, comparable)
                   : Less(key(a), key(b), case_sensitive, comparable);
  });
  if (!comparable)
    return BuiltinError(fn, ": values cannot be compared (mixed or unorderable types)");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Value> ApplyFilter(Interpreter& in, const std::string& name, const Value& v,
                                  CallArgs& args) {
  if (absl::Status s = in.Step(); !s.ok()) return s;
  if (name == "safe") return v;
  if (name == "string") return Value::String(ToStr(v));
  if (name == "default" || name == "d") {
    const Value* fallback = Arg(args, 0, "default_value");
    bool boolean = BoolArg(args, 1, "boolean", false);
    if (v.is_undefined() || (boolean && !v.Truthy()))
      return fallback ? *fallback : Value::String("");
    return v;
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::Int(static_cast<int64_t>(CodePointCount(v.as_string())));
    if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
    if (v.is_dict()) return Value::Int(static_cast<int64_t>(v.dict().size()));
    if (v.is_undefined()) return Value::Int(0);
    return BuiltinError("object of type '", v.KindName(), "' has no len()");
  }
  if (name == "tojson") {
    // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None,
    // sort_keys=False); positional arguments bind in that order.
    JsonOptions options;
    options.ensure_ascii = BoolArg(args, 0, "ensure_ascii", false);
    auto indent = IntArg(args, 1, "indent", -1, "tojson");
    if (!indent.ok()) return indent.status();
    options.indent = static_cast<int>(std::min<int64_t>(*indent, 1 << 10));
    if (const Value* seps = Arg(args, 2, "separators"); seps != nullptr && !seps->is_none()) {
      if (!seps->is_list() || seps->list().size() != 2 || !seps->list()[0].is_string() ||
          !seps->list()[1].is_string()) {
        return BuiltinError("tojson: separators must be a pair of strings");
      }
      options.item_separator = seps->list()[0].as_string();
      options.key_separator = seps->list()[1].as_string();
    }
    options.sort_keys = BoolArg(args, 3, "sort_keys", false);
    auto json = ToJson(v, options);
    if (!json.ok()) return json.status();
    if (absl::Status s = in.CheckSize(json->size()); !s.ok()) return s;
    return Value::String(std::move(*json));
  }
  if (name == "items") {
    if (!v.is_dict() && !v.is_undefined())
      return BuiltinError("items: expected a mapping, got ", v.KindName());
    return Items(v);
  }
  if (name == "list") {
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    return Value::MakeList(std::move(*items));
  }
  if (name == "first" || name == "last") {
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    if (items->empty()) return Value();
    return name == "first" ? items->front() : items->back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<size_t> at = CodePointOffsets(v.as_string());
      std::string out;
      for (size_t i = at.size() - 1; i > 0; --i)
        out.append(v.as_string(), at[i - 1], at[i] - at[i - 1]);
      return Value::String(std::move(out));
    }
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return Value::MakeList(std::move(*items));
  }
  if (name == "join") {
    auto sep = StringArg(args, 0, "d", "", "join");
    if (!sep.ok()) return sep.status();
    const Value* attr = Arg(args, 1, "attribute");
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (i > 0) out += *sep;
      const Value& item = (*items)[i];
      out +=
          ToStr(attr && attr->is_string() ? Interpreter::GetAttr(item, attr->as_string()) : item);
      if (absl::Status s = in.CheckSize(out.size()); !s.ok()) return s;
    }
    return Value::String(std::move(out));
  }
  if (name == "map") {
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    List out;
    const Value* attr = Arg(args, args.positional.size(), "attribute");
    if (attr != nullptr) {
      if (!attr->is_string()) return BuiltinError("map: attribute must be a string");
      const Value* fallback = Arg(args, args.positional.size(), "default");
      for (const Value& item : *items) {
        Value got = Interpreter::GetAttr(item, attr->as_string());
        out.push_back(got.is_undefined() && fallback ? *fallback : got);
      }
      return Value::MakeList(std::move(out));
    }
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return BuiltinError("map: expected attribute= or a filter name");
    }
    CallArgs filter_args;
    filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
    for (const Value& item : *items) {
      CallArgs copy = filter_args;
      auto r = ApplyFilter(in, args.positional[0].as_string(), item, copy);
      if (!r.ok()) return r.status();
      out.push_back(std::move(*r));
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "select") return SelectFilter(in, v, args, true, false, name);
  if (name == "reject") return SelectFilter(in, v, args, false, false, name);
  if (name == "selectattr") return SelectFilter(in, v, args, true, true, name);
  if (name == "rejectattr") return SelectFilter(in, v, args, false, true, name);
  if (name == "sort") {
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    bool reverse = BoolArg(args, 0, "reverse", false);
    bool case_sensitive = BoolArg(args, 1, "case_sensitive", false);
    const Value* attr = Arg(args, 2, "attribute");
    std::string attribute = attr && attr->is_string() ? attr->as_string() : "";
    if (absl::Status s = in.Step(static_cast<int64_t>(items->size())); !s.ok()) return s;
    absl::Status sorted = SortBy(
        *items,
        [&](const Value& item) {
          return attribute.empty() ? item : Interpreter::GetAttr(item, attribute);
        },
        case_sensitive, reverse, "sort");
    if (!sorted.ok()) return sorted;
    return Value::MakeList(std::move(*items));
  }
  if (name == "dictsort") {
    if (!v.is_dict()) return BuiltinError("dictsort: expected a mapping, got ", v.KindName());
    bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
    auto by = StringArg(args, 1, "by", "key", "dictsort");
    if (!by.ok()) return by.status();
    if (*by != "key" && *by != "value")
      return BuiltinError("dictsort: 'by' must be 'key' or 'value'");
    bool reverse = BoolArg(args, 2, "reverse", false);
    List pairs = Items(v).list();
    size_t index = *by == "key" ? 0 : 1;
    absl::Status sorted = SortBy(
        pairs, [index](const Value& pair) { return pair.list()[index]; }, case_sensitive, reverse,
        "dictsort");
    if (!sorted.ok()) return sorted;
    return Value::MakeList(std::move(pairs));
  }
  if (name == "unique") {
    auto items = in.Materialize(v);
    if (!items.ok()) return items.status();
    bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
    List out;
    std::vector<Value> seen;
    for (const Value& item : *items) {
      Value key =
          !case_sensitive && item.is_string() ? Value::String(Lower(item.as_string())) : item;
      bool dup =
          std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); });
      if (!dup) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "int") {
    auto fallback = IntArg(args, 0, "default", 0, "int");
    if (!fallback.ok()) return fallback.status();
    if (v.is_int()) return v;
    if (v.is_bool()) return Value::Int(v.as_bool());
    if (v.is_float()) {
      double t = std::trunc(v.as_number());
      if (!(std::fabs(t) < 9.2e18))
        return BuiltinError("int: ", Repr(v), " does not fit in 64 bits");
      return Value::Int(static_cast<int64_t>(t));
    }
    if (v.is_string()) {
      if (auto i = ParseInt(v.as_string())) return Value::Int(*i);
      if (auto f = ParseFloat(v.as_string()); f && std::fabs(*f) < 9.2e18) {
        return Value::Int(static_cast<int64_t>(std::trunc(*f)));
      }
    }
    return Value::Int(*fallback);
  }
  if (name == "float") {
    if (v.is_number()) return Value::Float(v.as_number());
    if (v.is_bool()) return Value::Float(v.as_bool());
    if (v.is_string()) {
      if (auto f = ParseFloat(v.as_string())) return Value::Float(*f);
    }
    const Value* fallback = Arg(args, 0, "default");
    return fallback ? *fallback : Value::Float(0);
  }
  if (name == "abs") {
    if (v.is_int() && v.as_int() == INT64_MIN) return BuiltinError("abs: integer overflow");
    if (v.is_int()) return Value::Int(v.as_int() < 0 ? -v.as_int() : v.as_int());
    if (v.is_float()) return Value::Float(std::fabs(v.as_number()));
    return BuiltinError("bad operand type for abs(): ", v.KindName());
  }
  if (name == "round") {
    if (!v.is_number()) return BuiltinError("round: expected a number, got ", v.KindName());
    auto precision = IntArg(args, 0, "precision", 0, "round");
    if (!precision.ok()) return precision.status();
    auto method = StringArg(args, 1, "method", "common", "round");
    if (!method.ok()) return method.status();
    double scale = std::pow(10.0, static_cast<double>(*precision));
    double x = v.as_number() * scale;
    if (*method == "common")
      x = std::nearbyint(x);  // Python's round(): half to even
    else if (*method == "floor")
      x = std::floor(x);
    else if (*method == "ceil")
      x = std::ceil(x);
    else
      return BuiltinError("round: method must be 'common', 'floor' or 'ceil'");
    return Value::Float(x / scale);
  }
  // The rest take a string; undefined converts to "" as Jinja's soft_str does.
  if (!v.is_string() && !v.is_undefined()) {
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
        name == "trim" || name == "replace" || name == "indent") {
      return ApplyFilter(in, name, Value::String(ToStr(v)), args);
    }
    return BuiltinError("unknown filter '", name, "'");
  }
  const std::string s = ToStr(v);
  if (name == "upper") return Value::String(Upper(s));
  if (name == "lower") return Value::String(Lower(s));
  if (name == "capitalize") return Value::String(Capitalize(s));
  if (name == "title") return Value::String(Title(s));
  if (name == "trim") {
    const Value* chars = Arg(args, 0, "chars");
    const std::string* set = chars && chars->is_string() ? &chars->as_string() : nullptr;
    return Value::String(Strip(s, set, true, true));
  }
  if (name == "replace") {
    auto from = StringArg(args, 0, "old", "", "replace");
    auto to = StringArg(args, 1, "new", "", "replace");
    auto count = IntArg(args, 2, "count", -1, "replace");
    if (!from.ok()) return from.status();
    if (!to.ok()) return to.status();
    if (!count.ok()) return count.status();
    auto out = Replace(s, *from, *to, *count, static_cast<size_t>(in.limits().max_output_bytes));
    if (!out) return in.CheckSize(static_cast<size_t>(in.limits().max_output_bytes) + 1);
    return Value::String(std::move(*out));
  }
  if (name == "indent") {
    const Value* width = Arg(args, 0, "width");
    if (width != nullptr && width->is_int()) {
      if (absl::Status st =
              in.CheckSize(static_cast<size_t>(std::max<int64_t>(0, width->as_int())));
          !st.ok())
        return st;
    }
    std::string pad =
        width == nullptr     ? "    "
        : width->is_string() ? width->as_string()
        : width->is_int()
            ? std::string(static_cast<size_t>(std::max<int64_t>(0, width->as_int())), ' ')
            : "    ";
    bool first = BoolArg(args, 1, "first", false);
    bool blank = BoolArg(args, 2, "blank", false);
    // Jinja appends a newline before splitting, so a trailing newline survives.
    std::vector<std::string> lines = SplitLines(s + "\n");
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n";
      bool indent_line = (i > 0 || first) && (blank || !lines[i].empty());
      if (indent_line) out += pad;
      out += lines[i];
    }
    if (absl::Status st = in.CheckSize(out.size()); !st.ok()) return st;
    return Value::String(std::move(out));
  }
  return BuiltinError("unknown filter '", name, "'");
}

}  // namespace kvserve::engine::jinja
