#include "engine/text/utf8_stream.h"

#include <iconv.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/allocation_counter.h"

namespace kvserve::engine {
namespace {

// --- Independent oracles ------------------------------------------------------------------------

// glibc's iconv: a UTF-8 validator that shares no code with the one under test. It rejects
// overlongs, surrogates, > U+10FFFF and truncated sequences.
bool IconvAcceptsUtf8(std::string_view text) {
  iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    ADD_FAILURE() << "iconv_open failed";
    return false;
  }
  std::string in(text);
  std::string out(4 * text.size() + 4, '\0');
  char* in_ptr = in.data();
  size_t in_left = in.size();
  char* out_ptr = out.data();
  size_t out_left = out.size();
  const size_t result = iconv(cd, &in_ptr, &in_left, &out_ptr, &out_left);
  iconv_close(cd);
  return result != static_cast<size_t>(-1) && in_left == 0;
}

bool IsScalarValue(uint32_t cp) { return cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF); }

// Textbook encoder (REQUIRES: IsScalarValue(cp)).
std::string Encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// Maximal-subpart decoding straight from its definition, with no UTF-8 range tables: the set of
// proper prefixes of well-formed sequences is enumerated by encoding every scalar value, and a
// complete sequence is recognized by decode-then-re-encode round trip.
class ReferenceDecoder {
 public:
  ReferenceDecoder() : prefix1_(1u << 8), prefix2_(1u << 16), prefix3_(1u << 24) {
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (!IsScalarValue(cp)) continue;
      const std::string bytes = Encode(cp);
      for (size_t k = 1; k < bytes.size(); ++k) Prefixes(k)[Key(bytes.substr(0, k))] = true;
    }
  }

  // Decodes a whole stream, including the end-of-stream U+FFFD for a truncated tail.
  std::string Decode(std::string_view bytes) const {
    std::string out;
    size_t i = 0;
    while (i < bytes.size()) {
      size_t subpart = 1;
      bool complete = false;
      for (size_t k = 1; k <= 4 && i + k <= bytes.size(); ++k) {
        const std::string_view candidate = bytes.substr(i, k);
        if (IsComplete(candidate)) {
          out.append(candidate);
          i += k;
          complete = true;
          break;
        }
        if (k == 4 || !Prefixes(k)[Key(candidate)]) break;
        subpart = k;
      }
      if (complete) continue;
      out.append(kUtf8Replacement);
      i += subpart;
    }
    return out;
  }

 private:
  static size_t Key(std::string_view bytes) {
    size_t key = 0;
    for (char c : bytes) key = (key << 8) | static_cast<uint8_t>(c);
    return key;
  }

  static bool IsComplete(std::string_view bytes) {
    const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])); };
    uint32_t cp = 0;
    switch (bytes.size()) {
      case 1:
        cp = b(0);
        break;
      case 2:
        cp = (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
        break;
      case 3:
        cp = (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
        break;
      default:
        cp = (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
    }
    return IsScalarValue(cp) && Encode(cp) == bytes;
  }

  std::vector<bool>& Prefixes(size_t k) { return k == 1 ? prefix1_ : k == 2 ? prefix2_ : prefix3_; }
  const std::vector<bool>& Prefixes(size_t k) const {
    return k == 1 ? prefix1_ : k == 2 ? prefix2_ : prefix3_;
  }

  std::vector<bool> prefix1_, prefix2_, prefix3_;
};

const ReferenceDecoder& Reference() {
  static const ReferenceDecoder* const reference = new ReferenceDecoder();
  return *reference;
}

// --- Helpers ------------------------------------------------------------------------------------

std::string Hex(std::string_view bytes) {
  constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (char c : bytes) {
    const uint8_t b = static_cast<uint8_t>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 0xF];
    out += ' ';
  }
  return out;
}

std::string Fffd(int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out.append(kUtf8Replacement);
  return out;
}

