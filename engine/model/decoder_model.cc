#include "engine/model/decoder_model.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "base/system_memory.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/thread_pool.h"
#include "engine/layers/gqa_attention.h"
#include "engine/model/matrix_loader.h"

namespace kvserve::engine {
namespace {

// `weights` is the model's MatrixLoader: the matrix comes in the storage WeightOptions chose.
absl::StatusOr<Linear> LoadLinear(MatrixLoader& weights, const std::string& name,
                                  int64_t out_features, int64_t in_features, int64_t* count) {
  KV_ASSIGN_OR_RETURN(MatmulWeight w, weights.Load(name, out_features, in_features));
  *count += out_features * in_features;
  return Linear::Create(std::move(w));
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

// Bytes per 32 elements of a matrix kept as `dtype` (int8: 32 values and one f32 block scale).
double MatrixBytesPer32(WeightDType dtype) {
  switch (dtype) {
    case WeightDType::kBf16:
      return 64;
    case WeightDType::kInt8:
      return 36;
    default:
      return 128;
  }
}

int64_t Saturate(double v) {
  return v >= 0x1p63 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(v);
}

}  // namespace

DecoderModel::MemoryEstimate DecoderModel::EstimateMemory(const ModelConfig& config,
                                                          const WeightOptions& options) {
  WeightDType dtype = options.dtype;
  if (dtype == WeightDType::kAuto) {
    dtype = WeightDType::kF32;
    if (options.stored_dtype) {
      absl::StatusOr<StoredDType> stored = options.stored_dtype("model.embed_tokens.weight");
      if (stored.ok() && *stored != StoredDType::kF32) dtype = WeightDType::kBf16;
    }
  }
  // The same sums Create makes, tensor by tensor, in double: a config of 2^31 layers of 2^31
  // columns must give a huge number, not a wrapped one.
  double matrices = 0, f32_params = 0, largest_matrix = 0;
  auto matrix = [&](double out, double in) {
    matrices += out * in;
    largest_matrix = std::max(largest_matrix, out * in);
  };
  const double hidden = config.hidden_size, vocab = config.vocab_size;
  const double inter = config.intermediate_size, heads = config.num_attention_heads;
  const double q_dim = heads * config.head_dim;
  const double kv_dim = static_cast<double>(config.num_key_value_heads) * config.head_dim;
  const double layers = config.num_hidden_layers;
  double s4_layers = 0;
  for (LayerType t : config.layer_types) s4_layers += t == LayerType::kS4 ? 1 : 0;
  const double attention_layers = layers - s4_layers;

  matrix(vocab, hidden);                                   // embed_tokens
  if (!config.tie_word_embeddings) matrix(vocab, hidden);  // lm_head
  f32_params += hidden;                                    // model.norm
  f32_params += layers * 2 * hidden;                       // input / post_attention layernorms
  matrices += layers * 3 * inter * hidden;                 // gate, up, down
  largest_matrix = std::max(largest_matrix, inter * hidden);
  if (s4_layers > 0) {
    matrices += s4_layers * 2 * hidden * hidden;  // s4 in_proj, out_proj
    largest_matrix = std::max(largest_matrix, hidden * hidden);
    f32_params += s4_layers * hidden * (2 + 6 * (config.s4->state_size / 2));
  }
  if (config.mla.has_value()) {
    const MlaDims& m = *config.mla;
    const double q_width = heads * (static_cast<double>(m.qk_nope_head_dim) + m.qk_rope_head_dim);
    const double kv_a = (static_cast<double>(m.kv_lora_rank) + m.qk_rope_head_dim) * hidden;
    const double kv_b =
        heads * (static_cast<double>(m.qk_nope_head_dim) + m.v_head_dim) * m.kv_lora_rank;
    const double o = hidden * heads * m.v_head_dim;
    double q = q_width * hidden;
    if (m.q_lora_rank != 0) {
      q = static_cast<double>(m.q_lora_rank) * hidden + q_width * m.q_lora_rank;
      largest_matrix = std::max(
          {largest_matrix, static_cast<double>(m.q_lora_rank) * hidden, q_width * m.q_lora_rank});
      f32_params += attention_layers * m.q_lora_rank;  // q_a_layernorm
    } else {
      largest_matrix = std::max(largest_matrix, q);
    }
    matrices += attention_layers * (q + kv_a + kv_b + o);
    largest_matrix = std::max({largest_matrix, kv_a, kv_b, o});
    f32_params += attention_layers * m.kv_lora_rank;  // kv_a_layernorm
  } else {
    matrices += attention_layers * (2 * q_dim * hidden + 2 * kv_dim * hidden);  // q, o; k, v
    largest_matrix = std::max({largest_matrix, q_dim * hidden, kv_dim * hidden});
    if (config.qkv_bias) f32_params += attention_layers * (q_dim + 2 * kv_dim);
    if (config.qk_norm) f32_params += attention_layers * 2 * config.head_dim;
  }
  // Attention scratch sized for the longest context: scores_ here, scores_ + rows_ per MLA layer.
  const double context = config.max_position_embeddings;
  const double scratch =
      context * sizeof(float) +
      (config.mla.has_value() ? attention_layers * context * (sizeof(float) + sizeof(int64_t)) : 0);
  MemoryEstimate estimate;
  estimate.num_parameters = Saturate(matrices + f32_params);
  estimate.bytes = Saturate(matrices / 32 * MatrixBytesPer32(dtype) + 4 * f32_params +
                            4 * largest_matrix + layers * sizeof(Layer) + scratch);
  return estimate;
}

absl::StatusOr<std::unique_ptr<DecoderModel>> DecoderModel::Create(const ModelConfig& config,
                                                                   const WeightSource& weights,
                                                                   const WeightOptions& options) {
  KV_RETURN_IF_ERROR(config.Validate());
  const std::optional<int64_t> available = options.available_memory_bytes.has_value()
                                               ? options.available_memory_bytes
                                               : base::AvailableMemoryBytes();
  if (const MemoryEstimate need = EstimateMemory(config, options);
      available.has_value() && need.bytes > *available) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the model (", need.num_parameters, " parameters by config.json) needs about ", need.bytes,
        " bytes with --weight-dtype ", std::string(WeightDTypeName(options.dtype)), ", but only ",
        *available,
        " bytes of memory are available (the smaller of MemAvailable and the cgroup "
        "limit); check num_hidden_layers, hidden_size, intermediate_size, vocab_size and "
        "max_position_embeddings"));
  }
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_attention_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_key_value_heads} * config.head_dim;
  const int64_t inter = config.intermediate_size;
  const int64_t vocab = config.vocab_size;
  int64_t count = 0;

  MatrixLoader matrices(weights, options);
  KV_ASSIGN_OR_RETURN(MatmulWeight embed,
                      matrices.Load("model.embed_tokens.weight", vocab, hidden));
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
                          LoadLinear(matrices, p + "s4.in_proj.weight", hidden, hidden, &count));
      KV_ASSIGN_OR_RETURN(layer.s4, LoadS4(config, weights, p + "s4.", &count));
      KV_ASSIGN_OR_RETURN(layer.s4_out_proj,
                          LoadLinear(matrices, p + "s4.out_proj.weight", hidden, hidden, &count));
    } else if (config.mla.has_value()) {
      KV_ASSIGN_OR_RETURN(layer.mla, MlaAttention::Create(config, weights, p, &count,
                                                          [&matrices](const std::string& name,
                                                                      int64_t n, int64_t k) {
                                                            return matrices.Load(name, n, k);
                                                          }));
    } else {
      KV_ASSIGN_OR_RETURN(
          layer.q_proj, LoadLinear(matrices, p + "self_attn.q_proj.weight", q_dim, hidden, &count));
      KV_ASSIGN_OR_RETURN(layer.k_proj, LoadLinear(matrices, p + "self_attn.k_proj.weight", kv_dim,
                                                   hidden, &count));
      KV_ASSIGN_OR_RETURN(layer.v_proj, LoadLinear(matrices, p + "self_attn.v_proj.weight", kv_dim,
                                                   hidden, &count));
      KV_ASSIGN_OR_RETURN(
          layer.o_proj, LoadLinear(matrices, p + "self_attn.o_proj.weight", hidden, q_dim, &count));
      if (config.qkv_bias) {
        KV_ASSIGN_OR_RETURN(layer.q_bias,
                            LoadVector(weights, p + "self_attn.q_proj.bias", q_dim, &count));
        KV_ASSIGN_OR_RETURN(layer.k_bias,
                            LoadVector(weights, p + "self_attn.k_proj.bias", kv_dim, &count));
        KV_ASSIGN_OR_RETURN(layer.v_bias,
                            LoadVector(weights, p + "self_attn.v_proj.bias", kv_dim, &count));
      }
      if (config.qk_norm) {
        KV_ASSIGN_OR_RETURN(layer.q_norm, LoadVector(weights, p + "self_attn.q_norm.weight",
                                                     config.head_dim, &count));
        KV_ASSIGN_OR_RETURN(layer.k_norm, LoadVector(weights, p + "self_attn.k_norm.weight",
                                                     config.head_dim, &count));
      }
    }
    KV_ASSIGN_OR_RETURN(auto mlp_norm,
                        LoadVector(weights, p + "post_attention_layernorm.weight", hidden, &count));
    KV_ASSIGN_OR_RETURN(auto gate,
                        LoadLinear(matrices, p + "mlp.gate_proj.weight", inter, hidden, &count));
    KV_ASSIGN_OR_RETURN(auto up,
                        LoadLinear(matrices, p + "mlp.up_proj.weight", inter, hidden, &count));
    KV_ASSIGN_OR_RETURN(auto down,
                        LoadLinear(matrices, p + "mlp.down_proj.weight", hidden, inter, &count));
    layer.mlp_norm = std::move(mlp_norm);
    layer.gate_proj.emplace(std::move(gate));
    layer.up_proj.emplace(std::move(up));
    layer.down_proj.emplace(std::move(down));
    layers.push_back(std::move(layer));
  }
  KV_ASSIGN_OR_RETURN(auto final_norm, LoadVector(weights, "model.norm.weight", hidden, &count));
  // Tied: the LM head owns the one table and the embedding lookup reads it (EmbeddingTable).
  std::optional<MatmulWeight> untied_embed;
  MatmulWeight head_weight;
  if (config.tie_word_embeddings) {
    head_weight = std::move(embed);
  } else {
    untied_embed = std::move(embed);
    KV_ASSIGN_OR_RETURN(head_weight, matrices.Load("lm_head.weight", vocab, hidden));
    count += vocab * hidden;
  }
  KV_ASSIGN_OR_RETURN(Linear lm_head, Linear::Create(std::move(head_weight)));
  auto model = std::unique_ptr<DecoderModel>(
      new DecoderModel(config, std::move(untied_embed), std::move(layers), std::move(final_norm),
                       std::move(lm_head), count));
  // Everything not loaded as a matrix (norms, S4 parameters) is f32.
  model->weight_bytes_ = matrices.num_bytes() + 4 * (count - matrices.num_elements());
  model->weight_formats_ = matrices.formats();
  return model;
}

