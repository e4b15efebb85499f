// HfDecoder: tokenizer.json's "decoder", with the Rust tokenizers crate's semantics.
//
// Supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace (String or Regex pattern),
// Sequence and null (tokens joined with " ", as the crate does). Anything else is rejected by
// Create with the JSON path of the component.
//
// Two entry points:
//  - DecodeTokens: the crate's Decoder::decode — every step's decode_chain over the whole token
//    list, then concatenation. Position matters: Metaspace drops the replacement character in the
//    first token, and a Strip after a Fuse trims the start of the whole text.
//  - DecodePiece: one token as it appears after other tokens (streaming). Metaspace turns the
//    replacement into ' '; a Strip that acts on fused text (after Fuse or ByteLevel) is skipped;
//    byte tokens (<0xXX>, ByteLevel characters) yield their raw byte, possibly part of a UTF-8
//    sequence completed by the next pieces.
//
// Thread-safety: immutable after Create; both methods are const and safe to call concurrently.
#ifndef KVSERVE_ENGINE_TEXT_HF_DECODER_H_
#define KVSERVE_ENGINE_TEXT_HF_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_reader.h"
#include "engine/text/regex.h"

namespace kvserve::engine {

class HfDecoder {
 public:
  // `config` may be JSON null.
  static absl::StatusOr<std::unique_ptr<HfDecoder>> Create(const JsonReader& config);

  // Valid UTF-8 when every token is (ByteLevel and ByteFallback replace bad bytes by U+FFFD).
  std::string DecodeTokens(std::vector<std::string> tokens) const;
  std::string DecodePiece(std::string token) const;

 private:
  struct Step {
    enum class Kind { kByteLevel, kMetaspace, kByteFallback, kFuse, kStrip, kReplace };
    Kind kind;
    std::string text;     // kMetaspace: replacement; kStrip: content; kReplace: literal pattern
    std::string content;  // kReplace: replacement
    std::unique_ptr<Regex> regex;
    bool drop_first = false;  // kMetaspace: prepend_scheme != never
    int start = 0, stop = 0;  // kStrip
  };
  static absl::Status Add(const JsonReader& config, std::vector<Step>* steps);

  bool present_ = false;
  std::vector<Step> steps_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_HF_DECODER_H_
