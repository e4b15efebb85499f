// Tokenizer: text <-> token ids.
//
// ByteTokenizer is the byte-level tokenizer of the embedded default model and of checkpoints that
// ship no tokenizer.json: ids [0, 256) are the bytes themselves, and optional BOS/EOS ids sit above
// them.
//
// Thread-safety: all methods are const and safe to call concurrently (gRPC threads tokenize prompts
// while the engine thread decodes).
#ifndef KVSERVE_ENGINE_TEXT_TOKENIZER_H_
#define KVSERVE_ENGINE_TEXT_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // A short description for ListModels, e.g. "byte-level (256 bytes + BOS/EOS)".
  virtual std::string name() const = 0;
  // Token ids for `text`, with the BOS token first when the tokenizer uses one. Errors name the
  // "prompt" field (text that cannot be represented in the vocabulary).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const = 0;
  // The raw bytes of one token; may be an incomplete UTF-8 sequence. Special tokens decode to "".
  virtual std::string Decode(int32_t id) const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  // bos_id / eos_id: -1 for none. They and ids >= 256 decode to "". In a vocabulary where they are
  // below 256 (tiny test models), they shadow those bytes: the byte still encodes to that id.
  ByteTokenizer(int32_t vocab_size, int32_t bos_id, int32_t eos_id);

  std::string name() const override;
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const override;
  std::string Decode(int32_t id) const override;

 private:
  int32_t vocab_size_;
  int32_t bos_id_;
  int32_t eos_id_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_TOKENIZER_H_
