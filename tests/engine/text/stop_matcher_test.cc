#include "engine/text/stop_matcher.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/text/utf8_stream.h"
#include "gtest/gtest.h"
#include "tests/testing/allocation_counter.h"

namespace kvserve::engine {

// Found by argument-dependent lookup, so they live in Result's namespace, not the anonymous one.
std::ostream& operator<<(std::ostream& os, const StopStringMatcher::Result& r) {
  return os << "{text=\"" << r.text << "\", stopped=" << r.stopped
            << ", matched_index=" << r.matched_index << "}";
}
bool operator==(const StopStringMatcher::Result& a, const StopStringMatcher::Result& b) {
  return a.text == b.text && a.stopped == b.stopped && a.matched_index == b.matched_index;
}

namespace {

using Result = StopStringMatcher::Result;

Result Emit(std::string text) { return Result{std::move(text), false, -1}; }
Result Stop(std::string text, int index) { return Result{std::move(text), true, index}; }

// What one pass over `chunks` produced: every Push() result, then Flush() unless a push stopped.
struct Stream {
  std::vector<Result> results;
  std::string text;  // concatenation of every emitted text
  bool stopped = false;
  int matched_index = -1;
};

Stream Feed(const std::vector<std::string>& stop_strings, const std::vector<std::string>& chunks) {
  StopStringMatcher matcher(stop_strings);
  Stream run;
  const auto record = [&run](Result r) {
    run.text += r.text;
    run.stopped = r.stopped;
    run.matched_index = r.matched_index;
    run.results.push_back(std::move(r));
  };
  for (const std::string& chunk : chunks) {
    record(matcher.Push(chunk));
    if (run.stopped) return run;
  }
  record(matcher.Flush());
  return run;
}

// --- Basics -------------------------------------------------------------------------------------

TEST(StopStringMatcherTest, NoStopStringsPassesTextThrough) {
  StopStringMatcher matcher({});
  EXPECT_EQ(matcher.Push("Hello"), Emit("Hello"));
  EXPECT_EQ(matcher.Push(", world \u4E16"), Emit(", world \u4E16"));
  EXPECT_EQ(matcher.num_held_back_bytes(), 0u);
  EXPECT_EQ(matcher.Flush(), Emit(""));
}

TEST(StopStringMatcherTest, UnrelatedTextIsEmittedImmediately) {
  StopStringMatcher matcher({"END"});
  EXPECT_EQ(matcher.Push("Hello "), Emit("Hello "));
  EXPECT_EQ(matcher.Push("world"), Emit("world"));
  EXPECT_EQ(matcher.num_held_back_bytes(), 0u);
}

TEST(StopStringMatcherTest, StopInsideOneChunk) {
  StopStringMatcher matcher({"END"});
  EXPECT_EQ(matcher.Push("Hello END world"), Stop("Hello ", 0));
}

TEST(StopStringMatcherTest, StopAtStartOfChunk) {
  StopStringMatcher matcher({"END"});
  EXPECT_EQ(matcher.Push("ok"), Emit("ok"));
  EXPECT_EQ(matcher.Push("ENDING"), Stop("", 0));
}

TEST(StopStringMatcherTest, StopSplitAcrossTwoChunks) {
  StopStringMatcher matcher({"END"});
  EXPECT_EQ(matcher.Push("Hello EN"), Emit("Hello "));
  EXPECT_EQ(matcher.num_held_back_bytes(), 2u);
  EXPECT_EQ(matcher.Push("D and more"), Stop("", 0));
}

TEST(StopStringMatcherTest, StopSplitAcrossThreeChunks) {
  StopStringMatcher matcher({"<|end|>"});
  EXPECT_EQ(matcher.Push("answer<|e"), Emit("answer"));
  EXPECT_EQ(matcher.Push("nd"), Emit(""));
  EXPECT_EQ(matcher.num_held_back_bytes(), 5u);
  EXPECT_EQ(matcher.Push("|>trailing"), Stop("", 0));
}

TEST(StopStringMatcherTest, NearMissPrefixIsReleasedOnceItDiverges) {
  StopStringMatcher matcher({"abc"});
  EXPECT_EQ(matcher.Push("xab"), Emit("x"));
  EXPECT_EQ(matcher.num_held_back_bytes(), 2u);
  EXPECT_EQ(matcher.Push("d"), Emit("abd"));
  EXPECT_EQ(matcher.num_held_back_bytes(), 0u);
  EXPECT_EQ(matcher.Push("ab"), Emit(""));
  EXPECT_EQ(matcher.Push("abc"), Stop("ab", 0));
}

TEST(StopStringMatcherTest, HoldsTheLongestSuffixThatCouldStartAStop) {
  // "aab": after "aaa" only the last "aa" can still start it.
  StopStringMatcher matcher({"aab"});
  EXPECT_EQ(matcher.Push("aaa"), Emit("a"));
  EXPECT_EQ(matcher.num_held_back_bytes(), 2u);
  EXPECT_EQ(matcher.Push("b"), Stop("", 0));  // the stop starts at the second 'a'
}

TEST(StopStringMatcherTest, FlushReleasesHeldBackText) {
  StopStringMatcher matcher({"abc", "xyz"});
  EXPECT_EQ(matcher.Push("12xy"), Emit("12"));
  EXPECT_EQ(matcher.Flush(), Emit("xy"));
}

TEST(StopStringMatcherTest, FlushWithNothingHeldBackIsEmpty) {
  StopStringMatcher matcher({"abc"});
  EXPECT_EQ(matcher.Push("hello"), Emit("hello"));
  EXPECT_EQ(matcher.Flush(), Emit(""));
}

// --- Several stop strings -----------------------------------------------------------------------

TEST(StopStringMatcherTest, ReportsWhichStopStringMatched) {
  EXPECT_EQ(StopStringMatcher({"foo", "bar"}).Push("xbar foo"), Stop("x", 1));
  EXPECT_EQ(StopStringMatcher({"foo", "bar"}).Push("xfoo bar"), Stop("x", 0));
}

TEST(StopStringMatcherTest, HoldsBackForAnyStopStringPrefix) {
  StopStringMatcher matcher({"foo", "bar"});
  EXPECT_EQ(matcher.Push("1f"), Emit("1"));
  EXPECT_EQ(matcher.Push("b"), Emit("f"));  // "fb" is no prefix; "b" is
  EXPECT_EQ(matcher.Push("a"), Emit(""));
  EXPECT_EQ(matcher.Push("r"), Stop("", 1));
}

TEST(StopStringMatcherTest, EarliestStartWinsEvenIfItCompletesLater) {
  // After "abc", "bc" is complete but "abcd" (starting earlier) is still possible: wait.
  StopStringMatcher matcher({"abcd", "bc"});
  EXPECT_EQ(matcher.Push("xabc"), Emit("x"));
  EXPECT_EQ(matcher.Push("d"), Stop("", 0));

  StopStringMatcher diverges({"abcd", "bc"});
  EXPECT_EQ(diverges.Push("xabc"), Emit("x"));
  EXPECT_EQ(diverges.Push("e"), Stop("a", 1));
}

TEST(StopStringMatcherTest, EqualStartsPreferTheStopListedFirst) {
  // Listed first and complete: stop at once, no waiting for the longer one.
  StopStringMatcher short_first({"\n", "\n\n"});
  EXPECT_EQ(short_first.Push("a\n"), Stop("a", 0));

  // The longer stop is listed first, so a lone "\n" must wait to see whether it grows.
  StopStringMatcher long_first({"\n\n", "\n"});
  EXPECT_EQ(long_first.Push("a\n"), Emit("a"));
  EXPECT_EQ(long_first.Push("\n"), Stop("", 0));

  StopStringMatcher long_first_no_repeat({"\n\n", "\n"});
  EXPECT_EQ(long_first_no_repeat.Push("a\n"), Emit("a"));
  EXPECT_EQ(long_first_no_repeat.Push("b"), Stop("", 1));
}

TEST(StopStringMatcherTest, FlushReportsAStopThatWasWaitingOnALongerCandidate) {
  StopStringMatcher matcher({"abcd", "bc"});
  EXPECT_EQ(matcher.Push("xabc"), Emit("x"));
  EXPECT_EQ(matcher.Flush(), Stop("a", 1));
}

// --- UTF-8 --------------------------------------------------------------------------------------

TEST(StopStringMatcherTest, MultiByteStopStringsSplitAtCharacterBoundaries) {
  StopStringMatcher matcher({"\u3002", "\u4E16\u754C"});                // "。", "世界"
  EXPECT_EQ(matcher.Push("\u4F60\u597D\u4E16"), Emit("\u4F60\u597D"));  // "你好" + held "世"
  EXPECT_EQ(matcher.num_held_back_bytes(), 3u);
  EXPECT_EQ(matcher.Push("\u4EBA"), Emit("\u4E16\u4EBA"));  // "世人": released
  EXPECT_EQ(matcher.Push("\u4E16"), Emit(""));
  EXPECT_EQ(matcher.Push("\u754C\u3002"), Stop("", 1));
}

TEST(StopStringMatcherTest, SingleCharacterMultiByteStop) {
  StopStringMatcher matcher({"\u3002"});
  EXPECT_EQ(matcher.Push("\u597D"), Emit("\u597D"));
  EXPECT_EQ(matcher.Push("\u3002\u597D"), Stop("", 0));
}

TEST(StopStringMatcherTest, SharedLeadBytesDoNotCauseFalseMatches) {
  // U+00E9 (C3 A9) and U+00E8 (C3 A8) share their first byte; text arrives as whole characters.
  StopStringMatcher matcher({"\u00E9!"});
  EXPECT_EQ(matcher.Push("caf\u00E8"), Emit("caf\u00E8"));
  EXPECT_EQ(matcher.Push("\u00E9"), Emit(""));
  EXPECT_EQ(matcher.Push("?"), Emit("\u00E9?"));
  EXPECT_EQ(matcher.Flush(), Emit(""));
}

TEST(StopStringMatcherTest, DoesNotAllocateForTokenSizedPiecesOnceWarm) {
  // Results of up to 15 bytes fit std::string's inline buffer; the held-back buffer keeps its
  // capacity. The first pass warms that buffer up, the second must not allocate.
  // Near misses of both stops, so text is held back and released, but never stopped.
  const std::vector<std::string> pieces = {"The", " <|e", "n", "d", "!", " <|", "eo", "x", "."};
  StopStringMatcher matcher({"<|end|>", "<|eot|>"});
  for (const std::string& piece : pieces) matcher.Push(piece);
  const size_t before = kvserve::testing::NumAllocations();
  size_t total = 0;
  for (const std::string& piece : pieces) total += matcher.Push(piece).text.size();
  total += matcher.Flush().text.size();
  EXPECT_EQ(kvserve::testing::NumAllocations(), before);
  EXPECT_EQ(total, 17u);  // the whole second pass came out, nothing stuck
}

// --- Contract violations ------------------------------------------------------------------------

TEST(StopStringMatcherDeathTest, RejectsEmptyStopString) {
  EXPECT_DEATH(StopStringMatcher({"ok", ""}), "stop string 1 is empty");
}

TEST(StopStringMatcherDeathTest, RejectsInvalidUtf8StopString) {
  EXPECT_DEATH(StopStringMatcher({"\xE4\xB8"}), "stop string 0 is not valid UTF-8");
}

TEST(StopStringMatcherTest, CallsAfterAStopEmitNothingAndRepeatTheStop) {
  StopStringMatcher matcher({"x", "END"});
  EXPECT_EQ(matcher.Push("abEND"), Stop("ab", 1));
  EXPECT_EQ(matcher.Push("more text"), Stop("", 1));
  EXPECT_EQ(matcher.Flush(), Stop("", 1));
  EXPECT_EQ(matcher.num_held_back_bytes(), 0u);
}

// --- Randomized against an oracle ---------------------------------------------------------------

// The contract on the whole text: the stop is the occurrence with the smallest start, ties to the
// lowest index.
struct Expected {
  size_t end;  // length of the text to emit
  int matched_index;
};

Expected Oracle(const std::vector<std::string>& stops, std::string_view text) {
  Expected best{text.size(), -1};
  for (size_t i = 0; i < stops.size(); ++i) {
    const size_t pos = text.find(stops[i]);
    if (pos != std::string_view::npos && (best.matched_index < 0 || pos < best.end)) {
      best = {pos, static_cast<int>(i)};
    }
  }
  return best;
}

// The longest suffix of `text` that is a proper prefix of some stop string.
size_t OracleHeldBack(const std::vector<std::string>& stops, std::string_view text) {
  for (size_t start = 0; start < text.size(); ++start) {
    const std::string_view suffix = text.substr(start);
    for (const std::string& stop : stops) {
      if (stop.size() > suffix.size() &&
          std::string_view(stop).substr(0, suffix.size()) == suffix) {
        return suffix.size();
      }
    }
  }
  return 0;
}

TEST(StopStringMatcherTest, RandomStreamsMatchOracleForAnyChunking) {
  constexpr uint64_t kSeed = 0x5709;
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  std::mt19937_64 rng(kSeed);
  // Few symbols, so that matches, near misses and overlaps are all common. Mixed byte widths.
  const std::vector<std::string> alphabet = {"a", "b", "\u00E9", "\u4E16", "\u3002", "\U0001F600"};
  const auto random_string = [&](size_t max_chars, std::vector<size_t>* boundaries) {
    std::string s;
    const size_t num_chars = 1 + rng() % max_chars;
    for (size_t i = 0; i < num_chars; ++i) {
      s += alphabet[rng() % alphabet.size()];
      if (boundaries != nullptr) boundaries->push_back(s.size());
    }
    return s;
  };
  int num_stopped = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    const size_t num_stops = rng() % 4;  // including none
    size_t longest_stop = 0;
    for (size_t i = 0; i < num_stops; ++i) {
      stops.push_back(random_string(4, nullptr));
      longest_stop = std::max(longest_stop, stops.back().size());
    }
    std::vector<size_t> boundaries;
    const std::string text = random_string(30, &boundaries);
    // Cut at random character boundaries.
    std::vector<std::string> chunks;
    size_t begin = 0;
    for (size_t boundary : boundaries) {
      if (boundary == text.size() || rng() % 3 == 0) {
        chunks.push_back(text.substr(begin, boundary - begin));
        begin = boundary;
      }
    }
    const Expected expected = Oracle(stops, text);
    const Stream run = Feed(stops, chunks);
    std::string trace = absl::StrCat("trial ", trial, " text \"", text, "\" stops");
    for (const std::string& stop : stops) absl::StrAppend(&trace, " \"", stop, "\"");
    SCOPED_TRACE(trace);

    ASSERT_EQ(run.text, text.substr(0, expected.end));
    ASSERT_EQ(run.stopped, expected.matched_index >= 0);
    ASSERT_EQ(run.matched_index, expected.matched_index);
    num_stopped += run.stopped;

    // Per push: valid UTF-8 out, and exactly the longest possible-stop-prefix suffix held back.
    StopStringMatcher matcher(stops);
    std::string consumed;
    for (const std::string& chunk : chunks) {
      consumed += chunk;
      const Result r = matcher.Push(chunk);
      ASSERT_TRUE(IsValidUtf8(r.text)) << r;
      if (r.stopped) break;
      ASSERT_EQ(matcher.num_held_back_bytes(), OracleHeldBack(stops, consumed)) << consumed;
      ASSERT_LT(matcher.num_held_back_bytes(), std::max<size_t>(1, longest_stop));
    }
  }
  // The generator must exercise both outcomes.
  EXPECT_GT(num_stopped, 500);
  EXPECT_LT(num_stopped, 2500);
}

}  // namespace
}  // namespace kvserve::engine
