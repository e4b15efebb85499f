// kvserve-bench: load generator and benchmark for kvserve servers.
//
//   kvserve-bench [--target=HOST:PORT ...] [--max-concurrency=N | --request-rate=R] [flags]
//
// Builds the workload, checks every target is up (ListModels), sends optional warm-up requests,
// runs the load (runner.h), prints the report (report.h) and, with --metrics-url, cross-checks the
// server's counters (metrics_check.h). --sweep repeats the run per rate or concurrency and writes a
// TSV row per point and a PNG.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/flags.h"
#include "tools/bench/metrics_check.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"
#include "tools/bench/statistics.h"
#include "tools/bench/workload.h"

namespace kvserve::bench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitMetricsMismatch = 1;
constexpr int kExitError = 2;
constexpr int kExitInterrupted = 130;

constexpr char kUsage[] =
    "Load-tests kvserve servers over gRPC and reports TTFT, TPOT, ITL and end-to-end latency "
    "(mean, p50, p90, p99), request and output-token throughput, goodput under --slo, and errors "
    "by gRPC status. One process drives many concurrent streams with gRPC's callback API. "
    "--protocol=openai sends the same workloads as streaming requests to kvserve's "
    "OpenAI-compatible HTTP API instead (--target = the --http-address), with the same report, so "
    "the two protocols' costs compare run against run.\n\n"
    "Load: --request-rate R sends open-loop arrivals (Poisson; gamma with --burstiness); "
    "--max-concurrency N caps the calls in flight (closed loop when the rate is inf); both may be "
    "combined. Every run is bounded by --num-requests and by --duration, and then stops itself: "
    "calls still running at --duration are cancelled and reported as cut off.\n\n"
    "Workloads: random (printable ASCII prompts of --input-len bytes, one token per byte plus "
    "BOS with the byte-level tokenizer), prefix-repetition (--num-prefixes shared prefixes + "
    "unique suffixes, to exercise the prefix cache), chat (--chat-turns user turns per "
    "conversation through the Chat RPC and the model's chat template), jsonl (--prompts-file, one "
    "{\"prompt\": ..., \"max_tokens\": ...} per line). Requests are sent with ignore_eos and "
    "max_tokens = the output length, so output lengths are exact.\n\n"
    "Targets must be loopback addresses unless --allow-remote is given. With --metrics-url (one "
    "per --target) the server's /metrics counters are scraped before and after and compared with "
    "what the client saw. --sweep=rate:1,2,4 or --sweep=concurrency:1,4,16 runs once per value "
    "and writes --sweep-tsv and, with gnuplot installed, --plot.\n\n"
    "Exit status: 0 done; 1 the server's counters disagree (--strict-metrics); 2 usage or setup "
    "error; 130 interrupted (the partial report is still printed).";

struct Flags {
  tools::ClientSecurity security;  // --api-key, --tls-ca, --tls-cert, --tls-key
  std::vector<std::string> targets = {"127.0.0.1:50051"};
  bool allow_remote = false;
  std::string protocol = "grpc";
  std::string model;
  std::string workload = "random";
  int64_t input_len = 64;
  int64_t output_len = 64;
  double range_ratio = 0;
  int64_t num_prefixes = 4;
  int64_t prefix_len = 256;
  int64_t suffix_len = 32;
  int64_t chat_turns = 2;
  std::string chat_template;
  std::string prompts_file;
  int64_t num_requests = 200;
  double duration = 60;
  std::string request_rate = "inf";
  double burstiness = 1;
  int64_t max_concurrency = 0;
  double cancel_fraction = 0;
  double timeout = 0;
  double temperature = -1;  // < 0: not sent
  uint64_t seed = 0;
  std::string slo;
  int64_t warmup_requests = 1;
  std::string result_json;
  std::vector<std::string> metrics_urls;
  bool strict_metrics = false;
  std::string sweep;
  std::string sweep_tsv = "kvserve-bench-sweep.tsv";
  std::string plot = "kvserve-bench-sweep.png";
  bool progress = true;
  double connect_timeout = 10;
};

