// ChatTemplate: renders a Hugging Face chat template (the Jinja `chat_template` of a model's
// tokenizer_config.json) into the prompt text for a conversation.
//
// The language is the subset of Jinja that shipped chat templates use, rendered the way
// transformers renders them (trim_blocks and lstrip_blocks on, trailing newline dropped, `tojson`
// = json.dumps(ensure_ascii=False), loop controls, raise_exception and strftime_now globals).
// Details are in engine/text/jinja_parser.h (syntax), engine/text/jinja_builtins.h (filters, tests,
// methods) and engine/text/jinja_interpreter.h (undefined values, work cap).
//
// Not supported (a template using them fails to parse or to render, never silently):
// `{% call %}` blocks and macro `caller`/varargs, `{% filter %}`, `{% include %}`/`extends`/
// `block`, recursive loops and `loop.cycle`, the `format` filter and str.format, list.append (and
// every other mutating method, which transformers' immutable sandbox forbids too), `**`/`*`
// argument unpacking. Case mapping (upper/lower/title) is ASCII-only; tuples are lists.
//
// Usage: parse once when the model loads, render per request.
//   KV_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Parse(config["chat_template"]));
//   KV_ASSIGN_OR_RETURN(std::string prompt, t.Render(context, RenderOptions{}));
//
// Thread-safety: a ChatTemplate is immutable after Parse; Render is const and may be called from
// any number of threads at once. Copies share the parsed tree.
#ifndef KVSERVE_ENGINE_TEXT_CHAT_TEMPLATE_H_
#define KVSERVE_ENGINE_TEXT_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {

struct RenderOptions {
  // Work cap: a render stops with absl::ResourceExhaustedError after this many steps (statements,
  // expression nodes, loop iterations, items a range() or slice produces) ...
  int64_t max_steps = 1 << 22;
  // ... or once the output, or any string built on the way, would exceed this many bytes.
  int64_t max_output_bytes = 16 << 20;
  // The time strftime_now() formats, in the local time zone (transformers uses datetime.now()).
  // Unset: the current time. Tests fix it.
  std::optional<absl::Time> now;
};

class ChatTemplate {
 public:
  // Parses `source`. Errors: absl::InvalidArgumentError "chat template syntax error at line L
  // column C: ..." for bad syntax or a statement outside the supported subset.
  static absl::StatusOr<ChatTemplate> Parse(std::string_view source);

  // Renders with `context`: a JSON object whose top-level keys are the template's variables,
  // normally `messages` (list of {role, content, ...}), `add_generation_prompt`, `bos_token`,
  // `eos_token`, and optionally `tools`, `date_string`, `enable_thinking`, ...
  // The context is an ordered_json so that objects keep the request's key order: templates print
  // tool schemas with `tojson`, and transformers (Python dicts) keeps that order.
  // Errors:
  //   - InvalidArgumentError "chat template error at line L column C: ..." for a runtime error
  //     (type error, unknown filter, calling undefined, ...);
  //   - InvalidArgumentError with exactly the template's message when it calls raise_exception;
  //   - ResourceExhaustedError when the work cap in `options` is reached.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const RenderOptions& options) const;

 private:
  struct Program;
  explicit ChatTemplate(std::shared_ptr<const Program> program) : program_(std::move(program)) {}

  std::shared_ptr<const Program> program_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_CHAT_TEMPLATE_H_
