// Cross-checks a run against the server's own Prometheus counters: scrape /metrics before and
// after, and compare the deltas with what the client saw on that target.
//
// Compared (docs/metrics.md; sums over every label set of a family, so every model counts):
//   kvserve_request_success_total                   == calls that ended OK
//   kvserve_request_failure_total{reason=cancelled} == calls that ended CANCELLED (the client's
//                                                      planned cancels and --duration cut-offs)
//   kvserve_request_failure_total{reason=deadline}  == calls that ended DEADLINE_EXCEEDED
//   kvserve_generation_tokens_total                 == tokens received, when every call succeeded;
//                                                      otherwise in [received, received + what the
//                                                      failed calls could still have produced]: a
//                                                      cancelled request may have generated tokens
//                                                      the client never read
//   kvserve_prompt_tokens_total                     == usage.prompt_tokens summed, when every call
//                                                      succeeded; otherwise bounded the same way
//                                                      (the server counts a prompt once its prefill
//                                                      ends)
// The check assumes nothing else uses the server during the run. Several targets served by one
// server (e.g. two addresses of one replica) share one metrics URL: their calls are compared
// together.
//
// The engine reports counters after the iteration that produced the tokens, so they land a moment
// after the client has seen its last message: ScrapeSettled scrapes until the server's counters
// cover what the client saw and no request is running or waiting, then once more.
//
// Scraping is a GET with kvserve-bench's own HTTP client (tools/bench/openai_client.h); https://
// URLs take the TLS flags (--tls-ca, and --tls-cert/--tls-key for a server with --tls-client-ca).
// Thread-compatible.
#ifndef KVSERVE_TOOLS_BENCH_METRICS_CHECK_H_
#define KVSERVE_TOOLS_BENCH_METRICS_CHECK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tools/bench/statistics.h"
#include "tools/tls_client.h"

namespace kvserve::bench {

using Labels = std::map<std::string, std::string>;

// One scrape in the Prometheus text format.
class MetricsSnapshot {
 public:
  struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
  };

  // Fails with InvalidArgument and the line number on a malformed sample line.
  static absl::StatusOr<MetricsSnapshot> Parse(absl::string_view text);

  // Sum of every sample named `name` whose labels include all of `match`; 0 when there is none.
  double Sum(absl::string_view name, const Labels& match = {}) const;
  bool Has(absl::string_view name) const;
  const std::vector<Sample>& samples() const { return samples_; }

 private:
  std::vector<Sample> samples_;
};

// Parts of an http://HOST:PORT/PATH or https://HOST:PORT/PATH URL.
struct HttpUrl {
  std::string host;
  int port = 80;  // 443 for https:// without a port
  std::string path = "/";
  bool tls = false;  // https://
};
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url);
// Like ValidateTarget (runner.h): loopback hosts only, unless allow_remote.
absl::Status ValidateMetricsUrl(absl::string_view url, bool allow_remote);

// GET `url`; the body of a 200 answer. Unavailable when the server cannot be reached or the TLS
// handshake fails, DeadlineExceeded when it times out, Internal for another status code,
// InvalidArgument for an https:// URL without `tls` (TlsClientContext::Create of the TLS flags).
absl::StatusOr<std::string> HttpGet(absl::string_view url, absl::Duration timeout,
                                    std::shared_ptr<const tools::TlsClientContext> tls = nullptr);
absl::StatusOr<MetricsSnapshot> ScrapeMetrics(
    absl::string_view url, absl::Duration timeout,
    std::shared_ptr<const tools::TlsClientContext> tls = nullptr);

// What the client saw on the targets one /metrics endpoint covers.
struct ClientCounts {
  int64_t succeeded = 0;
  int64_t cancelled = 0;
  int64_t deadline_exceeded = 0;
  int64_t other_failures = 0;
  int64_t output_tokens_succeeded = 0;
  int64_t output_tokens_failed = 0;          // received by calls that failed
  int64_t output_tokens_failed_limit = 0;    // max_tokens of calls that failed
  int64_t prompt_tokens_succeeded = 0;       // usage.prompt_tokens
  int64_t prompt_tokens_failed_started = 0;  // estimates, failed calls that received a token
  int64_t prompt_tokens_failed = 0;          // estimates, every failed call
};
ClientCounts CountClient(const std::vector<RequestRecord>& records,
                         const std::vector<int32_t>& target_indices);

struct MetricsComparison {
  std::string what;   // e.g. "kvserve_generation_tokens_total"
  double server = 0;  // delta over the run
  double client_min = 0;
  double client_max = 0;  // == client_min for an exact comparison
  bool ok() const { return server >= client_min && server <= client_max; }
};

struct MetricsCheck {
  std::string url;
  std::vector<MetricsComparison> comparisons;
  // Informational deltas: other failure reasons, preemptions, prefix-cache hit ratio.
  std::map<std::string, double> info;
  bool ok() const;
};

MetricsCheck CompareMetrics(const MetricsSnapshot& before, const MetricsSnapshot& after,
                            const ClientCounts& client);

// Scrapes `url` until its deltas from `before` cover `client` and no request is running or
// waiting (or `timeout` passes), then once more, and returns that last scrape.
absl::StatusOr<MetricsSnapshot> ScrapeSettled(
    absl::string_view url, const MetricsSnapshot& before, const ClientCounts& client,
    absl::Duration timeout, std::shared_ptr<const tools::TlsClientContext> tls = nullptr);

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_METRICS_CHECK_H_
