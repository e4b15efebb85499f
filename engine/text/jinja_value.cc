#include "engine/text/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/json_string.h"

namespace kvserve::engine::jinja {

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items_) {
    if (k == key) return &v;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  for (auto& [k, v] : items_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

void Dict::Append(std::string key, Value value) {
  items_.emplace_back(std::move(key), std::move(value));
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::MakeList(List items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<List>(std::move(items));
  return v;
}
Value Value::MakeDict(Dict dict) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(dict));
  return v;
}
Value Value::MakeNamespace(Dict dict) {
  Value v = MakeDict(std::move(dict));
  v.is_namespace_ = true;
  return v;
}
Value Value::MakeFunction(Function fn) {
  Value v;
  v.kind_ = Kind::kFunction;
  v.fn_ = std::make_shared<const Function>(std::move(fn));
  return v;
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return b_;
    case Kind::kInt:
      return i_ != 0;
    case Kind::kFloat:
      return f_ != 0;
    case Kind::kString:
      return !s_->empty();
    case Kind::kList:
      return !list_->empty();
    case Kind::kDict:
      return dict_->size() != 0;
    case Kind::kFunction:
      return true;
  }
  return false;
}

const char* Value::KindName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "none";
    case Kind::kBool:
      return "boolean";
    case Kind::kInt:
      return "integer";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "string";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return is_namespace_ ? "namespace" : "dict";
    case Kind::kFunction:
      return "function";
  }
  return "?";
}

bool Equals(const Value& a, const Value& b) {
  // Python: True == 1 and 1 == 1.0; bool is a number there.
  auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  if (numeric(a) && numeric(b)) {
    double x = a.is_bool() ? a.as_bool() : a.as_number();
    double y = b.is_bool() ? b.as_bool() : b.as_number();
    if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
    return x == y;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const List& x = a.list();
      const List& y = b.list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!Equals(x[i], y[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().items()) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kFunction:
      return &a.function() == &b.function();
    default:
      return false;
  }
}

namespace {

// Python's float repr: the shortest digits that round-trip, in fixed notation when the decimal
// exponent is in [-4, 16), scientific otherwise, and always with a '.0' or an exponent.
std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  if (f == 0) return std::signbit(f) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // e.g. "-1.2345e+02"
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exponent = std::stoi(sci.substr(e + 1));
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out += digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_buf;
}

std::string StringRepr(const std::string& s) {
  // Python prefers single quotes unless the text has ' and no ".
  char quote = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c == quote) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += quote;
  return out;
}

// Rewrites every non-ASCII code point of `s` as \uXXXX, with a surrogate pair above U+FFFF.
std::string AsciiEscape(const std::string& s) {
  std::string out;
  std::vector<size_t> at = CodePointOffsets(s);
  for (size_t i = 0; i + 1 < at.size(); ++i) {
    std::string_view cp(s.data() + at[i], at[i + 1] - at[i]);
    unsigned char lead = static_cast<unsigned char>(cp[0]);
    if (lead < 0x80 || cp.size() == 1) {
      out += cp;
      continue;
    }
    uint32_t code = lead & (cp.size() == 2 ? 0x1f : cp.size() == 3 ? 0x0f : 0x07);
    for (size_t k = 1; k < cp.size(); ++k)
      code = (code << 6) | (static_cast<unsigned char>(cp[k]) & 0x3f);
    auto unit = [&out](uint32_t u) {
      char buf[16];  // "\\uXXXX"; room for any uint32_t keeps -Wformat-truncation quiet
      std::snprintf(buf, sizeof(buf), "\\u%04x", u);
      out += buf;
    };
    if (code >= 0x10000) {
      code -= 0x10000;
      unit(0xd800 + (code >> 10));
      unit(0xdc00 + (code & 0x3ff));
    } else {
      unit(code);
    }
  }
  return out;
}

void JsonString(const std::string& s, bool ensure_ascii, std::string& out) {
  if (!ensure_ascii) {
    base::AppendJsonQuoted(s, out);
    return;
  }
  std::string quoted;
  base::AppendJsonQuoted(s, quoted);
  out += AsciiEscape(quoted);
}

