// DecoderModel: the decoder-only transformers of Hugging Face's LlamaForCausalLM,
// Qwen2ForCausalLM, Qwen3ForCausalLM and DeepseekV2ForCausalLM (dense MLP layers), and kvserve's
// attention/S4 hybrids: f32 activations, matrices in f32, bf16 or int8 as loaded (WeightOptions),
// norms and recurrent state in f32.
//
//   x = embed(tokens)                                     {n, hidden}
//   per layer:  x += mixer(h),  h = RMSNorm(x), mixer one of
//                 GQA  o_proj(GQA(RoPE(q_proj h), RoPE(k_proj h), v_proj h))     paged K/V
//                      Qwen2: q/k/v_proj add a bias; Qwen3: per-head RMSNorm (q_norm, k_norm)
//                      on q and k before RoPE; Qwen sliding-window layers read only the last
//                      sliding_window positions
//                 MLA  MlaAttention (mla_attention.h)                           paged latent
//                 S4   out_proj(GELU(S4(u) + D·u)), u = in_proj h (s4_layer.h)   recurrent state
//               x += down_proj(silu(gate_proj(h)) * up_proj(h)),  h = RMSNorm(x)
//   logits = lm_head(RMSNorm(x))                          {n, vocab}  (lm_head = embed when tied)
//
// Weights come from a WeightSource, so a checkpoint on disk and the embedded seeded-random default
// model are built by exactly the same code.
//
// Thread-safety: Forward mutates internal workspaces; one thread (the engine thread) at a time.
#ifndef KVSERVE_ENGINE_MODEL_DECODER_MODEL_H_
#define KVSERVE_ENGINE_MODEL_DECODER_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "cache/cache_spec.h"
#include "cache/kv_cache_manager.h"
#include "engine/checkpoint/model_config.h"
#include "engine/checkpoint/weight_source.h"
#include "engine/kernels/aligned_buffer.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/matmul_weight.h"
#include "engine/kernels/ops.h"
#include "engine/layers/batch_rows.h"
#include "engine/layers/gqa_attention.h"
#include "engine/layers/mla_attention.h"
#include "engine/layers/rope.h"
#include "engine/layers/s4_layer.h"

namespace kvserve::engine {

class DecoderModel {
 public:
  // Matrices (nn.Linear weights, embedding, LM head) are kept in the storage `options` asks for
  // (weight_source.h), MLA projections included; norms and S4 parameters in f32. A tied LM head and
  // the embedding share one table. RESOURCE_EXHAUSTED, before any weight is read, when
  // EstimateMemory exceeds the memory available (options.available_memory_bytes).
  static absl::StatusOr<std::unique_ptr<DecoderModel>> Create(const ModelConfig& config,
                                                              const WeightSource& weights,
                                                              const WeightOptions& options = {});

  // What Create will allocate for `config`, worked out from the config alone so that a model that
  // cannot fit is refused before its first tensor is read (a 5 GB embedding must not reach 3 GB of
  // RSS first). Matrices count in the storage `options` selects (kAuto: the stored precision of
  // model.embed_tokens.weight; int8 as 1 + 4/32 bytes for its block scales, leaving out the panel
  // padding that only tiny matrices notice), everything else as
  // f32; to that come the layer records, one f32 copy of the largest matrix (the conversion copy
  // alive while loading) and the per-position scratch reserved for the longest context.
  // Computed in double and saturated, so absurd sizes cannot overflow.
  // REQUIRES: config.Validate() is OK.
  struct MemoryEstimate {
    int64_t num_parameters = 0;  // exactly num_parameters() of the model Create would build
    int64_t bytes = 0;
  };
  static MemoryEstimate EstimateMemory(const ModelConfig& config, const WeightOptions& options);

  // Runs tokens at positions [start_pos, start_pos + n) (n = tokens.size()) of the sequence `seq`,
  // writing their K/V into its cache slots and the logits: [n, vocab] when all_logits, else [vocab]
  // for the last token only.
  // REQUIRES: the cache holds positions [0, start_pos) of this sequence; seq has slots for
  //           [0, start_pos + n); every token id in [0, vocab_size); cache built from CacheSpec().
  void Forward(absl::Span<const int32_t> tokens, int32_t start_pos, cache::KvCacheManager& cache,
               const cache::SequenceCache& seq, bool all_logits, float* logits);

  // One sequence's part of a batched step.
  struct BatchEntry {
    absl::Span<const int32_t> tokens;  // positions [start_pos, start_pos + tokens.size())
    int32_t start_pos = 0;
    const cache::SequenceCache* seq = nullptr;
    // Logits of its last num_logits tokens: 1 for a sequence that samples, tokens.size() for a
    // prompt chunk scored for prompt_logprobs, 0 for a chunk that ends mid-prompt.
    int32_t num_logits = 0;
    int32_t prompt_len = 0;  // positions from here on are generated tokens (SequenceRows)
  };
  // Runs every entry's tokens through the model in one batched step: each weight's matmul runs
  // once over all rows; attention and S4 run per sequence over its own cache. Writes the logits
  // rows {vocab} each entry asked for, in entry order and position order, to `logits`. Only those
  // rows go through the LM head, so a step costs the same whatever other rows ask for logits, and
  // (batch-invariant) each row's logits are those it has alone.
  // REQUIRES: as for Forward, per entry; entries belong to distinct sequences; 0 <= num_logits <=
  // tokens.size(); a batch with no tokens is allowed and does nothing.
  void ForwardBatch(absl::Span<const BatchEntry> batch, cache::KvCacheManager& cache,
                    float* logits);

