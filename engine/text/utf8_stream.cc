#include "engine/text/utf8_stream.h"

#include <cstdint>

namespace kvserve::engine {
namespace {

// Well-formed UTF-8 (Unicode Table 3-7) is decided entirely by the lead byte and the range of the
// second byte; every later byte is 80..BF. The narrowed second-byte ranges are what reject
// overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF
// (F4 90..BF). C0, C1 and F5..FF can never start a sequence.
struct LeadInfo {
  int length;  // 0: not a valid lead byte
  uint8_t second_min;
  uint8_t second_max;
};

constexpr LeadInfo Lead(uint8_t byte) {
  if (byte < 0x80) return {1, 0, 0};
  if (byte < 0xC2) return {0, 0, 0};  // continuation byte, or overlong 2-byte lead
  if (byte < 0xE0) return {2, 0x80, 0xBF};
  if (byte == 0xE0) return {3, 0xA0, 0xBF};
  if (byte == 0xED) return {3, 0x80, 0x9F};
  if (byte < 0xF0) return {3, 0x80, 0xBF};
  if (byte == 0xF0) return {4, 0x90, 0xBF};
  if (byte < 0xF4) return {4, 0x80, 0xBF};
  if (byte == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Whether `byte` may follow the `num_pending` bytes already accepted after `lead`.
bool Continues(uint8_t lead, int num_pending, uint8_t byte) {
  if (num_pending == 1) {
    const LeadInfo info = Lead(lead);
    return byte >= info.second_min && byte <= info.second_max;
  }
  return byte >= 0x80 && byte <= 0xBF;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t lead = static_cast<uint8_t>(text[i]);
    const int length = Lead(lead).length;
    if (length == 0 || text.size() - i < static_cast<size_t>(length)) return false;
    for (int k = 1; k < length; ++k) {
      if (!Continues(lead, k, static_cast<uint8_t>(text[i + k]))) return false;
    }
    i += length;
  }
  return true;
}

std::string Utf8StreamDecoder::Push(std::string_view bytes) {
  std::string out;
  // Ill-formed input can grow (one byte -> three), but token pieces are short and almost always
  // well-formed; size for that case.
  out.reserve(bytes.size() + num_pending_);
  for (const char c : bytes) {
    const uint8_t byte = static_cast<uint8_t>(c);
    if (num_pending_ > 0) {
      if (Continues(static_cast<uint8_t>(pending_[0]), num_pending_, byte)) {
        pending_[num_pending_++] = c;
        if (num_pending_ == expected_length_) {
          out.append(pending_, num_pending_);
          num_pending_ = 0;
        }
        continue;
      }
      // The held-back bytes are a maximal subpart: they were a valid prefix until this byte. The
      // byte itself is not consumed by the failed sequence and starts afresh below.
      out.append(kUtf8Replacement);
      num_pending_ = 0;
    }
    const int length = Lead(byte).length;
    if (length == 1) {
      out.push_back(c);
    } else if (length == 0) {
      out.append(kUtf8Replacement);  // a byte no well-formed sequence starts with
    } else {
      pending_[0] = c;
      num_pending_ = 1;
      expected_length_ = length;
    }
  }
  return out;
}

std::string Utf8StreamDecoder::Flush() {
  if (num_pending_ == 0) return std::string();
  num_pending_ = 0;
  return std::string(kUtf8Replacement);
}

}  // namespace kvserve::engine
