#include "engine/decoder_model.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "engine/gqa_attention.h"

namespace kvserve::engine {
namespace {

absl::StatusOr<Linear> LoadLinear(const WeightSource& weights, const std::string& name,
                                  int64_t out_features, int64_t in_features, int64_t* count) {
  KV_ASSIGN_OR_RETURN(std::vector<float> w, weights(name, {out_features, in_features}));
  *count += out_features * in_features;
  return Linear::Create(std::move(w), out_features, in_features);
}

absl::StatusOr<std::vector<float>> LoadVector(const WeightSource& weights, const std::string& name,
                                              int64_t size, int64_t* count) {
  KV_ASSIGN_OR_RETURN(std::vector<float> w, weights(name, {size}));
  *count += size;
  return w;
}

// An S4 layer's SSM parameters (docs/model-format.md): channels = hidden_size, M complex modes.
absl::StatusOr<std::unique_ptr<S4Layer>> LoadS4(const ModelConfig& config,
                                                const WeightSource& weights,
                                                const std::string& prefix, int64_t* count) {
  const int64_t h = config.hidden_size;
  const int64_t m = config.s4->state_size / 2;
  S4Params params;
  params.channels = h;
  params.modes = m;
  params.discretization =
      config.s4->bilinear ? S4Discretization::kBilinear : S4Discretization::kZoh;
  KV_ASSIGN_OR_RETURN(params.log_dt, weights(prefix + "log_dt", {h}));
  KV_ASSIGN_OR_RETURN(params.a_real, weights(prefix + "A_real", {h, m}));
  KV_ASSIGN_OR_RETURN(params.a_imag, weights(prefix + "A_imag", {h, m}));
  KV_ASSIGN_OR_RETURN(params.b, weights(prefix + "B", {h, m, 2}));
  KV_ASSIGN_OR_RETURN(params.c, weights(prefix + "C", {h, m, 2}));
  KV_ASSIGN_OR_RETURN(params.d, weights(prefix + "D", {h}));
  *count += h * (2 + 6 * m);
  auto layer = S4Layer::Create(std::move(params));
  if (!layer.ok()) {
    return absl::Status(layer.status().code(),
                        absl::StrCat(prefix, ": ", layer.status().message()));
  }
  return layer;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DecoderModel>> DecoderModel::Create(const ModelConfig& config,
                                                                   const WeightSource& weights) {
  KV_RETURN_IF_ERROR(config.Validate());
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_attention_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_key_value_heads} * config.head_dim;
  const int64_t inter = config.intermediate_size;
  const int64_t vocab = config.vocab_size;
  int64_t count = 0;

  KV_ASSIGN_OR_RETURN(std::vector<float> embed,
                      weights("model.embed_tokens.weight", {vocab, hidden}));
  count += vocab * hidden;
  std::vector<Layer> layers;
  layers.reserve(config.num_hidden_layers);
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    KV_ASSIGN_OR_RETURN(auto attn_norm,
                        LoadVector(weights, p + "input_layernorm.weight", hidden, &count));
    Layer layer;
    layer.attn_norm = std::move(attn_norm);
    if (config.layer_type(i) == LayerType::kS4) {
      KV_ASSIGN_OR_RETURN(layer.s4_in_proj,
                          LoadLinear(weights, p + "s4.in_proj.weight", hidden, hidden, &count));
      KV_ASSIGN_OR_RETURN(layer.s4, LoadS4(config, weights, p + "s4.", &count));
      KV_ASSIGN_OR_RETURN(layer.s4_out_proj,
                          LoadLinear(weights, p + "s4.out_proj.weight", hidden, hidden, &count));
    } else if (config.mla.has_value()) {
      KV_ASSIGN_OR_RETURN(layer.mla, MlaAttention::Create(config, weights, p, &count));
    } else {
      KV_ASSIGN_OR_RETURN(
          layer.q_proj, LoadLinear(weights, p + "self_attn.q_proj.weight", q_dim, hidden, &count));
      KV_ASSIGN_OR_RETURN(
          layer.k_proj, LoadLinear(weights, p + "self_attn.k_proj.weight", kv_dim, hidden, &count));
      KV_ASSIGN_OR_RETURN(
          layer.v_proj, LoadLinear(weights, p + "self_attn.v_proj.weight", kv_dim, hidden, &count));
      KV_ASSIGN_OR_RETURN(
          layer.o_proj, LoadLinear(weights, p + "self_attn.o_proj.weight", hidden, q_dim, &count));
    }
    KV_ASSIGN_OR_RETURN(auto mlp_norm,
                        LoadVector(weights, p + "post_attention_layernorm.weight", hidden, &count));
    KV_ASSIGN_OR_RETURN(auto gate,
                        LoadLinear(weights, p + "mlp.gate_proj.weight", inter, hidden, &count));
    KV_ASSIGN_OR_RETURN(auto up,
                        LoadLinear(weights, p + "mlp.up_proj.weight", inter, hidden, &count));
    KV_ASSIGN_OR_RETURN(auto down,
                        LoadLinear(weights, p + "mlp.down_proj.weight", hidden, inter, &count));
    layer.mlp_norm = std::move(mlp_norm);
    layer.gate_proj.emplace(std::move(gate));
    layer.up_proj.emplace(std::move(up));
    layer.down_proj.emplace(std::move(down));
    layers.push_back(std::move(layer));
  }
  KV_ASSIGN_OR_RETURN(auto final_norm, LoadVector(weights, "model.norm.weight", hidden, &count));
  std::vector<float> head_weight;
  if (config.tie_word_embeddings) {
    head_weight =
        embed;  // a copy: Linear owns its weight; tied models pay vocab*hidden floats twice
  } else {
    KV_ASSIGN_OR_RETURN(head_weight, weights("lm_head.weight", {vocab, hidden}));
    count += vocab * hidden;
  }
  KV_ASSIGN_OR_RETURN(Linear lm_head, Linear::Create(std::move(head_weight), vocab, hidden));
  return std::unique_ptr<DecoderModel>(new DecoderModel(config, std::move(embed), std::move(layers),
                                                        std::move(final_norm), std::move(lm_head),
                                                        count));
}

DecoderModel::DecoderModel(const ModelConfig& config, std::vector<float> embed,
                           std::vector<Layer> layers, std::vector<float> final_norm, Linear lm_head,
                           int64_t num_parameters)
    : config_(config),
      embed_(std::move(embed)),
      layers_(std::move(layers)),
      final_norm_(std::move(final_norm)),
      lm_head_(std::move(lm_head)),
      rope_(config.head_dim, config.rope_theta),
      mla_rope_(config.mla.has_value() ? std::make_optional<RotaryEmbedding>(
                                             config.mla->qk_rope_head_dim, config.rope_theta,
                                             RopeLayout::kInterleaved, config.yarn)
                                       : std::nullopt),
      num_parameters_(num_parameters) {}

void DecoderModel::Reserve(int64_t n, int64_t context) {
  if (static_cast<int64_t>(scores_.size()) < context) scores_.resize(context);
  if (n <= reserved_tokens_) return;
  const int64_t hidden = config_.hidden_size;
  const int64_t q_dim = int64_t{config_.num_attention_heads} * config_.head_dim;
  positions_.resize(n);
  rope_table_.resize(n * config_.head_dim);
  x_.resize(n * hidden);
  h_.resize(n * hidden);
  q_.resize(n * q_dim);
  k_.resize(n * int64_t{config_.num_key_value_heads} * config_.head_dim);
  v_.resize(n * int64_t{config_.num_key_value_heads} * config_.head_dim);
  attn_.resize(n * q_dim);
  s4_in_.resize(n * hidden);
  s4_out_.resize(n * hidden);
  gate_.resize(n * config_.intermediate_size);
  up_.resize(n * config_.intermediate_size);
  proj_.resize(n * hidden);
  reserved_tokens_ = n;
}

cache::CacheSpec DecoderModel::CacheSpec(int32_t block_size) const {
  cache::CacheSpec spec;
  spec.block_size = block_size;
  for (int32_t l = 0; l < config_.num_hidden_layers; ++l) {
    if (layers_[l].s4 != nullptr) {
      spec.layers.push_back(cache::LayerMemory::RecurrentState(layers_[l].s4->state_floats()));
    } else if (config_.mla.has_value()) {
      spec.layers.push_back(
          cache::LayerMemory::MlaLatent(config_.mla->kv_lora_rank, config_.mla->qk_rope_head_dim));
    } else {
      spec.layers.push_back(
          cache::LayerMemory::AttentionKv(config_.num_key_value_heads, config_.head_dim));
    }
  }
  return spec;
}

void DecoderModel::Forward(absl::Span<const int32_t> tokens, int32_t start_pos,
                           cache::KvCacheManager& cache, const cache::SequenceCache& seq,
                           bool all_logits, float* logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  KV_CHECK(n > 0);
  KV_CHECK(start_pos >= 0 && start_pos + n <= seq.num_slots)
      << "positions [" << start_pos << ", " << start_pos + n << ") exceed the sequence's "
      << seq.num_slots << " cache slots";
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const AttentionShape shape{config_.num_attention_heads, config_.num_key_value_heads,
                             config_.head_dim};
  Reserve(n, start_pos + n);

  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = tokens[i];
    KV_CHECK(id >= 0 && id < config_.vocab_size) << "token id " << id;
    std::memcpy(&x_[i * hidden], &embed_[int64_t{id} * hidden], hidden * sizeof(float));
    positions_[i] = start_pos + static_cast<int32_t>(i);
  }
  if (mla_rope_.has_value()) {
    mla_rope_table_.resize(n * config_.mla->qk_rope_head_dim);
    mla_rope_->Table(positions_.data(), n, mla_rope_table_.data());  // {n, rope/2, 2}
  } else {
    rope_.Table(positions_.data(), n, rope_table_.data());  // {n, head_dim/2, 2}
  }

