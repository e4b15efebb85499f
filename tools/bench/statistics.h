// Statistics of one benchmark run: what each request saw, and the summary numbers computed from it.
//
// Definitions (the ones `vllm bench serve` reports, so results compare across harnesses):
//   TTFT  call started -> first message carrying tokens.
//   TPOT  per request with >= 2 output tokens: (E2E - TTFT) / (output tokens - 1).
//   ITL   every gap between two consecutive token-carrying messages of one request. The server
//         coalesces tokens while a write is in flight, so a message may carry several tokens; ITL
//         is per message, as streamed chunks are in vLLM.
//   E2E   call started -> call finished.
// Percentiles interpolate linearly between the closest ranks (numpy's default): for sorted values
// v[0..n-1], p-th percentile = v[i] + f * (v[i+1] - v[i]) with i + f = p / 100 * (n - 1).
// Latencies, throughputs and goodput count successful requests only; a failed request's latency
// is the failure's, not the server's.
//
// Plain values and pure functions; thread-compatible.
#ifndef KVSERVE_TOOLS_BENCH_STATISTICS_H_
#define KVSERVE_TOOLS_BENCH_STATISTICS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvserve::bench {

// What one Generate call saw. Times are seconds since the run started (steady clock).
struct RequestRecord {
  int64_t index = 0;         // position in the workload
  int32_t target_index = 0;  // which --target served it
  // grpc::StatusCode as an int, 0 = OK. Kept numeric so this header needs no gRPC.
  int status_code = 0;
  std::string error_message;
  bool cancel_planned = false;  // chosen by --cancel-fraction
  bool cancel_sent = false;     // the client called TryCancel (planned, or cut off at --duration)
  bool cut_off = false;         // still running when --duration ran out (or the run was stopped)
  int32_t max_tokens = 0;
  // Prompt tokens: the server's usage count when the call succeeded, else the client's estimate.
  int32_t prompt_tokens = 0;
  bool prompt_tokens_from_server = false;
  int32_t output_tokens = 0;         // token ids received
  int32_t usage_output_tokens = -1;  // usage.completion_tokens from the last message; -1 = none
  int32_t num_token_messages = 0;    // messages that carried at least one token id
  double start_s = 0;
  std::optional<double> first_token_s;  // absolute (since run start)
  double end_s = 0;
  std::vector<double> itl_s;  // gaps between token-carrying messages

  bool ok() const { return status_code == 0; }
  double e2e_s() const { return end_s - start_s; }
  std::optional<double> ttft_s() const {
    if (!first_token_s) return std::nullopt;
    return *first_token_s - start_s;
  }
  // Present for successful requests with at least two output tokens.
  std::optional<double> tpot_s() const;
};

// Linear-interpolation percentile of `values` (any order). REQUIRES: !values.empty(),
// 0 <= p <= 100.
double Percentile(std::vector<double> values, double p);

// Summary of one latency distribution, in seconds. All zero when count == 0.
struct Distribution {
  int64_t count = 0;
  double mean = 0;
  double stddev = 0;  // population standard deviation
  double min = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};
Distribution Summarize(const std::vector<double>& values);

// Service-level objectives for goodput; unset = not constrained. Seconds.
struct Slo {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  std::optional<double> e2e_s;
  bool empty() const { return !ttft_s && !tpot_s && !e2e_s; }
};
// Parses "ttft=500,tpot=50,e2e=2000": milliseconds by default, or with an explicit unit suffix
// ("500ms", "0.5s"). Keys: ttft, tpot, e2e (alias e2el). Values must be > 0.
absl::StatusOr<Slo> ParseSlo(absl::string_view text);
std::string FormatSlo(const Slo& slo);
// True when a successful request meets every set objective. A request with one output token has
// no TPOT and meets any TPOT objective.
bool MeetsSlo(const RequestRecord& record, const Slo& slo);

struct RunStats {
  int64_t num_sent = 0;                 // calls started
  int64_t num_succeeded = 0;            // status OK
  int64_t num_failed = 0;               // any other status, cut-off calls included
  int64_t num_cancelled_by_client = 0;  // CANCELLED after a planned cancel
  int64_t num_cancel_too_late = 0;      // a planned cancel, but the call had already succeeded
  int64_t num_cut_off = 0;
  int64_t num_usage_mismatches = 0;  // successful calls whose usage disagreed with what arrived
  std::map<std::string, int64_t> errors;  // gRPC code name -> calls
  double duration_s = 0;
  // Successful requests only.
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  int64_t total_token_messages = 0;
  double request_throughput = 0;      // successful requests / duration
  double output_throughput = 0;       // their output tokens / duration
  double total_token_throughput = 0;  // (input + output) / duration
  // Every token received, failed calls included (what the server had to stream).
  int64_t total_output_tokens_all = 0;
  int64_t num_good = 0;              // successful requests meeting the SLO (all of them if no SLO)
  double request_goodput = 0;        // num_good / duration
  int32_t max_concurrency_seen = 0;  // the most calls in flight at once
  Distribution ttft, tpot, itl, e2e;
};

// REQUIRES: duration_s > 0 unless records is empty.
RunStats ComputeStats(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo);

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_STATISTICS_H_
