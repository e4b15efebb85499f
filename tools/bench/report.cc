#include "tools/bench/report.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace kvserve::bench {
namespace {

double Ms(double seconds) { return seconds * 1e3; }

// The TSV columns, in order; the gnuplot script refers to them by position.
struct Column {
  const char* name;
  double (*value)(const SweepPoint&);
};
const std::vector<Column>& SweepColumns() {
  static const std::vector<Column> columns = {
      {"value", [](const SweepPoint& p) { return p.value; }},
      {"completed", [](const SweepPoint& p) { return double(p.stats.num_succeeded); }},
      {"failed", [](const SweepPoint& p) { return double(p.stats.num_failed); }},
      {"duration_s", [](const SweepPoint& p) { return p.stats.duration_s; }},
      {"request_throughput", [](const SweepPoint& p) { return p.stats.request_throughput; }},
      {"output_throughput", [](const SweepPoint& p) { return p.stats.output_throughput; }},
      {"request_goodput", [](const SweepPoint& p) { return p.stats.request_goodput; }},
      {"max_concurrency_seen",
       [](const SweepPoint& p) { return double(p.stats.max_concurrency_seen); }},
      {"ttft_mean_ms", [](const SweepPoint& p) { return Ms(p.stats.ttft.mean); }},
      {"ttft_p50_ms", [](const SweepPoint& p) { return Ms(p.stats.ttft.p50); }},
      {"ttft_p99_ms", [](const SweepPoint& p) { return Ms(p.stats.ttft.p99); }},
      {"tpot_mean_ms", [](const SweepPoint& p) { return Ms(p.stats.tpot.mean); }},
      {"tpot_p50_ms", [](const SweepPoint& p) { return Ms(p.stats.tpot.p50); }},
      {"tpot_p99_ms", [](const SweepPoint& p) { return Ms(p.stats.tpot.p99); }},
      {"itl_p50_ms", [](const SweepPoint& p) { return Ms(p.stats.itl.p50); }},
      {"itl_p99_ms", [](const SweepPoint& p) { return Ms(p.stats.itl.p99); }},
      {"e2e_p50_ms", [](const SweepPoint& p) { return Ms(p.stats.e2e.p50); }},
      {"e2e_p99_ms", [](const SweepPoint& p) { return Ms(p.stats.e2e.p99); }},
  };
  return columns;
}

int ColumnNumber(absl::string_view name) {  // 1-based, as gnuplot counts
  const std::vector<Column>& columns = SweepColumns();
  for (size_t i = 0; i < columns.size(); ++i) {
    if (name == columns[i].name) return static_cast<int>(i) + 1;
  }
  return 0;
}

// gnuplot single-quoted string: only ' needs doubling.
std::string GnuplotQuote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

void AddDistribution(nlohmann::json& j, const char* name, const Distribution& d) {
  j[absl::StrCat("mean_", name, "_ms")] = Ms(d.mean);
  j[absl::StrCat("median_", name, "_ms")] = Ms(d.p50);
  j[absl::StrCat("std_", name, "_ms")] = Ms(d.stddev);
  j[absl::StrCat("p90_", name, "_ms")] = Ms(d.p90);
  j[absl::StrCat("p99_", name, "_ms")] = Ms(d.p99);
  j[absl::StrCat("max_", name, "_ms")] = Ms(d.max);
  j[absl::StrCat("num_", name, "_samples")] = d.count;
}

}  // namespace

std::string FormatRate(double rate) {
  return std::isinf(rate) ? std::string("inf") : absl::StrCat(rate);
}

