// kvserve-bench statistics against hand-computed values: percentiles, summaries, per-request TTFT /
// TPOT / ITL / E2E, throughputs and goodput under SLOs.
#include "tools/bench/statistics.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr double kEps = 1e-12;

TEST(PercentileTest, InterpolatesLinearlyBetweenClosestRanks) {
  // Sorted {1, 2, 3, 4}: rank = p / 100 * 3.
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_NEAR(Percentile(v, 0), 1, kEps);
  EXPECT_NEAR(Percentile(v, 50), 2.5, kEps);   // rank 1.5
  EXPECT_NEAR(Percentile(v, 90), 3.7, kEps);   // rank 2.7: 3 + 0.7 * 1
  EXPECT_NEAR(Percentile(v, 99), 3.97, kEps);  // rank 2.97
  EXPECT_NEAR(Percentile(v, 100), 4, kEps);
}

TEST(PercentileTest, OfOneValueIsThatValue) {
  EXPECT_EQ(Percentile({7.5}, 0), 7.5);
  EXPECT_EQ(Percentile({7.5}, 99), 7.5);
}

TEST(PercentileTest, MatchesHandComputedValuesOnTenSamples) {
  // 10, 20, ..., 100: p90 -> rank 8.1 -> 90 + 0.1 * 10 = 91; p99 -> rank 8.91 -> 99.1.
  std::vector<double> v;
  for (int i = 10; i >= 1; --i) v.push_back(10.0 * i);
  EXPECT_NEAR(Percentile(v, 50), 55, kEps);
  EXPECT_NEAR(Percentile(v, 90), 91, kEps);
  EXPECT_NEAR(Percentile(v, 99), 99.1, kEps);
}