DecoderModel::DecoderModel(const ModelConfig& config, std::optional<MatmulWeight> embed,
                           std::vector<Layer> layers, std::vector<float> final_norm, Linear lm_head,
                           int64_t num_parameters)
    : config_(config),
      embed_(std::move(embed)),
      layers_(std::move(layers)),
      final_norm_(std::move(final_norm)),
      lm_head_(std::move(lm_head)),
      rope_(config.head_dim, config.rope_theta, RopeLayout::kHalfSplit, std::nullopt,
            config.rope_scaling),
      mla_rope_(config.mla.has_value() ? std::make_optional<RotaryEmbedding>(
                                             config.mla->qk_rope_head_dim, config.rope_theta,
                                             RopeLayout::kInterleaved, config.yarn)
                                       : std::nullopt),
      num_parameters_(num_parameters) {
  // Attention scratch, independent of the context (for this thread's kernel thread count; an
  // engine thread with more grows it once, in its first step).
  scores_.resize(GqaAttentionScratchFloats(
      {config.num_attention_heads, config.num_key_value_heads, config.head_dim}));
}

void DecoderModel::Reserve(int64_t n) {
  if (n <= reserved_tokens_) return;
  const int64_t hidden = config_.hidden_size;
  const int64_t q_dim = int64_t{config_.num_attention_heads} * config_.head_dim;
  tokens_.resize(n);
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

cache::CacheSpec DecoderModel::CacheSpec(int32_t block_size, cache::KvDtype kv_dtype) const {
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
          cache::LayerMemory::AttentionKv(config_.num_key_value_heads, config_.head_dim, kv_dtype));
    }
  }
  return spec;
}

