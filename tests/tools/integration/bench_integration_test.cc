// kvserve-bench's runner against a real in-process server on 127.0.0.1:0 (default model, one
// engine thread, /metrics on 127.0.0.1:0): short bounded runs complete, the statistics agree with
// themselves, and the client's counts equal the server's counter deltas exactly — for plain runs,
// with client cancellations, when --duration cuts calls off, and over mutual TLS.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/kvserve_server.h"
#include "tests/testing/tls_test_fixture.h"
#include "tools/bench/metrics_check.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"
#include "tools/bench/statistics.h"
#include "tools/bench/workload.h"
#include "tools/tls_client.h"

namespace kvserve::bench {
namespace {

constexpr uint64_t kSeed = 42;
constexpr char kModel[] = "tiny-llama-gqa-random-weights";

class BenchIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.engine.num_threads = 1;
    options.engine.max_num_seqs = 8;
    options.http.address = "127.0.0.1:0";
    auto server = server::KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    metrics_url_ = absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics");

    RunnerOptions runner_options;
    runner_options.targets = {absl::StrCat("127.0.0.1:", server_->port())};
    auto runner = Runner::Create(runner_options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    ASSERT_TRUE(runner_->Connect().ok());
  }

  std::vector<BenchRequest> Workload(int64_t n, int64_t input_len, int64_t output_len,
                                     double range_ratio) {
    WorkloadOptions w;
    w.seed = kSeed;
    w.input_len = input_len;
    w.output_len = output_len;
    w.range_ratio = range_ratio;
    absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(w, n);
    EXPECT_TRUE(requests.ok()) << requests.status();
    return *requests;
  }

  MetricsSnapshot Scrape() {
    absl::StatusOr<MetricsSnapshot> s = ScrapeMetrics(metrics_url_, absl::Seconds(5));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : MetricsSnapshot();
  }

  // Runs, then scrapes until the server's counters have settled, and compares.
  struct Outcome {
    RunResult result;
    RunStats stats;
    MetricsCheck check;
    MetricsSnapshot before, after;
  };
  Outcome RunAndCheck(const std::vector<BenchRequest>& requests, const LoadOptions& load) {
    Outcome o;
    o.before = Scrape();
    absl::StatusOr<RunResult> result = runner_->Run(requests, load);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return o;
    o.result = std::move(*result);
    o.stats = ComputeStats(o.result.records, o.result.duration_s, Slo());
    const ClientCounts client = CountClient(o.result.records, {0});
    absl::StatusOr<MetricsSnapshot> after =
        ScrapeSettled(metrics_url_, o.before, client, absl::Seconds(10));
    EXPECT_TRUE(after.ok()) << after.status();
    if (after.ok()) o.after = *after;
    o.check = CompareMetrics(o.before, o.after, client);
    return o;
  }

  double Delta(const Outcome& o, const std::string& name, const Labels& labels = {}) {
    return o.after.Sum(name, labels) - o.before.Sum(name, labels);
  }

  std::unique_ptr<server::KvServer> server_;
  std::string metrics_url_;
  std::unique_ptr<Runner> runner_;
};

TEST_F(BenchIntegrationTest, ConnectLearnsTheModelAndItsSpecialTokens) {
  ASSERT_EQ(runner_->targets().size(), 1u);
  EXPECT_EQ(runner_->targets()[0].model, kModel);
  EXPECT_EQ(runner_->targets()[0].num_special_tokens, 1);  // BOS
  EXPECT_EQ(runner_->targets()[0].max_context_length, 2048);
}

TEST_F(BenchIntegrationTest, ClosedLoopRunSucceedsAndMatchesTheServersCountersExactly) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  const std::vector<BenchRequest> requests = Workload(20, 32, 12, 0.3);
  LoadOptions load;
  load.max_concurrency = 4;
  load.duration_s = 30;
  const Outcome o = RunAndCheck(requests, load);
  const RunStats& s = o.stats;

