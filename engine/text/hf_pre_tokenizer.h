// HfPreTokenizer: tokenizer.json's "pre_tokenizer", with the Rust tokenizers crate's semantics.
//
// Supported: ByteLevel (add_prefix_space, use_regex), Split (String or Regex pattern; behavior
// Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous; invert), Digits
// (individual_digits), Metaspace (replacement, prepend_scheme first/always/never or the older
// add_prefix_space, split), Sequence and null. Anything else is rejected by Create with the JSON
// path of the component.
//
// Thread-safety: immutable after Create; Split is const and safe to call concurrently.
#ifndef KVSERVE_ENGINE_TEXT_HF_PRE_TOKENIZER_H_
#define KVSERVE_ENGINE_TEXT_HF_PRE_TOKENIZER_H_

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_reader.h"
#include "engine/text/regex.h"

namespace kvserve::engine {

// One pre-token: a word handed to the model.
struct PreToken {
  std::string_view text;
  // The text is raw bytes that the model reads through the ByteLevel alphabet (the ByteLevel
  // pre-tokenizer's mapping, deferred so that the mapped string is never built).
  bool byte_level = false;
  // The piece starts at offset 0 of the original input (Metaspace prepend_scheme "first").
  bool at_start = false;
};

class HfPreTokenizer {
 public:
  // `config` may be JSON null (the whole normalized segment is one pre-token).
  static absl::StatusOr<std::unique_ptr<HfPreTokenizer>> Create(const JsonReader& config);

  // Splits `pieces` in place. New text (Metaspace replacement, prefix spaces) lives in `arena`,
  // which must outlive the pieces. REQUIRES: each piece is valid UTF-8 and not byte_level.
  absl::Status Split(std::vector<PreToken>* pieces, std::deque<std::string>* arena) const;

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    enum class Kind { kSplit, kByteLevel, kDigits, kMetaspace };
    Kind kind;
    std::unique_ptr<Regex> regex;  // kSplit with a Regex pattern; kByteLevel with use_regex
    std::string literal;           // kSplit with a String pattern; kMetaspace: the replacement
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool flag = false;  // kByteLevel: add_prefix_space; kDigits: individual; kMetaspace: split
    enum class Prepend { kFirst, kAlways, kNever } prepend = Prepend::kAlways;
  };
  using Matches = std::vector<std::pair<size_t, size_t>>;

  static absl::Status Add(const JsonReader& config, std::vector<Step>* steps);
  absl::Status ApplyStep(const Step& step, const PreToken& piece, std::deque<std::string>* arena,
                         std::vector<PreToken>* out) const;
  static void SplitByMatches(const PreToken& piece, const Matches& matches, Behavior behavior,
                             bool invert, std::vector<PreToken>* out);

  std::vector<Step> steps_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_HF_PRE_TOKENIZER_H_
