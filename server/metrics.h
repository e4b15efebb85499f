// Prometheus export of kvserve's serving metrics: vLLM's metric set, under the kvserve_ prefix, in
// base units, with a `model` label (docs/metrics.md lists every series).
//
// PrometheusMetrics owns the registry and, once Serve() is called, the HTTP(S) listener for
// /metrics: server/http_listener.h, the same listener as the OpenAI API's (prometheus-cpp's own
// civetweb exposer cannot follow a certificate rotation), serving prometheus-cpp's text format.
// Each served model gets a ModelMetrics: the engine::EngineObserver its engine reports to, holding
// every series of that model resolved once at start-up, so no label set is looked up per token.
//
// Who measures what, where it happens:
//   engine thread (ModelMetrics as observer): TTFT and ITL as tokens are produced, token counters,
//     tokens per iteration, the intervals of each successfully finished request, scheduler and
//     cache gauges (set after every engine iteration);
//   gRPC threads (GenerateReactor, KvServer): the outcome of every Generate call, counted exactly
//     once, when the call is finished: request_success_total or request_failure_total;
//   gRPC threads, per call: kvserve_malformed_requests_total (an interceptor in KvServer), and
//     kvserve_stream_buffered_bytes as streams buffer and send output (StreamBudget);
//   the idle timer's thread: kvserve_stream_idle_timeouts_total (StreamIdleTimeout);
//   the scrape: the process_* series, read from /proc (server/process_collector.h).
//
// Thread-safety: AddModel, SetEngineInfo and Serve are start-up calls, made from one thread before
// any request is served; everything else may be called from any thread.
#ifndef KVSERVE_SERVER_METRICS_H_
#define KVSERVE_SERVER_METRICS_H_

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/engine.h"
#include "engine/engine_observer.h"

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
class Summary;
}  // namespace prometheus

namespace kvserve::server {

class HttpListener;
class RequestLog;
class TlsCertificateReloader;

// Why a Generate call failed: the `reason` label of kvserve_request_failure_total.
enum class FailureReason {
  kInvalid = 0,  // INVALID_ARGUMENT or NOT_FOUND before the engine: bad field, unknown model
  kCancelled,    // the client cancelled the call or went away
  kDeadline,     // the call's deadline passed before the request finished
  kRejected,     // not admitted: queue full, engine or server shutting down (retryable)
  kAborted,      // the server shut down while the request was running
  kInternal,     // anything else
};
inline constexpr int kNumFailureReasons = 6;
std::string_view FailureReasonName(FailureReason reason);

// The failure reason of a call that ended with `code`. CANCELLED is kDeadline when the call's
// deadline had passed, else kCancelled; UNAVAILABLE is kAborted once the engine had the request
// (it shut down under it), else kRejected.
FailureReason FailureReasonFor(absl::StatusCode code, bool reached_engine, bool deadline_passed);

// vLLM's intervals of one request, in seconds (see engine/engine_observer.h); nullopt where an end
// point never happened (e.g. no first token).
struct RequestIntervals {
  std::optional<double> queue;    // arrival -> first scheduled
  std::optional<double> ttft;     // arrival -> first token
  std::optional<double> prefill;  // first scheduled -> first token
  std::optional<double> decode;   // first token -> last token
  std::optional<double> e2e;      // arrival -> finish
  // decode / (generation tokens - 1), for requests with at least two tokens.
  std::optional<double> time_per_output_token;
};
RequestIntervals IntervalsOf(const engine::RequestStats& stats);

struct MetricFamilies;  // metrics.cc

// One model's series. Implements the engine's observer; the reactor counts call outcomes on it.
class ModelMetrics final : public engine::EngineObserver {
 public:
  ~ModelMetrics() override;

  // Engine thread.
  void OnIteration(const engine::IterationStats& stats) override;
  void OnRequestFinished(const engine::RequestStats& stats) override;

  // Sets the cache gauges (blocks, bytes, capacity, usage ratios); OnIteration calls it, and the
  // server once at start, so the capacity reads right before the first request.
  void SetCacheUsage(const engine::CacheUsage& cache);

  // A call that ended with all its tokens delivered. REQUIRES: reason is kLength, kStop or kEos.
  void CountSuccess(engine::FinishReason reason);
  void CountFailure(FailureReason reason);

  const std::string& model() const { return model_; }

 private:
  friend class PrometheusMetrics;
  ModelMetrics(const MetricFamilies& families, std::string model, int64_t max_model_len,
               std::shared_ptr<RequestLog> log, std::shared_ptr<prometheus::Registry> registry);

  const std::string model_;
  const std::shared_ptr<RequestLog> log_;                 // null: --log-requests is off
  const std::shared_ptr<prometheus::Registry> registry_;  // keeps the series below alive