void DecoderModel::Forward(absl::Span<const int32_t> tokens, int32_t start_pos,
                           cache::KvCacheManager& cache, const cache::SequenceCache& seq,
                           bool all_logits, float* logits) {
  KV_CHECK(!tokens.empty());
  // As MlaAttention::Form::kAuto: a single token is a generated one (absorbed form), a chunk is
  // prompt (expanded form).
  const int32_t n = static_cast<int32_t>(tokens.size());
  const int32_t prompt_len = n == 1 ? start_pos : start_pos + n;
  const BatchEntry entry{tokens, start_pos, &seq, all_logits ? n : 1, prompt_len};
  ForwardBatch(absl::MakeConstSpan(&entry, 1), cache, logits);
}

void DecoderModel::ForwardBatch(absl::Span<const BatchEntry> batch, cache::KvCacheManager& cache,
                                float* logits) {
  int64_t num_rows = 0;
  for (const BatchEntry& e : batch) num_rows += static_cast<int64_t>(e.tokens.size());
  if (num_rows == 0) return;
  Reserve(num_rows);
  seq_rows_.clear();
  logit_rows_.clear();
  int64_t row = 0;
  for (const BatchEntry& e : batch) {
    const int64_t n = static_cast<int64_t>(e.tokens.size());
    if (n == 0) continue;
    KV_CHECK(e.seq != nullptr);
    seq_rows_.push_back(SequenceRows{row, n, e.start_pos, e.seq, e.prompt_len});
    for (int64_t i = 0; i < n; ++i) {
      tokens_[row + i] = e.tokens[i];
      positions_[row + i] = e.start_pos + static_cast<int32_t>(i);
    }
    KV_CHECK(e.num_logits >= 0 && e.num_logits <= n) << "num_logits " << e.num_logits;
    row += n;
    for (int64_t r = row - e.num_logits; r < row; ++r) logit_rows_.push_back(r);
  }
  Run(num_rows, cache, logits);
}