// Cuts `text` at `cuts` (sorted byte offsets strictly inside it).
std::vector<std::string> Split(std::string_view text, const std::vector<size_t>& cuts) {
  std::vector<std::string> chunks;
  size_t begin = 0;
  for (size_t cut : cuts) {
    chunks.emplace_back(text.substr(begin, cut - begin));
    begin = cut;
  }
  chunks.emplace_back(text.substr(begin));
  return chunks;
}

// For well-formed `text`: what each push must return, namely the characters whose last byte lies
// in that chunk.
std::vector<std::string> ExpectedDeltas(std::string_view text, const std::vector<size_t>& cuts) {
  std::vector<std::string> deltas;
  size_t emitted = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(text.size());
  for (size_t end : ends) {
    // Back up to the last character boundary at or before `end`.
    size_t boundary = end;
    while (boundary > emitted && boundary < text.size() &&
           (static_cast<uint8_t>(text[boundary]) & 0xC0) == 0x80) {
      --boundary;
    }
    deltas.emplace_back(text.substr(emitted, boundary - emitted));
    emitted = boundary;
  }
  return deltas;
}

// Feeds `chunks` and returns every Push() result followed by the Flush() result.
std::vector<std::string> Feed(const std::vector<std::string>& chunks) {
  Utf8StreamDecoder decoder;
  std::vector<std::string> outputs;
  for (const std::string& chunk : chunks) outputs.push_back(decoder.Push(chunk));
  outputs.push_back(decoder.Flush());
  return outputs;
}

std::string Concat(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) out += part;
  return out;
}

std::vector<std::string> Bytewise(std::string_view bytes) {
  std::vector<std::string> chunks;
  for (char c : bytes) chunks.emplace_back(1, c);
  return chunks;
}

// --- Well-formed input --------------------------------------------------------------------------

TEST(Utf8StreamDecoderTest, AsciiPassesThroughUnchanged) {
  Utf8StreamDecoder decoder;
  EXPECT_EQ(decoder.Push("Hello, world!"), "Hello, world!");
  EXPECT_EQ(decoder.Push(std::string_view("\0\x7F\n", 3)), std::string_view("\0\x7F\n", 3));
  EXPECT_EQ(decoder.Push(""), "");
  EXPECT_EQ(decoder.num_pending_bytes(), 0);
  EXPECT_EQ(decoder.Flush(), "");
}

TEST(Utf8StreamDecoderTest, WholeMultiByteCharactersPassThrough) {
  Utf8StreamDecoder decoder;
  EXPECT_EQ(decoder.Push("h\u00E9llo \u4E16\u754C \U0001F389"),
            "h\u00E9llo \u4E16\u754C \U0001F389");
  EXPECT_EQ(decoder.Flush(), "");
}

TEST(Utf8StreamDecoderTest, SplitCharacterIsEmittedOnceByTheCompletingPush) {
  // Every length, plus the edges of every length class and around the surrogate gap.
  const uint32_t code_points[] = {0x80,   0xE9,   0x7FF,  0x800,   0x20AC,  0xD7FF,
                                  0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF};
  for (uint32_t cp : code_points) {
    const std::string ch = Encode(cp);
    const std::string text = "a" + ch + "b";
    // Every subset of the cut points inside `text`.
    const size_t num_gaps = text.size() - 1;
    for (uint32_t mask = 0; mask < (1u << num_gaps); ++mask) {
      std::vector<size_t> cuts;
      for (size_t gap = 0; gap < num_gaps; ++gap) {
        if (mask & (1u << gap)) cuts.push_back(gap + 1);
      }
      const std::vector<std::string> chunks = Split(text, cuts);
      std::vector<std::string> expected = ExpectedDeltas(text, cuts);
      expected.push_back("");  // Flush
      EXPECT_EQ(Feed(chunks), expected) << "U+" << std::hex << cp << " cut mask " << mask;
      // Exactly one push returns the character, in full.
      int num_with_char = 0;
      for (const std::string& delta : expected)
        num_with_char += delta.find(ch) != std::string::npos;
      EXPECT_EQ(num_with_char, 1);
    }
  }
}

