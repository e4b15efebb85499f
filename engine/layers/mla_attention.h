// MlaAttention: DeepSeek-V2's multi-head latent attention, caching only the compressed latent.
//
// Per token the cache holds one row per layer, shared by all heads (MLA is an MQA at inference):
//
//   | c_KV: RMSNorm(kv_a_proj(x))[:kv_lora_rank] | k_R: RoPE(kv_a_proj(x)[kv_lora_rank:]) |
//   |<------------------ kv_lora_rank ---------->|<-------- qk_rope_head_dim ------------>|
//
// Queries: q = q_proj(x) or q_b_proj(RMSNorm(q_a_proj(x))), per head [q_C (nope) | q_R (rope)],
// q_R rotated with interleaved-pair RoPE (YaRN-scaled when configured). kv_b_proj maps c_KV to
// per-head [k_C (nope) | v (v_head_dim)]: its rows are W_UK_h and W_UV_h.
//
// Two real computation forms, chosen per token by its role (see ForwardBatch):
//   expanded  (prompt positions): decompress every cached c_KV through kv_b_proj into per-head K
//             and V, then attention with head size nope + rope (keys) and v_head_dim (values);
//   absorbed  (generated positions): q~_h = W_UK_hᵀ q_C_h, scores q~_h·c_KV + q_R_h·k_R, latent
//             output ō_h = Σ p c_KV, then o_h = W_UV_h ō_h. The attention in the middle is
//             GqaAttention as MQA ("GQA with one group") over the cache rows: keys
//             [c_KV | k_R], values c_KV, queries [q~_h | q_R_h]. W_UK and W_UV are applied in
//             sequence, never pre-multiplied with W_UQ or W_O: the product loses precision
//             (docs/math.md §2.1, note 3).
// Both use the softmax scale 1/sqrt(nope + rope) (× YaRN mscale²).
//
// Weights: the projections are MatmulWeights in the model's format (f32, bf16 or int8, as
// --weight-dtype chose; engine/kernels/matmul_weight.h), so a bf16 checkpoint stays bf16 here too.
// The absorbed form reads kv_b_proj row by row (W_UK_hᵀ q_C, W_UV_h ō): each row is widened to
// f32 (DequantizeRow: exact for f32 and bf16) into a one-row scratch and used for all of the
// call's tokens, so both forms compute with the same stored values. The norms stay f32.
//
// Thread-safety: Forward mutates workspaces; one thread (the engine thread) at a time.
#ifndef KVSERVE_ENGINE_LAYERS_MLA_ATTENTION_H_
#define KVSERVE_ENGINE_LAYERS_MLA_ATTENTION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cache/kv_cache_manager.h"
#include "engine/checkpoint/model_config.h"
#include "engine/checkpoint/weight_source.h"
#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/matmul_weight.h"
#include "engine/kernels/ops.h"
#include "engine/layers/batch_rows.h"
#include "engine/layers/rope.h"

namespace kvserve::engine {

class MlaAttention {
 public:
  enum class Form { kAuto, kExpanded, kAbsorbed };

  // Returns the [n, k] matrix `name` in the model's weight format (the model's MatrixLoader).
  using LoadMatrix =
      std::function<absl::StatusOr<MatmulWeight>(const std::string& name, int64_t n, int64_t k)>;

  // Loads `prefix`self_attn.* tensors (e.g. prefix "model.layers.3."): the projections through
  // `load_matrix` (empty: f32 as `weights` gives them), the norms from `weights`.
  static absl::StatusOr<std::unique_ptr<MlaAttention>> Create(const ModelConfig& config,
                                                              const WeightSource& weights,
                                                              const std::string& prefix,
                                                              int64_t* num_parameters,
                                                              const LoadMatrix& load_matrix = {});