  prometheus::Histogram* time_to_first_token_;
  prometheus::Histogram* inter_token_latency_;
  prometheus::Histogram* time_per_output_token_;
  prometheus::Histogram* e2e_latency_;
  prometheus::Histogram* queue_time_;
  prometheus::Histogram* prefill_time_;
  prometheus::Histogram* decode_time_;
  prometheus::Histogram* prompt_tokens_hist_;
  prometheus::Histogram* generation_tokens_hist_;
  prometheus::Histogram* iteration_tokens_;
  prometheus::Gauge* requests_running_;
  prometheus::Gauge* requests_waiting_;
  prometheus::Gauge* kv_cache_usage_;
  prometheus::Gauge* state_slots_usage_;
  std::array<prometheus::Gauge*, engine::kNumCacheKinds> used_blocks_;
  std::array<prometheus::Gauge*, engine::kNumCacheKinds> free_blocks_;
  std::array<prometheus::Gauge*, engine::kNumCacheKinds> used_bytes_;
  std::array<prometheus::Gauge*, engine::kNumCacheKinds> capacity_bytes_;
  std::array<prometheus::Counter*, engine::kNumCacheKinds> evicted_blocks_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Counter* prefix_queries_;
  prometheus::Counter* prefix_hits_;
  prometheus::Counter* preemptions_;
  std::array<prometheus::Counter*, 3> success_;  // length, stop, eos
  std::array<prometheus::Counter*, kNumFailureReasons> failure_;
};

class PrometheusMetrics {
 public:
  // A registry with the process-wide series (build info); nothing is served yet.
  PrometheusMetrics();
  ~PrometheusMetrics();
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;

  // Creates `model`'s series; the result is the observer to put in its EngineOptions.
  // `max_model_len` bounds the token-count histograms (1-2-5 buckets up to it). `log` (may be null)
  // gets one line per finished request.
  // REQUIRES: no model of that name was added before.
  std::shared_ptr<ModelMetrics> AddModel(const std::string& model, int64_t max_model_len,
                                         std::shared_ptr<RequestLog> log);
  // Sets kvserve_cache_config_info for a model added before, and its cache gauges to
  // `cache_at_start` (engine::CacheUsageOf(engine.stats().cache) before any request), so capacity
  // and free blocks read right from start-up instead of 0 until the engine's first iteration.
  // REQUIRES: no request has reached the model's engine yet.
  void SetEngineInfo(const engine::ModelInfo& info, const engine::EngineOptions& options,
                     const engine::CacheUsage& cache_at_start);

  // The series of a served model; null for a name that is not served.
  ModelMetrics* ForModel(std::string_view model) const;
  // A Generate call that named no served model (counted with model="").
  void CountUnknownModel();
  // A call whose request message gRPC could not deserialize.
  void CountMalformedRequest();
  // Bytes of output streams hold for clients that have not read them yet (server-wide; set by the
  // server's StreamBudget).
  prometheus::Gauge& stream_buffered_bytes() { return *stream_buffered_bytes_; }
  // Streams ended by --stream-idle-timeout (counted by the server's StreamIdleTimeout).
  prometheus::Counter& stream_idle_timeouts() { return *stream_idle_timeouts_; }

  // Serves /metrics on `address` (HOST:PORT; port 0 picks a free port), over HTTPS with `tls`
  // (null: plain HTTP; with a client CA, scrapers must present a client certificate, as every
  // client of the server must). No authentication by API key: Prometheus scrapes without one.
  // At most once. UNAVAILABLE names --metrics-address and the address when it cannot be bound.
  absl::Status Serve(const std::string& address, std::shared_ptr<TlsCertificateReloader> tls);
  // Stops serving /metrics (the series are kept). Idempotent.
  void StopServing();
  // The port /metrics is served on; 0 before Serve.
  int port() const { return port_; }

  // The text exposition a scrape would get (for tests and debugging).
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricFamilies> families_;
  std::shared_ptr<prometheus::Collectable> process_;
  prometheus::Counter* malformed_requests_ = nullptr;
  prometheus::Gauge* stream_buffered_bytes_ = nullptr;
  prometheus::Counter* stream_idle_timeouts_ = nullptr;
  absl::flat_hash_map<std::string, std::shared_ptr<ModelMetrics>> models_;
  // The scrapes themselves, under the names prometheus-cpp's exposer gave them.
  std::shared_ptr<prometheus::Registry> exposer_registry_;
  prometheus::Counter* scraped_bytes_ = nullptr;
  prometheus::Counter* scrapes_ = nullptr;
  prometheus::Summary* scrape_latency_us_ = nullptr;
  std::unique_ptr<HttpListener> listener_;
  int port_ = 0;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_METRICS_H_
