// Minimal logging and invariant checks (Abseil 20220623 has no absl/log).
//
//   KV_LOG(INFO) << "listening on " << address;
//   KV_CHECK(block < num_blocks_) << "block id out of range: " << block;
//
// KV_CHECK is always on, in every build type: a broken invariant aborts with file:line and the
// message rather than corrupting a cache. Thread-safe: each message is written with one write(2).
#ifndef KVSERVE_BASE_LOGGING_H_
#define KVSERVE_BASE_LOGGING_H_

#include <sstream>
#include <string_view>

namespace kvserve::base {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

// Messages below this severity are dropped. Default kInfo. Safe to call from any thread.
void SetMinLogSeverity(LogSeverity severity);
LogSeverity MinLogSeverity();
// Parses "debug", "info", "warning", "error" (case-sensitive). Returns false on anything else.
bool ParseLogSeverity(std::string_view text, LogSeverity* out);

// One log line; the destructor writes it (and aborts for kFatal).
class LogMessage {
 public:
  LogMessage(const char* file, int line, LogSeverity severity);
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Turns `stream << ...` into a void expression so it can sit on one side of a ternary.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace kvserve::base

#define KV_LOG_SEVERITY_DEBUG ::kvserve::base::LogSeverity::kDebug
#define KV_LOG_SEVERITY_INFO ::kvserve::base::LogSeverity::kInfo
#define KV_LOG_SEVERITY_WARNING ::kvserve::base::LogSeverity::kWarning
#define KV_LOG_SEVERITY_ERROR ::kvserve::base::LogSeverity::kError
#define KV_LOG_SEVERITY_FATAL ::kvserve::base::LogSeverity::kFatal

#define KV_LOG(severity)                                           \
  (KV_LOG_SEVERITY_##severity < ::kvserve::base::MinLogSeverity()) \
      ? (void)0                                                    \
      : ::kvserve::base::LogVoidify() &                            \
            ::kvserve::base::LogMessage(__FILE__, __LINE__, KV_LOG_SEVERITY_##severity).stream()

#define KV_CHECK(condition)                                                                       \
  (condition)                                                                                     \
      ? (void)0                                                                                   \
      : ::kvserve::base::LogVoidify() &                                                           \
            ::kvserve::base::LogMessage(__FILE__, __LINE__, ::kvserve::base::LogSeverity::kFatal) \
                    .stream()                                                                     \
                << "Check failed: " #condition " "

#define KV_CHECK_OK(expr)                                           \
  do {                                                              \
    const ::absl::Status kv_check_status_ = (expr);                 \
    KV_CHECK(kv_check_status_.ok()) << kv_check_status_.ToString(); \
  } while (false)

#endif  // KVSERVE_BASE_LOGGING_H_