TEST(Utf8StreamDecoderTest, HoldsBackOnlyTheIncompleteTail) {
  Utf8StreamDecoder decoder;
  EXPECT_EQ(decoder.Push("x\xF0\x9F"), "x");
  EXPECT_EQ(decoder.num_pending_bytes(), 2);
  EXPECT_EQ(decoder.Push("\x98"), "");
  EXPECT_EQ(decoder.num_pending_bytes(), 3);
  EXPECT_EQ(decoder.Push("\x80y\xE4"), "\U0001F600y");
  EXPECT_EQ(decoder.num_pending_bytes(), 1);
  EXPECT_EQ(decoder.Push("\xB8\x96"), "\u4E16");
  EXPECT_EQ(decoder.num_pending_bytes(), 0);
}

// --- Ill-formed input ---------------------------------------------------------------------------

struct IllFormedCase {
  std::string bytes;
  std::string expected;
};

// Expected outputs agree with CPython's bytes.decode("utf-8", "replace"), which implements the same
// maximal-subpart practice.
std::vector<IllFormedCase> IllFormedCases() {
  return {
      {"\xFF", Fffd(1)},
      {"\xFE\xFF", Fffd(2)},
      {"\xC0\xAF", Fffd(2)},                           // overlong '/': C0 never starts a sequence
      {"\xC1\xBF", Fffd(2)},                           // overlong U+007F
      {"\xE0\x80\xAF", Fffd(3)},                       // overlong: E0 needs A0..BF next
      {"\xF0\x80\x80\x80", Fffd(4)},                   // overlong: F0 needs 90..BF next
      {"\x80", Fffd(1)},                               // lone continuation
      {"\x80\xBF\x80", Fffd(3)},                       // continuations, one U+FFFD each
      {"\xED\xA0\x80", Fffd(3)},                       // surrogate U+D800
      {"\xED\xBF\xBF", Fffd(3)},                       // surrogate U+DFFF
      {"\xF4\x90\x80\x80", Fffd(4)},                   // U+110000
      {"\xF5\x80\x80\x80", Fffd(4)},                   // F5 never starts a sequence
      {"\xF8\x88\x80\x80\x80", Fffd(5)},               // obsolete 5-byte form
      {std::string("\xE2\x82") + "a", Fffd(1) + "a"},  // truncated 3-byte, then ASCII
      {std::string("\xF0\x9F\x98") + "x", Fffd(1) + "x"},  // truncated 4-byte, then ASCII
      {"\xE2\x82\xE2\x82\xAC", Fffd(1) + "\u20AC"},        // truncated, then a complete char
      {"\xC3\xC3\xA9", Fffd(1) + "\u00E9"},                // truncated 2-byte, then the real one
      {"\xE4\xB8", Fffd(1)},                               // truncated at end of stream: Flush
      {"ok\xF4\x8F\xBF\xBF!", "ok\U0010FFFF!"},            // the highest code point is fine
      // The Unicode Standard's own example for maximal subparts (section 3.9):
      {std::string("a\xF1\x80\x80\xE1\x80\xC2") + "b\x80" + "c\x80\xBF" + "d",
       "a" + Fffd(3) + "b" + Fffd(1) + "c" + Fffd(2) + "d"},
  };
}

TEST(Utf8StreamDecoderTest, ReplacesMaximalSubpartsWithOneReplacementEach) {
  for (const IllFormedCase& c : IllFormedCases()) {
    EXPECT_EQ(Concat(Feed({c.bytes})), c.expected) << "whole: " << Hex(c.bytes);
    EXPECT_EQ(Concat(Feed(Bytewise(c.bytes))), c.expected) << "bytewise: " << Hex(c.bytes);
    EXPECT_EQ(Reference().Decode(c.bytes), c.expected) << "reference: " << Hex(c.bytes);
  }
}

