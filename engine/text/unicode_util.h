// Small UTF-8 and Unicode-property helpers shared by the tokenizer components. The properties
// follow Rust's `char` methods, which the Hugging Face tokenizers crate uses: is_whitespace is the
// White_Space property, is_numeric is general category N (Nd, Nl, No), is_alphanumeric is
// Alphabetic or N.
//
// REQUIRES (all): text is valid UTF-8. Thread-safe (pure functions).
#ifndef KVSERVE_ENGINE_TEXT_UNICODE_UTIL_H_
#define KVSERVE_ENGINE_TEXT_UNICODE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvserve::engine::text_internal {

// Length of the UTF-8 sequence whose first byte is `lead`.
inline size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// The code point starting at byte `i`; sets *len to its byte length.
uint32_t DecodeUtf8(std::string_view text, size_t i, size_t* len);
// The code point ending at byte `end` (exclusive); sets *len.
uint32_t DecodeUtf8Before(std::string_view text, size_t end, size_t* len);
void AppendUtf8(uint32_t code_point, std::string* out);

bool IsWhitespace(uint32_t c);
bool IsNumeric(uint32_t c);
bool IsAlphanumeric(uint32_t c);

}  // namespace kvserve::engine::text_internal

#endif  // KVSERVE_ENGINE_TEXT_UNICODE_UTIL_H_
