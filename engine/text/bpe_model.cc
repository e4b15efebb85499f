#include "engine/text/bpe_model.h"

#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "engine/text/unicode_util.h"

namespace kvserve::engine {
namespace {

using text_internal::AppendUtf8;
using text_internal::Utf8Length;

uint32_t DecodeUtf8At(std::string_view s, size_t i) {
  size_t len;
  return text_internal::DecodeUtf8(s, i, &len);
}

inline uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Words shorter than this merge by rescanning (cache-friendly, no heap); longer words use the
// priority queue so that a pathological 100 kB "word" stays O(n log n).
constexpr size_t kHeapMergeThreshold = 48;

}  // namespace

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* const kAlphabet = new ByteLevelAlphabet();
  return *kAlphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  bytes_.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const uint32_t cp = printable ? b : next++;
    AppendUtf8(cp, &chars_[b]);
    bytes_[cp] = static_cast<int16_t>(b);
  }
}

void ByteLevelAlphabet::Map(std::string_view raw, std::string* out) const {
  for (char c : raw) out->append(chars_[static_cast<uint8_t>(c)]);
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(const JsonReader& model) {
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  KV_RETURN_IF_ERROR(model.ExpectObject());
  if (model.Has("dropout")) {
    return model["dropout"].Error("only null is supported (dropout makes encoding random)");
  }
  // Vocabulary.
  const JsonReader vocab = model["vocab"];
  KV_RETURN_IF_ERROR(vocab.ExpectObject());
  int64_t max_id = -1;
  bpe->vocab_.reserve(vocab.size());
  for (auto it = vocab.value().begin(); it != vocab.value().end(); ++it) {
    KV_ASSIGN_OR_RETURN(int64_t id, vocab[it.key()].Int());
    if (id < 0 || id > INT32_MAX - 1) return vocab[it.key()].Error("id out of range");
    bpe->vocab_.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  bpe->id_to_token_.resize(max_id + 1);
  bpe->has_id_.resize(max_id + 1);
  for (const auto& [token, id] : bpe->vocab_) {
    if (bpe->has_id_[id]) {
      return vocab.Error(absl::StrCat("id ", id, " is used by two tokens"));
    }
    bpe->id_to_token_[id] = token;
    bpe->has_id_[id] = true;
  }
  // Options.
  KV_ASSIGN_OR_RETURN(bpe->continuing_subword_prefix_,
                      model.StringOr("continuing_subword_prefix", ""));
  KV_ASSIGN_OR_RETURN(bpe->end_of_word_suffix_, model.StringOr("end_of_word_suffix", ""));
  KV_ASSIGN_OR_RETURN(bpe->fuse_unk_, model.BoolOr("fuse_unk", false));
  KV_ASSIGN_OR_RETURN(bpe->byte_fallback_, model.BoolOr("byte_fallback", false));
  KV_ASSIGN_OR_RETURN(bpe->ignore_merges_, model.BoolOr("ignore_merges", false));
  if (model.Has("unk_token")) {
    KV_ASSIGN_OR_RETURN(std::string unk, model["unk_token"].String());
    auto id = bpe->TokenToId(unk);
    if (!id) return model["unk_token"].Error(absl::StrCat("\"", unk, "\" is not in model.vocab"));
    bpe->unk_id_ = *id;
  }
  // Merges: "a b" strings (older files) or ["a", "b"] pairs. A later duplicate overrides an
  // earlier one, as in the Rust crate's map construction.
  const JsonReader merges = model["merges"];
  if (!merges.is_null()) KV_RETURN_IF_ERROR(merges.ExpectArray());
  bpe->merges_.reserve(merges.size());
  const size_t prefix_len = bpe->continuing_subword_prefix_.size();
  for (size_t i = 0; i < merges.size(); ++i) {
    const JsonReader merge = merges[i];
    std::string left, right;
    if (merge.is_string()) {
      const std::string& line = merge.value().get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos) return merge.Error("expected \"left right\"");
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2) {
      KV_ASSIGN_OR_RETURN(left, merge[0].String());
      KV_ASSIGN_OR_RETURN(right, merge[1].String());
    } else {
      return merge.Error("expected \"left right\" or [\"left\", \"right\"]");
    }
    auto left_id = bpe->TokenToId(left);
    if (!left_id) return merge.Error(absl::StrCat("\"", left, "\" is not in model.vocab"));
    auto right_id = bpe->TokenToId(right);
    if (!right_id) return merge.Error(absl::StrCat("\"", right, "\" is not in model.vocab"));
    if (right.size() < prefix_len) return merge.Error("right side shorter than the subword prefix");
    const std::string merged = left + right.substr(prefix_len);
    auto merged_id = bpe->TokenToId(merged);
    if (!merged_id) {
      return merge.Error(absl::StrCat("merged token \"", merged, "\" is not in model.vocab"));
    }
    bpe->merges_[PairKey(*left_id, *right_id)] = MergeInfo{static_cast<int32_t>(i), *merged_id};
  }
  // Fast paths.
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  if (prefix_len == 0 && bpe->end_of_word_suffix_.empty()) {
    std::array<int32_t, 256> ids;
    bool complete = true;
    for (int b = 0; b < 256 && complete; ++b) {
      auto id = bpe->TokenToId(alphabet.Char(b));
      complete = id.has_value();
      if (complete) ids[b] = *id;
    }
    if (complete) bpe->byte_ids_ = ids;
  }
  for (int b = 0; b < 256; ++b) {
    auto id = bpe->TokenToId(absl::StrFormat("<0x%02X>", b));
    bpe->fallback_ids_[b] = id ? *id : -1;
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

const BpeModel::MergeInfo* BpeModel::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

absl::Status BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const {
  // Pending unknown run: the Rust crate emits it lazily, when the next known character (or the
  // end) arrives — byte-fallback tokens do not flush it, so they can precede it. Kept as is.
  int32_t pending_unk = -1;  // -1: none
  std::string piece;
  for (size_t i = 0; i < word.size();) {
    const size_t len = Utf8Length(static_cast<unsigned char>(word[i]));
    const bool is_first = i == 0;
    const bool is_last = i + len >= word.size();
    std::string_view ch = word.substr(i, len);
    std::string_view lookup = ch;
    if ((!is_first && !continuing_subword_prefix_.empty()) ||
        (is_last && !end_of_word_suffix_.empty())) {
      piece.clear();
      if (!is_first) piece += continuing_subword_prefix_;
      piece.append(ch);
      if (is_last) piece += end_of_word_suffix_;
      lookup = piece;
    }
    i += len;
    if (auto it = vocab_.find(lookup); it != vocab_.end()) {
      if (pending_unk >= 0) {
        symbols->push_back(pending_unk);
        pending_unk = -1;
      }
      symbols->push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : lookup) all = all && fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : lookup) symbols->push_back(fallback_ids_[static_cast<uint8_t>(c)]);
        continue;
      }
    }
    if (!unk_id_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "character U+%04X has no token (the vocabulary has no unk_token and no byte fallback)",
          DecodeUtf8At(word, i - len)));
    }
    if (pending_unk >= 0 && !fuse_unk_) symbols->push_back(pending_unk);
    pending_unk = *unk_id_;
  }
  if (pending_unk >= 0) symbols->push_back(pending_unk);
  return absl::OkStatus();
}

