// PrefixHash: the chained hash that names a full block of tokens in the prefix cache.
//
//   hash(block i) = H(hash(block i-1), tokens of block i)      hash(block -1) = H(extra keys)
//
// so equal hashes mean equal prefixes up to and including the block. Extra keys (the model id and
// an optional per-request cache_salt) seed the chain: tenants with different salts never share
// blocks. The hash is 64-bit; the BlockPool additionally stores each cached block's tokens and
// parent hash and compares them on a hit, so a hash collision can never serve another prefix's K/V.
#ifndef KVSERVE_CACHE_PREFIX_HASH_H_
#define KVSERVE_CACHE_PREFIX_HASH_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/types/span.h"

namespace kvserve::cache {

using BlockHash = uint64_t;

// The chain's root for a model and an optional salt ("" = none).
BlockHash PrefixRootHash(std::string_view model_id, std::string_view cache_salt);

// The hash of one full block given its parent's hash.
BlockHash HashBlock(BlockHash parent, absl::Span<const int32_t> tokens);

// Hashes of every full block of `tokens` (tokens.size() / block_size of them).
std::vector<BlockHash> HashFullBlocks(BlockHash root, absl::Span<const int32_t> tokens,
                                      int32_t block_size);

}  // namespace kvserve::cache

#endif  // KVSERVE_CACHE_PREFIX_HASH_H_