  for (int32_t l = 0; l < config_.num_hidden_layers; ++l) {
    Layer& layer = layers_[l];
    RmsNorm(x_.data(), layer.attn_norm.data(), n, hidden, config_.rms_norm_eps, h_.data());
    if (layer.s4 != nullptr) {
      // Convolution mode for a prefill chunk, recurrent mode for one token; the sequence's state
      // slot carries the SSM state between calls.
      float* state = cache.StateData(l, seq);
      layer.s4_in_proj->Forward(h_.data(), n, s4_in_.data());  // {n, hidden}
      if (n > 1) {
        layer.s4->Prefill(s4_in_.data(), n, state, s4_out_.data());  // {n, hidden}
      } else {
        layer.s4->Step(s4_in_.data(), state, s4_out_.data());
      }
      Gelu(s4_out_.data(), n * hidden);
      layer.s4_out_proj->Forward(s4_out_.data(), n, proj_.data());  // {n, hidden}
    } else if (layer.mla != nullptr) {
      layer.mla->Forward(h_.data(), n, start_pos, mla_rope_table_.data(), cache, seq, l,
                         proj_.data());  // {n, hidden}
    } else {
      GqaLayer(layer, n, start_pos, shape, cache, seq, l);
    }
    AddInPlace(x_.data(), proj_.data(), n * hidden);

    RmsNorm(x_.data(), layer.mlp_norm.data(), n, hidden, config_.rms_norm_eps, h_.data());
    layer.gate_proj->Forward(h_.data(), n, gate_.data());  // {n, intermediate}
    layer.up_proj->Forward(h_.data(), n, up_.data());      // {n, intermediate}
    SiluMul(gate_.data(), up_.data(), n * inter);
    layer.down_proj->Forward(gate_.data(), n, proj_.data());  // {n, hidden}
    AddInPlace(x_.data(), proj_.data(), n * hidden);
  }

