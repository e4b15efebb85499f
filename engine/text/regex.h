// Regex: a PCRE2 pattern from a tokenizer.json, compiled once (UTF + UCP, JIT) and matched from
// many threads.
//
// tokenizer.json patterns are written for Oniguruma (the Rust tokenizers crate's engine). PCRE2 in
// UTF+UCP mode reads the constructs these files use — \p{L}, \p{N}, \s, (?i:...), (?!...) — the
// same way, so patterns are run as written rather than translated.
//
// Thread-safety: the compiled pattern is immutable; FindAll is const and safe to call concurrently
// (each thread uses its own match data and JIT stack).
#ifndef KVSERVE_ENGINE_TEXT_REGEX_H_
#define KVSERVE_ENGINE_TEXT_REGEX_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_reader.h"

namespace kvserve::engine {

class Regex {
 public:
  // INVALID_ARGUMENT with PCRE2's message and offset when `pattern` does not compile.
  static absl::StatusOr<std::unique_ptr<Regex>> Create(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the byte ranges [begin, end) of the successive non-overlapping matches in `text`,
  // scanning left to right; after an empty match the scan moves on by one character (Oniguruma's
  // find_iter does the same). REQUIRES: `text` is valid UTF-8.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

 private:
  explicit Regex(void* code) : code_(code) {}
  void* code_;  // pcre2_code_8*, kept opaque so callers need not include pcre2.h
};

// A tokenizer.json pattern, {"String": literal} or {"Regex": source} (Split pre-tokenizers,
// Replace normalizers and decoders): sets *literal or *regex. Errors name the JSON path.
absl::Status ReadPattern(const JsonReader& pattern, std::string* literal,
                         std::unique_ptr<Regex>* regex);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_REGEX_H_
