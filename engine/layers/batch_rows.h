// SequenceRows: one sequence's share of a batched model step.
//
// A step stacks the new tokens of every scheduled sequence into one activation matrix
// {rows, width}, so each weight is applied by one matmul for all of them; the mixers that read a
// sequence's own history (attention over its cache blocks, an S4 layer's state) then work on
// each sequence's rows separately.
#ifndef KVSERVE_ENGINE_LAYERS_BATCH_ROWS_H_
#define KVSERVE_ENGINE_LAYERS_BATCH_ROWS_H_

#include <cstdint>
#include <limits>

#include "cache/kv_cache_manager.h"

namespace kvserve::engine {

struct SequenceRows {
  int64_t row = 0;        // first row of this sequence in the batch
  int64_t n = 0;          // number of rows: positions [start_pos, start_pos + n)
  int32_t start_pos = 0;  // positions before it are in the sequence's cache
  const cache::SequenceCache* seq = nullptr;
  // Positions from here on are generated tokens (the prompt ends here). MLA computes prompt
  // positions in its expanded form and generated ones in its absorbed form, whatever chunk they
  // fall in, so its numbers do not depend on how a sequence is split into steps.
  int32_t generated_from = std::numeric_limits<int32_t>::max();
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_LAYERS_BATCH_ROWS_H_
