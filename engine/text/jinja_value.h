// Runtime values of the chat-template (Jinja subset) interpreter.
//
// A Value is one of: undefined, none, bool, int, float, string, list, dict, or function. Lists and
// dicts are shared by reference, as in Python: `namespace()` objects are dicts that `set ns.x = ...`
// mutates, and every holder sees the change. Dicts keep insertion order (Python dicts do, and
// `tojson` of a tool schema must print keys in the order the request gave them); keys are strings.
//
// Text is UTF-8. Where Python counts characters (length, indexing, slicing) these helpers count
// code points, not bytes.
//
// Thread-safety: a Value graph belongs to one render; nothing here is shared between threads.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_VALUE_H_
#define KVSERVE_ENGINE_TEXT_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine::jinja {

class Value;
using List = std::vector<Value>;

class Dict;
struct CallArgs;
// A callable: a global (range, namespace, raise_exception, ...) or a macro.
using Function = std::function<absl::StatusOr<Value>(CallArgs& args)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // undefined
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value MakeList(List items = {});
  static Value MakeDict(Dict dict);
  // A dict whose attributes `set ns.x = ...` may assign (Jinja's namespace()).
  static Value MakeNamespace(Dict dict);
  static Value MakeFunction(Function fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kDict && is_namespace_; }
  bool is_function() const { return kind_ == Kind::kFunction; }

  // REQUIRES: the matching kind (as_number: int or float).
  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_number() const { return kind_ == Kind::kInt ? static_cast<double>(i_) : f_; }
  const std::string& as_string() const { return *s_; }
  List& list() const { return *list_; }
  Dict& dict() const { return *dict_; }
  const Dict* dict_ptr() const { return dict_.get(); }
  const Function& function() const { return *fn_; }

  // Python truthiness; undefined is false.
  bool Truthy() const;
  // Name of the kind for error messages ("string", "list", ...).
  const char* KindName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool is_namespace_ = false;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const Function> fn_;
};

// Insertion-ordered string-keyed map. Lookup is linear: template dicts are small (a message, a
// tool schema), and linear scans keep the order rule trivially true.
class Dict {
 public:
  const Value* Find(std::string_view key) const;
  // Inserts or replaces, keeping the original position of an existing key.
  void Set(std::string key, Value value);
  // Appends without the duplicate check. REQUIRES: `key` is not present.
  void Append(std::string key, Value value);
  void Reserve(size_t n) { items_.reserve(n); }
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

// Arguments of a call: positional first, then keyword arguments in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Python `==`: numbers compare by value (1 == 1.0), lists and dicts element-wise, undefined equals
// only undefined.
bool Equals(const Value& a, const Value& b);

// Python str(): what `{{ x }}` prints. Undefined prints "", none "None", booleans "True"/"False",
// floats as Python repr, lists and dicts as Python repr.
std::string ToStr(const Value& v);
// Python repr() (strings quoted).
std::string Repr(const Value& v);

// Arguments of Python's json.dumps as transformers' `tojson` filter passes them.
struct JsonOptions {
  int indent = -1;            // < 0: no newlines
  bool ensure_ascii = false;  // true: non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
  bool sort_keys = false;     // by code point, as Python sorts str keys
  // Separators; empty means json.dumps' default: ", " and ": ", or "," and ": " when indented.
  std::string item_separator;
  std::string key_separator;
};

// Python's json.dumps(v, ...) (transformers' `tojson`). Undefined and functions are errors, as
// json.dumps is on a non-JSON object.
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options);

// Lists and dicts nest at most this deep. Values are printed, compared and destroyed
// recursively, so the places that build containers (request JSON, literals, namespace(), dict(),
// `set ns.attr`) enforce it.
constexpr int kMaxValueDepth = 256;

// OK if putting `v` into a container keeps nesting within kMaxValueDepth and, when `container`
// is given, `v` does not contain it (which would make a reference cycle).
absl::Status CheckNesting(const Value& v, const Dict* container = nullptr);

// Converts request JSON to values: objects to dicts (order kept), arrays to lists, null to none.
// Errors: nesting deeper than kMaxValueDepth.
absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& j);

// The items a for loop or `|list` visits: list items, dict keys, string characters; undefined
// gives none. Other kinds are an error.
absl::StatusOr<List> ToList(const Value& v);
// dict.items() as a list of [key, value] lists; empty for a non-dict.
Value Items(const Value& v);

// UTF-8 helpers. Invalid bytes count as one code point each, so no input is rejected.
std::vector<size_t> CodePointOffsets(std::string_view s);  // start of each code point, then size
size_t CodePointCount(std::string_view s);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_VALUE_H_
