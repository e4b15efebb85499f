// libFuzzer target: config.json text (scripts/fuzz.sh). FromJson must answer every input with a
// status, never an exception or abort; an accepted config's derived sizes must compute without
// overflow or other undefined behaviour (UBSan).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/checkpoint/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = kvserve::engine::ModelConfig::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!config.ok()) return 0;
  (void)config->AttentionKind();
  (void)config->KvFloatsPerTokenPerLayer();
  (void)config->RopeTrainingContext();
  (void)config->SoftmaxScale();
  return 0;
}
