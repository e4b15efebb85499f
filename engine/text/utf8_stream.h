// Incremental UTF-8 decoding of detokenized byte pieces.
//
// A token's piece is a run of bytes, not a run of characters: byte-level BPE splits a multi-byte
// character across tokens, and a model can emit bytes that are not UTF-8 at all. Clients receive
// text, so each piece goes through a Utf8StreamDecoder, which emits only complete, well-formed
// characters and turns ill-formed bytes into U+FFFD.
//
//   Utf8StreamDecoder decoder;
//   for (std::string_view piece : pieces) Send(decoder.Push(piece));
//   Send(decoder.Flush());
#ifndef KVSERVE_ENGINE_UTF8_STREAM_H_
#define KVSERVE_ENGINE_UTF8_STREAM_H_

#include <string>
#include <string_view>

namespace kvserve::engine {

// U+FFFD REPLACEMENT CHARACTER, UTF-8 encoded.
inline constexpr std::string_view kUtf8Replacement = "\xEF\xBF\xBD";

// True iff `text` is well-formed UTF-8 (Unicode Table 3-7): no overlong forms, no surrogates
// U+D800..U+DFFF, nothing above U+10FFFF, no stray or missing continuation bytes.
bool IsValidUtf8(std::string_view text);

// Turns a byte stream into valid UTF-8 text deltas. Holds back at most 3 bytes: the start of a
// character that the next bytes can still complete. Ill-formed input becomes U+FFFD following the
// Unicode "maximal subpart" practice (Unicode Standard section 3.9, "U+FFFD Substitution of
// Maximal Subparts"): each maximal subpart of an ill-formed sequence (the longest prefix of a
// well-formed sequence, or else a single byte) becomes one U+FFFD. E.g. "\xE2\x82" then "a" gives
// U+FFFD "a"; "\xED\xA0\x80" (a surrogate) gives three U+FFFD, since no well-formed sequence starts
// "\xED\xA0".
//
// The output does not depend on how the bytes are split into pushes: the concatenation of every
// Push() and the final Flush() is the same as one Push(all bytes) + Flush(). Each returned string
// is itself valid UTF-8 and ends on a character boundary.
//
// Not thread-safe.
class Utf8StreamDecoder {
 public:
  Utf8StreamDecoder() = default;

  // Appends `bytes` and returns the text that is now complete. A character is returned by the push
  // that supplies its last byte; an ill-formed prefix is replaced by the push whose byte proves it
  // can no longer complete.
  std::string Push(std::string_view bytes);

  // End of stream: returns U+FFFD for a held-back incomplete sequence (or "" if none), and resets
  // the decoder so it can decode a new stream.
  std::string Flush();

  // Bytes currently held back, 0..3.
  int num_pending_bytes() const { return num_pending_; }

 private:
  // The held-back bytes are a proper prefix of a well-formed sequence of length expected_length_.
  char pending_[4] = {};
  int num_pending_ = 0;
  int expected_length_ = 0;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_UTF8_STREAM_H_
