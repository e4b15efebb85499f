// kvserve-bench's /metrics cross-check without a network: parsing the text format, summing series,
// counting what the client saw per target, and exact / bounded comparisons.
#include "tools/bench/metrics_check.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::HasSubstr;

constexpr char kText[] =
    R"(# HELP kvserve_request_success_total Generate calls that delivered all their tokens.
# TYPE kvserve_request_success_total counter
kvserve_request_success_total{model="m",finished_reason="length"} 12
kvserve_request_success_total{model="m",finished_reason="stop"} 3
kvserve_request_failure_total{model="m",reason="cancelled"} 2
kvserve_request_failure_total{model="",reason="invalid"} 1
kvserve_generation_tokens_total{model="m"} 400
kvserve_prompt_tokens_total{model="m"} 1000
kvserve_requests_running{model="m"} 0
kvserve_time_to_first_token_seconds_bucket{model="m",le="+Inf"} 17
weird{a="x\"y",b="line\nbreak"} 1.5e3 1700000000000
kvserve_build_info{version="0.1.0"} 1
)";

TEST(MetricsSnapshotTest, ParsesSamplesLabelsAndEscapes) {
  absl::StatusOr<MetricsSnapshot> s = MetricsSnapshot::Parse(kText);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->samples().size(), 10u);
  EXPECT_EQ(s->Sum("kvserve_request_success_total"), 15);
  EXPECT_EQ(s->Sum("kvserve_request_success_total", {{"finished_reason", "stop"}}), 3);
  EXPECT_EQ(s->Sum("kvserve_request_failure_total", {{"reason", "cancelled"}}), 2);
  EXPECT_EQ(s->Sum("kvserve_time_to_first_token_seconds_bucket", {{"le", "+Inf"}}), 17);
  EXPECT_EQ(s->Sum("weird", {{"a", "x\"y"}, {"b", "line\nbreak"}}), 1500);
  EXPECT_EQ(s->Sum("absent"), 0);
  EXPECT_TRUE(s->Has("kvserve_build_info"));
  EXPECT_FALSE(s->Has("kvserve_build"));
}

TEST(MetricsSnapshotTest, NamesTheLineOfAMalformedSample) {
  absl::StatusOr<MetricsSnapshot> s = MetricsSnapshot::Parse("# ok\na 1\nb{c=\"d\" 2\n");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("line 3"));
  EXPECT_FALSE(MetricsSnapshot::Parse("a notanumber\n").ok());
}

TEST(HttpUrlTest, ParsesHostPortAndPath) {
  absl::StatusOr<HttpUrl> u = ParseHttpUrl("http://127.0.0.1:9464/metrics");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 9464);
  EXPECT_EQ(u->path, "/metrics");
  u = ParseHttpUrl("http://[::1]:80");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->path, "/");
  u = ParseHttpUrl("https://localhost/metrics");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, 443);
  EXPECT_FALSE(ParseHttpUrl("ftp://127.0.0.1:9464/metrics").ok());
  EXPECT_FALSE(ParseHttpUrl("http://127.0.0.1:99999/metrics").ok());
  EXPECT_FALSE(ParseHttpUrl("http://:9464/metrics").ok());
}

TEST(HttpUrlTest, RefusesRemoteMetricsUrlsUnlessAllowed) {
  EXPECT_TRUE(ValidateMetricsUrl("http://localhost:9464/metrics", false).ok());
  const absl::Status remote = ValidateMetricsUrl("http://10.0.0.8:9464/metrics", false);
  EXPECT_EQ(remote.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(remote.message()), HasSubstr("--allow-remote"));
  EXPECT_TRUE(ValidateMetricsUrl("http://10.0.0.8:9464/metrics", true).ok());
}

RequestRecord Record(int32_t target, absl::StatusCode code, int32_t prompt, int32_t output,
                     int32_t max_tokens) {
  RequestRecord r;
  r.target_index = target;
  r.status_code = static_cast<int>(code);
  r.prompt_tokens = prompt;
  r.output_tokens = output;
  r.max_tokens = max_tokens;
  return r;
}

TEST(CountClientTest, CountsOutcomesAndTokensOfTheGivenTargets) {
  const std::vector<RequestRecord> records = {
      Record(0, absl::StatusCode::kOk, 10, 8, 8),
      Record(0, absl::StatusCode::kCancelled, 11, 3, 8),
      Record(0, absl::StatusCode::kDeadlineExceeded, 12, 0, 8),
      Record(1, absl::StatusCode::kOk, 100, 50, 50),
      Record(0, absl::StatusCode::kUnavailable, 13, 0, 8),
  };
  const ClientCounts c = CountClient(records, {0});
  EXPECT_EQ(c.succeeded, 1);
  EXPECT_EQ(c.cancelled, 1);
  EXPECT_EQ(c.deadline_exceeded, 1);
  EXPECT_EQ(c.other_failures, 1);
  EXPECT_EQ(c.output_tokens_succeeded, 8);
  EXPECT_EQ(c.output_tokens_failed, 3);
  EXPECT_EQ(c.output_tokens_failed_limit, 24);
  EXPECT_EQ(c.prompt_tokens_succeeded, 10);
  EXPECT_EQ(c.prompt_tokens_failed_started, 11);  // only the cancelled call received a token
  EXPECT_EQ(c.prompt_tokens_failed, 36);
  const ClientCounts both = CountClient(records, {0, 1});
  EXPECT_EQ(both.succeeded, 2);
  EXPECT_EQ(both.output_tokens_succeeded, 58);
}

