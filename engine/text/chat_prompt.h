// ChatPrompt: how a conversation becomes prompt text for one model — its chat templates from
// tokenizer_config.json (parsed once at load) and the checks a conversation must pass.
//
// Render follows transformers' apply_chat_template: the context holds `messages`,
// `add_generation_prompt`, `bos_token` and `eos_token` (the tokenizer_config.json strings). The
// rendered text already contains whatever special tokens the template writes (Llama 3's
// `{{ bos_token }}`), so it is tokenized WITHOUT the tokenizer's own special tokens
// (Tokenizer::Encode(text, /*add_special_tokens=*/false)): a second BOS is the classic bug.
//
// Thread-safety: immutable after Create; Render is const and may run on any number of threads.
#ifndef KVSERVE_ENGINE_TEXT_CHAT_PROMPT_H_
#define KVSERVE_ENGINE_TEXT_CHAT_PROMPT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/text/chat_template.h"

namespace kvserve::engine {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or "tool"
  std::string content;
};

class ChatPrompt {
 public:
  // No template: Render answers FAILED_PRECONDITION unless the request brings its own.
  ChatPrompt() = default;
  // `templates`: name -> Jinja source, "default" being the model's own (tokenizer_config.json's
  // chat_template; its list form names the others). A template that does not parse is kept as its
  // parse error, reported by Render when the template is used: the model still serves Generate.
  static ChatPrompt Create(const std::map<std::string, std::string>& templates,
                           std::string bos_token, std::string eos_token);

  // The prompt text for `messages`. `template_override`: empty = the model's default template; the
  // name of one of the model's templates; or else a Jinja template text of its own.
  // Errors: INVALID_ARGUMENT naming the field ("messages: must not be empty",
  // "messages[2].role: ..."), or "chat_template: " + the template's syntax/render error
  // (raise_exception's message verbatim after that prefix), also when the render exceeds its work
  // cap; FAILED_PRECONDITION "chat_template: ..." when the model has no template and none is given.
  // `options` sets the work cap and the clock strftime_now reads (tests fix it).
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt,
                                     std::string_view template_override = {},
                                     const RenderOptions& options = RenderOptions()) const;

  bool has_default_template() const { return templates_.count(kDefaultName) > 0; }

  static constexpr char kDefaultName[] = "default";

 private:
  struct Parsed {
    std::optional<ChatTemplate> chat_template;
    std::string error;  // the parse error when chat_template is empty
  };
  std::map<std::string, Parsed, std::less<>> templates_;
  std::string bos_token_;
  std::string eos_token_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_CHAT_PROMPT_H_
