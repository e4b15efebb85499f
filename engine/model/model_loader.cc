#include "engine/model/model_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/regular_file.h"
#include "base/status_macros.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/layers/s4_layer.h"
#include "engine/text/hf_tokenizer.h"
#include "engine/text/json_reader.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  return base::ReadRegularFile(path.string(), kMaxJsonFileBytes);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Every tensor of a checkpoint, across one file or the shards of an index.
class CheckpointTensors {
 public:
  absl::Status Open(const fs::path& dir) {
    const fs::path single = dir / "model.safetensors";
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(single)) return AddFile(single);
    if (!fs::exists(index)) {
      return absl::NotFoundError(absl::StrCat(dir.string(), ": neither model.safetensors nor ",
                                              "model.safetensors.index.json found"));
    }
    KV_ASSIGN_OR_RETURN(std::string text, ReadFile(index));
    auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object() || !json.contains("weight_map") ||
        !json["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index.string(), ": expected an object with a \"weight_map\" object"));
    }
    std::map<std::string, bool> shards;
    for (const auto& [tensor, file] : json["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index.string(), ": weight_map[\"", tensor, "\"] must be a file name"));
      }
      const std::string name = file.get<std::string>();
      if (name.find('/') != std::string::npos || name == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index.string(), ": shard name '", name, "' must be a plain file name"));
      }
      shards[name] = true;
    }
    for (const auto& [name, unused] : shards) KV_RETURN_IF_ERROR(AddFile(dir / name));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<float>> Read(const std::string& name,
                                          const std::vector<int64_t>& shape) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
    }
    const TensorView& t = *it->second;
    if (t.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     ShapeString(t.shape), ", config.json implies ",
                                                     ShapeString(shape)));
    }
    std::vector<float> out(t.NumElements());
    KV_RETURN_IF_ERROR(ConvertToFloat(t, absl::MakeSpan(out)));
    // A NaN or infinity in any weight poisons every logit it reaches; refuse it at load, where the
    // tensor can still be named, rather than serve NaN. (Matrices kept as bf16 bits are checked by
    // PackBf16.)
    for (size_t i = 0; i < out.size(); ++i) {
      if (!std::isfinite(out[i])) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' holds ", out[i],
                                                       " at element ", i,
                                                       ": weights must be "
                                                       "finite"));
      }
    }
    used_.insert(name);
    return out;
  }

  // Refuses a checkpoint with weights for layers beyond num_hidden_layers, before anything loads.
  absl::Status CheckLayerCount(int32_t num_hidden_layers) const {
    constexpr std::string_view kPrefix = "model.layers.";
    for (const auto& [name, view] : by_name_) {
      if (name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
      int64_t layer = 0;
      size_t i = kPrefix.size();
      for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && layer <= INT32_MAX; ++i) {
        layer = layer * 10 + (name[i] - '0');
      }
      if (i > kPrefix.size() && layer >= num_hidden_layers) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint has tensor '", name, "' of layer ", layer,
                         " but config.json's num_hidden_layers is ", num_hidden_layers));
      }
    }
    return absl::OkStatus();
  }

  // After the model is built: every tensor must have been read, except Hugging Face's derived
  // buffers (rotary_emb.inv_freq, recomputed from the config) and an lm_head.weight that
  // tie_word_embeddings replaces by the embedding, as transformers does. Anything else is a
  // checkpoint for another architecture or config, and would be silently ignored otherwise.
  absl::Status CheckAllUsed(bool tied) const {
    std::vector<std::string> unused;
    for (const auto& [name, view] : by_name_) {
      if (used_.contains(name)) continue;
      constexpr std::string_view kInvFreq = ".rotary_emb.inv_freq";
      if (name.size() >= kInvFreq.size() &&
          name.compare(name.size() - kInvFreq.size(), kInvFreq.size(), kInvFreq) == 0) {
        continue;
      }
      if (tied && name == "lm_head.weight") continue;
      unused.push_back(name);
    }
    if (unused.empty()) return absl::OkStatus();
    constexpr size_t kShown = 5;
    std::string listed = absl::StrCat(
        "'",
        absl::StrJoin(unused.begin(), unused.begin() + std::min(kShown, unused.size()), "', '"),
        "'");
    if (unused.size() > kShown) absl::StrAppend(&listed, " and ", unused.size() - kShown, " more");
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint has ", unused.size(),
                     " tensor(s) the model described by config.json does not "
                     "use: ",
                     listed));
  }

  // F32 for any dtype other than F16 and BF16 (Read rejects those it cannot convert).
  absl::StatusOr<StoredDType> Stored(const std::string& name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
    }
    switch (it->second->dtype) {
      case DType::kBF16:
        return StoredDType::kBf16;
      case DType::kF16:
        return StoredDType::kF16;
      default:
        return StoredDType::kF32;
    }
  }

  // A BF16 tensor's bit patterns, copied out of the mapping (which need not be 2-byte aligned).
  absl::StatusOr<std::vector<uint16_t>> ReadBf16(const std::string& name,
                                                 const std::vector<int64_t>& shape) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
    }
    const TensorView& t = *it->second;
    if (t.shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     ShapeString(t.shape), ", config.json implies ",
                                                     ShapeString(shape)));
    }
    if (t.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", name, "' is ", std::string(DTypeName(t.dtype)), ", not BF16"));
    }
    std::vector<uint16_t> out(t.NumElements());
    std::memcpy(out.data(), t.data, out.size() * sizeof(uint16_t));
    used_.insert(name);
    return out;
  }

 private:
  absl::Status AddFile(const fs::path& path) {
    KV_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path.string()));
    for (const TensorView& t : file->tensors()) {
      if (!by_name_.emplace(t.name, &t).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", t.name, "' appears in more than one shard"));
      }
    }
    files_.push_back(std::move(file));
    return absl::OkStatus();
  }

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> by_name_;
  // Names handed out by Read / ReadBf16 (Read and ReadBf16 are const to their callers, who only
  // read weights; the tally is bookkeeping).
  mutable std::set<std::string, std::less<>> used_;
};