TEST(Utf8StreamDecoderTest, ReplacesAsSoonAsASequenceCannotComplete) {
  Utf8StreamDecoder decoder;
  EXPECT_EQ(decoder.Push("\xF0"), "");
  EXPECT_EQ(decoder.Push("\x9F"), "");
  EXPECT_EQ(decoder.Push("A"), Fffd(1) + "A");
  EXPECT_EQ(decoder.Push("\xED"), "");       // could still be U+D000..U+D7FF
  EXPECT_EQ(decoder.Push("\xA0"), Fffd(2));  // surrogate range: both bytes rejected now
  EXPECT_EQ(decoder.Push("\x80"), Fffd(1));
  EXPECT_EQ(decoder.Push("\xE0\x9F"), Fffd(2));  // E0 9F would be overlong
  EXPECT_EQ(decoder.num_pending_bytes(), 0);
}

TEST(Utf8StreamDecoderTest, FlushReplacesPendingPartialAndResets) {
  for (std::string_view partial : {"\xC3", "\xE4\xB8", "\xF0\x9F\x98"}) {
    Utf8StreamDecoder decoder;
    EXPECT_EQ(decoder.Push(partial), "");
    EXPECT_EQ(decoder.num_pending_bytes(), static_cast<int>(partial.size()));
    EXPECT_EQ(decoder.Flush(), Fffd(1)) << Hex(partial);
    EXPECT_EQ(decoder.num_pending_bytes(), 0);
    EXPECT_EQ(decoder.Flush(), "");
    // A fresh stream: the old partial must not combine with new continuation bytes.
    EXPECT_EQ(decoder.Push(std::string("\x80") + "a"), Fffd(1) + "a");
  }
}

TEST(Utf8StreamDecoderTest, DoesNotAllocateForTokenSizedPieces) {
  // Pieces and outputs of up to 15 bytes fit std::string's inline buffer (libstdc++ and libc++).
  const std::vector<std::string> pieces = {"Hello",        " w\xC3",   "\xA9rld", "\xE4\xB8",
                                           "\x96\xF0\x9F", "\x98\x80", "!"};
  Utf8StreamDecoder decoder;
  size_t total = 0;
  const size_t before = kvserve::testing::NumAllocations();
  for (const std::string& piece : pieces) total += decoder.Push(piece).size();
  total += decoder.Flush().size();
  EXPECT_EQ(kvserve::testing::NumAllocations(), before);
  EXPECT_EQ(total, 20u);
}

// --- IsValidUtf8 --------------------------------------------------------------------------------

TEST(IsValidUtf8Test, AcceptsWellFormedAndRejectsIllFormed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\u00E9\u4E16\U0001F600\U0010FFFF\uD7FF\uE000"));
  EXPECT_TRUE(IsValidUtf8(kUtf8Replacement));
  for (const IllFormedCase& c : IllFormedCases()) {
    EXPECT_EQ(IsValidUtf8(c.bytes), c.expected == c.bytes) << Hex(c.bytes);
  }
}

// --- Exhaustive and randomized ------------------------------------------------------------------

// Bytes at every boundary of the Table 3-7 ranges.
constexpr uint8_t kEdgeBytes[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                  0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE,
                                  0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};