void Register(base::FlagSet& f, Flags* flags) {
  f.AddRepeatedString("target", &flags->targets,
                      "Server address HOST:PORT (or a gRPC target URI). Repeat for several "
                      "replicas: requests go round robin.");
  f.AddString(
      "protocol", &flags->protocol,
      "grpc (kvserve.v1.KvServe Generate / Chat) or openai (streaming POST "
      "/v1/completions / /v1/chat/completions on the HTTP API; --target is its HOST:PORT).");
  f.AddBool("allow-remote", &flags->allow_remote,
            "Allow targets and metrics URLs that are not loopback addresses.");
  f.AddString("model", &flags->model, "Model name to request.");
  f.SetDefaultText("model", "server default");
  f.AddString("workload", &flags->workload, "random, prefix-repetition, chat or jsonl.");
  f.AddInt("input-len", &flags->input_len, "random: prompt length in bytes (tokens, minus BOS).");
  f.AddInt("output-len", &flags->output_len,
           "Tokens to generate per request (jsonl: for lines without max_tokens).");
  f.AddDouble("range-ratio", &flags->range_ratio,
              "random: lengths uniform in [len * (1 - r), len * (1 + r)], r in [0, 1).");
  f.AddInt("num-prefixes", &flags->num_prefixes, "prefix-repetition: distinct shared prefixes.");
  f.AddInt("prefix-len", &flags->prefix_len, "prefix-repetition: prefix length in bytes.");
  f.AddInt("suffix-len", &flags->suffix_len, "prefix-repetition: unique suffix length in bytes.");
  f.AddInt("chat-turns", &flags->chat_turns,
           "chat: user turns per conversation (with the assistant turns between them).");
  f.AddString("chat-template", &flags->chat_template,
              "chat: a template of the model's by name, or a Jinja template text, instead of the "
              "model's default (needed for models without one).");
  f.AddString("prompts-file", &flags->prompts_file, "jsonl: the file of prompts.");
  f.AddInt("num-requests", &flags->num_requests, "Requests per run (per sweep point).");
  f.AddDouble("duration", &flags->duration,
              "Hard limit on one run (per sweep point), seconds; calls still running are "
              "cancelled.");
  f.AddString("request-rate", &flags->request_rate,
              "Mean arrivals per second, or inf to start requests as fast as --max-concurrency "
              "allows.");
  f.AddDouble("burstiness", &flags->burstiness,
              "Gamma shape of inter-arrival gaps: 1 = Poisson, < 1 burstier, > 1 more regular.");
  f.AddInt("max-concurrency", &flags->max_concurrency, "Most calls in flight; 0 = unlimited.");
  f.AddDouble("cancel-fraction", &flags->cancel_fraction,
              "Fraction of requests the client cancels after 1..max_tokens/2 tokens.");
  f.AddDouble("timeout", &flags->timeout, "Per-request gRPC deadline in seconds; 0 = none.");
  f.AddDouble("temperature", &flags->temperature,
              "Sampling temperature sent with every request (0 = greedy); negative = not sent, "
              "so the server's default applies. Use 0 on random-weight models (their flat "
              "distributions make sampling, not the model, the cost).");
  f.AddUint64("seed", &flags->seed, "Seeds the workload, the arrivals and the cancellations.");
  f.AddString("slo", &flags->slo,
              "Goodput objectives, e.g. ttft=500,tpot=50 (ms; e2e= too; 's' suffix for "
              "seconds).");
  f.AddInt("warmup-requests", &flags->warmup_requests,
           "Requests sent one at a time before measuring (not counted).");
  f.AddString("result-json", &flags->result_json, "Write the results as JSON to this file.");
  f.AddRepeatedString("metrics-url", &flags->metrics_urls,
                      "http://HOST:PORT/metrics of each --target, in the same order (repeat a URL "
                      "for targets served by one server): cross-check the server's counters. "
                      "https:// uses --tls-ca (and --tls-cert/--tls-key).");
  f.AddBool("strict-metrics", &flags->strict_metrics,
            "Exit 1 when the server's counters disagree with the client's.");
  f.AddString("sweep", &flags->sweep,
              "rate:R1,R2,... or concurrency:C1,C2,...: one run per value.");
  f.AddString("sweep-tsv", &flags->sweep_tsv, "--sweep: the table, one row per point.");
  f.AddString("plot", &flags->plot,
              "--sweep: throughput-vs-latency PNG (needs gnuplot); empty = none.");
  f.AddBool("progress", &flags->progress, "Print a live progress line on stderr.");
  f.AddDouble("connect-timeout", &flags->connect_timeout,
              "Seconds to wait for each target to answer before starting.");
  tools::AddClientSecurityFlags(f, &flags->security);
}