uint64_t Fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Deterministic N(0, stddev²) weights per tensor, seeded by (seed, name) so that the values do not
// depend on the order tensors are requested in. Box-Muller on our own uniform conversion keeps them
// identical across standard libraries.
std::vector<float> RandomTensor(uint64_t seed, const std::string& name, int64_t count,
                                double stddev) {
  std::mt19937_64 rng(seed ^ Fnv1a(name));
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  std::vector<float> out(count);
  for (int64_t i = 0; i < count; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double theta = 2.0 * M_PI * uniform();
    out[i] = static_cast<float>(stddev * r * std::cos(theta));
    if (i + 1 < count) out[i + 1] = static_cast<float>(stddev * r * std::sin(theta));
  }
  return out;
}

}  // namespace

absl::StatusOr<LoadedModel> LoadModelDirectory(const std::string& dir, WeightDType weight_dtype) {
  const fs::path root(dir);
  KV_ASSIGN_OR_RETURN(std::string config_text, ReadFile(root / "config.json"));
  auto config_or = ModelConfig::FromJson(config_text);
  if (!config_or.ok()) {
    return absl::Status(config_or.status().code(),
                        absl::StrCat(dir, "/", config_or.status().message()));
  }
  ModelConfig config = *std::move(config_or);
  std::unique_ptr<Tokenizer> tokenizer;
  std::optional<int32_t> tokenizer_eos;
  ChatPrompt chat;
  if (fs::exists(root / "tokenizer.json")) {
    absl::StatusOr<std::unique_ptr<HfTokenizer>> hf = HfTokenizer::Load(dir);
    if (!hf.ok()) {
      return absl::Status(hf.status().code(), absl::StrCat(dir, "/", hf.status().message()));
    }
    if ((*hf)->vocab_size() > config.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": tokenizer.json has ids up to ", (*hf)->vocab_size() - 1,
                       " but config.json's vocab_size is ", config.vocab_size,
                       ": the model has no embedding for them"));
    }
    tokenizer_eos = (*hf)->eos_id();
    const HfTokenizerConfig& tc = (*hf)->config();
    chat = ChatPrompt::Create(tc.chat_templates, tc.bos_token, tc.eos_token);
    tokenizer = *std::move(hf);
  }
  GenerationConfig generation;
  if (absl::StatusOr<GenerationConfig> g = GenerationConfig::Load(dir); g.ok()) {
    generation = *std::move(g);
  } else if (!absl::IsNotFound(g.status())) {
    return absl::Status(g.status().code(), absl::StrCat(dir, "/", g.status().message()));
  }
  auto add_eos = [&config](int32_t id) {
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) ==
        config.eos_token_ids.end()) {
      config.eos_token_ids.push_back(id);
    }
  };
  for (int32_t id : generation.eos_token_ids) add_eos(id);
  if (tokenizer_eos.has_value()) add_eos(*tokenizer_eos);
  if (absl::Status valid = config.Validate(); !valid.ok()) {
    return absl::Status(valid.code(),
                        absl::StrCat(dir, " (with generation_config.json): ", valid.message()));
  }
  CheckpointTensors tensors;
  KV_RETURN_IF_ERROR(tensors.Open(root));
  if (absl::Status layers = tensors.CheckLayerCount(config.num_hidden_layers); !layers.ok()) {
    return absl::Status(layers.code(), absl::StrCat(dir, ": ", layers.message()));
  }
  WeightOptions weight_options;
  weight_options.dtype = weight_dtype;
  weight_options.stored_dtype = [&tensors](const std::string& name) {
    return tensors.Stored(name);
  };
  weight_options.bf16_bits = [&tensors](const std::string& name,
                                        const std::vector<int64_t>& shape) {
    return tensors.ReadBf16(name, shape);
  };
  auto model = DecoderModel::Create(
      config,
      [&tensors](const std::string& name, const std::vector<int64_t>& shape) {
        return tensors.Read(name, shape);
      },
      weight_options);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(dir, ": ", model.status().message()));
  }
  if (absl::Status used = tensors.CheckAllUsed(config.tie_word_embeddings); !used.ok()) {
    return absl::Status(used.code(), absl::StrCat(dir, ": ", used.message()));
  }
  LoadedModel loaded;
  loaded.model = std::move(*model);
  if (tokenizer == nullptr) {
    KV_LOG(INFO) << dir << ": no tokenizer.json; serving with the byte-level tokenizer (ids "
                 << "0-255 are bytes)";
    tokenizer = std::make_unique<ByteTokenizer>(
        config.vocab_size, config.bos_token_id,
        config.eos_token_ids.empty() ? -1 : config.eos_token_ids.front());
  }
  loaded.tokenizer = std::move(tokenizer);
  loaded.generation = std::move(generation);
  loaded.chat = std::move(chat);
  loaded.source = fs::absolute(root).lexically_normal().string();
  return loaded;
}

