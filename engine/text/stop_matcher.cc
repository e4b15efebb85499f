#include "engine/text/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "base/logging.h"
#include "engine/text/utf8_stream.h"

namespace kvserve::engine {

// Design note. pending_ is the text not yet emitted; it always starts where a stop string could
// still begin, so it stays shorter than the longest stop string plus one push. Each push re-scans
// all of it, which is cheap at that size and keeps the logic to two questions:
//   1. Where is the earliest complete match (ties: first listed)?
//   2. Could a stop string that starts at or before that match still complete with more text?
//      That is, is some suffix of pending_ a proper prefix of a stop string that would win?
// If (1) exists and (2) does not, stop. Otherwise emit everything before the earliest suffix that
// could still start a stop string. Waiting in case (2) is what makes the result independent of how
// the stream is chunked.

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings)
    : stop_strings_(std::move(stop_strings)) {
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    KV_CHECK(!stop_strings_[i].empty()) << "stop string " << i << " is empty";
    KV_CHECK(IsValidUtf8(stop_strings_[i])) << "stop string " << i << " is not valid UTF-8";
    max_stop_size_ = std::max(max_stop_size_, stop_strings_[i].size());
  }
  pending_.reserve(max_stop_size_);
}

StopStringMatcher::Result StopStringMatcher::Push(std::string_view text) {
  if (stopped_) return Result{std::string(), true, matched_index_};
  if (stop_strings_.empty()) return Result{std::string(text)};
  pending_.append(text);
  return Settle(/*at_end=*/false);
}

StopStringMatcher::Result StopStringMatcher::Flush() {
  if (stopped_) return Result{std::string(), true, matched_index_};
  return Settle(/*at_end=*/true);
}

StopStringMatcher::Result StopStringMatcher::Settle(bool at_end) {
  const std::string_view pending = pending_;

  size_t match_pos = std::string_view::npos;
  int match_index = -1;
  for (size_t i = 0; i < stop_strings_.size(); ++i) {
    const size_t pos = pending.find(stop_strings_[i]);
    if (pos < match_pos) {  // strict: on equal starts the first listed keeps the match
      match_pos = pos;
      match_index = static_cast<int>(i);
    }
  }
  const bool has_match = match_index >= 0;

  // Earliest start of a suffix that is a proper prefix of a stop string that could still win.
  // Only the last max_stop_size_ - 1 bytes can start one.
  size_t hold_from = pending.size();
  if (!at_end) {
    const size_t first = pending.size() >= max_stop_size_ ? pending.size() - max_stop_size_ + 1 : 0;
    for (size_t start = first; start < pending.size() && hold_from == pending.size(); ++start) {
      if (has_match && start > match_pos) break;  // would start after the match: cannot win
      const std::string_view suffix = pending.substr(start);
      for (size_t i = 0; i < stop_strings_.size(); ++i) {
        const std::string_view stop = stop_strings_[i];
        const bool wins = !has_match || start < match_pos || static_cast<int>(i) < match_index;
        if (wins && stop.size() > suffix.size() && stop.substr(0, suffix.size()) == suffix) {
          hold_from = start;
          break;
        }
      }
    }
  }

  Result result;
  if (has_match && hold_from == pending.size()) {
    result.text.assign(pending.substr(0, match_pos));
    result.stopped = true;
    result.matched_index = match_index;
    stopped_ = true;
    matched_index_ = match_index;
    pending_.clear();
    return result;
  }
  result.text.assign(pending.substr(0, hold_from));
  pending_.erase(0, hold_from);
  return result;
}

}  // namespace kvserve::engine
