// Runner: drives a benchmark's Generate calls against one or more kvserve targets with gRPC's
// callback API: one process, one channel per target, any number of concurrent streams, no thread
// per call.
//
//   auto runner = Runner::Create({.targets = {"127.0.0.1:50051"}});
//   KV_RETURN_IF_ERROR((*runner)->Connect());           // ListModels + Tokenize on every target
//   LoadOptions load;  load.max_concurrency = 4;  load.duration_s = 30;
//   KV_ASSIGN_OR_RETURN(RunResult result, (*runner)->Run(requests, load));
//
// Load shape: request i is due at its arrival time (arrivals.h; all at once when the rate is
// infinite) and is started when it is due AND fewer than max_concurrency calls are in flight, so a
// finite rate is open loop, an infinite rate with a concurrency cap is closed loop, and both
// together are open loop with a cap (as `vllm bench serve --max-concurrency`). Requests go to the
// targets round robin.
//
// Every run stops itself: after the last request, or when duration_s has passed since the start,
// whichever comes first; calls still in flight then are cancelled and recorded as cut off. Stop()
// (e.g. from a Ctrl-C handler) does the same at once, and makes later runs return immediately.
//
// Cancellation mix: a fraction of requests (chosen with the seed; only those with max_tokens >= 2)
// is cancelled by the client once it has received k tokens, k uniform in [1, max_tokens / 2], so
// the cancel reaches the server well before the request would have finished.
//
// Targets must be loopback addresses (127.0.0.0/8, ::1, localhost, unix sockets) unless
// allow_remote is set: a load test can take a shared server down.
//
// With Protocol::kOpenAi each call is one HTTP connection served by a thread of its own (a blocking
// socket reader; at the concurrencies a CPU server sustains, threads cost nothing measurable);
// tokens are counted per SSE chunk as they arrive and from the final usage chunk
// (stream_options.include_usage), and HTTP statuses are reported as the nearest gRPC code.
//
// Thread-safety: Connect and Run from one thread, one run at a time; Stop from any thread.
#ifndef KVSERVE_TOOLS_BENCH_RUNNER_H_
#define KVSERVE_TOOLS_BENCH_RUNNER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "tools/bench/arrivals.h"
#include "tools/bench/statistics.h"
#include "tools/bench/workload.h"
#include "tools/client_security.h"
#include "tools/tls_client.h"

namespace kvserve::bench {

// True for localhost, 127.0.0.0/8 and ::1 (with or without brackets).
bool IsLoopbackHost(absl::string_view host);
// Accepts HOST:PORT, [V6]:PORT, and the gRPC URI forms dns:[//AUTHORITY/]HOST:PORT, ipv4:, ipv6:
// and unix:/unix-abstract: (always local). A remote host is refused unless allow_remote, with a
// message that says why and how to override.
absl::Status ValidateTarget(absl::string_view target, bool allow_remote);

// kGrpc: kvserve.v1.KvServe Generate / Chat streams. kOpenAi: the same workloads as streaming
// POST /v1/completions / /v1/chat/completions on kvserve's OpenAI-compatible HTTP API (targets are
// its HOST:PORT), so the two protocols' costs are compared on one workload and one report.
enum class Protocol { kGrpc, kOpenAi };

struct RunnerOptions {
  std::vector<std::string> targets = {"127.0.0.1:50051"};
  Protocol protocol = Protocol::kGrpc;
  bool allow_remote = false;
  std::string model;  // empty: the server's default model
  // Sampling temperature sent with every request (0 = greedy); unset = the server's default
  // (the model's generation_config.json, else 1.0). Decode benchmarks on random-weight models
  // want 0: their logits are nearly flat, and sampling from a flat 49k-128k vocabulary costs
  // milliseconds per token (engine/sampling/sampler.h) that no real model's peaked
  // distribution costs.
  std::optional<double> temperature;
  // How long Connect waits for each target to answer (it waits for the server to come up).
  double connect_timeout_s = 10;
  // API key and TLS, the same for every target (tools/client_security.h).
  tools::ClientSecurity security;
};

// What Connect learned about one target.
struct TargetInfo {
  std::string target;
  std::string model;  // the served model's name
  int32_t max_context_length = 0;
  // Tokens the tokenizer adds to every prompt (BOS): Tokenize("x") minus one.
  int32_t num_special_tokens = 0;
};

// A snapshot for the live progress line.
struct Progress {
  double elapsed_s = 0;
  int64_t total = 0;  // requests in the workload
  int64_t sent = 0;
  int64_t in_flight = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t output_tokens = 0;  // received so far, all calls
};

struct LoadOptions {
  ArrivalOptions arrivals;       // rate (inf = unpaced), burstiness, seed
  int64_t max_concurrency = 0;   // 0 = unlimited
  double duration_s = 60;        // hard cap on the run, > 0
  double cancel_fraction = 0;    // in [0, 1]
  double request_timeout_s = 0;  // per-call gRPC deadline; 0 = none
  uint64_t seed = 0;             // chooses the cancelled requests and their k
  std::chrono::milliseconds progress_interval{1000};
  // Called on the Run thread every progress_interval and once at the end; may be null.
  std::function<void(const Progress&)> on_progress;
};

struct RunResult {
  std::vector<RequestRecord> records;  // one per started call, in start order
  double duration_s = 0;               // run start -> last call finished
  bool duration_reached = false;       // stopped by LoadOptions::duration_s
  bool stopped = false;                // stopped by Stop()
  int64_t num_not_sent = 0;            // requests never started
};

class Runner {
 public:
  // Validates the targets and opens one channel per target (connections are made lazily).
  static absl::StatusOr<std::unique_ptr<Runner>> Create(RunnerOptions options);
  ~Runner();

  // Waits up to connect_timeout_s for each target to answer ListModels, checks that it serves the
  // model (NotFound otherwise), and learns its context length and special tokens.
  absl::Status Connect();
  const std::vector<TargetInfo>& targets() const { return targets_; }

  // Runs `requests` under `load`. REQUIRES: Connect() succeeded. Fails (before sending anything)
  // with InvalidArgument for bad load options or a request that cannot fit its target's context.
  absl::StatusOr<RunResult> Run(const std::vector<BenchRequest>& requests, const LoadOptions& load);

  // Stops the current run as if its duration had passed, and every later one before it starts.
  // Thread-safe; returns at once.
  void Stop();
  bool stopped() const;

 private:
  class Call;
  class GrpcCall;
  class OpenAiCall;
  struct Channel;
  absl::Status ConnectOpenAi(size_t i, TargetInfo* info);
  explicit Runner(RunnerOptions options);

  void OnCallDone(Call* call, bool ok);
  // Seconds since the current run started.
  double Now() const;
  Progress ProgressLocked(double elapsed_s) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SlotFreeOrStopLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IdleOrStopLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllDoneLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls the progress callback (without mu_) when the next report is due.
  void MaybeReportLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until `condition` holds or `until` passes, reporting progress meanwhile.
  void WaitLocked(const absl::Condition& condition, std::chrono::steady_clock::time_point until)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RunnerOptions options_;
  // --protocol=openai's TLS (the security options' --tls-ca, --tls-cert, --tls-key); null: HTTP.
  std::shared_ptr<const tools::TlsClientContext> http_tls_;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::vector<TargetInfo> targets_;
  // The current run's; written by Run before any call starts.
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point next_progress_;  // Run's thread only
  const LoadOptions* load_ = nullptr;                    // Run's thread only

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_concurrency_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> output_tokens_{0};
};

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_RUNNER_H_
