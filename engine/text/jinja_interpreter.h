// Tree-walking interpreter of a parsed chat template.
//
// One Interpreter runs one render: it owns the variable scopes, the output buffer and the work
// counter, and is discarded afterwards. The syntax tree is only read, so any number of
// interpreters may run the same tree concurrently.
//
// Undefined values follow Jinja's default Undefined as @huggingface/jinja applies it: a missing
// variable, attribute, key or index is undefined; printing it gives "", it is false, iterating it
// yields nothing, and `.attr` / `[key]` on it is again undefined. Arithmetic with it, calling it,
// or `tojson` of it is an error.
//
// Work cap: every statement, expression node and loop iteration is one step; a render that takes
// more than `max_steps`, or produces a string (output or intermediate) longer than
// `max_output_bytes`, fails with absl::ResourceExhaustedError instead of running on.
#ifndef KVSERVE_ENGINE_TEXT_JINJA_INTERPRETER_H_
#define KVSERVE_ENGINE_TEXT_JINJA_INTERPRETER_H_

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_value.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine::jinja {

struct RenderLimits {
  int64_t max_steps = 0;
  int64_t max_output_bytes = 0;
  absl::Time now;  // what strftime_now() formats
};

class Interpreter {
 public:
  explicit Interpreter(const RenderLimits& limits) : limits_(limits) {}

  // Renders `program` with the top-level keys of `context` (a JSON object) as variables.
  absl::StatusOr<std::string> Render(const Body& program, const nlohmann::ordered_json& context);

  // For builtins: charge `n` steps of work, or fail once the cap is reached.
  absl::Status Step(int64_t n = 1);
  // For builtins: fail if a string of `bytes` would exceed the output cap.
  absl::Status CheckSize(size_t bytes) const;
  // For builtins: ToList (jinja_value.h) after charging one step per item (per byte of a string).
  absl::StatusOr<List> Materialize(const Value& v);
  // For builtins (map, select): Python-style attribute lookup `value.name` (dict key).
  static Value GetAttr(const Value& object, const std::string& name);
  const RenderLimits& limits() const { return limits_; }

 private:
  using Scope = std::unordered_map<std::string, Value>;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::Status ExecBody(const Body& body);
  absl::Status Exec(const Stmt& s);
  absl::Status ExecFor(const Stmt& s);
  absl::Status ExecSet(const Stmt& s);
  absl::StatusOr<Value> CallMacro(const Stmt& macro, CallArgs& args);
  absl::Status Output(const std::string& text);

  absl::StatusOr<Value> Eval(const Expr& e);
  absl::StatusOr<Value> EvalInner(const Expr& e);
  absl::StatusOr<Value> EvalCall(const Expr& e);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first_arg);
  absl::StatusOr<Value> EvalBinary(const Expr& e);
  absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b);
  absl::StatusOr<Value> Slice(const Value& object, const Expr& e);

  Value Lookup(const std::string& name) const;
  void Assign(const std::string& name, Value value) { scopes_.back()[name] = std::move(value); }

  RenderLimits limits_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  Flow flow_ = Flow::kNormal;
  Dict globals_;                // context variables and builtin functions
  std::vector<Scope> scopes_;   // [0] is the template's top level
  std::string* out_ = nullptr;  // where output goes (swapped by block set and macros)
};

// Marks `status` as carrying its final message (raise_exception, cap errors): no position prefix
// is added to it on the way out.
absl::Status Located(absl::Status status);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_INTERPRETER_H_