absl::Status JsonAppend(const Value& v, const JsonOptions& options, int depth, std::string& out) {
  const int indent = options.indent;
  const std::string item_sep = !options.item_separator.empty() ? options.item_separator
                               : indent >= 0                   ? ","
                                                               : ", ";
  const std::string key_sep = !options.key_separator.empty() ? options.key_separator : ": ";
  auto newline = [&](int level) {
    if (indent >= 0) out += "\n" + std::string(static_cast<size_t>(indent) * level, ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return absl::OkStatus();
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return absl::OkStatus();
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return absl::OkStatus();
    case Value::Kind::kFloat: {
      double f = v.as_number();
      out += std::isnan(f)   ? "NaN"
             : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity")
                             : FloatRepr(f);
      return absl::OkStatus();
    }
    case Value::Kind::kString:
      JsonString(v.as_string(), options.ensure_ascii, out);
      return absl::OkStatus();
    case Value::Kind::kList: {
      if (v.list().empty()) {
        out += "[]";
        return absl::OkStatus();
      }
      out += '[';
      bool first = true;
      for (const Value& item : v.list()) {
        if (!first) out += item_sep;
        first = false;
        newline(depth + 1);
        absl::Status s = JsonAppend(item, options, depth + 1, out);
        if (!s.ok()) return s;
      }
      newline(depth);
      out += ']';
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      if (v.dict().size() == 0) {
        out += "{}";
        return absl::OkStatus();
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : v.dict().items()) items.push_back(&item);
      if (options.sort_keys) {
        std::stable_sort(items.begin(), items.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out += '{';
      bool first = true;
      for (const auto* item : items) {
        if (!first) out += item_sep;
        first = false;
        newline(depth + 1);
        JsonString(item->first, options.ensure_ascii, out);
        out += key_sep;
        absl::Status s = JsonAppend(item->second, options, depth + 1, out);
        if (!s.ok()) return s;
      }
      newline(depth);
      out += '}';
      return absl::OkStatus();
    }
    case Value::Kind::kUndefined:
    case Value::Kind::kFunction:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tojson: object of type ", v.KindName(), " is not JSON serializable"));
}

}  // namespace

std::string ToStr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return v.as_string();
    default:
      return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.as_int());
    case Value::Kind::kFloat:
      return FloatRepr(v.as_number());
    case Value::Kind::kString:
      return StringRepr(v.as_string());
    case Value::Kind::kList: {
      std::string out = "[";
      for (size_t i = 0; i < v.list().size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(v.list()[i]);
      }
      return out + "]";
    }
    case Value::Kind::kDict: {
      std::string out = v.is_namespace() ? "<Namespace {" : "{";
      bool first = true;
      for (const auto& [k, item] : v.dict().items()) {
        if (!first) out += ", ";
        first = false;
        out += StringRepr(k) + ": " + Repr(item);
      }
      return out + (v.is_namespace() ? "}>" : "}");
    }
    case Value::Kind::kFunction:
      return "<function>";
  }
  return "";
}

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  absl::Status s = JsonAppend(v, options, 0, out);
  if (!s.ok()) return s;
  return out;
}

namespace {

// Depth of `v` (0 for a scalar), counting at most to `limit` + 1; sets *cycle when it meets
// `container`.
int NestingDepth(const Value& v, const Dict* container, int limit, bool* cycle) {
  if (limit < 0 || *cycle) return 1;
  int deepest = 0;
  if (v.is_list()) {
    for (const Value& item : v.list())
      deepest = std::max(deepest, NestingDepth(item, container, limit - 1, cycle));
  } else if (v.is_dict()) {
    if (v.dict_ptr() == container) *cycle = true;
    for (const auto& [k, item] : v.dict().items()) {
      deepest = std::max(deepest, NestingDepth(item, container, limit - 1, cycle));
    }
  } else {
    return 0;
  }
  return deepest + 1;
}

absl::StatusOr<Value> FromJsonAt(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxValueDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("chat template context nests deeper than ", kMaxValueDepth));
  }
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::None();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value::Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value::Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value::String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& item : j) {
        auto v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        items.push_back(std::move(*v));
      }
      return Value::MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [k, item] : j.items()) {
        auto v = FromJsonAt(item, depth + 1);
        if (!v.ok()) return v.status();
        dict.Set(k, std::move(*v));
      }
      return Value::MakeDict(std::move(dict));
    }
    default:
      return Value();  // binary / discarded: nothing a template can use
  }
}

}  // namespace

absl::Status CheckNesting(const Value& v, const Dict* container) {
  bool cycle = false;
  int depth = NestingDepth(v, container, kMaxValueDepth, &cycle);
  if (cycle) return absl::InvalidArgumentError("cannot store a namespace inside itself");
  if (depth + 1 > kMaxValueDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("lists and dicts nest deeper than ", kMaxValueDepth));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& j) { return FromJsonAt(j, 1); }

absl::StatusOr<List> ToList(const Value& v) {
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
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.KindName(), "' object is not iterable"));
  }
}

Value Items(const Value& v) {
  List out;
  if (v.is_dict()) {
    for (const auto& [k, item] : v.dict().items())
      out.push_back(Value::MakeList({Value::String(k), item}));
  }
  return Value::MakeList(std::move(out));
}

std::vector<size_t> CodePointOffsets(std::string_view s) {
  std::vector<size_t> offsets;
  size_t i = 0;
  while (i < s.size()) {
    offsets.push_back(i);
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 1;
    size_t j = 1;
    while (j < len && i + j < s.size() && (static_cast<unsigned char>(s[i + j]) & 0xc0) == 0x80)
      ++j;
    i += j;
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t CodePointCount(std::string_view s) { return CodePointOffsets(s).size() - 1; }

}  // namespace kvserve::engine::jinja