  if (all_logits) {
    RmsNorm(x_.data(), final_norm_.data(), n, hidden, config_.rms_norm_eps, h_.data());
    lm_head_.Forward(h_.data(), n, logits);  // {n, vocab}
  } else {
    const float* last = x_.data() + (n - 1) * hidden;
    RmsNorm(last, final_norm_.data(), 1, hidden, config_.rms_norm_eps, h_.data());
    lm_head_.Forward(h_.data(), 1, logits);  // {vocab}
  }
}

void DecoderModel::GqaLayer(Layer& layer, int64_t n, int32_t start_pos, const AttentionShape& shape,
                            cache::KvCacheManager& cache, const cache::SequenceCache& seq,
                            int32_t l) {
  const int64_t kv_dim = int64_t{config_.num_key_value_heads} * config_.head_dim;
  layer.q_proj->Forward(h_.data(), n, q_.data());  // {n, heads, head_dim}
  layer.k_proj->Forward(h_.data(), n, k_.data());  // {n, kv_heads, head_dim}
  layer.v_proj->Forward(h_.data(), n, v_.data());  // {n, kv_heads, head_dim}
  rope_.Apply(rope_table_.data(), n, config_.num_attention_heads, q_.data());
  rope_.Apply(rope_table_.data(), n, config_.num_key_value_heads, k_.data());
  // Scatter the new K/V rows into their cache slots: {slot, [K kv_dim | V kv_dim]}.
  float* arena = cache.LayerData(l);
  for (int64_t i = 0; i < n; ++i) {
    float* row = arena + cache.SlotOf(seq, start_pos + static_cast<int32_t>(i)) * 2 * kv_dim;
    std::memcpy(row, &k_[i * kv_dim], kv_dim * sizeof(float));
    std::memcpy(row + kv_dim, &v_[i * kv_dim], kv_dim * sizeof(float));
  }
  const KvView kv{arena, arena + kv_dim, 2 * kv_dim, seq.blocks.data(), cache.block_size()};
  GqaAttention(q_.data(), kv, start_pos, n, shape, scores_.data(),
               attn_.data());                            // {n, heads, head_dim}
  layer.o_proj->Forward(attn_.data(), n, proj_.data());  // {n, hidden}
}

}  // namespace kvserve::engine
