// Loading models: Hugging Face checkpoint directories and the embedded seeded-random default.
//
// A checkpoint directory holds `config.json` and either `model.safetensors` or a sharded
// `model.safetensors.index.json` + shards, with LlamaForCausalLM tensor names. F32, F16 and BF16
// tensors are accepted; matrices are kept in the precision `weight_dtype` asks for (kAuto: the
// checkpoint's, F16 as bf16; see WeightDType in engine/checkpoint/weight_source.h), a BF16 tensor
// kept as bf16 without an f32 copy; norms are widened to f32. With `tokenizer.json` (and
// `tokenizer_config.json`) the model gets its Hugging Face tokenizer, otherwise the byte-level one;
// `generation_config.json` adds end-of-sequence ids and default sampling values.
#ifndef KVSERVE_ENGINE_MODEL_MODEL_LOADER_H_
#define KVSERVE_ENGINE_MODEL_MODEL_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/checkpoint/model_config.h"
#include "engine/checkpoint/weight_source.h"
#include "engine/model/decoder_model.h"
#include "engine/text/chat_prompt.h"
#include "engine/text/generation_config.h"
#include "engine/text/tokenizer.h"

namespace kvserve::engine {

struct LoadedModel {
  std::unique_ptr<DecoderModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string source;  // directory, or "embedded (random weights, seed N)"
  bool random_weights = false;
  // generation_config.json: default sampling values (unset = the API's defaults). Its
  // end-of-sequence ids are already merged into the model config's eos_token_ids.
  GenerationConfig generation;
  // tokenizer_config.json's chat templates (none for the byte-level tokenizer).
  ChatPrompt chat;
};

// Loads config.json + safetensors (+ tokenizer and generation config files) from `dir`. Errors name
// the file and tensor or JSON path at fault. A tokenizer whose ids exceed the model's vocab_size is
// rejected. End-of-sequence ids: config.json's, then generation_config.json's, then
// tokenizer_config.json's eos_token, each once; every one of them ends generation.
// Conversion errors (a value beyond bf16's range, an int8 scale that underflows) name the tensor.
absl::StatusOr<LoadedModel> LoadModelDirectory(const std::string& dir,
                                               WeightDType weight_dtype = WeightDType::kAuto);

// The embedded default: a small LlamaForCausalLM-shaped GQA model (vocab 320 = 256 bytes +
// specials, hidden 256, 4 layers, 8 query heads / 2 KV heads, head_dim 32, SwiGLU 688, context
// 2048) with weights drawn from a fixed seed, and the byte-level tokenizer. It generates noise: it
// exists so the whole serving path runs with no model files at all.
inline constexpr char kDefaultModelName[] = "tiny-llama-gqa-random-weights";
inline constexpr uint64_t kDefaultModelSeed = 20241128;
ModelConfig DefaultModelConfig();
// The random weights are f32; `weight_dtype` kBf16 / kInt8 converts them as a checkpoint's.
absl::StatusOr<LoadedModel> CreateRandomModel(const ModelConfig& config, uint64_t seed,
                                              WeightDType weight_dtype = WeightDType::kAuto);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_MODEL_MODEL_LOADER_H_