void DecoderModel::Run(int64_t num_rows, cache::KvCacheManager& cache, float* logits) {
  const int64_t hidden = config_.hidden_size;
  const int64_t inter = config_.intermediate_size;
  const AttentionShape shape{config_.num_attention_heads, config_.num_key_value_heads,
                             config_.head_dim};
  for (const SequenceRows& s : seq_rows_) {
    KV_CHECK(s.start_pos >= 0 && s.start_pos + s.n <= s.seq->num_slots)
        << "positions [" << s.start_pos << ", " << s.start_pos + s.n << ") exceed the sequence's "
        << s.seq->num_slots << " cache slots";
  }

  for (int64_t i = 0; i < num_rows; ++i) {
    const int32_t id = tokens_[i];
    KV_CHECK(id >= 0 && id < config_.vocab_size) << "token id " << id;
    DequantizeRow(EmbeddingTable(), id, &x_[i * hidden]);  // {hidden}
  }
  if (mla_rope_.has_value()) {
    mla_rope_table_.resize(num_rows * config_.mla->qk_rope_head_dim);
    mla_rope_->Table(positions_.data(), num_rows, mla_rope_table_.data());  // {rows, rope/2, 2}
  } else {
    rope_.Table(positions_.data(), num_rows, rope_table_.data());  // {rows, head_dim/2, 2}
  }

  for (int32_t l = 0; l < config_.num_hidden_layers; ++l) {
    Layer& layer = layers_[l];
    RmsNorm(x_.data(), layer.attn_norm.data(), num_rows, hidden, config_.rms_norm_eps, h_.data());
    if (layer.s4 != nullptr) {
      // Convolution mode for a prefill chunk, recurrent mode for one token; each sequence's state
      // slot carries its SSM state between steps.
      layer.s4_in_proj->Forward(h_.data(), num_rows, s4_in_.data());  // {rows, hidden}
      for (const SequenceRows& s : seq_rows_) {
        float* state = cache.StateData(l, *s.seq);
        const float* u = &s4_in_[s.row * hidden];
        float* y = &s4_out_[s.row * hidden];
        if (s.n > 1) {
          layer.s4->Prefill(u, s.n, state, y);  // {n, hidden}
        } else {
          layer.s4->Step(u, state, y);
        }
      }
      Gelu(s4_out_.data(), num_rows * hidden);
      layer.s4_out_proj->Forward(s4_out_.data(), num_rows, proj_.data());  // {rows, hidden}
    } else if (layer.mla != nullptr) {
      layer.mla->ForwardBatch(h_.data(), num_rows, seq_rows_, mla_rope_table_.data(), cache, l,
                              proj_.data());  // {rows, hidden}
    } else {
      AttentionShape layer_shape = shape;
      layer_shape.window = config_.sliding_window(l);
      GqaLayer(layer, num_rows, layer_shape, cache, l);
    }
    AddInPlace(x_.data(), proj_.data(), num_rows * hidden);

    RmsNorm(x_.data(), layer.mlp_norm.data(), num_rows, hidden, config_.rms_norm_eps, h_.data());
    // gate and up in one kernel call: {rows, intermediate} each.
    Linear::Forward(h_.data(), num_rows, {&*layer.gate_proj, &*layer.up_proj},
                    {gate_.data(), up_.data()});
    SiluMul(gate_.data(), up_.data(), num_rows * inter);
    layer.down_proj->Forward(gate_.data(), num_rows, proj_.data());  // {rows, hidden}
    AddInPlace(x_.data(), proj_.data(), num_rows * hidden);
  }

  // Only the rows that will be sampled (or were asked for) go through the vocabulary projection.
  const int64_t num_logits = static_cast<int64_t>(logit_rows_.size());
  if (num_logits == 0) return;
  logit_h_.resize(std::max<size_t>(logit_h_.size(), num_logits * hidden));
  for (int64_t i = 0; i < num_logits; ++i) {
    RmsNorm(&x_[logit_rows_[i] * hidden], final_norm_.data(), 1, hidden, config_.rms_norm_eps,
            &logit_h_[i * hidden]);
  }
  lm_head_.Forward(logit_h_.data(), num_logits, logits);  // {logit rows, vocab}
}

