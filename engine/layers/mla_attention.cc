#include "engine/layers/mla_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "engine/layers/gqa_attention.h"

namespace kvserve::engine {
namespace {

absl::StatusOr<Linear> LoadLinear(const WeightSource& weights,
                                  const MlaAttention::LoadMatrix& load_matrix,
                                  const std::string& name, int64_t out, int64_t in,
                                  int64_t* count) {
  *count += out * in;
  if (!load_matrix) {
    KV_ASSIGN_OR_RETURN(std::vector<float> w, weights(name, {out, in}));
    return Linear::Create(std::move(w), out, in);
  }
  KV_ASSIGN_OR_RETURN(MatmulWeight w, load_matrix(name, out, in));
  return Linear::Create(std::move(w));
}

// Max-subtracted softmax over scores[0, n) in place; returns 1 / sum (sum accumulated in double).
float SoftmaxInPlace(float* scores, int64_t n) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < n; ++s) max_score = std::max(max_score, scores[s]);
  double denom = 0.0;
  for (int64_t s = 0; s < n; ++s) {
    scores[s] = std::exp(scores[s] - max_score);
    denom += scores[s];
  }
  return static_cast<float>(1.0 / denom);
}

}  // namespace

MlaAttention::MlaAttention(const ModelConfig& config)
    : hidden_(config.hidden_size),
      heads_(config.num_attention_heads),
      q_lora_(config.mla->q_lora_rank),
      kv_lora_(config.mla->kv_lora_rank),
      nope_(config.mla->qk_nope_head_dim),
      rope_dim_(config.mla->qk_rope_head_dim),
      v_dim_(config.mla->v_head_dim),
      eps_(config.rms_norm_eps),
      scale_(static_cast<float>(config.SoftmaxScale())),
      rope_(config.mla->qk_rope_head_dim, config.rope_theta, RopeLayout::kInterleaved,
            config.yarn) {
  // Per-position scratch for the longest context: decode steps never reallocate it.
  scores_.reserve(config.max_position_embeddings);
  rows_.reserve(config.max_position_embeddings);
  w_row_.resize(kv_lora_);
}

absl::StatusOr<std::unique_ptr<MlaAttention>> MlaAttention::Create(const ModelConfig& config,
                                                                   const WeightSource& weights,
                                                                   const std::string& prefix,
                                                                   int64_t* num_parameters,
                                                                   const LoadMatrix& load_matrix) {
  if (!config.mla.has_value()) return absl::InvalidArgumentError("MlaAttention needs MLA dims");
  std::unique_ptr<MlaAttention> a(new MlaAttention(config));
  const std::string p = prefix + "self_attn.";
  const int64_t q_width = a->heads_ * (a->nope_ + a->rope_dim_);
  if (a->q_lora_ == 0) {
    KV_ASSIGN_OR_RETURN(a->q_proj_, LoadLinear(weights, load_matrix, p + "q_proj.weight", q_width,
                                               a->hidden_, num_parameters));
  } else {
    KV_ASSIGN_OR_RETURN(a->q_a_proj_, LoadLinear(weights, load_matrix, p + "q_a_proj.weight",
                                                 a->q_lora_, a->hidden_, num_parameters));
    KV_ASSIGN_OR_RETURN(a->q_a_norm_, weights(p + "q_a_layernorm.weight", {a->q_lora_}));
    *num_parameters += a->q_lora_;
    KV_ASSIGN_OR_RETURN(a->q_b_proj_, LoadLinear(weights, load_matrix, p + "q_b_proj.weight",
                                                 q_width, a->q_lora_, num_parameters));
  }
  KV_ASSIGN_OR_RETURN(a->kv_a_proj_,
                      LoadLinear(weights, load_matrix, p + "kv_a_proj_with_mqa.weight",
                                 a->kv_lora_ + a->rope_dim_, a->hidden_, num_parameters));
  KV_ASSIGN_OR_RETURN(a->kv_a_norm_, weights(p + "kv_a_layernorm.weight", {a->kv_lora_}));
  *num_parameters += a->kv_lora_;
  KV_ASSIGN_OR_RETURN(a->kv_b_proj_,
                      LoadLinear(weights, load_matrix, p + "kv_b_proj.weight",
                                 a->heads_ * (a->nope_ + a->v_dim_), a->kv_lora_, num_parameters));
  KV_ASSIGN_OR_RETURN(a->o_proj_, LoadLinear(weights, load_matrix, p + "o_proj.weight", a->hidden_,
                                             a->heads_ * a->v_dim_, num_parameters));
  return a;
}