  // Every request ran to its max_tokens.
  EXPECT_FALSE(o.result.duration_reached);
  EXPECT_EQ(o.result.num_not_sent, 0);
  ASSERT_EQ(o.result.records.size(), 20u);
  int64_t expected_output = 0, expected_prompt = 0, expected_itl = 0, expected_tpot = 0;
  for (const RequestRecord& r : o.result.records) {
    const BenchRequest& b = requests[static_cast<size_t>(r.index)];
    EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    EXPECT_EQ(r.output_tokens, b.max_tokens) << r.index;
    EXPECT_EQ(r.usage_output_tokens, b.max_tokens) << r.index;
    EXPECT_TRUE(r.prompt_tokens_from_server);
    EXPECT_EQ(r.prompt_tokens, static_cast<int32_t>(b.prompt.size()) + 1) << r.index;  // + BOS
    ASSERT_TRUE(r.ttft_s().has_value());
    EXPECT_GT(*r.ttft_s(), 0);
    EXPECT_LE(*r.ttft_s(), r.e2e_s());
    EXPECT_EQ(static_cast<int32_t>(r.itl_s.size()), r.num_token_messages - 1);
    expected_output += b.max_tokens;
    expected_prompt += static_cast<int64_t>(b.prompt.size()) + 1;
    expected_itl += r.num_token_messages - 1;
    if (b.max_tokens >= 2) ++expected_tpot;
  }

  // The statistics agree with the records and with themselves.
  EXPECT_EQ(s.num_succeeded, 20);
  EXPECT_EQ(s.num_failed, 0);
  EXPECT_TRUE(s.errors.empty());
  EXPECT_EQ(s.num_usage_mismatches, 0);
  EXPECT_EQ(s.total_output_tokens, expected_output);
  EXPECT_EQ(s.total_input_tokens, expected_prompt);
  EXPECT_EQ(s.ttft.count, 20);
  EXPECT_EQ(s.e2e.count, 20);
  EXPECT_EQ(s.tpot.count, expected_tpot);
  EXPECT_EQ(s.itl.count, expected_itl);
  EXPECT_LE(s.ttft.p50, s.ttft.p90);
  EXPECT_LE(s.ttft.p90, s.ttft.p99);
  EXPECT_LE(s.ttft.p99, s.ttft.max);
  EXPECT_LE(s.ttft.max, s.e2e.max);
  EXPECT_GE(s.max_concurrency_seen, 1);
  EXPECT_LE(s.max_concurrency_seen, 4);
  EXPECT_GT(s.duration_s, 0);
  EXPECT_DOUBLE_EQ(s.request_throughput, 20 / s.duration_s);
  EXPECT_DOUBLE_EQ(s.output_throughput, expected_output / s.duration_s);

  // The server counted exactly what the client saw.
  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  EXPECT_EQ(Delta(o, "kvserve_request_success_total"), 20);
  EXPECT_EQ(Delta(o, "kvserve_request_success_total", {{"finished_reason", "length"}}), 20);
  EXPECT_EQ(Delta(o, "kvserve_generation_tokens_total"), expected_output);
  EXPECT_EQ(Delta(o, "kvserve_prompt_tokens_total"), expected_prompt);
  EXPECT_EQ(Delta(o, "kvserve_request_failure_total"), 0);
  EXPECT_EQ(Delta(o, "kvserve_e2e_request_latency_seconds_count"), 20);
  EXPECT_EQ(Delta(o, "kvserve_time_to_first_token_seconds_count"), 20);
}

