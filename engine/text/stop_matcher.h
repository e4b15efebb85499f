// Stop strings over streamed text.
//
// Generated text reaches the client in deltas, and a stop string can straddle several of them. A
// StopStringMatcher sits between the UTF-8 decoder and the client: it passes text through, holds
// back any tail that could still turn into a stop string, and cuts the stream right before the
// first stop string, so no part of a stop string is ever emitted.
//
//   StopStringMatcher matcher(request.stop);
//   for (...) {
//     StopStringMatcher::Result r = matcher.Push(decoder.Push(piece));
//     Send(r.text);
//     if (r.stopped) return Finish(FinishReason::kStop);
//   }
//   StopStringMatcher::Result r = matcher.Flush();   // max tokens / end of sequence
//   Send(r.text);
//   Finish(r.stopped ? FinishReason::kStop : FinishReason::kLength);
#ifndef KVSERVE_ENGINE_TEXT_STOP_MATCHER_H_
#define KVSERVE_ENGINE_TEXT_STOP_MATCHER_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kvserve::engine {

// Finds stop strings in streamed text, holding back text that might be the start of a stop string
// so that a stop string is never partly emitted.
//
// Which match wins: the occurrence that starts earliest in the whole stream; among occurrences
// starting at the same byte, the stop string listed first. The outcome depends only on the
// concatenated text, never on how it was split into pushes. Keeping that promise sometimes means
// waiting: with stops {"abcd", "bc"}, after "abc" the "bc" is complete but "abcd" could still match
// at an earlier start, so nothing is emitted until the next push (or Flush) decides.
//
// Held back after each push that does not stop: the longest suffix of the text so far that is a
// proper prefix of some stop string (always shorter than the longest stop string). Because stop
// strings and text are valid UTF-8, that suffix starts on a character boundary, so every emitted
// piece is valid UTF-8.
//
// Not thread-safe.
class StopStringMatcher {
 public:
  // REQUIRES: each stop string is non-empty and valid UTF-8 (checked; violations abort). An empty
  // list is allowed and makes Push() a passthrough.
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Result {
    std::string text;  // safe to emit now
    // A stop string matched; `text` ends right before it. The stream is over: the text from the
    // stop string on is dropped, and later calls change nothing (see below).
    bool stopped = false;
    int matched_index = -1;  // index into stop_strings when stopped, else -1
  };

  // `text` is the next piece of the stream. REQUIRES: valid UTF-8.
  //
  // Once a result has stopped, further Push() and Flush() calls are harmless: they ignore their
  // input and return the same stop with empty text, so a caller that drains its buffers
  // unconditionally at the end cannot leak text from past the stop.
  Result Push(std::string_view text);

  // End of generation: returns everything still held back, after which nothing is. This can still
  // be a stop: if the held text contains a complete stop string that was waiting on a candidate
  // that would have won (see above), the text is cut before it and stopped = true.
  Result Flush();

  // Bytes currently held back.
  size_t num_held_back_bytes() const { return pending_.size(); }

 private:
  // Decides what of pending_ is settled, given that more text may follow (`at_end` false) or not.
  Result Settle(bool at_end);

  std::vector<std::string> stop_strings_;
  size_t max_stop_size_ = 0;
  // Text received but not yet emitted. Its capacity is reused across pushes.
  std::string pending_;
  bool stopped_ = false;
  int matched_index_ = -1;  // valid once stopped_
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_TEXT_STOP_MATCHER_H_