MetricsSnapshot Snapshot(const std::string& text) {
  absl::StatusOr<MetricsSnapshot> s = MetricsSnapshot::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

const MetricsComparison& Find(const MetricsCheck& check, const std::string& what) {
  for (const MetricsComparison& c : check.comparisons) {
    if (c.what == what) return c;
  }
  ADD_FAILURE() << "no comparison " << what;
  return check.comparisons.front();
}

TEST(CompareMetricsTest, IsExactWhenEveryCallSucceeded) {
  const MetricsSnapshot before = Snapshot(
      "kvserve_request_success_total{finished_reason=\"length\"} 5\n"
      "kvserve_generation_tokens_total 100\nkvserve_prompt_tokens_total 70\n");
  const MetricsSnapshot after = Snapshot(
      "kvserve_request_success_total{finished_reason=\"length\"} 8\n"
      "kvserve_generation_tokens_total 148\nkvserve_prompt_tokens_total 100\n");
  ClientCounts client;
  client.succeeded = 3;
  client.output_tokens_succeeded = 48;
  client.prompt_tokens_succeeded = 30;
  MetricsCheck check = CompareMetrics(before, after, client);
  EXPECT_TRUE(check.ok());
  EXPECT_EQ(Find(check, "kvserve_generation_tokens_total").server, 48);
  EXPECT_EQ(Find(check, "kvserve_generation_tokens_total").client_max, 48);

  client.output_tokens_succeeded = 47;  // one token the client never saw
  check = CompareMetrics(before, after, client);
  EXPECT_FALSE(check.ok());
  EXPECT_FALSE(Find(check, "kvserve_generation_tokens_total").ok());
  EXPECT_TRUE(Find(check, "kvserve_request_success_total").ok());
}

TEST(CompareMetricsTest, BoundsTokensOfFailedCallsAndMatchesFailureReasons) {
  const MetricsSnapshot before = Snapshot("");
  const MetricsSnapshot after = Snapshot(
      "kvserve_request_success_total{finished_reason=\"length\"} 1\n"
      "kvserve_request_failure_total{reason=\"cancelled\"} 1\n"
      "kvserve_request_failure_total{reason=\"deadline\"} 1\n"
      "kvserve_request_failure_total{reason=\"rejected\"} 4\n"
      "kvserve_generation_tokens_total 14\nkvserve_prompt_tokens_total 21\n"
      "kvserve_prefix_cache_queries_total 40\nkvserve_prefix_cache_hits_total 10\n");
  ClientCounts client;
  client.succeeded = 1;
  client.cancelled = 1;
  client.deadline_exceeded = 1;
  client.output_tokens_succeeded = 8;
  client.output_tokens_failed = 3;         // server generated 6 for the failed calls: within
  client.output_tokens_failed_limit = 16;  // [3, 16]
  client.prompt_tokens_succeeded = 10;
  client.prompt_tokens_failed_started = 11;
  client.prompt_tokens_failed = 23;
  const MetricsCheck check = CompareMetrics(before, after, client);
  EXPECT_TRUE(check.ok()) << check.comparisons.size();
  const MetricsComparison& tokens = Find(check, "kvserve_generation_tokens_total");
  EXPECT_EQ(tokens.client_min, 11);
  EXPECT_EQ(tokens.client_max, 24);
  EXPECT_EQ(check.info.at("failures_rejected"), 4);
  EXPECT_EQ(check.info.at("prefix_cache_hit_ratio"), 0.25);

  ClientCounts more_cancels = client;
  more_cancels.cancelled = 2;
  EXPECT_FALSE(CompareMetrics(before, after, more_cancels).ok());
}

}  // namespace
// A cancel that crossed the server's final OK: the server counted a success for a call the client
// saw CANCELLED. That is allowed; a server cancel the client never made is not.
TEST(CompareMetricsTest, AcceptsACancelThatLostTheRaceToTheServersFinish) {
  const MetricsSnapshot before = Snapshot("");
  const auto server = [](int succeeded, int cancelled) {
    return Snapshot(
        absl::StrCat("kvserve_request_success_total{finished_reason=\"length\"} ", succeeded, "\n",
                     "kvserve_request_failure_total{reason=\"cancelled\"} ", cancelled, "\n",
                     "kvserve_generation_tokens_total 8\nkvserve_prompt_tokens_total 10\n"));
  };
  ClientCounts client;
  client.succeeded = 1;
  client.cancelled = 1;
  client.output_tokens_succeeded = 4;
  client.output_tokens_failed = 4;
  client.output_tokens_failed_limit = 4;
  client.prompt_tokens_succeeded = 5;
  client.prompt_tokens_failed_started = 5;
  client.prompt_tokens_failed = 5;
  EXPECT_TRUE(CompareMetrics(before, server(1, 1), client).ok());
  EXPECT_TRUE(CompareMetrics(before, server(2, 0), client).ok());
  EXPECT_FALSE(CompareMetrics(before, server(0, 2), client).ok());
  EXPECT_FALSE(CompareMetrics(before, server(2, 1), client).ok());
}

}  // namespace kvserve::bench
