#include "server/protobuf_logging.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <string>

#include "absl/strings/ascii.h"
#include "base/logging.h"
#include "google/protobuf/stubs/logging.h"

namespace kvserve::server {

namespace {

namespace pb = ::google::protobuf;

// Lines seen per libprotobuf severity (INFO, WARNING, ERROR, FATAL, DFATAL).
std::array<std::atomic<int64_t>, 5> num_lines;

base::LogSeverity SeverityOf(pb::LogLevel level) {
  switch (level) {
    case pb::LOGLEVEL_INFO:
      return base::LogSeverity::kInfo;
    case pb::LOGLEVEL_WARNING:
      return base::LogSeverity::kWarning;
    case pb::LOGLEVEL_ERROR:
      return base::LogSeverity::kError;
    case pb::LOGLEVEL_FATAL:
      return base::LogSeverity::kFatal;
  }
  return base::LogSeverity::kError;  // LOGLEVEL_DFATAL: ERROR in release builds of libprotobuf
}

void HandleProtobufLog(pb::LogLevel level, const char* filename, int line,
                       const std::string& message) {
  const base::LogSeverity severity = SeverityOf(level);
  const size_t slot = std::min<size_t>(static_cast<size_t>(level), num_lines.size() - 1);
  const int64_t n = num_lines[slot].fetch_add(1) + 1;
  // libprotobuf aborts after a FATAL line itself; it is never thinned out.
  if (severity != base::LogSeverity::kFatal && !IsLoggedOccurrence(n)) return;
  if (severity < base::MinLogSeverity()) return;
  base::LogMessage(filename, line, severity).stream()
      << "libprotobuf: " << absl::StripTrailingAsciiWhitespace(message) << " (line " << n
      << " of this severity; only the 1st, 2nd, "
      << "4th, 8th, ... are logged)";
}

}  // namespace

bool IsLoggedOccurrence(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

void RouteProtobufLogging() {
  static std::once_flag once;
  std::call_once(once, [] { pb::SetLogHandler(&HandleProtobufLog); });
}

}  // namespace kvserve::server
