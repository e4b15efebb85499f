// libFuzzer target: StopStringMatcher against a naive reference (scripts/fuzz.sh). Input: up to
// three stop strings and a text, separated by NUL bytes, all made valid UTF-8 first (the matcher's
// precondition). The matcher, fed the text in pieces of 1..3 bytes on character boundaries, must
// emit exactly the text before the earliest-starting stop occurrence (ties: the stop listed first)
// and report that stop; with no occurrence, exactly the whole text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/stop_matcher.h"
#include "engine/text/utf8_stream.h"

namespace {

std::string ValidUtf8(std::string_view bytes) {
  kvserve::engine::Utf8StreamDecoder decoder;
  return decoder.Push(bytes) + decoder.Flush();
}

// Length of the UTF-8 character starting with lead byte `c` (input is valid UTF-8).
size_t CharLength(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> parts;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  while (parts.size() < 4) {
    const size_t nul = input.find('\0');
    parts.push_back(ValidUtf8(input.substr(0, nul)));
    if (nul == std::string_view::npos) break;
    input.remove_prefix(nul + 1);
  }
  if (parts.size() < 2) return 0;
  const std::string text = parts.back();
  parts.pop_back();
  std::vector<std::string> stops;
  for (std::string& s : parts) {
    if (!s.empty()) stops.push_back(std::move(s));
  }

  // Naive reference: for each start position, the first listed stop that occurs there.
  size_t want_end = text.size();
  int want_index = -1;
  for (size_t start = 0; start < text.size() && want_index < 0; ++start) {
    for (size_t i = 0; i < stops.size(); ++i) {
      if (text.compare(start, stops[i].size(), stops[i]) == 0) {
        want_end = start;
        want_index = static_cast<int>(i);
        break;
      }
    }
  }

  kvserve::engine::StopStringMatcher matcher(stops);
  std::string got;
  kvserve::engine::StopStringMatcher::Result r;
  size_t at = 0;
  for (size_t chars = 1; at < text.size() && !r.stopped; chars = chars % 3 + 1) {
    size_t end = at;
    for (size_t c = 0; c < chars && end < text.size(); ++c) end += CharLength(text[end]);
    r = matcher.Push(std::string_view(text).substr(at, end - at));
    got += r.text;
    at = end;
  }
  if (!r.stopped) {
    r = matcher.Flush();
    got += r.text;
  }
  if (got != text.substr(0, want_end)) std::abort();
  if (r.stopped != (want_index >= 0) || r.matched_index != want_index) std::abort();
  return 0;
}