int Fail(const absl::Status& status) {
  std::cerr << "kvserve-bench: " << status.message() << "\n";
  return kExitError;
}

// Stops the runner on SIGINT/SIGTERM; a second signal exits at once. The signals are blocked in
// every thread (the constructor runs before any other thread starts, gRPC's included) and taken
// here with sigtimedwait, so no handler runs in an arbitrary thread.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  }
  ~SignalWatcher() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  void Watch(Runner* runner) {
    thread_ = std::thread([this, runner] {
      const timespec tick = {0, 100'000'000};
      while (!done_.load()) {
        if (sigtimedwait(&signals_, nullptr, &tick) <= 0) continue;
        if (interrupted_.exchange(true)) {
          static const char kMessage[] = "\nkvserve-bench: interrupted twice, exiting\n";
          (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
          std::_Exit(kExitInterrupted);
        }
        runner->Stop();
        std::cerr << "\nkvserve-bench: interrupted, stopping (again to exit at once)\n";
      }
    });
  }
  bool interrupted() const { return interrupted_.load(); }

 private:
  sigset_t signals_;
  std::atomic<bool> done_{false};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

std::string DescribeWorkload(const WorkloadOptions& w, int64_t num_requests) {
  switch (w.kind) {
    case WorkloadKind::kRandom:
      return absl::StrCat(num_requests, " requests, random prompts of ", w.input_len, " bytes, ",
                          w.output_len, " output tokens, range ratio ", w.range_ratio);
    case WorkloadKind::kPrefixRepetition:
      return absl::StrCat(num_requests, " requests, ", w.num_prefixes, " shared prefixes of ",
                          w.prefix_len, " bytes + unique suffixes of ", w.suffix_len, " bytes, ",
                          w.output_len, " output tokens");
    case WorkloadKind::kChat:
      return absl::StrCat(num_requests, " chat requests of ", w.chat_turns, " user turns of ",
                          w.input_len, " bytes (assistant turns ", w.output_len, " bytes), ",
                          w.output_len, " output tokens");
    case WorkloadKind::kJsonl:
      return absl::StrCat(num_requests, " requests from ", w.prompts_file);
  }
  return "";
}

bool WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path);
  out << contents;
  out.close();
  if (!out) std::cerr << "kvserve-bench: cannot write " << path << "\n";
  return static_cast<bool>(out);
}

// One scrape per --metrics-url, in flag order.
absl::StatusOr<std::vector<MetricsSnapshot>> ScrapeAll(const Flags& flags) {
  std::vector<MetricsSnapshot> snapshots;
  absl::StatusOr<std::shared_ptr<const tools::TlsClientContext>> tls =
      tools::TlsClientContext::Create(flags.security);
  if (!tls.ok()) return tls.status();
  for (const std::string& url : flags.metrics_urls) {
    absl::StatusOr<MetricsSnapshot> s = ScrapeMetrics(url, absl::Seconds(5), *tls);
    if (!s.ok()) return s.status();
    snapshots.push_back(std::move(*s));
  }
  return snapshots;
}

// Waits until every distinct --metrics-url has counted `records` (see ScrapeSettled), and
// compares; one check per URL, covering every target that names it. `before` is ScrapeAll's.
absl::StatusOr<std::vector<MetricsCheck>> SettleAndCompare(
    const Flags& flags, const std::vector<MetricsSnapshot>& before,
    const std::vector<RequestRecord>& records) {
  std::vector<MetricsCheck> checks;
  absl::StatusOr<std::shared_ptr<const tools::TlsClientContext>> tls =
      tools::TlsClientContext::Create(flags.security);
  if (!tls.ok()) return tls.status();
  std::vector<std::string> urls;
  for (const std::string& url : flags.metrics_urls) {
    if (std::find(urls.begin(), urls.end(), url) == urls.end()) urls.push_back(url);
  }
  for (const std::string& url : urls) {
    std::vector<int32_t> covered;
    size_t first = 0;
    for (size_t t = flags.metrics_urls.size(); t-- > 0;) {
      if (flags.metrics_urls[t] == url) {
        covered.push_back(static_cast<int32_t>(t));
        first = t;
      }
    }
    const ClientCounts client = CountClient(records, covered);
    absl::StatusOr<MetricsSnapshot> after =
        ScrapeSettled(url, before[first], client, absl::Seconds(10), *tls);
    if (!after.ok()) return after.status();
    MetricsCheck check = CompareMetrics(before[first], *after, client);
    check.url = url;
    checks.push_back(std::move(check));
  }
  return checks;
}