TEST(SummarizeTest, ComputesMeanPopulationStddevAndPercentiles) {
  const Distribution d = Summarize({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_EQ(d.count, 8);
  EXPECT_NEAR(d.mean, 5, kEps);
  EXPECT_NEAR(d.stddev, 2, kEps);  // the textbook example
  EXPECT_EQ(d.min, 2);
  EXPECT_EQ(d.max, 9);
  EXPECT_NEAR(d.p50, 4.5, kEps);
  EXPECT_NEAR(d.p90, 7.6, kEps);  // rank 6.3: 7 + 0.3 * 2
}

TEST(SummarizeTest, IsAllZeroForNoSamples) {
  const Distribution d = Summarize({});
  EXPECT_EQ(d.count, 0);
  EXPECT_EQ(d.mean, 0);
  EXPECT_EQ(d.p99, 0);
}

// A successful request that started at `start`, got its first message at start + ttft, and then
// one message per token every `gap` seconds.
RequestRecord Streamed(double start, double ttft, int tokens, double gap) {
  RequestRecord r;
  r.start_s = start;
  r.first_token_s = start + ttft;
  r.output_tokens = tokens;
  r.usage_output_tokens = tokens;
  r.num_token_messages = tokens;
  r.max_tokens = tokens;
  r.prompt_tokens = 10;
  for (int i = 1; i < tokens; ++i) r.itl_s.push_back(gap);
  r.end_s = start + ttft + gap * (tokens - 1);
  return r;
}

TEST(RequestRecordTest, TpotIsDecodeTimeOverTokensAfterTheFirst) {
  RequestRecord r = Streamed(1.0, 0.5, 5, 0.25);
  EXPECT_NEAR(*r.ttft_s(), 0.5, kEps);
  EXPECT_NEAR(r.e2e_s(), 1.5, kEps);
  EXPECT_NEAR(*r.tpot_s(), 0.25, kEps);  // (1.5 - 0.5) / 4
  r.end_s += 0.4;                        // a slow final message stretches TPOT: 1.4 / 4
  EXPECT_NEAR(*r.tpot_s(), 0.35, kEps);
}

TEST(RequestRecordTest, HasNoTpotWithOneTokenOrWhenFailed) {
  EXPECT_FALSE(Streamed(0, 0.1, 1, 0).tpot_s().has_value());
  RequestRecord failed = Streamed(0, 0.1, 4, 0.1);
  failed.status_code = static_cast<int>(absl::StatusCode::kCancelled);
  EXPECT_FALSE(failed.tpot_s().has_value());
  RequestRecord no_token;
  EXPECT_FALSE(no_token.ttft_s().has_value());
}

TEST(ParseSloTest, ReadsMillisecondsAndUnits) {
  absl::StatusOr<Slo> slo = ParseSlo("ttft=500,tpot=50ms, e2e=2s");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_NEAR(*slo->ttft_s, 0.5, kEps);
  EXPECT_NEAR(*slo->tpot_s, 0.05, kEps);
  EXPECT_NEAR(*slo->e2e_s, 2.0, kEps);
  EXPECT_EQ(FormatSlo(*slo), "ttft <= 500 ms, tpot <= 50 ms, e2e <= 2000 ms");
  absl::StatusOr<Slo> only = ParseSlo("e2el=100");
  ASSERT_TRUE(only.ok());
  EXPECT_FALSE(only->ttft_s.has_value());
  EXPECT_NEAR(*only->e2e_s, 0.1, kEps);
}

TEST(ParseSloTest, RejectsUnknownKeysAndBadValues) {
  for (const char* bad : {"", "ttft", "itl=5", "ttft=-1", "ttft=0", "ttft=abc", "tpot=5m"}) {
    absl::StatusOr<Slo> slo = ParseSlo(bad);
    EXPECT_FALSE(slo.ok()) << bad;
    if (!slo.ok()) {
      EXPECT_THAT(std::string(slo.status().message()), HasSubstr("--slo")) << bad;
    }
  }
}

TEST(MeetsSloTest, RequiresEveryObjective) {
  // Binary fractions, so "exactly at the limit" is exact.
  Slo slo;
  slo.ttft_s = 0.25;
  slo.tpot_s = 0.125;
  EXPECT_TRUE(MeetsSlo(Streamed(0, 0.25, 3, 0.125), slo));   // exactly at both limits
  EXPECT_FALSE(MeetsSlo(Streamed(0, 0.26, 3, 0.125), slo));  // TTFT too slow
  EXPECT_FALSE(MeetsSlo(Streamed(0, 0.1, 3, 0.13), slo));    // TPOT too slow
  EXPECT_TRUE(MeetsSlo(Streamed(0, 0.1, 1, 0), slo));        // one token: no TPOT to miss
  RequestRecord failed = Streamed(0, 0.1, 3, 0.01);
  failed.status_code = static_cast<int>(absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(MeetsSlo(failed, slo));
  EXPECT_TRUE(MeetsSlo(Streamed(0, 5, 3, 5), Slo()));  // no objective
}

TEST(ComputeStatsTest, MatchesHandComputedRun) {
  // Three successes and two failures over a 4-second run.
  std::vector<RequestRecord> records;
  records.push_back(Streamed(0.0, 0.1, 3, 0.2));  // ttft 0.1, tpot 0.2, e2e 0.5, ITL .2 .2
  records.push_back(Streamed(0.5, 0.3, 2, 0.4));  // ttft 0.3, tpot 0.4, e2e 0.7, ITL .4
  records.push_back(Streamed(1.0, 0.2, 1, 0.0));  // ttft 0.2, no tpot, e2e 0.2
  records[2].target_index = 1;
  RequestRecord cancelled = Streamed(1.1, 0.1, 2, 0.1);
  cancelled.status_code = static_cast<int>(absl::StatusCode::kCancelled);
  cancelled.cancel_planned = true;
  cancelled.cancel_sent = true;
  records.push_back(cancelled);
  RequestRecord unavailable;
  unavailable.start_s = 3.0;
  unavailable.end_s = 3.5;
  unavailable.status_code = static_cast<int>(absl::StatusCode::kUnavailable);
  records.push_back(unavailable);

  Slo slo;
  slo.ttft_s = 0.25;  // the second request misses it
  const RunStats s = ComputeStats(records, 4.0, slo);
  EXPECT_EQ(s.num_sent, 5);
  EXPECT_EQ(s.num_succeeded, 3);
  EXPECT_EQ(s.num_failed, 2);
  EXPECT_EQ(s.num_cancelled_by_client, 1);
  EXPECT_EQ(s.num_cancel_too_late, 0);
  EXPECT_EQ(s.num_cut_off, 0);
  EXPECT_THAT(s.errors, ElementsAre(Pair("CANCELLED", 1), Pair("UNAVAILABLE", 1)));
  EXPECT_EQ(s.total_input_tokens, 30);
  EXPECT_EQ(s.total_output_tokens, 6);
  EXPECT_EQ(s.total_output_tokens_all, 8);
  EXPECT_EQ(s.total_token_messages, 6);
  EXPECT_NEAR(s.request_throughput, 0.75, kEps);
  EXPECT_NEAR(s.output_throughput, 1.5, kEps);
  EXPECT_NEAR(s.total_token_throughput, 9.0, kEps);
  EXPECT_EQ(s.num_good, 2);
  EXPECT_NEAR(s.request_goodput, 0.5, kEps);
  // Overlaps: [0, .5] [.5, 1.2] [1, 1.2] [1.1, 1.3] [3, 3.5]; request 2 ends at 1.2 and request 3
  // at 1.2, request 4 started at 1.1: three at once.
  EXPECT_EQ(s.max_concurrency_seen, 3);

  EXPECT_EQ(s.ttft.count, 3);
  EXPECT_NEAR(s.ttft.mean, 0.2, kEps);
  EXPECT_NEAR(s.ttft.p50, 0.2, kEps);
  EXPECT_NEAR(s.ttft.p99, 0.298, 1e-9);  // rank 1.98: 0.2 + 0.98 * 0.1
  EXPECT_EQ(s.tpot.count, 2);
  EXPECT_NEAR(s.tpot.mean, 0.3, kEps);
  EXPECT_EQ(s.itl.count, 3);
  EXPECT_NEAR(s.itl.mean, (0.2 + 0.2 + 0.4) / 3, kEps);
  EXPECT_NEAR(s.itl.p50, 0.2, kEps);
  EXPECT_EQ(s.e2e.count, 3);
  EXPECT_NEAR(s.e2e.mean, (0.5 + 0.7 + 0.2) / 3, kEps);
  EXPECT_NEAR(s.e2e.max, 0.7, kEps);
}

TEST(ComputeStatsTest, CountsCutOffCallsLateCancelsAndUsageMismatches) {
  std::vector<RequestRecord> records;
  RequestRecord cut = Streamed(0, 0.1, 2, 0.1);
  cut.status_code = static_cast<int>(absl::StatusCode::kCancelled);
  cut.cut_off = true;
  cut.cancel_sent = true;
  records.push_back(cut);
  RequestRecord late = Streamed(0, 0.1, 4, 0.1);  // planned cancel, but the call succeeded
  late.cancel_planned = true;
  late.cancel_sent = true;
  records.push_back(late);
  RequestRecord short_usage = Streamed(0, 0.1, 4, 0.1);
  short_usage.usage_output_tokens = 3;
  records.push_back(short_usage);
  const RunStats s = ComputeStats(records, 1.0, Slo());
  EXPECT_EQ(s.num_cut_off, 1);
  EXPECT_EQ(s.num_cancelled_by_client, 0);  // a cut-off is not a planned cancel
  EXPECT_EQ(s.num_cancel_too_late, 1);
  EXPECT_EQ(s.num_usage_mismatches, 1);
  EXPECT_EQ(s.num_good, 2);  // no SLO: every success is good
}

TEST(ComputeStatsTest, IsEmptyForNoRecords) {
  const RunStats s = ComputeStats({}, 0, Slo());
  EXPECT_EQ(s.num_sent, 0);
  EXPECT_EQ(s.request_throughput, 0);
  EXPECT_EQ(s.ttft.count, 0);
}

}  // namespace
}  // namespace kvserve::bench
