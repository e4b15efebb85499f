#include "engine/text/jinja_interpreter.h"

#include <cmath>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/text/jinja_builtins.h"

namespace kvserve::engine::jinja {
namespace {

// Macros may recurse; deeper calls are an error rather than a stack overflow.
constexpr int kMaxCallDepth = 100;
constexpr char kLocatedPayload[] = "kvserve.engine.jinja/located";

bool IsLocated(const absl::Status& s) { return s.GetPayload(kLocatedPayload).has_value(); }

// Adds the template position to an error raised by an inner node or builtin, once.
absl::Status At(const absl::Status& s, int line, int column) {
  if (s.ok() || IsLocated(s)) return s;
  return Located(absl::Status(s.code(), absl::StrCat("chat template error at line ", line,
                                                     " column ", column, ": ", s.message())));
}

#define KV_JINJA_TRY(lhs, expr, node)                                             \
  auto KV_JINJA_CAT(tmp_, __LINE__) = (expr);                                     \
  if (!KV_JINJA_CAT(tmp_, __LINE__).ok())                                         \
    return At(KV_JINJA_CAT(tmp_, __LINE__).status(), (node).line, (node).column); \
  lhs = std::move(KV_JINJA_CAT(tmp_, __LINE__)).value()
#define KV_JINJA_CAT(a, b) KV_JINJA_CAT_INNER(a, b)
#define KV_JINJA_CAT_INNER(a, b) a##b
#define KV_JINJA_CHECK(expr, node)                           \
  do {                                                       \
    absl::Status s_ = (expr);                                \
    if (!s_.ok()) return At(s_, (node).line, (node).column); \
  } while (false)

// Python's slice index normalisation for a sequence of length n.
std::vector<size_t> SliceIndices(int64_t n, std::optional<int64_t> start,
                                 std::optional<int64_t> stop, int64_t step) {
  std::vector<size_t> out;
  auto clamp = [n](int64_t i, int64_t lo, int64_t hi) {
    if (i < 0) i += n;
    return i < lo ? lo : i > hi ? hi : i;
  };
  if (step > 0) {
    int64_t a = start ? clamp(*start, 0, n) : 0;
    int64_t b = stop ? clamp(*stop, 0, n) : n;
    for (int64_t i = a; i < b; i += step) out.push_back(static_cast<size_t>(i));
  } else {
    int64_t a = start ? clamp(*start, -1, n - 1) : n - 1;
    int64_t b = stop ? clamp(*stop, -1, n - 1) : -1;
    for (int64_t i = a; i > b; i += step) out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

absl::Status Located(absl::Status status) {
  status.SetPayload(kLocatedPayload, absl::Cord("1"));
  return status;
}

absl::StatusOr<std::string> Interpreter::Render(const Body& program,
                                                const nlohmann::ordered_json& context) {
  if (!context.is_object())
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  AddGlobals(*this, globals_);
  for (const auto& [key, value] : context.items()) {
    auto converted = FromJson(value);
    if (!converted.ok()) return converted.status();
    globals_.Set(key, std::move(*converted));
  }
  scopes_.assign(1, Scope{});
  std::string out;
  out_ = &out;
  absl::Status s = ExecBody(program);
  if (!s.ok()) {
    absl::Status clean(s.code(), s.message());  // drop the internal payload
    return clean;
  }
  return out;
}

absl::Status Interpreter::Step(int64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps) {
    return Located(absl::ResourceExhaustedError(
        absl::StrCat("chat template exceeded its work limit of ", limits_.max_steps, " steps")));
  }
  return absl::OkStatus();
}

absl::Status Interpreter::CheckSize(size_t bytes) const {
  if (static_cast<int64_t>(bytes) > limits_.max_output_bytes) {
    return Located(absl::ResourceExhaustedError(absl::StrCat(
        "chat template output exceeded its limit of ", limits_.max_output_bytes, " bytes")));
  }
  return absl::OkStatus();
}

absl::StatusOr<List> Interpreter::Materialize(const Value& v) {
  // Charged before building, so iterating a huge string fails fast instead of allocating.
  int64_t n = v.is_list()     ? static_cast<int64_t>(v.list().size())
              : v.is_dict()   ? static_cast<int64_t>(v.dict().size())
              : v.is_string() ? static_cast<int64_t>(v.as_string().size())
                              : 0;
  if (absl::Status s = Step(n); !s.ok()) return s;
  return ToList(v);
}

Value Interpreter::GetAttr(const Value& object, const std::string& name) {
  if (object.is_dict()) {
    const Value* v = object.dict().Find(name);
    if (v != nullptr) return *v;
  }
  return Value();
}

Value Interpreter::Lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto found = it->find(name);
    if (found != it->end()) return found->second;
  }
  const Value* global = globals_.Find(name);
  return global != nullptr ? *global : Value();
}

absl::Status Interpreter::Output(const std::string& text) {
  if (absl::Status s = CheckSize(out_->size() + text.size()); !s.ok()) return s;
  *out_ += text;
  return absl::OkStatus();
}

absl::Status Interpreter::ExecBody(const Body& body) {
  for (const auto& stmt : body) {
    absl::Status s = Exec(*stmt);
    if (!s.ok()) return s;
    if (flow_ != Flow::kNormal) break;
  }
  return absl::OkStatus();
}

absl::Status Interpreter::Exec(const Stmt& s) {
  KV_JINJA_CHECK(Step(), s);
  switch (s.kind) {
    case StmtKind::kText:
      return Output(s.text);
    case StmtKind::kOutput: {
      KV_JINJA_TRY(Value v, Eval(*s.expr), s);
      return Output(ToStr(v));
    }
    case StmtKind::kIf:
      for (size_t i = 0; i < s.conditions.size(); ++i) {
        KV_JINJA_TRY(Value cond, Eval(*s.conditions[i]), s);
        if (cond.Truthy()) return ExecBody(s.bodies[i]);
      }
      if (s.bodies.size() > s.conditions.size()) return ExecBody(s.bodies.back());
      return absl::OkStatus();
    case StmtKind::kFor:
      return ExecFor(s);
    case StmtKind::kSet:
      return ExecSet(s);
    case StmtKind::kMacro: {
      const Stmt* macro = &s;
      Assign(s.name, Value::MakeFunction(
                         [this, macro](CallArgs& args) { return CallMacro(*macro, args); }));
      return absl::OkStatus();
    }
    case StmtKind::kBreak:
      flow_ = Flow::kBreak;
      return absl::OkStatus();
    case StmtKind::kContinue:
      flow_ = Flow::kContinue;
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Interpreter::ExecFor(const Stmt& s) {
  KV_JINJA_TRY(Value iterable, Eval(*s.expr), s);
  KV_JINJA_TRY(List items, Materialize(iterable), s);
  scopes_.emplace_back();
  // Binds the loop target(s) to `item` in the innermost scope; `for k, v in ...` unpacks.
  auto bind = [&](const Value& item) -> absl::Status {
    if (s.targets.size() == 1) {
      Assign(s.targets[0], item);
      return absl::OkStatus();
    }
    if (!item.is_list()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot unpack non-iterable ", item.KindName()));
    }
    if (item.list().size() != s.targets.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", s.targets.size(), " values to unpack, got ", item.list().size()));
    }
    for (size_t i = 0; i < s.targets.size(); ++i) Assign(s.targets[i], item.list()[i]);
    return absl::OkStatus();
  };
  absl::Status status;
  if (s.condition) {  // `for x in xs if cond`: loop.* counts only the kept items
    List kept;
    for (const Value& item : items) {
      status = bind(item);
      if (!status.ok()) break;
      auto keep = Eval(*s.condition);
      if (!keep.ok()) {
        status = keep.status();
        break;
      }
      if (keep->Truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; status.ok() && i < n; ++i) {
    scopes_.back().clear();
    Dict loop;
    loop.Reserve(11);
    loop.Append("index", Value::Int(i + 1));
    loop.Append("index0", Value::Int(i));
    loop.Append("revindex", Value::Int(n - i));
    loop.Append("revindex0", Value::Int(n - i - 1));
    loop.Append("first", Value::Bool(i == 0));
    loop.Append("last", Value::Bool(i == n - 1));
    loop.Append("length", Value::Int(n));
    loop.Append("depth", Value::Int(1));
    loop.Append("depth0", Value::Int(0));
    loop.Append("previtem", i > 0 ? items[i - 1] : Value());
    loop.Append("nextitem", i + 1 < n ? items[i + 1] : Value());
    Assign("loop", Value::MakeDict(std::move(loop)));
    status = bind(items[i]);
    if (status.ok()) status = Step();
    if (status.ok()) status = ExecBody(s.bodies[0]);
    if (flow_ == Flow::kBreak) {
      flow_ = Flow::kNormal;
      break;
    }
    flow_ = Flow::kNormal;
  }
  scopes_.pop_back();
  if (!status.ok()) return At(status, s.line, s.column);
  if (n == 0) return ExecBody(s.bodies[1]);
  return absl::OkStatus();
}

absl::Status Interpreter::ExecSet(const Stmt& s) {
  Value value;
  if (s.expr) {
    KV_JINJA_TRY(value, Eval(*s.expr), s);
  } else {  // block set: capture the body's output
    std::string captured;
    std::string* saved = out_;
    out_ = &captured;
    absl::Status status = ExecBody(s.bodies[0]);
    out_ = saved;
    if (!status.ok()) return status;
    value = Value::String(std::move(captured));
  }
  if (!s.target_object.empty()) {
    Value object = Lookup(s.target_object);
    if (!object.is_namespace()) {
      return At(absl::InvalidArgumentError(absl::StrCat(
                    "cannot assign attribute '", s.target_attr, "' on '", s.target_object,
                    "': only namespace() objects support attribute assignment")),
                s.line, s.column);
    }
    KV_JINJA_CHECK(CheckNesting(value, object.dict_ptr()), s);
    object.dict().Set(s.target_attr, std::move(value));
    return absl::OkStatus();
  }
  if (s.targets.size() == 1) {
    Assign(s.targets[0], std::move(value));
    return absl::OkStatus();
  }
  if (!value.is_list() || value.list().size() != s.targets.size()) {
    return At(absl::InvalidArgumentError(absl::StrCat("cannot unpack ", value.KindName(), " into ",
                                                      s.targets.size(), " names")),
              s.line, s.column);
  }
  for (size_t i = 0; i < s.targets.size(); ++i) Assign(s.targets[i], value.list()[i]);
  return absl::OkStatus();
}

absl::StatusOr<Value> Interpreter::CallMacro(const Stmt& macro, CallArgs& args) {
  if (call_depth_ >= kMaxCallDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("macro '", macro.name, "' recursed deeper than ", kMaxCallDepth));
  }
  if (args.positional.size() > macro.params.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("macro '", macro.name, "' takes at most ", macro.params.size(), " arguments"));
  }
  // A macro sees the template's top level and its own parameters, not the caller's locals.
  std::vector<Scope> saved_scopes = {scopes_.begin() + 1, scopes_.end()};
  scopes_.resize(1);
  scopes_.emplace_back();
  absl::Status status;
  for (size_t i = 0; i < macro.params.size() && status.ok(); ++i) {
    Value v;
    if (i < args.positional.size()) {
      v = args.positional[i];
    } else if (macro.defaults[i]) {
      auto def = Eval(*macro.defaults[i]);
      if (!def.ok())
        status = def.status();
      else
        v = *def;
    }
    Assign(macro.params[i], v);
  }
  for (auto& [name, v] : args.keyword) {
    bool known = false;
    for (const auto& p : macro.params) known |= p == name;
    if (!known) {
      status = absl::InvalidArgumentError(
          absl::StrCat("macro '", macro.name, "' takes no keyword argument '", name, "'"));
      break;
    }
    Assign(name, v);
  }
  std::string captured;
  std::string* saved_out = out_;
  out_ = &captured;
  ++call_depth_;
  if (status.ok()) status = ExecBody(macro.bodies[0]);
  --call_depth_;
  out_ = saved_out;
  flow_ = Flow::kNormal;
  scopes_.resize(1);
  for (auto& scope : saved_scopes) scopes_.push_back(std::move(scope));
  if (!status.ok()) return status;
  return Value::String(std::move(captured));
}

absl::StatusOr<Value> Interpreter::Eval(const Expr& e) {
  KV_JINJA_CHECK(Step(), e);
  auto v = EvalInner(e);
  if (!v.ok()) return At(v.status(), e.line, e.column);
  return v;
}

absl::StatusOr<CallArgs> Interpreter::EvalArgs(const Expr& e, size_t first_arg) {
  CallArgs args;
  size_t num_keyword = e.kwarg_names.size();
  size_t num_positional = e.children.size() - first_arg - num_keyword;
  for (size_t i = first_arg; i < e.children.size(); ++i) {
    KV_JINJA_TRY(Value v, Eval(*e.children[i]), e);
    if (i - first_arg < num_positional) {
      args.positional.push_back(std::move(v));
    } else {
      args.keyword.emplace_back(e.kwarg_names[i - first_arg - num_positional], std::move(v));
    }
  }
  return args;
}

absl::StatusOr<Value> Interpreter::EvalInner(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName:
      return Lookup(e.name);
    case ExprKind::kList:
    case ExprKind::kTuple: {
      List items;
      for (const auto& child : e.children) {
        KV_JINJA_TRY(Value v, Eval(*child), e);
        KV_RETURN_IF_ERROR(CheckNesting(v));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case ExprKind::kDict: {
      Dict dict;
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        KV_JINJA_TRY(Value key, Eval(*e.children[i]), e);
        KV_JINJA_TRY(Value value, Eval(*e.children[i + 1]), e);
        if (!key.is_string()) return absl::InvalidArgumentError("dict keys must be strings");
        KV_RETURN_IF_ERROR(CheckNesting(value));
        dict.Set(key.as_string(), std::move(value));
      }
      return Value::MakeDict(std::move(dict));
    }
    case ExprKind::kMember: {
      KV_JINJA_TRY(Value object, Eval(*e.children[0]), e);
      return GetAttr(object, e.name);
    }
    case ExprKind::kIndex: {
      KV_JINJA_TRY(Value object, Eval(*e.children[0]), e);
      KV_JINJA_TRY(Value index, Eval(*e.children[1]), e);
      if (object.is_dict()) {
        return index.is_string() ? GetAttr(object, index.as_string()) : Value();
      }
      if (!index.is_int()) return Value();
      if (object.is_list()) {
        int64_t n = static_cast<int64_t>(object.list().size());
        int64_t i = index.as_int() < 0 ? index.as_int() + n : index.as_int();
        return i >= 0 && i < n ? object.list()[i] : Value();
      }
      if (object.is_string()) {
        std::vector<size_t> at = CodePointOffsets(object.as_string());
        int64_t n = static_cast<int64_t>(at.size()) - 1;
        int64_t i = index.as_int() < 0 ? index.as_int() + n : index.as_int();
        if (i < 0 || i >= n) return Value();
        return Value::String(object.as_string().substr(at[i], at[i + 1] - at[i]));
      }
      return Value();
    }
    case ExprKind::kSlice: {
      KV_JINJA_TRY(Value object, Eval(*e.children[0]), e);
      return Slice(object, e);
    }
    case ExprKind::kCall:
      return EvalCall(e);
    case ExprKind::kFilter: {
      KV_JINJA_TRY(Value operand, Eval(*e.children[0]), e);
      KV_JINJA_TRY(CallArgs args, EvalArgs(e, 1), e);
      return ApplyFilter(*this, e.name, operand, args);
    }
    case ExprKind::kTest: {
      KV_JINJA_TRY(Value operand, Eval(*e.children[0]), e);
      KV_JINJA_TRY(CallArgs args, EvalArgs(e, 1), e);
      KV_JINJA_TRY(bool result, ApplyTest(*this, e.name, operand, args), e);
      return Value::Bool(result != e.negated);
    }
    case ExprKind::kUnary: {
      KV_JINJA_TRY(Value v, Eval(*e.children[0]), e);
      if (e.name == "not") return Value::Bool(!v.Truthy());
      if (v.is_bool()) v = Value::Int(v.as_bool());
      if (!v.is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad operand type for unary ", e.name, ": ", v.KindName()));
      }
      if (e.name == "+") return v;
      if (v.is_int() && v.as_int() == INT64_MIN)
        return absl::InvalidArgumentError("integer overflow in unary -");
      return v.is_int() ? Value::Int(-v.as_int()) : Value::Float(-v.as_number());
    }
    case ExprKind::kBinary:
      return EvalBinary(e);
    case ExprKind::kTernary: {
      KV_JINJA_TRY(Value cond, Eval(*e.children[1]), e);
      if (cond.Truthy()) return Eval(*e.children[0]);
      if (e.children[2]) return Eval(*e.children[2]);
      return Value();
    }
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<Value> Interpreter::Slice(const Value& object, const Expr& e) {
  std::optional<int64_t> bounds[3];
  for (int i = 0; i < 3; ++i) {
    if (!e.children[i + 1]) continue;
    KV_JINJA_TRY(Value v, Eval(*e.children[i + 1]), e);
    if (v.is_none() || v.is_undefined()) continue;
    if (!v.is_int()) return absl::InvalidArgumentError("slice indices must be integers or none");
    bounds[i] = v.as_int();
  }
  int64_t step = bounds[2].value_or(1);
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (object.is_list()) {
    List out;
    for (size_t i :
         SliceIndices(static_cast<int64_t>(object.list().size()), bounds[0], bounds[1], step)) {
      out.push_back(object.list()[i]);
    }
    if (absl::Status s = Step(static_cast<int64_t>(out.size())); !s.ok()) return s;
    return Value::MakeList(std::move(out));
  }
  if (object.is_string()) {
    const std::string& str = object.as_string();
    std::vector<size_t> at = CodePointOffsets(str);
    std::string out;
    for (size_t i : SliceIndices(static_cast<int64_t>(at.size()) - 1, bounds[0], bounds[1], step)) {
      out.append(str, at[i], at[i + 1] - at[i]);
    }
    return Value::String(std::move(out));
  }
  if (object.is_undefined()) return Value();
  return absl::InvalidArgumentError(absl::StrCat("cannot slice ", object.KindName()));
}

absl::StatusOr<Value> Interpreter::EvalCall(const Expr& e) {
  const Expr& callee = *e.children[0];
  if (callee.kind == ExprKind::kMember) {
    // `obj.method(...)`: Python methods of str / dict / list come before dict keys, as getattr
    // does in Jinja.
    KV_JINJA_TRY(Value object, Eval(*callee.children[0]), callee);
    KV_JINJA_TRY(CallArgs args, EvalArgs(e, 1), e);
    KV_JINJA_TRY(std::optional<Value> result, CallMethod(*this, object, callee.name, args), e);
    if (result) return *result;
    Value fn = GetAttr(object, callee.name);
    if (!fn.is_function()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", object.KindName(), "' object has no method '", callee.name, "'"));
    }
    return fn.function()(args);
  }
  KV_JINJA_TRY(Value fn, Eval(callee), callee);
  if (!fn.is_function()) {
    if (callee.kind == ExprKind::kName && fn.is_undefined()) {
      return absl::InvalidArgumentError(absl::StrCat("'", callee.name, "' is undefined"));
    }
    return absl::InvalidArgumentError(absl::StrCat("'", fn.KindName(), "' object is not callable"));
  }
  KV_JINJA_TRY(CallArgs args, EvalArgs(e, 1), e);
  return fn.function()(args);
}

absl::StatusOr<Value> Interpreter::EvalBinary(const Expr& e) {
  const std::string& op = e.name;
  KV_JINJA_TRY(Value a, Eval(*e.children[0]), e);
  if (op == "and") return a.Truthy() ? Eval(*e.children[1]) : a;
  if (op == "or") return a.Truthy() ? a : Eval(*e.children[1]);
  KV_JINJA_TRY(Value b, Eval(*e.children[1]), e);
  if (op == "==") return Value::Bool(Equals(a, b));
  if (op == "!=") return Value::Bool(!Equals(a, b));
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string() && a.is_string()) {
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& item : b.list()) found = found || Equals(a, item);
    } else if (b.is_dict()) {
      found = a.is_string() && b.dict().Find(a.as_string()) != nullptr;
    } else if (!b.is_undefined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", b.KindName(), "' is not iterable"));
    }
    return Value::Bool(found == (op == "in"));
  }
  if (op == "<" || op == "<=" || op == ">" || op == ">=") {
    int cmp;
    auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
    if (numeric(a) && numeric(b)) {
      double x = a.is_bool() ? a.as_bool() : a.as_number();
      double y = b.is_bool() ? b.as_bool() : b.as_number();
      if (a.is_int() && b.is_int())
        cmp = a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
      else
        cmp = x < y ? -1 : x > y;
    } else if (a.is_string() && b.is_string()) {
      cmp = a.as_string().compare(b.as_string());  // UTF-8 byte order is code point order
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("'", op, "' not supported between ", a.KindName(), " and ", b.KindName()));
    }
    bool r = op == "<" ? cmp < 0 : op == "<=" ? cmp <= 0 : op == ">" ? cmp > 0 : cmp >= 0;
    return Value::Bool(r);
  }
  if (op == "~") {
    std::string s = ToStr(a) + ToStr(b);
    KV_JINJA_CHECK(CheckSize(s.size()), e);
    return Value::String(std::move(s));
  }
  return Arithmetic(op, a, b);
}

absl::StatusOr<Value> Interpreter::Arithmetic(const std::string& op, const Value& a,
                                              const Value& b) {
  auto type_error = [&] {
    return absl::InvalidArgumentError(absl::StrCat("unsupported operand types for ", op, ": ",
                                                   a.KindName(), " and ", b.KindName()));
  };
  if (op == "+" && a.is_string() && b.is_string()) {
    if (absl::Status s = CheckSize(a.as_string().size() + b.as_string().size()); !s.ok()) return s;
    return Value::String(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is_list() && b.is_list()) {
    List out = a.list();
    out.insert(out.end(), b.list().begin(), b.list().end());
    if (absl::Status s = Step(static_cast<int64_t>(out.size())); !s.ok()) return s;
    return Value::MakeList(std::move(out));
  }
  if (op == "*" && (a.is_string() || b.is_string()) && (a.is_int() || b.is_int())) {
    const std::string& s = a.is_string() ? a.as_string() : b.as_string();
    int64_t times = std::max<int64_t>(0, a.is_int() ? a.as_int() : b.as_int());
    if (s.empty() || times == 0) return Value::String("");  // never loop over an empty repeat
    if (absl::Status st =
            CheckSize(s.size() * std::min<int64_t>(times, limits_.max_output_bytes + 1));
        !st.ok())
      return st;
    std::string out;
    out.reserve(s.size() * times);
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value::String(std::move(out));
  }
  Value x = a.is_bool() ? Value::Int(a.as_bool()) : a;
  Value y = b.is_bool() ? Value::Int(b.as_bool()) : b;
  if (!x.is_number() || !y.is_number()) return type_error();
  if (x.is_int() && y.is_int() && op != "/" && op != "**") {
    int64_t p = x.as_int(), q = y.as_int(), r = 0;
    bool overflow = false;
    if (op == "+")
      overflow = __builtin_add_overflow(p, q, &r);
    else if (op == "-")
      overflow = __builtin_sub_overflow(p, q, &r);
    else if (op == "*")
      overflow = __builtin_mul_overflow(p, q, &r);
    else {
      if (q == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      int64_t quotient = p / q, rem = p % q;
      if (rem != 0 && ((rem < 0) != (q < 0))) --quotient, rem += q;  // Python floors
      r = op == "//" ? quotient : rem;
    }
    if (overflow) return absl::InvalidArgumentError(absl::StrCat("integer overflow in ", op));
    return Value::Int(r);
  }
  double p = x.as_number(), q = y.as_number();
  if (op == "+") return Value::Float(p + q);
  if (op == "-") return Value::Float(p - q);
  if (op == "*") return Value::Float(p * q);
  if (op == "**") {
    if (x.is_int() && y.is_int() && y.as_int() >= 0) {
      double r = std::pow(p, q);
      if (std::fabs(r) < 9.2e18) return Value::Int(static_cast<int64_t>(std::llround(r)));
      return absl::InvalidArgumentError("integer overflow in **");
    }
    return Value::Float(std::pow(p, q));
  }
  if (q == 0) return absl::InvalidArgumentError("division by zero");
  if (op == "/") return Value::Float(p / q);
  if (op == "//") return Value::Float(std::floor(p / q));
  if (op == "%") {
    double r = std::fmod(p, q);
    if (r != 0 && ((r < 0) != (q < 0))) r += q;
    return Value::Float(r);
  }
  return type_error();
}

}  // namespace kvserve::engine::jinja