TEST_F(BenchIntegrationTest, ChatWorkloadRunsThroughTheChatRpc) {
  WorkloadOptions w;
  w.kind = WorkloadKind::kChat;
  w.seed = kSeed;
  w.chat_turns = 2;
  w.input_len = 6;
  w.output_len = 3;
  // The default model has no template of its own: "<role>content" per turn.
  w.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
  absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(w, 6);
  ASSERT_TRUE(requests.ok()) << requests.status();
  LoadOptions load;
  load.max_concurrency = 2;
  load.duration_s = 30;
  const Outcome o = RunAndCheck(*requests, load);
  ASSERT_EQ(o.result.records.size(), 6u);
  for (const RequestRecord& r : o.result.records) {
    EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    EXPECT_EQ(r.output_tokens, 3);
    // The rendered prompt, byte for byte: <user>6 bytes<assistant>3 bytes<user>6 bytes; the
    // template writes no BOS and none is added.
    EXPECT_EQ(r.prompt_tokens, 6 + 6 + 11 + 3 + 6 + 6) << r.index;
  }
  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  EXPECT_EQ(Delta(o, "kvserve_request_success_total"), 6);
}

TEST_F(BenchIntegrationTest, ServerCountsEveryCancelledCallOnceWhicheverSideWinsTheRace) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  const std::vector<BenchRequest> requests = Workload(20, 32, 16, 0);
  LoadOptions load;
  load.max_concurrency = 4;
  load.duration_s = 30;
  load.cancel_fraction = 0.5;
  load.seed = kSeed;
  const Outcome o = RunAndCheck(requests, load);
  const RunStats& s = o.stats;

  int64_t planned = 0;
  for (const RequestRecord& r : o.result.records) {
    if (r.cancel_planned) ++planned;
    if (!r.cancel_planned) {
      EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    }
    if (!r.ok()) {
      EXPECT_LT(r.output_tokens, 16) << r.index;
    }
  }
  EXPECT_GT(planned, 0);
  EXPECT_LT(planned, 20);
  EXPECT_EQ(s.num_cancelled_by_client + s.num_cancel_too_late, planned);
  EXPECT_EQ(s.num_cancelled_by_client + s.num_succeeded, 20);
  EXPECT_EQ(s.num_cut_off, 0);
  EXPECT_EQ(s.num_cancelled_by_client, s.errors.count("CANCELLED") ? s.errors.at("CANCELLED") : 0);

  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  // A cancel can cross the server's final status on the wire: the server finished the call (and
  // counted a success) while the client, having cancelled first, reports CANCELLED. gRPC allows
  // both orders, so the exact statement is that the server counts every call once, never more
  // cancels than the client made, and never fewer successes than the client saw.
  const double server_cancelled =
      Delta(o, "kvserve_request_failure_total", {{"reason", "cancelled"}});
  const double server_succeeded = Delta(o, "kvserve_request_success_total");
  EXPECT_EQ(server_cancelled + server_succeeded, 20);
  EXPECT_EQ(Delta(o, "kvserve_request_failure_total"), server_cancelled);
  EXPECT_LE(server_cancelled, s.num_cancelled_by_client);
  EXPECT_GE(server_succeeded, s.num_succeeded);
}

// Connect's probe over HTTP (a one-token completion) reaches the token counters with the engine's
// report after its step, which may come after the reply: waits until the server has counted it, so
// that it does not land in the first run's deltas.
absl::Status SettleConnectProbe(const std::string& metrics_url,
                                std::shared_ptr<const tools::TlsClientContext> tls) {
  ClientCounts probe;
  probe.succeeded = 1;
  probe.output_tokens_succeeded = 1;
  return ScrapeSettled(metrics_url, MetricsSnapshot(), probe, absl::Seconds(10), std::move(tls))
      .status();
}

// --protocol=openai: the same runner, workloads and cross-check over the HTTP API.
class OpenAiBenchIntegrationTest : public BenchIntegrationTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(BenchIntegrationTest::SetUp());
    RunnerOptions runner_options;
    runner_options.protocol = Protocol::kOpenAi;
    runner_options.targets = {absl::StrCat("127.0.0.1:", server_->http_port())};
    auto runner = Runner::Create(runner_options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    const absl::Status connected = runner_->Connect();
    ASSERT_TRUE(connected.ok()) << connected;
    ASSERT_TRUE(SettleConnectProbe(metrics_url_, nullptr).ok());
  }
};

