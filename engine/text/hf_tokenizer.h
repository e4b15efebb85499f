// HfTokenizer: a Hugging Face tokenizer.json (BPE model) as a kvserve Tokenizer, producing the same
// ids and text as the Rust tokenizers crate (and transformers' fast tokenizers).
//
// Encoding pipeline, per the crate:
//   1. added tokens (tokenizer.json "added_tokens", normalized=false) are cut out of the raw text —
//      leftmost match first, longest among those starting there — honouring lstrip / rstrip /
//      single_word;
//   2. each remaining segment is normalized (HfNormalizer), then added tokens with normalized=true
//      are cut out of it;
//   3. each remaining piece is pre-tokenized (HfPreTokenizer) and each pre-token is run through the
//      model (BpeModel);
//   4. with add_special_tokens, the post-processor adds its template's special tokens.
// Decoding: HfDecoder, then transformers' clean_up_tokenization when tokenizer_config.json sets
// clean_up_tokenization_spaces.
//
// Supported components are listed in hf_normalizer.h, hf_pre_tokenizer.h, hf_decoder.h and
// bpe_model.h; post-processors TemplateProcessing (single template), ByteLevel (no effect on ids),
// Sequence and null. Load rejects anything else with the JSON path of the unsupported component.
//
// One deliberate difference from the crate: a character with no token, in a model with neither
// unk_token nor byte_fallback, is an INVALID_ARGUMENT error instead of being dropped silently.
//
// Streaming: Decode(id) is the token's text after other tokens (HfDecoder::DecodePiece). Passing
// Decode(id_1..id_n) through a Utf8StreamDecoder gives the text DecodeAll(id_0..id_n) adds after
// DecodeAll(id_0), with one documented difference: where DecodeAll drops the leading space of the
// first token (Metaspace decoder, Strip after Fuse), Decode keeps it — generated text follows a
// prompt, as in vLLM's incremental detokenizer. clean_up_tokenization is not applied to pieces.
//
// Thread-safety: immutable after Load apart from the BPE word cache, which is internally
// synchronized; every method is const and safe to call concurrently.
#ifndef KVSERVE_ENGINE_TEXT_HF_TOKENIZER_H_
#define KVSERVE_ENGINE_TEXT_HF_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/text/tokenizer.h"

namespace kvserve::engine {

class BpeModel;
class HfDecoder;
class HfNormalizer;
class HfPreTokenizer;
class Regex;

// Settings from tokenizer_config.json. Only clean_up_tokenization_spaces changes what HfTokenizer
// does; the rest is for the caller (chat templates, BOS/EOS names). In particular Encode adds
// special tokens from tokenizer.json's post-processor, as the Rust crate does, and does not
// rewrite it from add_bos_token / add_eos_token (transformers' LlamaTokenizerFast does that in
// Python; for the files we ship both agree).
struct HfTokenizerConfig {
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  std::string bos_token;  // "" when absent or null
  std::string eos_token;
  bool clean_up_tokenization_spaces = false;
  // Jinja chat templates by name; a single string is stored as "default".
  std::map<std::string, std::string> chat_templates;
};

class HfTokenizer final : public Tokenizer {
 public:
  // Reads `dir`/tokenizer.json and, when present, `dir`/tokenizer_config.json. Errors name the
  // file and JSON path, e.g. "tokenizer.json: model.merges[3]: ...".
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::string& dir);
  // Same from JSON text; `config_json` may be empty (no tokenizer_config.json).
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(std::string_view tokenizer_json,
                                                               std::string_view config_json);
  ~HfTokenizer() override;

  std::string name() const override;
  int32_t vocab_size() const override { return vocab_size_; }
  // INVALID_ARGUMENT when `text` is not valid UTF-8 (naming the byte offset) or has a character the
  // vocabulary cannot represent (see above).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = true) const override;
  std::string Decode(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;
  std::string DecodeAll(absl::Span<const int32_t> ids, bool skip_special_tokens) const override;

  // Added tokens first, then the model vocabulary. Linear in the number of added tokens: for
  // start-up lookups (BOS/EOS, stop strings), not per token.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocabulary string of `id` (not its decoded text); nullptr when unknown.
  const std::string* IdToToken(int32_t id) const;
  const HfTokenizerConfig& config() const { return config_; }
  // Ids of config().bos_token / eos_token, when set and in the vocabulary.
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

 private:
  struct AddedToken {
    int32_t id;
    std::string content;
    bool special, lstrip, rstrip, single_word, normalized;
  };
  // Byte trie over added-token contents for leftmost-longest matching.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
      int32_t token = -1;  // index into added_ while a token ends here
    };
    std::vector<Node> nodes{1};
    // Child of the root per first byte, -1 for none: most text positions start no token, and
    // this rejects them with one load.
    std::array<int32_t, 256> first = MakeFirst();
    static std::array<int32_t, 256> MakeFirst() {
      std::array<int32_t, 256> a;
      a.fill(-1);
      return a;
    }
    void Insert(std::string_view key, int32_t token);
    // Longest token starting at `pos`: its index and end, or {-1, pos}.
    std::pair<int32_t, size_t> LongestAt(std::string_view text, size_t pos) const;
  };
  // A run of input: text to pre-tokenize or an added token.
  struct Segment {
    std::string_view text;
    int32_t added = -1;  // index into added_, or -1 for text
    size_t offset = 0;   // byte offset in the original input (for Metaspace "first")
  };

  HfTokenizer();
  absl::Status LoadTokenizerJson(const class JsonReader& root);
  absl::Status LoadConfigJson(const class JsonReader& root);
  absl::Status LoadPostProcessor(const class JsonReader& config);
  void SplitAdded(const Trie& trie, std::string_view text, size_t offset,
                  std::vector<Segment>* out) const;
  // Steps 2-3 for one segment between raw added tokens; `offset` is its start in the input.
  absl::Status EncodeText(std::string_view text, size_t offset, std::vector<int32_t>* ids) const;

  std::unique_ptr<HfNormalizer> normalizer_;
  std::unique_ptr<HfPreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<HfDecoder> decoder_;
  std::vector<AddedToken> added_;
  std::vector<int32_t> added_by_id_;  // id -> index into added_, or -1
  Trie raw_trie_;                     // normalized=false tokens
  Trie normalized_trie_;              // normalized=true tokens, contents normalized
  bool has_normalized_added_ = false;
  // Post-processor: for each processor in order, the ids put before and after the sequence.
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> templates_;
  std::vector<std::string> pieces_;  // Decode(id), precomputed
  int32_t vocab_size_ = 0;
  HfTokenizerConfig config_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_HF_TOKENIZER_H_
