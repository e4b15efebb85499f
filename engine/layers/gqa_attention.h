// Causal grouped-query attention over one sequence's cached keys and values, read through its
// block table (PagedAttention), as one online-softmax pass over key tiles (FlashAttention-2's
// order, on a CPU).
//
// MHA, MQA and GQA are one code path: query head h reads K/V head h / group_size, where
// group_size = num_heads / num_kv_heads (1 = MHA, num_heads = MQA). All query heads of a K/V group
// and up to kAttentionQueryRows query rows are processed together, so each K/V row is read from
// memory once per block of rows and kv head, and no score matrix is materialised (scratch is
// independent of context).
//
// The fixed order (what batch invariance and chunking invariance rest on). For one query row at
// position p and one head, with visible keys [lo, p] (lo = 0, or p - window + 1 with a window):
//   0. q' = q * float(log2(e) * scale), element by element in f32 (scale = 1/sqrt(head_dim) unless
//      the shape sets one);
//   1. key tiles are the absolute position ranges [16t, 16t + 16), visited in increasing t from
//      the tile of lo to the tile of p; in a tile only the visible keys take part;
//   2. score s_j = q'·k_j in RowInvariantMatmul's dot order (16 fma lanes over the first
//      16·⌊d/16⌋ elements, a fixed lane tree, then the tail by fma in increasing element);
//   3. m' = max(m, max_j s_j); α = Exp2(m - m'), L *= α (16 lanes), acc *= α (element-wise)
//      (α = 1 exactly when m' = m; before the first tile m = -inf and L, acc are 0 and stay 0);
//   4. P_j = Exp2(s_j - m'); lane (j mod 16) of L += P_j (0 for invisible keys);
//      acc = fma(P_j, v_j, acc) for visible j in increasing j;
//   5. out = acc * (1 / tree_sum(L)), with the lane tree of step 2.
// Exp2 is a fixed polynomial (degree 7, |relative error| < 2e-7) on inputs clamped to >= -125, so
// every value stays a normal float. The order depends on nothing but the row's position and the
// data: not on start_pos or n (chunking), the other rows (batching), the block layout (paging) or
// the ISA — the AVX-512 path (KernelIsa, kernel_isa.h) and the portable path compute the same
// operations in the same order and agree bit for bit. Against exact softmax attention the
// difference is a few f32 roundings of the scores and weights (tests: <= 4e-6 absolute on
// unit-normal data).
//
// How the order is computed (the same bits either way): with 8 or more queries in a block (rows ×
// the group's heads) a key tile is transposed once so that a query's 16 scores are one vector and
// the lane tree of step 2 becomes vector adds; fewer queries (decode) score key by key. Each step
// runs over all the block's queries before the next, so their independent chains overlap.
//
// Threads: a call big enough to pay for it (prefill, long-context decode) is shared by the calling
// thread's kernel threads (engine/kernels/thread_pool.h), each (block of kAttentionQueryRows query
// rows, kv head) item on one thread; the order above is per (row, head), so the bits do not depend
// on the split.
//
// Thread-safety: stateless apart from the caller-provided scratch; safe to call concurrently with
// distinct scratch buffers.
#ifndef KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_
#define KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_

#include <cstdint>

#include "cache/cache_spec.h"

namespace kvserve::engine {

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  // Sliding window (Qwen2 / Mistral style): a query at position p sees keys at positions
  // (p - window, p], i.e. itself and the window - 1 before it. 0: full causal attention.
  int64_t window = 0;
  // Width of a value head when it differs from head_dim (the width of queries and keys); 0: the
  // same. MLA's absorbed form is MQA with keys [c_KV | k_R] and values c_KV, the key's prefix.
  int64_t value_dim = 0;
  // Softmax scale; 0: 1/sqrt(head_dim).
  double scale = 0;

  int64_t value_width() const { return value_dim > 0 ? value_dim : head_dim; }
};

// Where a sequence's cached K and V rows live. Position s is cache row
//   slot(s) = block_table[s / block_size] * block_size + s % block_size
// found at keys + slot(s) * row_stride and values + slot(s) * row_stride (in elements of
// `dtype`), each row holding [num_kv_heads, head_dim] keys and [num_kv_heads, value_width] values.
// A contiguous cache is the one-block case: block_table = {0} and block_size >= the sequence
// length.
//
//   paged arena of one layer (row_stride = 2 * kv_dim):
//   block b: | slot b*bs+0: K[kv_dim] V[kv_dim] | slot b*bs+1: K V | ... | slot b*bs+bs-1: K V |
//
// dtype kBf16: each value is a uint16_t holding the upper half of an f32 (widened exactly on read).
struct KvView {
  const void* keys = nullptr;
  const void* values = nullptr;
  int64_t row_stride = 0;
  const int32_t* block_table = nullptr;
  int64_t block_size = 0;
  cache::KvDtype dtype = cache::KvDtype::kF32;
};

// Query rows processed together (each K/V tile is reused by this many rows × the group's heads;
// with 8 rows a Llama-1B or SmolLM-135M prefill block has 32 or 24 queries per transposed tile).
inline constexpr int64_t kAttentionQueryRows = 8;

// Floats of scratch GqaAttention needs for `shape` when called from this thread (independent of
// the context length; proportional to the calling thread's KernelThreads()).
int64_t GqaAttentionScratchFloats(const AttentionShape& shape);

// Floats of one work item's scratch (kAttentionQueryRows rows × one kv head's query states, their
// scores for one key tile, one transposed key tile): all a call that does not share itself
// (below) uses.
int64_t GqaAttentionItemScratchFloats(const AttentionShape& shape);

// Whether a call for n rows at start_pos shares itself among the calling thread's kernel
// threads (big enough to pay for a fork-join). `alone`: the caller has no other attention call
// to share out in this step (one sequence decoding), so the other threads would only wait for
// this one and a smaller call is worth sharing too. A call that does not share itself uses only
// the first GqaAttentionItemScratchFloats(shape) floats of its scratch, and may be made from
// inside a ParallelFor task.
bool GqaAttentionIsShared(const AttentionShape& shape, int64_t start_pos, int64_t n,
                          bool alone = false);

// Attention for n new query tokens at positions [start_pos, start_pos + n), each attending to
// cached positions [0, its own position], or with shape.window > 0 to the last `window` of them.
// Older positions stay in the cache; they are only not read, nor are positions after a row's own.
//   q:       [n, num_heads, head_dim]
//   kv:      rows for positions [0, start_pos + n), already holding the new tokens' K and V
//   out:     [n, num_heads, value_width]
//   scratch: >= GqaAttentionScratchFloats(shape) floats, sized on the calling thread
// REQUIRES: num_heads a multiple of num_kv_heads; n >= 1; out overlaps neither q nor scratch.
//   alone:   as for GqaAttentionIsShared
void GqaAttention(const float* q, const KvView& kv, int64_t start_pos, int64_t n,
                  const AttentionShape& shape, float* scratch, float* out, bool alone = false);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LAYERS_GQA_ATTENTION_H_
