// Reports of kvserve-bench: the text summary, the JSON result file, the live progress line, and
// sweeps (one TSV row per point, and a throughput-vs-latency PNG drawn by gnuplot).
//
// JSON keys follow `vllm bench serve`'s result file where the quantity is the same (completed,
// request_throughput, output_throughput, mean_ttft_ms, p99_itl_ms, request_goodput, ...), so
// scripts written for it read ours; kvserve-only keys (errors by gRPC code, the cross-check) are
// added beside them.
//
// Pure functions except RenderPlot, which runs gnuplot. Thread-compatible.
#ifndef KVSERVE_TOOLS_BENCH_REPORT_H_
#define KVSERVE_TOOLS_BENCH_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "tools/bench/metrics_check.h"
#include "tools/bench/runner.h"
#include "tools/bench/statistics.h"

namespace kvserve::bench {

// The settings of one run, echoed in every report.
struct RunDescription {
  std::vector<std::string> targets;
  std::string model;
  std::string workload;     // e.g. "random (input 64, output 64 bytes/tokens, range ratio 0)"
  double request_rate = 0;  // inf = unpaced
  double burstiness = 1;
  int64_t max_concurrency = 0;  // 0 = unlimited
  int64_t num_requests = 0;
  double duration_limit_s = 0;
  double cancel_fraction = 0;
  double request_timeout_s = 0;
  uint64_t seed = 0;
  Slo slo;
  // How the run ended.
  bool stopped = false;
  bool duration_reached = false;
  int64_t num_not_sent = 0;
};

// "inf" or the number.
std::string FormatRate(double rate);

// The human-readable summary: counts, throughputs, goodput, a latency table (ms: mean, p50, p90,
// p99, max) and errors by gRPC code.
std::string FormatReport(const RunDescription& run, const RunStats& stats);
// One line per comparison ("ok" or "MISMATCH") and the informational deltas.
std::string FormatMetricsCheck(const MetricsCheck& check);
// "[  12.0 s] 120/200 sent  4 in flight  116 ok  0 failed  1042 tok/s"; the rate is over the
// interval since `previous` (or since the start).
std::string FormatProgress(const Progress& now, const std::optional<Progress>& previous);

nlohmann::json ResultJson(const RunDescription& run, const RunStats& stats,
                          const std::vector<MetricsCheck>& checks);

// --sweep=rate:1,2,4 or --sweep=concurrency:1,4,16.
struct SweepSpec {
  enum class Kind { kRate, kConcurrency };
  Kind kind = Kind::kRate;
  std::vector<double> values;  // rates (> 0, or inf) or concurrencies (integers >= 1)
  const char* name() const { return kind == Kind::kRate ? "rate" : "concurrency"; }
};
absl::StatusOr<SweepSpec> ParseSweep(absl::string_view text);

struct SweepPoint {
  double value = 0;  // the swept rate or concurrency
  RunStats stats;
};
// A header line, then one row per point; tab-separated, latencies in ms.
std::string SweepTsv(const SweepSpec& spec, const std::vector<SweepPoint>& points);
// A gnuplot script that reads `tsv_path` and draws `png_path`: output tokens/s on x; TTFT p50/p99
// (left panel) and TPOT p50/p99 (right panel) on y, each point labelled with its rate or
// concurrency.
std::string GnuplotScript(const SweepSpec& spec, absl::string_view tsv_path,
                          absl::string_view png_path, absl::string_view title);
// Runs `gnuplot` on GnuplotScript. NotFound when gnuplot is not installed (Debian:
// gnuplot-nox), Internal when it fails.
absl::Status RenderPlot(const SweepSpec& spec, absl::string_view tsv_path,
                        absl::string_view png_path, absl::string_view title);

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_REPORT_H_
