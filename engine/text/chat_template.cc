#include "engine/text/chat_template.h"

#include <utility>

#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_interpreter.h"
#include "engine/text/jinja_parser.h"

namespace kvserve::engine {

struct ChatTemplate::Program {
  jinja::Body body;
};

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  auto body = jinja::Parse(source);
  if (!body.ok()) return body.status();
  auto program = std::make_shared<Program>();
  program->body = std::move(*body);
  return ChatTemplate(std::move(program));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context,
                                                 const RenderOptions& options) const {
  jinja::RenderLimits limits;
  limits.max_steps = options.max_steps;
  limits.max_output_bytes = options.max_output_bytes;
  limits.now = options.now.value_or(absl::Now());
  jinja::Interpreter interpreter(limits);
  return interpreter.Render(program_->body, context);
}

}  // namespace kvserve::engine
