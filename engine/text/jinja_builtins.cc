#include "engine/text/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace kvserve::engine::jinja {
namespace {

absl::Status Error(std::string_view a, std::string_view b = "", std::string_view c = "") {
  return absl::InvalidArgumentError(absl::StrCat(std::string(a), std::string(b), std::string(c)));
}

// The argument at `pos`, or the keyword argument `name`, or null.
const Value* Arg(const CallArgs& args, size_t pos, std::string_view name) {
  if (pos < args.positional.size()) return &args.positional[pos];
  for (const auto& [k, v] : args.keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

absl::StatusOr<std::string> StringArg(const CallArgs& args, size_t pos, std::string_view name,
                                      std::string_view fallback, std::string_view fn) {
  const Value* v = Arg(args, pos, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return std::string(fallback);
  if (!v->is_string()) return Error(fn, ": argument '", std::string(name) + "' must be a string");
  return v->as_string();
}

absl::StatusOr<int64_t> IntArg(const CallArgs& args, size_t pos, std::string_view name,
                               int64_t fallback, std::string_view fn) {
  const Value* v = Arg(args, pos, name);
  if (v == nullptr || v->is_none() || v->is_undefined()) return fallback;
  if (!v->is_int()) return Error(fn, ": argument '", std::string(name) + "' must be an integer");
  return v->as_int();
}

bool BoolArg(const CallArgs& args, size_t pos, std::string_view name, bool fallback) {
  const Value* v = Arg(args, pos, name);
  return v == nullptr || v->is_undefined() ? fallback : v->Truthy();
}

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

std::string Replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  size_t pos = 0;
  int64_t done = 0;
  if (from.empty()) {  // Python inserts `to` between every character
    std::vector<size_t> at = CodePointOffsets(s);
    for (size_t i = 0; i + 1 < at.size(); ++i) {
      if (count < 0 || done < count) out += to, ++done;
      out.append(s, at[i], at[i + 1] - at[i]);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  while (count < 0 || done < count) {
    size_t found = s.find(from, pos);
    if (found == std::string::npos) break;
    out.append(s, pos, found - pos);
    out += to;
    pos = found + from.size();
    ++done;
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

// Python's `prefix` argument of startswith / endswith: a string or a tuple of strings.
absl::StatusOr<bool> AffixMatch(const std::string& s, const Value* arg, bool prefix, std::string_view fn) {
  if (arg == nullptr) return Error(fn, "() takes at least 1 argument");
  auto match = [&](const std::string& affix) {
    if (affix.size() > s.size()) return false;
    return prefix ? s.compare(0, affix.size(), affix) == 0
                  : s.compare(s.size() - affix.size(), affix.size(), affix) == 0;
  };
  if (arg->is_string()) return match(arg->as_string());
  if (arg->is_list()) {
    for (const Value& v : arg->list()) {
      if (!v.is_string()) return Error(fn, "() tuple elements must be strings");
      if (match(v.as_string())) return true;
    }
    return false;
  }
  return Error(fn, "() argument must be a string or a tuple of strings");
}

absl::StatusOr<List> ToList(const Value& v, std::string_view fn) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return List{};
    case Value::Kind::kList:
      return v.list();
    case Value::Kind::kDict: {
      List keys;
      for (const auto& [k, item] : v.dict().items()) keys.push_back(Value::String(k));
      return keys;
    }
    case Value::Kind::kString: {
      List chars;
      std::vector<size_t> at = CodePointOffsets(v.as_string());
      for (size_t i = 0; i + 1 < at.size(); ++i) {
        chars.push_back(Value::String(v.as_string().substr(at[i], at[i + 1] - at[i])));
      }
      return chars;
    }
    default:
      return Error(fn, ": '", std::string(v.KindName()) + "' object is not iterable");
  }
}

Value Items(const Value& v) {
  List out;
  if (v.is_dict()) {
    for (const auto& [k, item] : v.dict().items()) out.push_back(Value::MakeList({Value::String(k), item}));
  }
  return Value::MakeList(std::move(out));
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

// select / reject / selectattr / rejectattr: keep items whose test (truthiness when none is
// named) gives `keep`. `attr_args` says whether args[0] names the attribute to test.
absl::StatusOr<Value> SelectFilter(Interpreter& in, const Value& operand, CallArgs& args, bool keep,
                                   bool by_attr, std::string_view fn) {
  auto items = ToList(operand, fn);
  if (!items.ok()) return items.status();
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return Error(fn, ": the first argument must name an attribute");
    }
    attr = args.positional[0].as_string();
    next = 1;
  }
  std::string test;
  if (args.positional.size() > next) {
    if (!args.positional[next].is_string()) return Error(fn, ": the test name must be a string");
    test = args.positional[next].as_string();
  }
  CallArgs test_args;
  for (size_t i = next + 1; i < args.positional.size(); ++i) test_args.positional.push_back(args.positional[i]);
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

}  // namespace

absl::StatusOr<Value> ApplyFilter(Interpreter& in, const std::string& name, const Value& v, CallArgs& args) {
  if (absl::Status s = in.Step(); !s.ok()) return s;
  if (name == "safe") return v;
  if (name == "string") return Value::String(ToStr(v));
  if (name == "default" || name == "d") {
    const Value* fallback = Arg(args, 0, "default_value");
    bool boolean = BoolArg(args, 1, "boolean", false);
    if (v.is_undefined() || (boolean && !v.Truthy())) return fallback ? *fallback : Value::String("");
    return v;
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::Int(static_cast<int64_t>(CodePointCount(v.as_string())));
    if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
    if (v.is_dict()) return Value::Int(static_cast<int64_t>(v.dict().size()));
    if (v.is_undefined()) return Value::Int(0);
    return Error("object of type '", v.KindName(), "' has no len()");
  }
  if (name == "tojson") {
    auto indent = IntArg(args, 0, "indent", -1, "tojson");
    if (!indent.ok()) return indent.status();
    auto json = ToJson(v, static_cast<int>(*indent), BoolArg(args, 3, "sort_keys", false));
    if (!json.ok()) return json.status();
    return Value::String(std::move(*json));
  }
  if (name == "items") {
    if (!v.is_dict() && !v.is_undefined()) return Error("items: expected a mapping, got ", v.KindName());
    return Items(v);
  }
  if (name == "list") {
    auto items = ToList(v, "list");
    if (!items.ok()) return items.status();
    return Value::MakeList(std::move(*items));
  }
  if (name == "first" || name == "last") {
    auto items = ToList(v, name);
    if (!items.ok()) return items.status();
    if (items->empty()) return Value();
    return name == "first" ? items->front() : items->back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<size_t> at = CodePointOffsets(v.as_string());
      std::string out;
      for (size_t i = at.size() - 1; i > 0; --i) out.append(v.as_string(), at[i - 1], at[i] - at[i - 1]);
      return Value::String(std::move(out));
    }
    auto items = ToList(v, "reverse");
    if (!items.ok()) return items.status();
    std::reverse(items->begin(), items->end());
    return Value::MakeList(std::move(*items));
  }
  if (name == "join") {
    auto sep = StringArg(args, 0, "d", "", "join");
    if (!sep.ok()) return sep.status();
    const Value* attr = Arg(args, 1, "attribute");
    auto items = ToList(v, "join");
    if (!items.ok()) return items.status();
    std::string out;
    for (size_t i = 0; i < items->size(); ++i) {
      if (i > 0) out += *sep;
      const Value& item = (*items)[i];
      out += ToStr(attr && attr->is_string() ? Interpreter::GetAttr(item, attr->as_string()) : item);
      if (absl::Status s = in.CheckSize(out.size()); !s.ok()) return s;
    }
    return Value::String(std::move(out));
  }
  if (name == "map") {
    auto items = ToList(v, "map");
    if (!items.ok()) return items.status();
    List out;
    const Value* attr = Arg(args, args.positional.size(), "attribute");
    if (attr != nullptr) {
      if (!attr->is_string()) return Error("map: attribute must be a string");
      const Value* fallback = Arg(args, args.positional.size(), "default");
      for (const Value& item : *items) {
        Value got = Interpreter::GetAttr(item, attr->as_string());
        out.push_back(got.is_undefined() && fallback ? *fallback : got);
      }
      return Value::MakeList(std::move(out));
    }
    if (args.positional.empty() || !args.positional[0].is_string()) {
      return Error("map: expected attribute= or a filter name");
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
  if (name == "unique") {
    auto items = ToList(v, "unique");
    if (!items.ok()) return items.status();
    bool case_sensitive = BoolArg(args, 0, "case_sensitive", false);
    List out;
    std::vector<Value> seen;
    for (const Value& item : *items) {
      Value key = !case_sensitive && item.is_string() ? Value::String(Lower(item.as_string())) : item;
      bool dup = std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); });
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
    if (v.is_float()) return Value::Int(static_cast<int64_t>(std::trunc(v.as_number())));
    if (v.is_string()) {
      if (auto i = ParseInt(v.as_string())) return Value::Int(*i);
      if (auto f = ParseFloat(v.as_string())) return Value::Int(static_cast<int64_t>(std::trunc(*f)));
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
    if (v.is_int()) return Value::Int(v.as_int() < 0 ? -v.as_int() : v.as_int());
    if (v.is_float()) return Value::Float(std::fabs(v.as_number()));
    return Error("bad operand type for abs(): ", v.KindName());
  }
  if (name == "round") {
    if (!v.is_number()) return Error("round: expected a number, got ", v.KindName());
    auto precision = IntArg(args, 0, "precision", 0, "round");
    if (!precision.ok()) return precision.status();
    auto method = StringArg(args, 1, "method", "common", "round");
    if (!method.ok()) return method.status();
    double scale = std::pow(10.0, static_cast<double>(*precision));
    double x = v.as_number() * scale;
    if (*method == "common") x = std::nearbyint(x);  // Python's round(): half to even
    else if (*method == "floor") x = std::floor(x);
    else if (*method == "ceil") x = std::ceil(x);
    else return Error("round: method must be 'common', 'floor' or 'ceil'");
    return Value::Float(x / scale);
  }
  // The rest take a string; undefined converts to "" as Jinja's soft_str does.
  if (!v.is_string() && !v.is_undefined()) {
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
        name == "trim" || name == "replace" || name == "indent") {
      return ApplyFilter(in, name, Value::String(ToStr(v)), args);
    }
    return Error("unknown filter '", name, "'");
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
    std::string out = Replace(s, *from, *to, *count);
    if (absl::Status st = in.CheckSize(out.size()); !st.ok()) return st;
    return Value::String(std::move(out));
  }
  if (name == "indent") {
    const Value* width = Arg(args, 0, "width");
    std::string pad = width == nullptr ? "    " : width->is_string() ? width->as_string()
                      : width->is_int() ? std::string(static_cast<size_t>(std::max<int64_t>(0, width->as_int())), ' ')
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
  return Error("unknown filter '", name, "'");
}

absl::StatusOr<bool> ApplyTest(Interpreter& in, const std::string& name, const Value& v, CallArgs& args) {
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
    if (!v.is_int()) return Error("test '", name, "' needs an integer");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    if (!v.is_int() || arg == nullptr || !arg->is_int() || arg->as_int() == 0) {
      return Error("test 'divisibleby' needs integers and a non-zero divisor");
    }
    return v.as_int() % arg->as_int() == 0;
  }
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    return v.as_string() == (name == "lower" ? Lower(v.as_string()) : Upper(v.as_string()));
  }
  static constexpr std::string_view kWithArgument[] = {
      "equalto", "eq", "==", "sameas", "ne", "!=", "in", "gt", "ge", "lt", "le", "greaterthan", "lessthan"};
  if (std::find(std::begin(kWithArgument), std::end(kWithArgument), name) == std::end(kWithArgument)) {
    return Error("unknown test '", name, "'");
  }
  if (arg == nullptr) return Error("test '", name, "' needs an argument");
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return Equals(v, *arg);
  if (name == "ne" || name == "!=") return !Equals(v, *arg);
  if (name == "in") {
    if (arg->is_list()) return std::any_of(arg->list().begin(), arg->list().end(), [&](const Value& x) { return Equals(v, x); });
    if (arg->is_string() && v.is_string()) return arg->as_string().find(v.as_string()) != std::string::npos;
    if (arg->is_dict()) return v.is_string() && arg->dict().Find(v.as_string()) != nullptr;
    return Error("test 'in' needs a container");
  }
  if (name == "gt" || name == "ge" || name == "lt" || name == "le" || name == "greaterthan" || name == "lessthan") {
    if (!v.is_number() || !arg->is_number()) return Error("test '", name, "' needs numbers");
    double x = v.as_number(), y = arg->as_number();
    if (name == "gt" || name == "greaterthan") return x > y;
    if (name == "ge") return x >= y;
    if (name == "lt" || name == "lessthan") return x < y;
    return x <= y;
  }
  return Error("unknown test '", name, "'");
}

absl::StatusOr<std::optional<Value>> CallMethod(Interpreter& in, const Value& object, const std::string& name,
                                                CallArgs& args) {
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
      if (chars && !chars->is_string() && !chars->is_none()) return Error(name, "() argument must be a string or none");
      const std::string* set = chars && chars->is_string() ? &chars->as_string() : nullptr;
      return Value::String(Strip(s, set, name != "rstrip", name != "lstrip"));
    }
    if (name == "split") {
      const Value* sep = Arg(args, 0, "sep");
      if (sep && !sep->is_string() && !sep->is_none()) return Error("split() separator must be a string or none");
      if (sep && sep->is_string() && sep->as_string().empty()) return Error("split(): empty separator");
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
      if (!from || !to || !from->is_string() || !to->is_string()) return Error("replace() needs two strings");
      auto count = IntArg(args, 2, "count", -1, "replace");
      if (!count.ok()) return count.status();
      std::string out = Replace(s, from->as_string(), to->as_string(), *count);
      if (absl::Status st = in.CheckSize(out.size()); !st.ok()) return st;
      return Value::String(std::move(out));
    }
    if (name == "join") {
      const Value* items = Arg(args, 0, "iterable");
      if (!items) return Error("join() takes one argument");
      auto list = ToList(*items, "join");
      if (!list.ok()) return list.status();
      std::string out;
      for (size_t i = 0; i < list->size(); ++i) {
        if (!(*list)[i].is_string()) return Error("join(): sequence item is not a string");
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
      for (const auto& [k, item] : object.dict().items()) out.push_back(name == "keys" ? Value::String(k) : item);
      return Value::MakeList(std::move(out));
    }
    if (name == "get") {
      const Value* key = Arg(args, 0, "key");
      if (!key) return Error("get() takes at least 1 argument");
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
  globals.Set("range", Value::MakeFunction([interp](CallArgs& args) -> absl::StatusOr<Value> {
    int64_t p[3] = {0, 0, 1};
    size_t n = args.positional.size();
    if (n < 1 || n > 3) return Error("range expected 1 to 3 arguments");
    for (size_t i = 0; i < n; ++i) {
      if (!args.positional[i].is_int()) return Error("range() arguments must be integers");
    }
    if (n == 1) p[1] = args.positional[0].as_int();
    else for (size_t i = 0; i < n; ++i) p[i] = args.positional[i].as_int();
    if (p[2] == 0) return Error("range() step must not be zero");
    // Count first and charge it, so range(10**9) fails at once instead of allocating.
    int64_t count = p[2] > 0 ? (p[1] > p[0] ? (p[1] - p[0] + p[2] - 1) / p[2] : 0)
                             : (p[0] > p[1] ? (p[0] - p[1] - p[2] - 1) / -p[2] : 0);
    if (absl::Status s = interp->Step(count); !s.ok()) return s;
    List items;
    items.reserve(static_cast<size_t>(count));
    for (int64_t i = 0, x = p[0]; i < count; ++i, x += p[2]) items.push_back(Value::Int(x));
    return Value::MakeList(std::move(items));
  }));
  auto make_dict = [](bool is_namespace) {
    return [is_namespace](CallArgs& args) -> absl::StatusOr<Value> {
      Dict dict;
      if (args.positional.size() > 1) return Error("expected at most 1 positional argument");
      if (!args.positional.empty()) {
        if (!args.positional[0].is_dict()) return Error("expected a mapping argument");
        for (const auto& [k, v] : args.positional[0].dict().items()) dict.Set(k, v);
      }
      for (const auto& [k, v] : args.keyword) dict.Set(k, v);
      return is_namespace ? Value::MakeNamespace(std::move(dict)) : Value::MakeDict(std::move(dict));
    };
  };
  globals.Set("namespace", Value::MakeFunction(make_dict(true)));
  globals.Set("dict", Value::MakeFunction(make_dict(false)));
  globals.Set("raise_exception", Value::MakeFunction([](CallArgs& args) -> absl::StatusOr<Value> {
    const Value* message = Arg(args, 0, "message");
    // The template's own words go to the client unchanged.
    return Located(absl::InvalidArgumentError(message ? ToStr(*message) : "raise_exception called"));
  }));
  globals.Set("strftime_now", Value::MakeFunction([interp](CallArgs& args) -> absl::StatusOr<Value> {
    const Value* format = Arg(args, 0, "format");
    if (!format || !format->is_string()) return Error("strftime_now() needs a format string");
    return Value::String(absl::FormatTime(format->as_string(), interp->limits().now, absl::LocalTimeZone()));
  }));
}

}  // namespace kvserve::engine::jinja
