// kvserve-bench reports: sweep specs, the TSV and gnuplot script, the JSON keys scripts rely on,
// and the text summary.
#include "tools/bench/report.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseSweepTest, ReadsRatesAndConcurrencies) {
  absl::StatusOr<SweepSpec> rate = ParseSweep("rate:1,2.5, 4,inf");
  ASSERT_TRUE(rate.ok()) << rate.status();
  EXPECT_EQ(rate->kind, SweepSpec::Kind::kRate);
  ASSERT_EQ(rate->values.size(), 4u);
  EXPECT_EQ(rate->values[1], 2.5);
  EXPECT_TRUE(std::isinf(rate->values[3]));
  absl::StatusOr<SweepSpec> concurrency = ParseSweep("concurrency:1,4,16");
  ASSERT_TRUE(concurrency.ok()) << concurrency.status();
  EXPECT_EQ(concurrency->kind, SweepSpec::Kind::kConcurrency);
  EXPECT_THAT(concurrency->values, ElementsAre(1, 4, 16));
}

TEST(ParseSweepTest, RefusesBadSpecs) {
  for (const char* bad : {"rate", "rate:", "speed:1,2", "rate:0", "rate:-1", "concurrency:1.5",
                          "concurrency:inf", "rate:x"}) {
    EXPECT_FALSE(ParseSweep(bad).ok()) << bad;
  }
}

RunStats SomeStats(double scale) {
  RunStats s;
  s.num_sent = 10;
  s.num_succeeded = 9;
  s.num_failed = 1;
  s.errors["CANCELLED"] = 1;
  s.duration_s = 2;
  s.request_throughput = 4.5 * scale;
  s.output_throughput = 288 * scale;
  s.ttft = {.count = 9, .mean = 0.02, .p50 = 0.015, .p99 = 0.05};
  s.tpot = {.count = 9, .mean = 0.004, .p50 = 0.003, .p99 = 0.009};
  return s;
}

TEST(SweepTsvTest, WritesAHeaderAndOneRowPerPointInMilliseconds) {
  absl::StatusOr<SweepSpec> spec = ParseSweep("concurrency:1,2");
  ASSERT_TRUE(spec.ok());
  const std::string tsv = SweepTsv(*spec, {{1, SomeStats(1)}, {2, SomeStats(2)}});
  const std::vector<std::string> lines = absl::StrSplit(tsv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  const std::vector<std::string> header = absl::StrSplit(lines[0], '\t');
  const std::vector<std::string> row = absl::StrSplit(lines[2], '\t');
  ASSERT_EQ(header.size(), row.size());
  EXPECT_EQ(header[0], "concurrency");
  auto cell = [&](const std::string& name) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return row[i];
    }
    return std::string("missing");
  };
  EXPECT_EQ(cell("concurrency"), "2");
  EXPECT_EQ(cell("completed"), "9");
  EXPECT_EQ(cell("output_throughput"), "576");
  EXPECT_EQ(cell("ttft_p50_ms"), "15");
  EXPECT_EQ(cell("tpot_p99_ms"), "9");

  const std::string script = GnuplotScript(*spec, "s.tsv", "it's.png", "title");
  EXPECT_THAT(script, HasSubstr("set output 'it''s.png'"));
  EXPECT_THAT(script, HasSubstr("data = 's.tsv'"));
  EXPECT_THAT(script, HasSubstr("time per output token"));
}

TEST(ResultJsonTest, UsesVllmStyleKeysInMilliseconds) {
  RunDescription run;
  run.targets = {"127.0.0.1:1"};
  run.model = "m";
  run.request_rate = std::numeric_limits<double>::infinity();
  run.max_concurrency = 4;
  run.num_requests = 10;
  const nlohmann::json j = ResultJson(run, SomeStats(1), {});
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["max_concurrency"], 4);
  EXPECT_EQ(j["completed"], 9);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_EQ(j["errors"]["CANCELLED"], 1);
  EXPECT_DOUBLE_EQ(j["request_throughput"].get<double>(), 4.5);
  EXPECT_DOUBLE_EQ(j["median_ttft_ms"].get<double>(), 15);
  EXPECT_DOUBLE_EQ(j["p99_tpot_ms"].get<double>(), 9);
  EXPECT_TRUE(j["request_goodput"].is_null());  // no SLO given
  EXPECT_TRUE(j.contains("mean_itl_ms"));
  EXPECT_TRUE(j.contains("p90_e2el_ms"));
  EXPECT_TRUE(j["metrics_check"].is_array());
}

TEST(FormatReportTest, ShowsCountsThroughputAndErrors) {
  RunDescription run;
  run.workload = "10 requests";
  run.request_rate = 2;
  run.num_requests = 10;
  const std::string text = FormatReport(run, SomeStats(1));
  EXPECT_THAT(text, HasSubstr("10 of 10 sent: 9 ok, 1 failed"));
  EXPECT_THAT(text, HasSubstr("request rate 2/s, Poisson"));
  EXPECT_THAT(text, HasSubstr("4.50 req/s, 288.0 output tok/s"));
  EXPECT_THAT(text, HasSubstr("CANCELLED 1"));
  EXPECT_THAT(text, HasSubstr("TTFT"));
}

TEST(FormatProgressTest, ReportsTheTokenRateSinceThePreviousLine) {
  Progress first{.elapsed_s = 1, .total = 10, .sent = 4, .in_flight = 4, .output_tokens = 100};
  Progress second{
      .elapsed_s = 2, .total = 10, .sent = 6, .in_flight = 2, .succeeded = 4, .output_tokens = 350};
  EXPECT_THAT(FormatProgress(first, std::nullopt), HasSubstr("100 tok/s"));
  EXPECT_THAT(FormatProgress(second, first),
              HasSubstr("6/10 sent  2 in flight  4 ok  0 failed  250 tok/s"));
}

}  // namespace
}  // namespace kvserve::bench