TEST(Utf8StreamDecoderTest, MatchesReferenceOnAllShortEdgeSequences) {
  // All 1- and 2-byte strings, and all 3- and 4-byte strings over the edge bytes; fed whole and
  // byte by byte.
  std::vector<std::string> inputs;
  for (int a = 0; a < 256; ++a) {
    inputs.push_back(std::string(1, static_cast<char>(a)));
    for (int b = 0; b < 256; ++b) inputs.push_back({static_cast<char>(a), static_cast<char>(b)});
  }
  for (uint8_t a : kEdgeBytes) {
    for (uint8_t b : kEdgeBytes) {
      for (uint8_t c : kEdgeBytes) {
        inputs.push_back({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        for (uint8_t d : kEdgeBytes) {
          inputs.push_back({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                            static_cast<char>(d)});
        }
      }
    }
  }
  for (const std::string& input : inputs) {
    const std::string expected = Reference().Decode(input);
    ASSERT_EQ(Concat(Feed({input})), expected) << Hex(input);
    ASSERT_EQ(Concat(Feed(Bytewise(input))), expected) << Hex(input);
    ASSERT_EQ(IsValidUtf8(input), expected == input) << Hex(input);
  }
}

uint32_t RandomScalar(std::mt19937_64& rng) {
  const auto in = [&](uint32_t lo, uint32_t hi) {
    return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
  };
  switch (rng() % 6) {
    case 0:
    case 1:
      return in(0x20, 0x7E);
    case 2:
      return in(0x80, 0x7FF);
    case 3:
      return rng() % 2 ? in(0x800, 0xD7FF) : in(0xE000, 0xFFFF);
    case 4:
      return in(0x10000, 0x10FFFF);
    default: {
      constexpr uint32_t kEdges[] = {0x0,    0x7F,   0x80,   0x7FF,   0x800,
                                     0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF};
      return kEdges[rng() % (sizeof(kEdges) / sizeof(kEdges[0]))];
    }
  }
}

std::vector<size_t> RandomCuts(std::mt19937_64& rng, size_t size) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < size; ++i) {
    if (rng() % 3 == 0) cuts.push_back(i);
  }
  return cuts;
}

TEST(Utf8StreamDecoderTest, RandomValidTextSplitAnywhereRoundTrips) {
  constexpr uint64_t kSeed = 0x5EED0001;
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  std::mt19937_64 rng(kSeed);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int num_chars = static_cast<int>(rng() % 40);
    for (int i = 0; i < num_chars; ++i) text += Encode(RandomScalar(rng));
    const std::vector<size_t> cuts = RandomCuts(rng, text.size());
    const std::vector<std::string> outputs = Feed(Split(text, cuts));
    std::vector<std::string> expected = ExpectedDeltas(text, cuts);
    expected.push_back("");
    ASSERT_EQ(outputs, expected) << "trial " << trial << " text " << Hex(text);
    for (const std::string& out : outputs) {
      ASSERT_TRUE(IconvAcceptsUtf8(out)) << "trial " << trial << " chunk " << Hex(out);
    }
  }
}

TEST(Utf8StreamDecoderTest, RandomBytesMatchReferenceForAnySplit) {
  constexpr uint64_t kSeed = 0x5EED0002;
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  std::mt19937_64 rng(kSeed);
  for (int trial = 0; trial < 2000; ++trial) {
    // Mostly edge bytes and pieces of real characters, so that near-valid sequences are common.
    std::string bytes;
    const int num_pieces = static_cast<int>(rng() % 24);
    for (int i = 0; i < num_pieces; ++i) {
      switch (rng() % 3) {
        case 0:
          bytes += static_cast<char>(kEdgeBytes[rng() % sizeof(kEdgeBytes)]);
          break;
        case 1:
          bytes += static_cast<char>(rng() % 256);
          break;
        default: {
          const std::string ch = Encode(RandomScalar(rng));
          bytes += ch.substr(0, 1 + rng() % ch.size());  // whole or truncated
        }
      }
    }
    const std::string expected = Reference().Decode(bytes);
    const std::vector<std::string> whole = Feed({bytes});
    const std::vector<std::string> split = Feed(Split(bytes, RandomCuts(rng, bytes.size())));
    ASSERT_EQ(Concat(whole), expected) << "trial " << trial << " bytes " << Hex(bytes);
    ASSERT_EQ(Concat(split), expected) << "trial " << trial << " bytes " << Hex(bytes);
    for (const std::string& out : split) {
      ASSERT_TRUE(IconvAcceptsUtf8(out)) << "trial " << trial << " chunk " << Hex(out);
    }
  }
}

}  // namespace
}  // namespace kvserve::engine
