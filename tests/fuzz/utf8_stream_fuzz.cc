// libFuzzer target: Utf8StreamDecoder (scripts/fuzz.sh). The first byte picks how the rest is cut
// into pushes. Checks the header's promises: every piece is valid UTF-8, and the stream's output
// does not depend on how the bytes were split (one Push of everything is the oracle).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/text/utf8_stream.h"

using kvserve::engine::IsValidUtf8;
using kvserve::engine::Utf8StreamDecoder;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const unsigned cut = data[0] % 5 + 1;  // push lengths cycle through 1..cut
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  Utf8StreamDecoder whole;
  const std::string expected = whole.Push(bytes) + whole.Flush();

  Utf8StreamDecoder pieces;
  std::string got;
  size_t at = 0;
  for (unsigned n = 1; at < bytes.size(); n = n % cut + 1) {
    const std::string piece = pieces.Push(bytes.substr(at, n));
    if (!IsValidUtf8(piece)) std::abort();
    if (pieces.num_pending_bytes() < 0 || pieces.num_pending_bytes() > 3) std::abort();
    got += piece;
    at += n;
  }
  got += pieces.Flush();
  if (got != expected || !IsValidUtf8(got)) std::abort();
  return 0;
}
