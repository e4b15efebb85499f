// Tokenizer: text <-> token ids.
//
// ByteTokenizer is the byte-level tokenizer of the embedded default model and of checkpoints that
// ship no tokenizer.json: ids [0, 256) are the bytes themselves, and optional BOS/EOS ids sit above
// them. HfTokenizer (engine/text/hf_tokenizer.h) implements tokenizer.json checkpoints.
//
// Thread-safety: all methods are const and safe to call concurrently (gRPC threads tokenize prompts
// while the engine thread decodes).
#ifndef KVSERVE_ENGINE_TOKENIZER_H_
#define KVSERVE_ENGINE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace kvserve::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // A short description for ListModels, e.g. "byte-level (256 bytes + BOS/EOS)".
  virtual std::string name() const = 0;
  // Number of ids the tokenizer can produce (model vocabulary plus added tokens); every id it
  // returns is in [0, vocab_size()).
  virtual int32_t vocab_size() const = 0;
  // Token ids for `text`. With add_special_tokens, the tokenizer's template is applied (e.g. the
  // BOS token first); without it, only the text's own tokens (special-token strings inside the text
  // still become their ids). Errors are INVALID_ARGUMENT and say what in the text cannot be
  // represented; the caller names the field ("prompt").
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                                      bool add_special_tokens = true) const = 0;
  // The bytes of one token as it appears in the middle of a text: what streaming appends after the
  // prompt. May be an incomplete UTF-8 sequence (byte-level pieces, byte-fallback <0xE2>), so pass
  // the pieces through a Utf8StreamDecoder. Special tokens decode to their content ("" when they
  // have none); unknown ids decode to "".
  virtual std::string Decode(int32_t id) const = 0;
  // True iff `id` is a special token (BOS, EOS, chat markers): DecodeAll can skip it.
  virtual bool IsSpecial(int32_t id) const = 0;
  // The text of a whole id sequence, as a standalone text (a leading-space marker on the first
  // token is dropped where the tokenizer's decoder does so). Always valid UTF-8.
  virtual std::string DecodeAll(absl::Span<const int32_t> ids, bool skip_special_tokens) const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  // bos_id / eos_id: -1 for none. They and ids >= 256 decode to "". In a vocabulary where they are
  // below 256 (tiny test models), they shadow those bytes: the byte still encodes to that id.
  ByteTokenizer(int32_t vocab_size, int32_t bos_id, int32_t eos_id);

  std::string name() const override;
  int32_t vocab_size() const override { return vocab_size_; }
  // add_special_tokens: whether the BOS id (if any) comes first.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = true) const override;
  std::string Decode(int32_t id) const override;
  // BOS and EOS are the special tokens.
  bool IsSpecial(int32_t id) const override;
  // The bytes of the non-special ids, with ill-formed UTF-8 replaced by U+FFFD.
  std::string DecodeAll(absl::Span<const int32_t> ids, bool skip_special_tokens) const override;

 private:
  int32_t vocab_size_;
  int32_t bos_id_;
  int32_t eos_id_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TOKENIZER_H_
