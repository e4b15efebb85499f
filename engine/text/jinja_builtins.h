// Builtin filters, tests, methods and global functions of the chat-template interpreter: the
// subset that chat templates shipped with Hugging Face models use, with transformers' semantics
// (notably `tojson` is json.dumps(ensure_ascii=False)).
//
// ApplyFilter lives in jinja_filters.cc, the rest in jinja_builtins.cc.
//
// Errors are absl::InvalidArgumentError without a position; the interpreter adds the template
// position of the call.
//
// Thread-safety: pure functions of their arguments (and of the interpreter passed in).
#ifndef KVSERVE_ENGINE_TEXT_JINJA_BUILTINS_H_
#define KVSERVE_ENGINE_TEXT_JINJA_BUILTINS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/text/jinja_interpreter.h"
#include "engine/text/jinja_value.h"

namespace kvserve::engine::jinja {

// `operand | name(args)`.
absl::StatusOr<Value> ApplyFilter(Interpreter& in, const std::string& name, const Value& operand,
                                  CallArgs& args);
// `operand is name(args)`.
absl::StatusOr<bool> ApplyTest(Interpreter& in, const std::string& name, const Value& operand,
                               CallArgs& args);
// `object.name(args)` for Python's str / dict / list methods; nullopt when `object` has no method
// `name` (the caller then treats `object.name` as an attribute).
absl::StatusOr<std::optional<Value>> CallMethod(Interpreter& in, const Value& object,
                                                const std::string& name, CallArgs& args);
// Adds range, namespace, dict, raise_exception and strftime_now to `globals`.
// REQUIRES: `in` outlives every use of the added functions (the render).
void AddGlobals(Interpreter& in, Dict& globals);

}  // namespace kvserve::engine::jinja

#endif  // KVSERVE_ENGINE_TEXT_JINJA_BUILTINS_H_