// One measured run with its cross-checks.
struct Measured {
  RunDescription description;
  RunStats stats;
  std::vector<MetricsCheck> checks;
};

absl::StatusOr<Measured> MeasureOnce(Runner& runner, const Flags& flags,
                                     const WorkloadOptions& workload, LoadOptions load,
                                     const Slo& slo) {
  absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(workload, flags.num_requests);
  if (!requests.ok()) return requests.status();
  absl::StatusOr<std::vector<MetricsSnapshot>> before = ScrapeAll(flags);
  if (!before.ok()) return before.status();
  const bool tty = isatty(STDERR_FILENO);
  std::optional<Progress> previous;
  if (flags.progress) {
    load.progress_interval = tty ? std::chrono::milliseconds(500) : std::chrono::seconds(5);
    load.on_progress = [&](const Progress& p) {
      const std::string line = FormatProgress(p, previous);
      previous = p;
      if (tty) {
        std::cerr << "\r" << line << "\033[K" << std::flush;
      } else {
        std::cerr << line << "\n";
      }
    };
  }
  absl::StatusOr<RunResult> result = runner.Run(*requests, load);
  if (flags.progress && tty) std::cerr << "\n";
  if (!result.ok()) return result.status();

  Measured m;
  RunDescription& d = m.description;
  d.targets = flags.targets;
  d.model = runner.targets().front().model;
  d.workload = DescribeWorkload(workload, flags.num_requests);
  d.request_rate = load.arrivals.request_rate;
  d.burstiness = load.arrivals.burstiness;
  d.max_concurrency = load.max_concurrency;
  d.num_requests = flags.num_requests;
  d.duration_limit_s = load.duration_s;
  d.cancel_fraction = load.cancel_fraction;
  d.request_timeout_s = load.request_timeout_s;
  d.seed = workload.seed;
  d.slo = slo;
  d.stopped = result->stopped;
  d.duration_reached = result->duration_reached;
  d.num_not_sent = result->num_not_sent;
  m.stats = ComputeStats(result->records, result->duration_s, slo);
  absl::StatusOr<std::vector<MetricsCheck>> checks =
      SettleAndCompare(flags, *before, result->records);
  if (!checks.ok()) return checks.status();
  m.checks = std::move(*checks);
  return m;
}