std::string FormatReport(const RunDescription& run, const RunStats& s) {
  std::string out;
  absl::StrAppend(&out, "kvserve-bench: ", run.workload, "\n");
  absl::StrAppend(&out, "  targets       ", absl::StrJoin(run.targets, ", "), "  model ", run.model,
                  "\n");
  absl::StrAppend(
      &out, "  load          ",
      std::isinf(run.request_rate)
          ? std::string("request rate inf (unpaced)")
          : absl::StrCat("request rate ", run.request_rate, "/s, ",
                         run.burstiness == 1 ? std::string("Poisson")
                                             : absl::StrCat("gamma, burstiness ", run.burstiness)),
      ", max concurrency ",
      run.max_concurrency > 0 ? absl::StrCat(run.max_concurrency) : "unlimited",
      ", cancel fraction ", run.cancel_fraction, ", timeout ",
      run.request_timeout_s > 0 ? absl::StrCat(run.request_timeout_s, " s") : "none", ", seed ",
      run.seed, "\n");
  std::string ended = "all requests done";
  if (run.stopped) {
    ended = "stopped (interrupted)";
  } else if (run.duration_reached) {
    ended = absl::StrCat("--duration ", run.duration_limit_s, " s reached");
  }
  absl::StrAppend(&out, "  run           ", ended, "\n\n");

  absl::StrAppend(&out, absl::StrFormat("requests      %d of %d sent: %d ok, %d failed", s.num_sent,
                                        run.num_requests, s.num_succeeded, s.num_failed));
  if (s.num_cut_off > 0) absl::StrAppend(&out, " (", s.num_cut_off, " cut off at the end)");
  absl::StrAppend(&out, "\n");
  if (run.cancel_fraction > 0) {
    absl::StrAppend(&out, "cancelled     ", s.num_cancelled_by_client, " by the client (",
                    s.num_cancel_too_late, " cancels arrived after the call had succeeded)\n");
  }
  absl::StrAppend(&out, absl::StrFormat("duration      %.2f s, at most %d calls in flight\n",
                                        s.duration_s, s.max_concurrency_seen));
  absl::StrAppend(
      &out, absl::StrFormat("throughput    %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
                            s.request_throughput, s.output_throughput, s.total_token_throughput));
  if (!run.slo.empty()) {
    absl::StrAppend(&out,
                    absl::StrFormat("goodput       %.2f req/s: %d of %d ok requests met ",
                                    s.request_goodput, s.num_good, s.num_succeeded),
                    FormatSlo(run.slo), "\n");
  }
  const double per_message = s.total_token_messages > 0
                                 ? double(s.total_output_tokens) / double(s.total_token_messages)
                                 : 0;
  absl::StrAppend(&out,
                  absl::StrFormat("tokens        %d input, %d output (ok requests); %.2f tokens "
                                  "per streamed message\n",
                                  s.total_input_tokens, s.total_output_tokens, per_message));
  if (s.num_usage_mismatches > 0) {
    absl::StrAppend(&out, "WARNING       ", s.num_usage_mismatches,
                    " ok requests received a different number of tokens than their usage said\n");
  }
  absl::StrAppend(&out, "\n");
  absl::StrAppend(&out, absl::StrFormat("%-14s%10s%10s%10s%10s%10s%10s\n", "latency (ms)", "mean",
                                        "p50", "p90", "p99", "max", "samples"));
  auto row = [&](const char* name, const Distribution& d) {
    absl::StrAppend(&out,
                    absl::StrFormat("  %-12s%10.2f%10.2f%10.2f%10.2f%10.2f%10d\n", name, Ms(d.mean),
                                    Ms(d.p50), Ms(d.p90), Ms(d.p99), Ms(d.max), d.count));
  };
  row("TTFT", s.ttft);
  row("TPOT", s.tpot);
  row("ITL", s.itl);
  row("E2E", s.e2e);
  if (!s.errors.empty()) {
    std::vector<std::string> errors;
    for (const auto& [code, count] : s.errors) errors.push_back(absl::StrCat(code, " ", count));
    absl::StrAppend(&out, "\nerrors        ", absl::StrJoin(errors, ", "), "\n");
  }
  return out;
}

std::string FormatMetricsCheck(const MetricsCheck& check) {
  std::string out =
      absl::StrCat("server metrics ", check.url, ": ",
                   check.ok() ? "OK, the server counted what the client saw" : "MISMATCH", "\n");
  for (const MetricsComparison& c : check.comparisons) {
    const std::string expected = c.client_min == c.client_max
                                     ? absl::StrCat(c.client_min)
                                     : absl::StrCat("[", c.client_min, ", ", c.client_max, "]");
    absl::StrAppend(&out, absl::StrFormat("  %-8s %-50s server %-10g client %s\n",
                                          c.ok() ? "ok" : "MISMATCH", c.what, c.server, expected));
  }
  std::vector<std::string> info;
  for (const auto& [k, v] : check.info) info.push_back(absl::StrCat(k, " ", v));
  absl::StrAppend(&out, "  info: ", absl::StrJoin(info, ", "), "\n");
  return out;
}

