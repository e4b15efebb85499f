// libFuzzer target: tokenizer.json, then (after a NUL byte, optional) tokenizer_config.json
// (scripts/fuzz.sh). Loading must answer with a status; a tokenizer that loads must encode and
// decode without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/text/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view tokenizer = input.substr(0, nul);
  const std::string_view config = nul == std::string_view::npos ? "" : input.substr(nul + 1);
  auto loaded = kvserve::engine::HfTokenizer::FromJson(tokenizer, config);
  if (!loaded.ok()) return 0;
  const auto& t = **loaded;
  auto ids = t.Encode("Hello, wörld! 12 <s> \xF0\x9F\x98\x80 ab", /*add_special_tokens=*/true);
  if (ids.ok()) (void)t.DecodeAll(*ids, /*skip_special_tokens=*/false);
  for (int32_t id = 0; id < 64 && id < t.vocab_size(); ++id) (void)t.Decode(id);
  return 0;
}