  // Every matmul computes each row as it would alone (Linear::set_row_invariant); on by default.
  void set_batch_invariant(bool on);

  // The cache this model needs: one attention K/V layer per decoder layer (stored as kv_dtype;
  // MLA latents and recurrent state stay f32).
  cache::CacheSpec CacheSpec(int32_t block_size,
                             cache::KvDtype kv_dtype = cache::KvDtype::kF32) const;

  const ModelConfig& config() const { return config_; }
  int64_t num_parameters() const { return num_parameters_; }
  // Bytes the weights occupy in memory (a tied table counted once).
  int64_t weight_bytes() const { return weight_bytes_; }
  // The matrices' storage: "f32", "bf16", "int8", or e.g. "bf16+f32" when mixed.
  const std::string& weight_formats() const { return weight_formats_; }

 private:
  struct Layer {
    std::vector<float> attn_norm;       // [hidden]
    std::optional<Linear> q_proj;       // GQA: [heads*head_dim, hidden]
    std::optional<Linear> k_proj;       // GQA: [kv_heads*head_dim, hidden]
    std::optional<Linear> v_proj;       // GQA: [kv_heads*head_dim, hidden]
    std::optional<Linear> o_proj;       // GQA: [hidden, heads*head_dim]
    std::vector<float> q_bias;          // Qwen2: [heads*head_dim]
    std::vector<float> k_bias;          // Qwen2: [kv_heads*head_dim]
    std::vector<float> v_bias;          // Qwen2: [kv_heads*head_dim]
    std::vector<float> q_norm;          // Qwen3: [head_dim], shared by every query head
    std::vector<float> k_norm;          // Qwen3: [head_dim], shared by every kv head
    std::unique_ptr<MlaAttention> mla;  // MLA layers instead of the four above
    std::optional<Linear> s4_in_proj;   // S4: [hidden, hidden] before the SSM
    std::unique_ptr<S4Layer> s4;        // S4 layers instead of attention
    std::optional<Linear> s4_out_proj;  // S4: [hidden, hidden] after GELU
    std::vector<float> mlp_norm;        // [hidden]
    std::optional<Linear> gate_proj;    // [intermediate, hidden]
    std::optional<Linear> up_proj;      // [intermediate, hidden]
    std::optional<Linear> down_proj;    // [hidden, intermediate]
  };

  DecoderModel(const ModelConfig& config, std::optional<MatmulWeight> embed,
               std::vector<Layer> layers, std::vector<float> final_norm, Linear lm_head,
               int64_t num_parameters);
  // The batched step over rows_ (one SequenceRows per entry); logit_rows_ lists the rows whose
  // logits go to `logits`, in order.
  void Run(int64_t num_rows, cache::KvCacheManager& cache, float* logits);
  // One GQA attention layer: reads h_, writes the layer's output to proj_ {rows, hidden}.
  void GqaLayer(Layer& layer, int64_t num_rows, const AttentionShape& shape,
                cache::KvCacheManager& cache, int32_t l);
  // [vocab, hidden]: the untied embedding, or the LM head's weight when tied.
  const MatmulWeight& EmbeddingTable() const { return embed_ ? *embed_ : lm_head_.weight(); }
  // Grows the per-row workspaces to hold n rows.
  void Reserve(int64_t n);

  ModelConfig config_;
  std::optional<MatmulWeight> embed_;  // [vocab, hidden], untied models only
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;            // [hidden]
  Linear lm_head_;                           // [vocab, hidden]
  RotaryEmbedding rope_;                     // GQA layers: head_dim, rotate-half
  std::optional<RotaryEmbedding> mla_rope_;  // MLA layers: rope dims, interleaved, YaRN
  int64_t num_parameters_;
  int64_t weight_bytes_ = 0;
  std::string weight_formats_;

  // Workspaces, grown on demand and reused across calls (no allocation per decode step).
  int64_t reserved_tokens_ = 0;
  std::vector<SequenceRows> seq_rows_;           // one per sequence of the current step
  std::vector<int64_t> logit_rows_;              // rows whose logits the caller wants
  AlignedFloats logit_h_;                        // [logit rows, hidden] their normed hidden states
  std::vector<int32_t> tokens_;                  // [n]
  std::vector<int32_t> positions_;               // [n]
  std::vector<float> rope_table_;                // [n, head_dim/2, 2]
  std::vector<float> mla_rope_table_;            // [n, qk_rope_head_dim/2, 2]
  AlignedFloats x_;                              // [n, hidden] residual stream
  AlignedFloats h_;                              // [n, hidden] normed
  AlignedFloats q_;                              // [n, heads*head_dim]
  AlignedFloats k_;                              // [n, kv_heads*head_dim]
  AlignedFloats v_;                              // [n, kv_heads*head_dim]
  AlignedFloats attn_;                           // [n, heads*head_dim]
  AlignedFloats s4_in_;                          // [n, hidden] S4 input after in_proj
  AlignedFloats s4_out_;                         // [n, hidden] S4 output before out_proj
  AlignedFloats gate_;                           // [n, intermediate]
  AlignedFloats up_;                             // [n, intermediate]
  AlignedFloats proj_;                           // [n, hidden]
  std::vector<float> scores_;                    // GqaAttention's scratch, fixed size
  std::vector<const SequenceRows*> small_seqs_;  // a step's attention calls shared out whole
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_MODEL_DECODER_MODEL_H_