std::vector<int32_t> BpeModel::MergeNaiveForTest(std::vector<int32_t> symbols) const {
  while (symbols.size() > 1) {
    const MergeInfo* best = nullptr;
    size_t best_pos = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const MergeInfo* m = FindMerge(symbols[i], symbols[i + 1]);
      if (m != nullptr && (best == nullptr || m->rank < best->rank)) {
        best = m;
        best_pos = i;
      }
    }
    if (best == nullptr) break;
    symbols[best_pos] = best->new_id;
    symbols.erase(symbols.begin() + best_pos + 1);
  }
  return symbols;
}

std::vector<int32_t> BpeModel::MergeForTest(std::vector<int32_t> symbols) const {
  Merge(&symbols);
  return symbols;
}

void BpeModel::Merge(std::vector<int32_t>* symbols_ptr) const {
  std::vector<int32_t>& symbols = *symbols_ptr;
  const size_t n = symbols.size();
  if (n < 2) return;
  if (n < kHeapMergeThreshold) {
    // Rescan: rank[i] is the rank of the pair (symbols[i], symbols[i+1]), INT32_MAX if none.
    int32_t ranks[kHeapMergeThreshold];
    int32_t new_ids[kHeapMergeThreshold];
    size_t size = n;
    auto update = [&](size_t i) {
      const MergeInfo* m = FindMerge(symbols[i], symbols[i + 1]);
      ranks[i] = m ? m->rank : INT32_MAX;
      new_ids[i] = m ? m->new_id : -1;
    };
    for (size_t i = 0; i + 1 < size; ++i) update(i);
    while (size > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < size; ++i) {
        if (ranks[i] < ranks[best]) best = i;
      }
      if (ranks[best] == INT32_MAX) break;
      symbols[best] = new_ids[best];
      for (size_t i = best + 1; i + 1 < size; ++i) {
        symbols[i] = symbols[i + 1];
        ranks[i] = ranks[i + 1];
        new_ids[i] = new_ids[i + 1];
      }
      --size;
      if (best + 1 < size) update(best);
      if (best > 0) update(best - 1);
    }
    symbols.resize(size);
    return;
  }
  // Heap over (rank, position) with a doubly linked list of live symbols; a popped entry is stale
  // when its left symbol was merged away or its pair changed since it was pushed.
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (const MergeInfo* m = FindMerge(symbols[i], symbols[i + 1])) {
      queue.push({m->rank, static_cast<int32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    if (!alive[top.pos] || next[top.pos] < 0) continue;
    const int32_t right = next[top.pos];
    const MergeInfo* m = FindMerge(symbols[top.pos], symbols[right]);
    if (m == nullptr || m->new_id != top.new_id) continue;
    symbols[top.pos] = top.new_id;
    alive[right] = false;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) {
      const int32_t p = prev[top.pos];
      if (const MergeInfo* pm = FindMerge(symbols[p], symbols[top.pos])) {
        queue.push({pm->rank, p, pm->new_id});
      }
    }
    if (next[top.pos] >= 0) {
      if (const MergeInfo* nm = FindMerge(symbols[top.pos], symbols[next[top.pos]])) {
        queue.push({nm->rank, top.pos, nm->new_id});
      }
    }
  }
  size_t out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (alive[i]) symbols[out++] = symbols[i];
  }
  symbols.resize(out);
}