ModelConfig DefaultModelConfig() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 320;  // 256 bytes, BOS 256, EOS 257, the rest unused
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0;
  // Untied: a separate N(0, 1/hidden) head keeps logits O(1), so sampling at temperature 1 is
  // diverse instead of echoing the embedding of the last input byte.
  c.tie_word_embeddings = false;
  c.bos_token_id = 256;
  c.eos_token_ids = {257};
  return c;
}

absl::StatusOr<LoadedModel> CreateRandomModel(const ModelConfig& config, uint64_t seed,
                                              WeightDType weight_dtype) {
  auto source = [seed](const std::string& name,
                       const std::vector<int64_t>& shape) -> absl::StatusOr<std::vector<float>> {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    // S4 layers (docs/model-format.md): S4D-Lin modes, steps spread over [0.001, 0.1].
    auto ends_with = [&name](std::string_view suffix) {
      return name.size() >= suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with("s4.log_dt")) {
      std::vector<float> v(count);
      for (int64_t i = 0; i < count; ++i) {
        v[i] = static_cast<float>(std::log(0.001) + (std::log(0.1) - std::log(0.001)) * i /
                                                        std::max<int64_t>(1, count - 1));
      }
      return v;
    }
    if (ends_with("s4.A_real") || ends_with("s4.A_imag")) {
      std::vector<float> re(count), im(count);
      S4dLinInit(shape[1], re.data(), im.data());  // the same modes for every channel
      for (int64_t h = 1; h < shape[0]; ++h) {
        std::copy_n(re.data(), shape[1], re.data() + h * shape[1]);
        std::copy_n(im.data(), shape[1], im.data() + h * shape[1]);
      }
      return ends_with("s4.A_real") ? re : im;
    }
    if (ends_with("s4.B") || ends_with("s4.C") || ends_with("s4.D")) {
      return RandomTensor(seed, name, count, 1.0);
    }
    if (shape.size() == 1) return std::vector<float>(count, 1.0f);  // RMSNorm gains
    // Embeddings N(0, 1); projections N(0, 1/in) so activations keep unit scale through the layers.
    const double stddev =
        name == "model.embed_tokens.weight" ? 1.0 : 1.0 / std::sqrt(static_cast<double>(shape[1]));
    return RandomTensor(seed, name, count, stddev);
  };
  WeightOptions weight_options;
  weight_options.dtype = weight_dtype;  // the source is f32: kAuto keeps f32
  KV_ASSIGN_OR_RETURN(auto model, DecoderModel::Create(config, source, weight_options));
  LoadedModel loaded;
  loaded.model = std::move(model);
  loaded.tokenizer = std::make_unique<ByteTokenizer>(
      config.vocab_size, config.bos_token_id,
      config.eos_token_ids.empty() ? -1 : config.eos_token_ids.front());
  loaded.source = absl::StrCat("embedded (random weights, seed ", seed, ")");
  loaded.random_weights = true;
  return loaded;
}

}  // namespace kvserve::engine
