#include "engine/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/utf8_stream.h"

namespace kvserve::engine {

ByteTokenizer::ByteTokenizer(int32_t vocab_size, int32_t bos_id, int32_t eos_id)
    : vocab_size_(vocab_size), bos_id_(bos_id), eos_id_(eos_id) {}

std::string ByteTokenizer::name() const {
  return absl::StrCat("byte-level (ids 0-255 are bytes",
                      bos_id_ >= 0 ? absl::StrCat(", BOS ", bos_id_) : "",
                      eos_id_ >= 0 ? absl::StrCat(", EOS ", eos_id_) : "", ")");
}

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(std::string_view text,
                                                           bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 1);
  if (add_special_tokens && bos_id_ >= 0) ids.push_back(bos_id_);
  for (size_t i = 0; i < text.size(); ++i) {
    const int32_t byte = static_cast<unsigned char>(text[i]);
    if (byte >= vocab_size_) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "prompt: byte 0x%02X at offset %d has no token in this model's %d-token byte vocabulary",
          byte, i, vocab_size_));
    }
    ids.push_back(byte);
  }
  return ids;
}

std::string ByteTokenizer::Decode(int32_t id) const {
  if (id < 0 || id >= 256 || id >= vocab_size_ || id == bos_id_ || id == eos_id_) return "";
  return std::string(1, static_cast<char>(id));
}

bool ByteTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && (id == bos_id_ || id == eos_id_);
}

std::string ByteTokenizer::DecodeAll(absl::Span<const int32_t> ids,
                                     bool /*skip_special_tokens*/) const {
  // Special tokens have no text here, so skipping them or not gives the same bytes.
  std::string bytes;
  for (int32_t id : ids) bytes += Decode(id);
  Utf8StreamDecoder decoder;
  std::string text = decoder.Push(bytes);
  text += decoder.Flush();
  return text;
}

}  // namespace kvserve::engine
