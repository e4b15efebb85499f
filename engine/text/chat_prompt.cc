#include "engine/text/chat_prompt.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

bool IsKnownRole(std::string_view role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

// Render and parse errors become the `chat_template` field's; the work cap too, since a template
// that does not finish is a bad template for this request, not a server overload.
absl::Status TemplateError(const absl::Status& status) {
  return absl::InvalidArgumentError(absl::StrCat("chat_template: ", status.message()));
}

}  // namespace

ChatPrompt ChatPrompt::Create(const std::map<std::string, std::string>& templates,
                              std::string bos_token, std::string eos_token) {
  ChatPrompt prompt;
  for (const auto& [name, source] : templates) {
    Parsed parsed;
    absl::StatusOr<ChatTemplate> t = ChatTemplate::Parse(source);
    if (t.ok()) {
      parsed.chat_template = *std::move(t);
    } else {
      parsed.error = std::string(t.status().message());
    }
    prompt.templates_.emplace(name, std::move(parsed));
  }
  prompt.bos_token_ = std::move(bos_token);
  prompt.eos_token_ = std::move(eos_token);
  return prompt;
}

absl::StatusOr<std::string> ChatPrompt::Render(absl::Span<const ChatMessage> messages,
                                               bool add_generation_prompt,
                                               std::string_view template_override,
                                               const RenderOptions& options) const {
  if (messages.empty()) return absl::InvalidArgumentError("messages: must not be empty");
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (!IsKnownRole(m.role)) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role: must be system, user, assistant or tool, got '",
                       m.role.substr(0, 64), "'"));
    }
    list.push_back({{"role", m.role}, {"content", m.content}});
  }
  // Which template: the model's default, one of its named ones, or the request's own text.
  std::optional<ChatTemplate> own;
  const ChatTemplate* chat_template = nullptr;
  const std::string_view name = template_override.empty() ? kDefaultName : template_override;
  if (auto it = templates_.find(name); it != templates_.end()) {
    if (!it->second.chat_template.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("chat_template: the model's template '",
                                                     std::string(name),
                                                     "' cannot be used: ", it->second.error));
    }
    chat_template = &*it->second.chat_template;
  } else if (template_override.empty()) {
    return absl::FailedPreconditionError(
        "chat_template: this model has no chat template (tokenizer_config.json has no "
        "chat_template); send one in the request's chat_template field");
  } else {
    absl::StatusOr<ChatTemplate> parsed = ChatTemplate::Parse(template_override);
    if (!parsed.ok()) return TemplateError(parsed.status());
    own = *std::move(parsed);
    chat_template = &*own;
  }
  nlohmann::ordered_json context = {{"messages", std::move(list)},
                                    {"add_generation_prompt", add_generation_prompt},
                                    {"bos_token", bos_token_},
                                    {"eos_token", eos_token_}};
  absl::StatusOr<std::string> text = chat_template->Render(context, options);
  if (!text.ok()) return TemplateError(text.status());
  return text;
}

}  // namespace kvserve::engine
