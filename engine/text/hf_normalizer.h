// HfNormalizer: tokenizer.json's "normalizer", with the Rust tokenizers crate's semantics.
//
// Supported: NFC, NFD, NFKC, NFKD (ICU), Prepend, Replace (String or Regex pattern), Sequence and
// null. Anything else is rejected by Create with the JSON path of the component.
//
// Thread-safety: immutable after Create; Normalize is const and safe to call concurrently.
#ifndef KVSERVE_ENGINE_TEXT_HF_NORMALIZER_H_
#define KVSERVE_ENGINE_TEXT_HF_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_reader.h"
#include "engine/text/regex.h"

namespace kvserve::engine {

class HfNormalizer {
 public:
  // `config` may be JSON null (no normalization).
  static absl::StatusOr<std::unique_ptr<HfNormalizer>> Create(const JsonReader& config);

  bool empty() const { return steps_.empty(); }
  // The normalized form of `text`. REQUIRES: `text` is valid UTF-8.
  absl::StatusOr<std::string> Normalize(std::string_view text) const;

 private:
  struct Step {
    enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kPrepend, kReplace };
    Kind kind;
    std::string text;              // kPrepend: the prefix; kReplace: the literal pattern
    std::string content;           // kReplace: the replacement
    std::unique_ptr<Regex> regex;  // kReplace with a Regex pattern
  };
  static absl::Status Add(const JsonReader& config, std::vector<Step>* steps);

  std::vector<Step> steps_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_HF_NORMALIZER_H_