std::string FormatProgress(const Progress& now, const std::optional<Progress>& previous) {
  const double dt = previous ? now.elapsed_s - previous->elapsed_s : now.elapsed_s;
  const int64_t tokens = now.output_tokens - (previous ? previous->output_tokens : 0);
  const double rate = dt > 0 ? double(tokens) / dt : 0;
  return absl::StrFormat("[%7.1f s] %d/%d sent  %d in flight  %d ok  %d failed  %.0f tok/s",
                         now.elapsed_s, now.sent, now.total, now.in_flight, now.succeeded,
                         now.failed, rate);
}

nlohmann::json ResultJson(const RunDescription& run, const RunStats& s,
                          const std::vector<MetricsCheck>& checks) {
  nlohmann::json j;
  j["tool"] = "kvserve-bench";
  j["targets"] = run.targets;
  j["model_id"] = run.model;
  j["workload"] = run.workload;
  // JSON has no infinity; an unpaced run says "inf" as vLLM's does.
  if (std::isinf(run.request_rate)) {
    j["request_rate"] = "inf";
  } else {
    j["request_rate"] = run.request_rate;
  }
  j["burstiness"] = run.burstiness;
  j["max_concurrency"] =
      run.max_concurrency > 0 ? nlohmann::json(run.max_concurrency) : nlohmann::json(nullptr);
  j["num_prompts"] = run.num_requests;
  j["duration_limit_s"] = run.duration_limit_s;
  j["cancel_fraction"] = run.cancel_fraction;
  j["request_timeout_s"] = run.request_timeout_s;
  j["seed"] = run.seed;
  j["slo"] = FormatSlo(run.slo);
  j["stopped"] = run.stopped;
  j["duration_reached"] = run.duration_reached;
  j["num_not_sent"] = run.num_not_sent;

  j["duration"] = s.duration_s;
  j["num_sent"] = s.num_sent;
  j["completed"] = s.num_succeeded;
  j["failed"] = s.num_failed;
  j["cut_off"] = s.num_cut_off;
  j["cancelled_by_client"] = s.num_cancelled_by_client;
  j["cancel_too_late"] = s.num_cancel_too_late;
  j["usage_mismatches"] = s.num_usage_mismatches;
  j["errors"] = s.errors;
  j["total_input_tokens"] = s.total_input_tokens;
  j["total_output_tokens"] = s.total_output_tokens;
  j["total_output_tokens_all_calls"] = s.total_output_tokens_all;
  j["total_token_messages"] = s.total_token_messages;
  j["request_throughput"] = s.request_throughput;
  j["request_goodput"] =
      run.slo.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.request_goodput);
  j["num_good"] = s.num_good;
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  j["max_concurrent_requests"] = s.max_concurrency_seen;
  AddDistribution(j, "ttft", s.ttft);
  AddDistribution(j, "tpot", s.tpot);
  AddDistribution(j, "itl", s.itl);
  AddDistribution(j, "e2el", s.e2e);

  nlohmann::json jc = nlohmann::json::array();
  for (const MetricsCheck& check : checks) {
    nlohmann::json c;
    c["url"] = check.url;
    c["ok"] = check.ok();
    c["comparisons"] = nlohmann::json::array();
    for (const MetricsComparison& m : check.comparisons) {
      c["comparisons"].push_back({{"series", m.what},
                                  {"server", m.server},
                                  {"client_min", m.client_min},
                                  {"client_max", m.client_max},
                                  {"ok", m.ok()}});
    }
    c["info"] = check.info;
    jc.push_back(std::move(c));
  }
  j["metrics_check"] = std::move(jc);
  return j;
}