absl::Status BpeModel::TokenizeUncached(std::string_view word, bool byte_level,
                                        std::vector<int32_t>* ids) const {
  std::string mapped;
  if (byte_level && (ignore_merges_ || !byte_ids_)) {
    ByteLevelAlphabet::Get().Map(word, &mapped);
  }
  std::string_view model_word = byte_level && !mapped.empty() ? std::string_view(mapped) : word;
  if (ignore_merges_) {
    if (auto it = vocab_.find(model_word); it != vocab_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  const size_t begin = ids->size();
  if (byte_level && byte_ids_) {
    for (char c : word) ids->push_back((*byte_ids_)[static_cast<uint8_t>(c)]);
  } else {
    KV_RETURN_IF_ERROR(InitialSymbols(model_word, ids));
  }
  // Merge the new tail in place.
  std::vector<int32_t> symbols(ids->begin() + begin, ids->end());
  Merge(&symbols);
  ids->resize(begin);
  ids->insert(ids->end(), symbols.begin(), symbols.end());
  return absl::OkStatus();
}

absl::Status BpeModel::Tokenize(std::string_view word, bool byte_level,
                                std::vector<int32_t>* ids) const {
  if (word.empty()) return absl::OkStatus();
  if (word.size() > kCacheMaxWordBytes) return TokenizeUncached(word, byte_level, ids);
  // Key: the word plus one byte that says how to read it.
  char key_buffer[kCacheMaxWordBytes + 1];
  word.copy(key_buffer, word.size());
  key_buffer[word.size()] = byte_level ? 'b' : 't';
  const std::string_view key(key_buffer, word.size() + 1);
  const size_t hash = StringViewHash()(key);
  CacheShard& shard = cache_[hash % kCacheShards];
  {
    absl::MutexLock lock(&shard.mu);
    auto it = shard.words.find(key);
    if (it != shard.words.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return absl::OkStatus();
    }
  }
  const size_t begin = ids->size();
  KV_RETURN_IF_ERROR(TokenizeUncached(word, byte_level, ids));
  std::vector<int32_t> result(ids->begin() + begin, ids->end());
  absl::MutexLock lock(&shard.mu);
  // Bounded: a full shard starts over rather than tracking recency; word frequencies are
  // Zipfian, so the common words come back within a few hundred lookups.
  if (shard.words.size() >= static_cast<size_t>(kCacheEntriesPerShard)) shard.words.clear();
  shard.words.emplace(std::string(key), std::move(result));
  return absl::OkStatus();
}

}  // namespace kvserve::engine
