// GenerationConfig: the parts of a checkpoint's generation_config.json that serving uses — which
// tokens end generation and the model's default sampling values.
//
// Every field is optional; an absent or null field stays unset so the caller's defaults apply.
// Thread-compatible plain struct.
#ifndef KVSERVE_ENGINE_TEXT_GENERATION_CONFIG_H_
#define KVSERVE_ENGINE_TEXT_GENERATION_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

struct GenerationConfig {
  // eos_token_id may be one id or a list in the file; either way, all of them end generation.
  std::vector<int32_t> eos_token_ids;
  std::optional<int32_t> bos_token_id;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int32_t> top_k;
  std::optional<double> repetition_penalty;
  std::optional<bool> do_sample;

  // Reads `dir`/generation_config.json. NOT_FOUND when the file does not exist; INVALID_ARGUMENT
  // naming the file and JSON path for a wrongly typed field.
  static absl::StatusOr<GenerationConfig> Load(const std::string& dir);
  static absl::StatusOr<GenerationConfig> FromJson(std::string_view json);
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_GENERATION_CONFIG_H_