TEST_F(OpenAiBenchIntegrationTest, ConnectLearnsTheModelAndItsSpecialTokensOverHttp) {
  ASSERT_EQ(runner_->targets().size(), 1u);
  EXPECT_EQ(runner_->targets()[0].model, kModel);
  EXPECT_EQ(runner_->targets()[0].num_special_tokens, 1);  // BOS
  EXPECT_EQ(runner_->targets()[0].max_context_length, 2048);
}

TEST_F(OpenAiBenchIntegrationTest, RunWithCancellationsMatchesTheServersCountersExactly) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  const std::vector<BenchRequest> requests = Workload(20, 32, 16, 0.3);
  LoadOptions load;
  load.max_concurrency = 4;
  load.duration_s = 30;
  load.cancel_fraction = 0.3;
  load.seed = kSeed;
  const Outcome o = RunAndCheck(requests, load);
  const RunStats& s = o.stats;
  ASSERT_EQ(o.result.records.size(), 20u);
  int64_t expected_output = 0;
  for (const RequestRecord& r : o.result.records) {
    const BenchRequest& b = requests[static_cast<size_t>(r.index)];
    if (!r.cancel_planned) {
      EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    }
    if (!r.ok()) continue;
    // The usage chunk's exact count.
    EXPECT_EQ(r.output_tokens, b.max_tokens) << r.index;
    EXPECT_TRUE(r.prompt_tokens_from_server);
    EXPECT_EQ(r.prompt_tokens, static_cast<int32_t>(b.prompt.size()) + 1) << r.index;
    ASSERT_TRUE(r.ttft_s().has_value());
    EXPECT_LE(*r.ttft_s(), r.e2e_s());
    expected_output += b.max_tokens;
  }
  EXPECT_EQ(s.num_cancelled_by_client + s.num_succeeded, 20);
  EXPECT_EQ(s.total_output_tokens, expected_output);
  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  EXPECT_EQ(Delta(o, "kvserve_request_success_total"), s.num_succeeded);
  EXPECT_EQ(Delta(o, "kvserve_request_failure_total", {{"reason", "cancelled"}}),
            s.num_cancelled_by_client);
}

TEST_F(OpenAiBenchIntegrationTest, ChatWorkloadRunsThroughChatCompletions) {
  WorkloadOptions w;
  w.kind = WorkloadKind::kChat;
  w.seed = kSeed;
  w.chat_turns = 2;
  w.input_len = 6;
  w.output_len = 3;
  w.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
  absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(w, 6);
  ASSERT_TRUE(requests.ok()) << requests.status();
  LoadOptions load;
  load.max_concurrency = 2;
  load.duration_s = 30;
  const Outcome o = RunAndCheck(*requests, load);
  ASSERT_EQ(o.result.records.size(), 6u);
  for (const RequestRecord& r : o.result.records) {
    EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    EXPECT_EQ(r.output_tokens, 3);
    EXPECT_EQ(r.prompt_tokens, 6 + 6 + 11 + 3 + 6 + 6) << r.index;  // as over gRPC
  }
  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  EXPECT_EQ(Delta(o, "kvserve_request_success_total"), 6);
}

TEST_F(BenchIntegrationTest, DurationCutsOffRunningCallsAndTheServerCountsThemCancelled) {
  // Requests that would run for many seconds; the run must stop itself at 0.5 s.
  const std::vector<BenchRequest> requests = Workload(6, 8, 1500, 0);
  LoadOptions load;
  load.max_concurrency = 3;
  load.duration_s = 0.5;
  const auto start = std::chrono::steady_clock::now();
  const Outcome o = RunAndCheck(requests, load);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(12));
  EXPECT_TRUE(o.result.duration_reached);
  EXPECT_EQ(o.result.records.size(), 3u);
  EXPECT_EQ(o.result.num_not_sent, 3);
  EXPECT_EQ(o.stats.num_cut_off, 3);
  EXPECT_EQ(o.stats.num_succeeded, 0);
  EXPECT_LT(o.result.duration_s, 3.0);
  EXPECT_TRUE(o.check.ok()) << FormatMetricsCheck(o.check);
  EXPECT_EQ(Delta(o, "kvserve_request_failure_total", {{"reason", "cancelled"}}), 3);
}