void MlaAttention::Forward(const float* h, int64_t n, int32_t start_pos, const float* cos_sin,
                           cache::KvCacheManager& cache, const cache::SequenceCache& seq,
                           int32_t layer, float* out, Form form) {
  // As in kAuto's single-call meaning: one token is a generated one, a chunk is prompt.
  const SequenceRows one{0, n, start_pos, &seq,
                         n == 1 ? start_pos : std::numeric_limits<int32_t>::max()};
  ForwardBatch(h, n, absl::MakeConstSpan(&one, 1), cos_sin, cache, layer, out, form);
}

void MlaAttention::set_row_invariant(bool on) {
  for (std::optional<Linear>* linear :
       {&q_proj_, &q_a_proj_, &q_b_proj_, &kv_a_proj_, &kv_b_proj_, &o_proj_}) {
    if (linear->has_value()) (*linear)->set_row_invariant(on);
  }
}

void MlaAttention::ForwardBatch(const float* h, int64_t rows, absl::Span<const SequenceRows> seqs,
                                const float* cos_sin, cache::KvCacheManager& cache, int32_t layer,
                                float* out, Form form) {
  const int64_t qk = nope_ + rope_dim_;
  const int64_t width = latent_width();
  q_.resize(rows * heads_ * qk);
  kv_a_.resize(rows * width);
  attn_.resize(rows * heads_ * v_dim_);

  // Queries: {rows, heads, [q_C nope | q_R rope]}.
  if (q_proj_.has_value()) {
    q_proj_->Forward(h, rows, q_.data());
  } else {
    q_lat_.resize(rows * q_lora_);
    q_a_proj_->Forward(h, rows, q_lat_.data());  // {rows, q_lora}
    RmsNorm(q_lat_.data(), q_a_norm_.data(), rows, q_lora_, eps_, q_lat_.data());
    q_b_proj_->Forward(q_lat_.data(), rows, q_.data());  // {rows, heads, qk}
  }
  rope_.ApplyStrided(cos_sin, rows, heads_, qk, q_.data() + nope_);

  // The new tokens' cache rows: {rows, [RMSNorm(c_KV) kv_lora | RoPE(k_R) rope]}.
  kv_a_proj_->Forward(h, rows, kv_a_.data());
  for (int64_t i = 0; i < rows; ++i) {
    float* row = kv_a_.data() + i * width;
    RmsNorm(row, kv_a_norm_.data(), 1, kv_lora_, eps_, row);
  }
  rope_.ApplyStrided(cos_sin, rows, 1, width, kv_a_.data() + kv_lora_);
  float* arena = cache.LayerData(layer);
  for (const SequenceRows& s : seqs) {
    for (int64_t i = 0; i < s.n; ++i) {
      const int64_t slot = cache.SlotOf(*s.seq, s.start_pos + static_cast<int32_t>(i));
      std::memcpy(arena + slot * width, kv_a_.data() + (s.row + i) * width, width * sizeof(float));
    }
  }
  for (const SequenceRows& s : seqs) {
    const int64_t context = s.start_pos + s.n;
    scores_.resize(std::max<int64_t>(scores_.size(), context));
    rows_.resize(std::max<int64_t>(rows_.size(), context));
    for (int64_t p = 0; p < context; ++p) {
      rows_[p] = cache.SlotOf(*s.seq, static_cast<int32_t>(p)) * width;
    }
    if (form == Form::kExpanded) {
      Expanded(s.row, s.n, s.start_pos, arena);
    } else if (form == Form::kAbsorbed) {
      Absorbed(s.row, s.n, s.start_pos, arena, *s.seq, cache.block_size());
    } else {
      // Prompt positions expanded, generated ones absorbed (SequenceRows::generated_from).
      const int64_t num_prompt =
          std::clamp<int64_t>(int64_t{s.generated_from} - s.start_pos, 0, s.n);
      if (num_prompt > 0) Expanded(s.row, num_prompt, s.start_pos, arena);
      if (num_prompt < s.n) {
        Absorbed(s.row + num_prompt, s.n - num_prompt,
                 s.start_pos + static_cast<int32_t>(num_prompt), arena, *s.seq, cache.block_size());
      }
    }
  }
  o_proj_->Forward(attn_.data(), rows, out);  // {rows, hidden}
}

