// ScalarGqaAttention: the engine's first attention kernel, kept as the naive reference the fast
// one (engine/layers/gqa_attention.h) is tested and benchmarked against.
//
// Layout contract (as GqaAttention's): q is [n, num_heads, head_dim] for positions
// [start_pos, start_pos + n); kv holds rows for positions [0, start_pos + n) (f32 or bf16, see
// KvView); out is [n, num_heads, head_dim]; scratch holds >= start_pos + n floats.
// Three passes per query row and head, position by position: every score q·k / sqrt(head_dim)
// into scratch (the Dot of engine/kernels/ops.h), softmax with the max subtracted and the sum in
// double, then out = Σ p_s v_s. Keys a query does not see are never read.
//
// Thread-safety: pure function apart from scratch.
#ifndef KVSERVE_TESTS_TESTING_SCALAR_ATTENTION_H_
#define KVSERVE_TESTS_TESTING_SCALAR_ATTENTION_H_

#include <cstdint>

#include "engine/layers/gqa_attention.h"

namespace kvserve::engine {

void ScalarGqaAttention(const float* q, const KvView& kv, int64_t start_pos, int64_t n,
                        const AttentionShape& shape, float* scratch, float* out);

}  // namespace kvserve::engine

#endif  // KVSERVE_TESTS_TESTING_SCALAR_ATTENTION_H_
