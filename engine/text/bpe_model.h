// BpeModel: the "BPE" model of a Hugging Face tokenizer.json, with the Rust tokenizers crate's
// semantics (tokenizers/src/models/bpe).
//
// A pre-token is split into characters, each looked up in the vocabulary (with
// continuing_subword_prefix on all but the first and end_of_word_suffix on the last); a character
// that has no token becomes its <0xXX> byte tokens (byte_fallback) or the unk token (consecutive
// unknowns fused into one with fuse_unk). Then adjacent symbols are merged, always taking the
// merge of lowest rank and, among equal ranks, the leftmost — until no adjacent pair has a merge.
// With ignore_merges, a pre-token that is itself in the vocabulary is one token.
//
// Byte-level pre-tokens (ByteLevel pre-tokenizer) arrive as raw bytes; the model maps each byte to
// its GPT-2 stand-in character (ByteLevelAlphabet) without building the mapped string.
//
// Thread-safety: immutable after Create except the word cache, which is internally synchronized;
// Tokenize is const and safe to call concurrently. The cache is bounded (kCacheShards shards of at
// most kCacheEntriesPerShard words; a full shard is cleared).
#ifndef KVSERVE_ENGINE_TEXT_BPE_MODEL_H_
#define KVSERVE_ENGINE_TEXT_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/text/json_reader.h"

namespace kvserve::engine {

// Transparent hashing so that maps keyed by std::string can be probed with a std::string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringViewHash, StringViewEq>;

// GPT-2's reversible byte <-> printable-character table: bytes that are printable Latin-1
// ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes map, in byte order, to
// U+0100.. . (Radford et al., "Language Models are Unsupervised Multitask Learners", 2019, and its
// encoder.py.)
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();
  // UTF-8 of the stand-in character of `byte`.
  const std::string& Char(uint8_t byte) const { return chars_[byte]; }
  // The byte a stand-in code point stands for, or -1.
  int Byte(uint32_t code_point) const {
    return code_point < bytes_.size() ? bytes_[code_point] : -1;
  }
  // Appends the stand-in characters of `raw`.
  void Map(std::string_view raw, std::string* out) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> chars_;
  std::array<int16_t, 324> bytes_;
};

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object. Errors name the JSON path (model.merges[3], ...).
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const JsonReader& model);

  // Appends the ids of one pre-token. `byte_level`: `word` is raw bytes to be read through
  // ByteLevelAlphabet. INVALID_ARGUMENT when a character has no token and the model has neither
  // byte_fallback nor an unk token (the Rust crate silently drops it; a server must not).
  absl::Status Tokenize(std::string_view word, bool byte_level, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  // nullptr for an id that is not in the vocabulary.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id in the vocabulary.
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }

  // The merge loop written the obvious way (rescan all pairs after each merge); the oracle for the
  // heap-based loop in tests. Public for tests only.
  std::vector<int32_t> MergeNaiveForTest(std::vector<int32_t> symbols) const;
  std::vector<int32_t> MergeForTest(std::vector<int32_t> symbols) const;

  // At most 32k cached words of <= 256 bytes: a few MB, enough for the working vocabulary of a
  // language (the Rust crate caches 10k words).
  static constexpr int kCacheShards = 16;
  static constexpr int kCacheEntriesPerShard = 2048;
  static constexpr size_t kCacheMaxWordBytes = 256;

 private:
  struct MergeInfo {
    int32_t rank;
    int32_t new_id;
  };
  struct CacheShard {
    absl::Mutex mu;
    StringMap<std::vector<int32_t>> words ABSL_GUARDED_BY(mu);
  };

  BpeModel() = default;
  const MergeInfo* FindMerge(int32_t left, int32_t right) const;
  // Initial symbols of `word` (characters, byte fallback, unk); appended to `symbols`.
  absl::Status InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const;
  // Merges `symbols` in place (lowest rank first, leftmost first among equals).
  void Merge(std::vector<int32_t>* symbols) const;
  absl::Status TokenizeUncached(std::string_view word, bool byte_level,
                                std::vector<int32_t>* ids) const;

  StringMap<int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, MergeInfo> merges_;
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  // Id of each byte's stand-in character when all 256 are in the vocabulary and there is no
  // prefix/suffix: byte-level words then skip the character lookups.
  std::optional<std::array<int32_t, 256>> byte_ids_;
  // Ids of the <0xXX> byte-fallback tokens, -1 where missing.
  std::array<int32_t, 256> fallback_ids_;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_BPE_MODEL_H_
