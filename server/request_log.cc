#include "server/request_log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/json_string.h"
#include "server/metrics.h"

namespace kvserve::server {

namespace {

void AppendSeconds(std::string& out, std::optional<double> seconds) {
  if (!seconds.has_value()) {
    out += "null";
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6f", *seconds);
  out += buf;
}

// Writes all of `data`, retrying on EINTR and short writes. Errors are ignored: there is nowhere
// left to report them.
void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

RequestLog::RequestLog(int fd, size_t max_queued_lines)
    : fd_(fd), max_queued_lines_(max_queued_lines), writer_([this] { WriterLoop(); }) {}

RequestLog::~RequestLog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
}

std::string RequestLog::FormatLine(std::string_view model, const engine::RequestStats& stats,
                                   absl::Time now) {
  const RequestIntervals iv = IntervalsOf(stats);
  std::string line;
  line.reserve(320);
  absl::StrAppend(&line, "{\"time\":\"",
                  absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", now, absl::UTCTimeZone()),
                  "\",\"event\":\"request_finished\",\"id\":");
  // Request ids come from clients: quotes and control characters are escaped (protobuf has
  // already checked that they are valid UTF-8).
  base::AppendJsonQuoted(stats.request_id, line);
  line += ",\"model\":";
  base::AppendJsonQuoted(model, line);
  absl::StrAppend(&line, ",\"status\":\"", engine::FinishReasonName(stats.finish_reason),
                  "\",\"prompt_tokens\":", stats.num_prompt_tokens,
                  ",\"generation_tokens\":", stats.num_generation_tokens,
                  ",\"cached_prompt_tokens\":", stats.num_cached_prompt_tokens,
                  ",\"queue_time_s\":");
  AppendSeconds(line, iv.queue);
  line += ",\"ttft_s\":";
  AppendSeconds(line, iv.ttft);
  line += ",\"e2e_s\":";
  AppendSeconds(line, iv.e2e);
  line += '}';
  return line;
}

void RequestLog::Record(std::string_view model, const engine::RequestStats& stats) {
  std::string line = FormatLine(model, stats, absl::Now());
  line += '\n';
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= max_queued_lines_) {
    ++num_dropped_;
    return;
  }
  queue_.push_back(std::move(line));
}

void RequestLog::WriterLoop() {
  std::deque<std::string> lines;
  for (;;) {
    int64_t dropped;
    bool stopping;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &RequestLog::HasWorkLocked));
      lines.swap(queue_);
      dropped = std::exchange(num_dropped_, 0);
      stopping = stopping_;
    }
    std::string out;
    if (dropped > 0) {
      absl::StrAppend(&out, "{\"event\":\"request_log_dropped\",\"lines\":", dropped, "}\n");
    }
    for (const std::string& line : lines) out += line;
    lines.clear();
    WriteAll(fd_, out);
    if (stopping) {
      // Lines recorded after the last swap (the engine is stopped by now, so rarely any).
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
    }
  }
}

}  // namespace kvserve::server