// --protocol=openai and the metrics cross-check against a server that serves every port over
// mutual TLS: the --tls-ca/--tls-cert/--tls-key flags reach the HTTP API and https:// metrics
// URLs as they reach gRPC.
class HttpsBenchIntegrationTest : public ::kvserve::testing::TlsTestFixture {};

TEST_F(HttpsBenchIntegrationTest, OpenAiRunAndMetricsCheckWorkOverMutualTls) {
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.http.address = "127.0.0.1:0";
  options.engine.num_threads = 1;
  options.tls.cert_file = certs_->Path("serving.crt");
  options.tls.key_file = certs_->Path("serving.key");
  options.tls.client_ca_file = certs_->Path("ca.crt");
  auto server = server::KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string metrics_url =
      absl::StrCat("https://127.0.0.1:", (*server)->metrics_port(), "/metrics");

  RunnerOptions runner_options;
  runner_options.protocol = Protocol::kOpenAi;
  runner_options.targets = {absl::StrCat("127.0.0.1:", (*server)->http_port())};
  // Without TLS flags the runner speaks plain HTTP, which the server never answers (Connect keeps
  // trying for connect_timeout_s, then reports the last failure).
  runner_options.connect_timeout_s = 1;
  auto plain = Runner::Create(runner_options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Connect().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ScrapeMetrics(metrics_url, absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);  // https:// without --tls-ca

  runner_options.connect_timeout_s = 30;
  runner_options.security.tls_ca_file = certs_->Path("ca.crt");
  runner_options.security.tls_cert_file = certs_->Path("client.crt");
  runner_options.security.tls_key_file = certs_->Path("client.key");
  auto runner = Runner::Create(runner_options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const absl::Status connected = (*runner)->Connect();
  ASSERT_TRUE(connected.ok()) << connected;
  absl::StatusOr<std::shared_ptr<const tools::TlsClientContext>> tls =
      tools::TlsClientContext::Create(runner_options.security);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ASSERT_TRUE(SettleConnectProbe(metrics_url, *tls).ok());
  absl::StatusOr<MetricsSnapshot> before = ScrapeMetrics(metrics_url, absl::Seconds(5), *tls);
  ASSERT_TRUE(before.ok()) << before.status();

  WorkloadOptions w;
  w.seed = kSeed;
  w.input_len = 16;
  w.output_len = 8;
  absl::StatusOr<std::vector<BenchRequest>> requests = BuildWorkload(w, 6);
  ASSERT_TRUE(requests.ok()) << requests.status();
  LoadOptions load;
  load.max_concurrency = 2;
  load.duration_s = 60;
  absl::StatusOr<RunResult> result = (*runner)->Run(*requests, load);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->records.size(), 6u);
  for (const RequestRecord& r : result->records) {
    EXPECT_TRUE(r.ok()) << r.index << ": " << r.error_message;
    EXPECT_EQ(r.output_tokens, (*requests)[static_cast<size_t>(r.index)].max_tokens) << r.index;
  }
  const ClientCounts client = CountClient(result->records, {0});
  absl::StatusOr<MetricsSnapshot> after =
      ScrapeSettled(metrics_url, *before, client, absl::Seconds(10), *tls);
  ASSERT_TRUE(after.ok()) << after.status();
  const MetricsCheck check = CompareMetrics(*before, *after, client);
  EXPECT_TRUE(check.ok()) << FormatMetricsCheck(check);
  EXPECT_EQ(
      after->Sum("kvserve_request_success_total") - before->Sum("kvserve_request_success_total"),
      6);
}

}  // namespace
}  // namespace kvserve::bench