int Main(int argc, char** argv) {
  Flags flags;
  base::FlagSet flag_set("kvserve-bench", kUsage);
  Register(flag_set, &flags);
  if (const absl::Status s = flag_set.Parse(argc, argv, 1, nullptr); !s.ok()) {
    std::cerr << "kvserve-bench: " << s.message() << "\nrun 'kvserve-bench --help' for usage\n";
    return kExitError;
  }
  if (flag_set.help_requested()) {
    std::cout << flag_set.Usage();
    return kExitOk;
  }

  // Everything checkable is checked before connecting.
  WorkloadOptions workload;
  if (auto kind = ParseWorkloadKind(flags.workload); kind.ok()) {
    workload.kind = *kind;
  } else {
    return Fail(kind.status());
  }
  workload.seed = flags.seed;
  workload.input_len = flags.input_len;
  workload.output_len = flags.output_len;
  workload.range_ratio = flags.range_ratio;
  workload.num_prefixes = flags.num_prefixes;
  workload.prefix_len = flags.prefix_len;
  workload.suffix_len = flags.suffix_len;
  workload.chat_turns = flags.chat_turns;
  workload.chat_template = flags.chat_template;
  workload.prompts_file = flags.prompts_file;
  if (auto probe = BuildWorkload(workload, 1); !probe.ok()) return Fail(probe.status());

  LoadOptions load;
  if (flags.request_rate == "inf") {
    load.arrivals.request_rate = std::numeric_limits<double>::infinity();
  } else if (!absl::SimpleAtod(flags.request_rate, &load.arrivals.request_rate) ||
             !(load.arrivals.request_rate > 0) || std::isinf(load.arrivals.request_rate)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--request-rate must be a number > 0 or inf, got '", flags.request_rate, "'")));
  }
  load.arrivals.burstiness = flags.burstiness;
  load.arrivals.seed = flags.seed;
  load.max_concurrency = flags.max_concurrency;
  load.duration_s = flags.duration;
  load.cancel_fraction = flags.cancel_fraction;
  load.request_timeout_s = flags.timeout;
  load.seed = flags.seed;
  if (auto a = ArrivalProcess::Create(load.arrivals); !a.ok()) return Fail(a.status());
  if (!(flags.duration > 0) || flags.duration > 24 * 3600) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--duration must be in (0, 86400] seconds, got ", flags.duration)));
  }
  if (flags.warmup_requests < 0) {
    return Fail(absl::InvalidArgumentError("--warmup-requests must be >= 0"));
  }
  Slo slo;
  if (!flags.slo.empty()) {
    absl::StatusOr<Slo> parsed = ParseSlo(flags.slo);
    if (!parsed.ok()) return Fail(parsed.status());
    slo = *parsed;
  }
  std::optional<SweepSpec> sweep;
  if (!flags.sweep.empty()) {
    absl::StatusOr<SweepSpec> parsed = ParseSweep(flags.sweep);
    if (!parsed.ok()) return Fail(parsed.status());
    sweep = *parsed;
  }
  if (!flags.metrics_urls.empty() && flags.metrics_urls.size() != flags.targets.size()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "give one --metrics-url per --target, in the same order (", flags.targets.size(),
        " targets, ", flags.metrics_urls.size(), " metrics URLs)")));
  }
  for (const std::string& url : flags.metrics_urls) {
    if (absl::Status s = ValidateMetricsUrl(url, flags.allow_remote); !s.ok()) return Fail(s);
  }

  SignalWatcher signals;  // before any thread exists, gRPC's included
  RunnerOptions runner_options;
  if (flags.protocol == "openai") {
    runner_options.protocol = Protocol::kOpenAi;
  } else if (flags.protocol != "grpc") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--protocol: must be grpc or openai, got '", flags.protocol, "'")));
  }
  runner_options.targets = flags.targets;
  runner_options.allow_remote = flags.allow_remote;
  runner_options.model = flags.model;
  if (flags.temperature >= 0) {
    if (!std::isfinite(flags.temperature)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--temperature: must be finite, got ", flags.temperature)));
    }
    runner_options.temperature = flags.temperature;
  } else if (std::isnan(flags.temperature)) {
    return Fail(absl::InvalidArgumentError("--temperature: must be a number, got nan"));
  }
  runner_options.connect_timeout_s = flags.connect_timeout;
  runner_options.security = flags.security;
  absl::StatusOr<std::unique_ptr<Runner>> runner = Runner::Create(runner_options);
  if (!runner.ok()) return Fail(runner.status());
  signals.Watch(runner->get());
  if (absl::Status s = (*runner)->Connect(); !s.ok()) return Fail(s);

  if (flags.warmup_requests > 0) {
    WorkloadOptions warm = workload;
    warm.seed = flags.seed ^ 0x5741524dULL;  // other prompts: no head start in the prefix cache
    absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(warm, flags.warmup_requests);
    if (!requests.ok()) return Fail(requests.status());
    LoadOptions warm_load;
    warm_load.max_concurrency = 1;
    warm_load.duration_s = std::min(flags.duration, 30.0);
    absl::StatusOr<std::vector<MetricsSnapshot>> before = ScrapeAll(flags);
    if (!before.ok()) return Fail(before.status());
    absl::StatusOr<RunResult> result = (*runner)->Run(*requests, warm_load);
    if (!result.ok()) return Fail(result.status());
    // The server counts a call's last tokens a moment after the client has seen them: wait, so
    // the warm-up does not leak into the first measurement's deltas.
    if (absl::Status s = SettleAndCompare(flags, *before, result->records).status(); !s.ok()) {
      return Fail(s);
    }
    for (const RequestRecord& r : result->records) {
      if (!r.ok() && !signals.interrupted()) {
        return Fail(absl::UnavailableError(
            absl::StrCat("warm-up request failed: ",
                         absl::StatusCodeToString(static_cast<absl::StatusCode>(r.status_code)),
                         ": ", r.error_message)));
      }
    }
  }

  std::vector<SweepPoint> points;
  std::vector<Measured> runs;
  const std::vector<double> values = sweep ? sweep->values : std::vector<double>{0};
  for (size_t i = 0; i < values.size() && !signals.interrupted(); ++i) {
    LoadOptions point_load = load;
    WorkloadOptions point_workload = workload;
    if (sweep) {
      if (sweep->kind == SweepSpec::Kind::kRate) {
        point_load.arrivals.request_rate = values[i];
      } else {
        point_load.max_concurrency = static_cast<int64_t>(values[i]);
      }
      point_workload.seed = flags.seed + i;  // fresh prompts per point
      std::cerr << "kvserve-bench: sweep point " << i + 1 << "/" << values.size() << ": "
                << sweep->name() << " " << FormatRate(values[i]) << "\n";
    }
    absl::StatusOr<Measured> m = MeasureOnce(**runner, flags, point_workload, point_load, slo);
    if (!m.ok()) return Fail(m.status());
    std::cout << FormatReport(m->description, m->stats);
    for (const MetricsCheck& check : m->checks) {
      std::cout << "\n" << FormatMetricsCheck(check);
      // Random prompts share nothing but BOS; hits mean an earlier run sent the same prompts.
      const auto hits = check.info.find("prefix_cache_hit_ratio");
      if (workload.kind == WorkloadKind::kRandom && hits != check.info.end() &&
          hits->second > 0.1) {
        std::cout << "  note: " << static_cast<int>(hits->second * 100)
                  << "% of prompt tokens were prefix-cache hits: an earlier run on this server "
                     "used the same --seed, so TTFT is optimistic; change --seed or restart the "
                     "server\n";
      }
    }
    std::cout << std::endl;
    if (sweep) {
      points.push_back({values[i], m->stats});
      WriteFile(flags.sweep_tsv, SweepTsv(*sweep, points));  // after each point: partial sweeps
    }
    runs.push_back(std::move(*m));
  }

  if (sweep && !points.empty()) {
    std::cout << "sweep table: " << flags.sweep_tsv << "\n";
    if (!flags.plot.empty()) {
      const std::string title =
          absl::StrCat("kvserve-bench ", runs.front().description.model, ": ",
                       runs.front().description.workload, "; sweep over ", sweep->name());
      if (absl::Status s = RenderPlot(*sweep, flags.sweep_tsv, flags.plot, title); s.ok()) {
        std::cout << "plot: " << flags.plot << "\n";
      } else {
        std::cerr << "kvserve-bench: no plot: " << s.message() << "\n";
      }
    }
  }
  if (!flags.result_json.empty()) {
    nlohmann::json j;
    if (sweep) {
      j["sweep"] = sweep->name();
      j["points"] = nlohmann::json::array();
      for (size_t i = 0; i < runs.size(); ++i) {
        nlohmann::json point = ResultJson(runs[i].description, runs[i].stats, runs[i].checks);
        point["sweep_value"] =
            std::isinf(values[i]) ? nlohmann::json("inf") : nlohmann::json(values[i]);
        j["points"].push_back(std::move(point));
      }
    } else if (!runs.empty()) {
      j = ResultJson(runs[0].description, runs[0].stats, runs[0].checks);
    }
    if (WriteFile(flags.result_json, j.dump(2) + "\n")) {
      std::cout << "results: " << flags.result_json << "\n";
    }
  }

  if (signals.interrupted()) return kExitInterrupted;
  bool metrics_ok = true;
  for (const Measured& m : runs) {
    for (const MetricsCheck& check : m.checks) metrics_ok &= check.ok();
  }
  if (!metrics_ok && flags.strict_metrics) return kExitMetricsMismatch;
  return kExitOk;
}

}  // namespace
}  // namespace kvserve::bench

int main(int argc, char** argv) { return kvserve::bench::Main(argc, argv); }