// MHA form: K_C and V of every visible position decompressed from its cached latent.
void MlaAttention::Expanded(int64_t row, int64_t n, int32_t start_pos, const float* arena) {
  const int64_t qk = nope_ + rope_dim_;
  const int64_t kv_width = nope_ + v_dim_;
  const int64_t context = start_pos + n;
  latents_.resize(context * kv_lora_);
  kv_full_.resize(context * heads_ * kv_width);
  for (int64_t s = 0; s < context; ++s) {
    std::memcpy(&latents_[s * kv_lora_], arena + rows_[s], kv_lora_ * sizeof(float));
  }
  kv_b_proj_->Forward(latents_.data(), context, kv_full_.data());  // {context, heads, [k_C | v]}
  for (int64_t i = 0; i < n; ++i) {
    const int64_t visible = start_pos + i + 1;
    for (int64_t hd = 0; hd < heads_; ++hd) {
      const float* q = &q_[((row + i) * heads_ + hd) * qk];  // [q_C | q_R]
      for (int64_t s = 0; s < visible; ++s) {
        const float* k_c = &kv_full_[(s * heads_ + hd) * kv_width];
        const float* k_r = arena + rows_[s] + kv_lora_;
        scores_[s] = (Dot(q, k_c, nope_) + Dot(q + nope_, k_r, rope_dim_)) * scale_;
      }
      const float inv = SoftmaxInPlace(scores_.data(), visible);
      float* o = &attn_[((row + i) * heads_ + hd) * v_dim_];
      std::fill(o, o + v_dim_, 0.0f);
      for (int64_t s = 0; s < visible; ++s) {
        Axpy(scores_[s] * inv, &kv_full_[(s * heads_ + hd) * kv_width + nope_], o, v_dim_);
      }
    }
  }
}

// MQA form over the latent cache: W_UK moves to the query side, W_UV after attention. The
// attention itself is GqaAttention with one KV head: keys are the cache rows [c_KV | k_R]
// (latent_width wide), values their c_KV prefix (kv_lora wide), queries [q~ | q_R].
void MlaAttention::Absorbed(int64_t row, int64_t n, int32_t start_pos, const float* arena,
                            const cache::SequenceCache& seq, int32_t block_size) {
  const int64_t qk = nope_ + rope_dim_;
  const int64_t kv_width = nope_ + v_dim_;
  const int64_t width = latent_width();
  // kv_b_proj: [heads*(nope+v), kv_lora], rows read one at a time in the stored values.
  const MatmulWeight& w_b = kv_b_proj_->weight();
  const F32Weight* w_f32 = std::get_if<F32Weight>(&w_b);
  auto row_of = [&](int64_t j) -> const float* {
    if (w_f32 != nullptr) return w_f32->data.data() + j * kv_lora_;
    DequantizeRow(w_b, j, w_row_.data());
    return w_row_.data();
  };
  q_abs_.resize(n * heads_ * width);
  o_lat_.resize(n * heads_ * kv_lora_);
  for (int64_t hd = 0; hd < heads_; ++hd) {
    // q~ = W_UK_hᵀ q_C: {kv_lora}, W_UK_h = rows [hd*(nope+v), hd*(nope+v) + nope) of kv_b;
    // summed over x in order for every token (the order does not depend on n).
    for (int64_t i = 0; i < n; ++i) {
      float* q_abs = &q_abs_[(i * heads_ + hd) * width];  // [q~ kv_lora | q_R rope]
      std::fill(q_abs, q_abs + kv_lora_, 0.0f);
      std::copy_n(&q_[((row + i) * heads_ + hd) * qk] + nope_, rope_dim_, q_abs + kv_lora_);
    }
    for (int64_t x = 0; x < nope_; ++x) {
      const float* w = row_of(hd * kv_width + x);
      for (int64_t i = 0; i < n; ++i) {
        Axpy(q_[((row + i) * heads_ + hd) * qk + x], w, &q_abs_[(i * heads_ + hd) * width],
             kv_lora_);
      }
    }
  }
  // ō = Σ p c_KV: {n, heads, kv_lora}.
  const KvView kv{arena, arena, width, seq.blocks.data(), block_size};
  const AttentionShape shape{heads_, 1, width, /*window=*/0, /*value_dim=*/kv_lora_, scale_};
  attn_scratch_.resize(GqaAttentionScratchFloats(shape));
  GqaAttention(q_abs_.data(), kv, start_pos, n, shape, attn_scratch_.data(), o_lat_.data());
  for (int64_t hd = 0; hd < heads_; ++hd) {
    // o_h = W_UV_h ō: {v}, W_UV_h = the v rows after W_UK_h.
    for (int64_t y = 0; y < v_dim_; ++y) {
      const float* w = row_of(hd * kv_width + nope_ + y);
      for (int64_t i = 0; i < n; ++i) {
        attn_[((row + i) * heads_ + hd) * v_dim_ + y] =
            Dot(w, &o_lat_[(i * heads_ + hd) * kv_lora_], kv_lora_);
      }
    }
  }
}

}  // namespace kvserve::engine