void DecoderModel::GqaLayer(Layer& layer, int64_t num_rows, const AttentionShape& shape,
                            cache::KvCacheManager& cache, int32_t l) {
  const int64_t kv_dim = int64_t{config_.num_key_value_heads} * config_.head_dim;
  const int64_t q_dim = int64_t{config_.num_attention_heads} * config_.head_dim;
  // q {rows, heads, head_dim}, k and v {rows, kv_heads, head_dim}, in one kernel call.
  Linear::Forward(h_.data(), num_rows, {&*layer.q_proj, &*layer.k_proj, &*layer.v_proj},
                  {q_.data(), k_.data(), v_.data()});
  if (!layer.q_bias.empty()) {
    AddBias(q_.data(), layer.q_bias.data(), num_rows, q_dim);   // {rows, heads*head_dim}
    AddBias(k_.data(), layer.k_bias.data(), num_rows, kv_dim);  // {rows, kv_heads*head_dim}
    AddBias(v_.data(), layer.v_bias.data(), num_rows, kv_dim);  // {rows, kv_heads*head_dim}
  }
  if (!layer.q_norm.empty()) {
    // Every head row of Q and K normalised on its own: {rows*heads, head_dim}.
    RmsNorm(q_.data(), layer.q_norm.data(), num_rows * config_.num_attention_heads,
            config_.head_dim, config_.rms_norm_eps, q_.data());
    RmsNorm(k_.data(), layer.k_norm.data(), num_rows * config_.num_key_value_heads,
            config_.head_dim, config_.rms_norm_eps, k_.data());
  }
  rope_.Apply(rope_table_.data(), num_rows, config_.num_attention_heads, q_.data());
  rope_.Apply(rope_table_.data(), num_rows, config_.num_key_value_heads, k_.data());
  const bool bf16 = cache.spec().layers[l].dtype == cache::KvDtype::kBf16;
  float* arena = bf16 ? nullptr : cache.LayerData(l);
  uint16_t* arena_bf16 = bf16 ? cache.LayerDataBf16(l) : nullptr;
  for (const SequenceRows& s : seq_rows_) {
    // Scatter the new K/V rows into their cache slots: {slot, [K kv_dim | V kv_dim]}, rounded to
    // nearest even for a bf16 cache.
    for (int64_t i = 0; i < s.n; ++i) {
      const int64_t slot = cache.SlotOf(*s.seq, s.start_pos + static_cast<int32_t>(i));
      const float* k = &k_[(s.row + i) * kv_dim];
      const float* v = &v_[(s.row + i) * kv_dim];
      if (bf16) {
        uint16_t* row = arena_bf16 + slot * 2 * kv_dim;
        for (int64_t x = 0; x < kv_dim; ++x) row[x] = RoundToBf16(k[x]);
        for (int64_t x = 0; x < kv_dim; ++x) row[kv_dim + x] = RoundToBf16(v[x]);
      } else {
        float* row = arena + slot * 2 * kv_dim;
        std::memcpy(row, k, kv_dim * sizeof(float));
        std::memcpy(row + kv_dim, v, kv_dim * sizeof(float));
      }
    }
  }
  // Attention, per sequence. A call big enough to share among the kernel threads (a prompt chunk,
  // a long context) does so itself, and so does a lone small one; several small ones (decode
  // steps over short contexts) are shared out whole instead, sequence t, t + T, … to task t with
  // its own scratch (each runs on one thread, as it would alone: the same bits). Sized for this
  // (the engine) thread's kernel threads: a no-op after the first step.
  scores_.resize(std::max<size_t>(scores_.size(), GqaAttentionScratchFloats(shape)));
  const int64_t item_scratch = GqaAttentionItemScratchFloats(shape);
  auto attend = [&](const SequenceRows& s, float* scratch, bool alone) {
    const KvView kv =
        bf16 ? KvView{arena_bf16,           arena_bf16 + kv_dim, 2 * kv_dim,
                      s.seq->blocks.data(), cache.block_size(),  cache::KvDtype::kBf16}
             : KvView{arena, arena + kv_dim, 2 * kv_dim, s.seq->blocks.data(), cache.block_size()};
    GqaAttention(&q_[s.row * q_dim], kv, s.start_pos, s.n, shape, scratch, &attn_[s.row * q_dim],
                 alone);  // {n, heads, head_dim}
  };
  small_seqs_.clear();
  for (const SequenceRows& s : seq_rows_) {
    if (GqaAttentionIsShared(shape, s.start_pos, s.n)) {
      attend(s, scores_.data(), false);
    } else {
      small_seqs_.push_back(&s);
    }
  }
  const int64_t tasks = std::min<int64_t>(KernelThreads(), std::ssize(small_seqs_));
  if (tasks <= 1) {
    // One small call (a single sequence decoding): nothing to share out whole, so the call may
    // share its own items.
    for (const SequenceRows* s : small_seqs_) attend(*s, scores_.data(), small_seqs_.size() == 1);
  } else {
    ParallelFor(tasks, [&](int64_t t) {
      for (int64_t i = t; i < std::ssize(small_seqs_); i += tasks) {
        attend(*small_seqs_[i], scores_.data() + t * item_scratch, false);
      }
    });
  }
  layer.o_proj->Forward(attn_.data(), num_rows, proj_.data());  // {rows, hidden}
}

void DecoderModel::set_batch_invariant(bool on) {
  for (Layer& layer : layers_) {
    for (std::optional<Linear>* linear :
         {&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj, &layer.s4_in_proj,
          &layer.s4_out_proj, &layer.gate_proj, &layer.up_proj, &layer.down_proj}) {
      if (linear->has_value()) (*linear)->set_row_invariant(on);
    }
    if (layer.mla != nullptr) layer.mla->set_row_invariant(on);
  }
  lm_head_.set_row_invariant(on);
}

}  // namespace kvserve::engine