absl::StatusOr<SweepSpec> ParseSweep(absl::string_view text) {
  SweepSpec spec;
  const size_t colon = text.find(':');
  const absl::string_view kind = text.substr(0, colon);
  if (kind == "rate") {
    spec.kind = SweepSpec::Kind::kRate;
  } else if (kind == "concurrency") {
    spec.kind = SweepSpec::Kind::kConcurrency;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--sweep must be rate:R1,R2,... or concurrency:C1,C2,..., got '", text, "'"));
  }
  if (colon == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--sweep '", text, "': no values"));
  }
  for (absl::string_view v : absl::StrSplit(text.substr(colon + 1), ',', absl::SkipWhitespace())) {
    v = absl::StripAsciiWhitespace(v);
    double value = 0;
    if (spec.kind == SweepSpec::Kind::kRate && v == "inf") {
      value = std::numeric_limits<double>::infinity();
    } else if (!absl::SimpleAtod(v, &value) || !std::isfinite(value) || value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sweep: '", v, "' is not a positive number"));
    }
    if (spec.kind == SweepSpec::Kind::kConcurrency && value != std::floor(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--sweep: concurrency '", v, "' is not an integer"));
    }
    spec.values.push_back(value);
  }
  if (spec.values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--sweep '", text, "': no values"));
  }
  return spec;
}

std::string SweepTsv(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<std::string> header;
  for (const Column& c : SweepColumns()) header.push_back(c.name);
  header[0] = spec.name();
  std::string out = absl::StrCat(absl::StrJoin(header, "\t"), "\n");
  for (const SweepPoint& p : points) {
    std::vector<std::string> row;
    for (const Column& c : SweepColumns()) {
      const double v = c.value(p);
      row.push_back(std::isinf(v) ? "inf" : absl::StrFormat("%.6g", v));
    }
    absl::StrAppend(&out, absl::StrJoin(row, "\t"), "\n");
  }
  return out;
}

std::string GnuplotScript(const SweepSpec& spec, absl::string_view tsv_path,
                          absl::string_view png_path, absl::string_view title) {
  const int x = ColumnNumber("output_throughput");
  auto plot = [&](const char* what, const char* p50, const char* p99) {
    const int c50 = ColumnNumber(p50);
    const int c99 = ColumnNumber(p99);
    return absl::StrFormat(
        "set title '%s'\n"
        "plot data using %d:%d with linespoints pt 7 lw 2 title 'p50', \\\n"
        "     data using %d:%d with linespoints pt 5 lw 2 title 'p99', \\\n"
        "     data using %d:%d:(sprintf('%s %%s', strcol(1))) with labels offset char 0,1 "
        "font ',8' notitle\n",
        what, x, c50, x, c99, x, c99, spec.kind == SweepSpec::Kind::kRate ? "rate" : "c");
  };
  std::string script;
  absl::StrAppend(&script, "# Generated by kvserve-bench from ", tsv_path, "\n");
  absl::StrAppend(&script, "data = ", GnuplotQuote(tsv_path), "\n");
  absl::StrAppend(&script, "set terminal pngcairo size 1400,560 font ',11'\n");
  absl::StrAppend(&script, "set output ", GnuplotQuote(png_path), "\n");
  absl::StrAppend(&script, "set datafile separator '\\t'\n");
  absl::StrAppend(&script, "set key autotitle columnhead top left\n");
  absl::StrAppend(&script, "set grid\n");
  absl::StrAppend(&script, "set xlabel 'output tokens/s'\n");
  absl::StrAppend(&script, "set ylabel 'ms'\n");
  absl::StrAppend(&script, "set yrange [0:*]\n");
  absl::StrAppend(&script, "set offsets graph 0.05, graph 0.1, graph 0.12, 0\n");
  absl::StrAppend(&script, "set multiplot layout 1,2 title ", GnuplotQuote(title), "\n");
  absl::StrAppend(&script, plot("time to first token", "ttft_p50_ms", "ttft_p99_ms"));
  absl::StrAppend(&script, plot("time per output token", "tpot_p50_ms", "tpot_p99_ms"));
  absl::StrAppend(&script, "unset multiplot\n");
  return script;
}

absl::Status RenderPlot(const SweepSpec& spec, absl::string_view tsv_path,
                        absl::string_view png_path, absl::string_view title) {
  const std::string script_path = absl::StrCat(png_path, ".gp");
  {
    std::ofstream script(script_path);
    script << GnuplotScript(spec, tsv_path, png_path, title);
    if (!script) return absl::InternalError(absl::StrCat("cannot write ", script_path));
  }
  std::string program = "gnuplot";
  std::vector<char*> argv = {program.data(), const_cast<char*>(script_path.c_str()), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, "gnuplot", nullptr, nullptr, argv.data(), environ);
  if (rc == ENOENT) {
    return absl::NotFoundError(
        "gnuplot is not installed (Debian: apt-get install gnuplot-nox, or "
        "scripts/install-deps.sh bench); the TSV has the numbers");
  }
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot run gnuplot: ", std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("gnuplot ", script_path, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace kvserve::bench
