#include "cache/prefix_hash.h"

namespace kvserve::cache {
namespace {

// A 64-bit mix (the splitmix64 finalizer): every input bit affects every output bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t Combine(uint64_t h, uint64_t value) { return Mix(h ^ Mix(value + 0x9e3779b97f4a7c15ull)); }

uint64_t HashString(uint64_t h, std::string_view s) {
  h = Combine(h, s.size());
  for (unsigned char c : s) h = Combine(h, c);
  return h;
}

}  // namespace

BlockHash PrefixRootHash(std::string_view model_id, std::string_view cache_salt) {
  return HashString(HashString(0x6b7673657276ull /* "kvserv" */, model_id), cache_salt);
}

BlockHash HashBlock(BlockHash parent, absl::Span<const int32_t> tokens) {
  uint64_t h = Combine(parent, tokens.size());
  for (int32_t t : tokens) h = Combine(h, static_cast<uint32_t>(t));
  return h;
}

std::vector<BlockHash> HashFullBlocks(BlockHash root, absl::Span<const int32_t> tokens,
                                      int32_t block_size) {
  std::vector<BlockHash> hashes;
  hashes.reserve(tokens.size() / block_size);
  BlockHash parent = root;
  for (size_t start = 0; start + block_size <= tokens.size(); start += block_size) {
    parent = HashBlock(parent, tokens.subspan(start, block_size));
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace kvserve::cache
