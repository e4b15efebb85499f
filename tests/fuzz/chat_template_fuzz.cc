// libFuzzer target: the Jinja chat-template engine (scripts/fuzz.sh). Input: a template, then
// (after a NUL byte, optional) a JSON render context. Parse and Render must answer with a status
// within their work caps, never crash or run away.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "engine/text/chat_template.h"
#include "nlohmann/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  auto parsed = kvserve::engine::ChatTemplate::Parse(input.substr(0, nul));
  if (!parsed.ok()) return 0;
  nlohmann::ordered_json context = nlohmann::ordered_json::parse(
      nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1),
      /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (context.is_discarded() || !context.is_object()) {
    context = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
               {"add_generation_prompt", true},
               {"bos_token", "<s>"},
               {"eos_token", "</s>"}};
  }
  kvserve::engine::RenderOptions options;
  // Smaller caps than serving uses: the fuzzer should spend its time on many inputs.
  options.max_steps = 1 << 16;
  options.max_output_bytes = 1 << 20;
  options.now = absl::FromUnixSeconds(1700000000);
  (void)parsed->Render(context, options);
  return 0;
}