  // Attention for n tokens at positions [start_pos, start_pos + n) of `seq`:
  //   h:       [n, hidden]  (the layer's normed input)
  //   cos_sin: RoPE table for these positions from rope()
  //   out:     [n, hidden]  (after o_proj)
  // Writes the tokens' latent rows into `layer`'s cache slots first.
  // kAuto = expanded for n > 1, absorbed for n == 1 (a single token counts as generated).
  void Forward(const float* h, int64_t n, int32_t start_pos, const float* cos_sin,
               cache::KvCacheManager& cache, const cache::SequenceCache& seq, int32_t layer,
               float* out, Form form = Form::kAuto);

  // The same for a batched step: h, cos_sin and out hold `rows` rows, each sequence's at
  // [seqs[i].row, seqs[i].row + seqs[i].n). Projections run once over all rows; attention per
  // sequence. kAuto: prompt positions in the expanded form, generated positions
  // (>= seqs[i].generated_from) in the absorbed form, so a token's numbers do not depend on the
  // chunk it is computed in. REQUIRES: seqs cover distinct rows.
  void ForwardBatch(const float* h, int64_t rows, absl::Span<const SequenceRows> seqs,
                    const float* cos_sin, cache::KvCacheManager& cache, int32_t layer, float* out,
                    Form form = Form::kAuto);

  // Makes every projection compute each row as it would alone (Linear::set_row_invariant).
  void set_row_invariant(bool on);

  const RotaryEmbedding& rope() const { return rope_; }
  int64_t latent_width() const { return kv_lora_ + rope_dim_; }

 private:
  MlaAttention(const ModelConfig& config);
  // Both read q_ rows [row, row + n), the cache rows of positions s < start_pos + n (Expanded at
  // arena + rows_[s], Absorbed through seq's block table), and write attn_ rows [row, row + n).
  void Expanded(int64_t row, int64_t n, int32_t start_pos, const float* arena);
  void Absorbed(int64_t row, int64_t n, int32_t start_pos, const float* arena,
                const cache::SequenceCache& seq, int32_t block_size);

  int64_t hidden_, heads_, q_lora_, kv_lora_, nope_, rope_dim_, v_dim_;
  float eps_;
  float scale_;
  RotaryEmbedding rope_;
  std::optional<Linear> q_proj_;     // [heads*(nope+rope), hidden]      (no query compression)
  std::optional<Linear> q_a_proj_;   // [q_lora, hidden]
  std::vector<float> q_a_norm_;      // [q_lora]
  std::optional<Linear> q_b_proj_;   // [heads*(nope+rope), q_lora]
  std::optional<Linear> kv_a_proj_;  // [kv_lora + rope, hidden]
  std::vector<float> kv_a_norm_;     // [kv_lora]
  std::optional<Linear> kv_b_proj_;  // [heads*(nope+v), kv_lora]
  std::optional<Linear> o_proj_;     // [hidden, heads*v]

  // Workspaces, grown on demand.
  AlignedFloats q_;           // [n, heads, nope+rope]
  AlignedFloats q_lat_;       // [n, q_lora]
  AlignedFloats kv_a_;        // [n, kv_lora+rope]
  AlignedFloats latents_;     // [context, kv_lora]  gathered c_KV (expanded form)
  AlignedFloats kv_full_;     // [context, heads, nope+v]  decompressed K_C | V (expanded form)
  std::vector<float> q_abs_;  // [n, heads, kv_lora+rope]  absorbed queries [q~ | q_R]
  AlignedFloats w_row_;       // [kv_lora]  one kv_b_proj row widened to f32 (absorbed form)
  std::vector<float> o_lat_;  // [n, heads, kv_lora]  latent outputs (absorbed form)
  std::vector<float> attn_scratch_;  // GqaAttention's scratch (absorbed form)
  AlignedFloats attn_;               // [n, heads, v]
  std::vector<float> scores_;        // [context]
  std::vector<int64_t> rows_;        // [context] cache row offsets
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LAYERS_MLA_ATTENTION_H_
