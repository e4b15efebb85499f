// RequestLog: the exact JSON line of a finished request, and the writer thread behind Record().
#include "server/request_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

engine::SteadyTime At(int ms) {
  return engine::SteadyTime{} + std::chrono::seconds(100) + std::chrono::milliseconds(ms);
}

engine::RequestStats FinishedRequest() {
  engine::RequestStats s;
  s.request_id = "gen-7";
  s.finish_reason = engine::FinishReason::kLength;
  s.num_prompt_tokens = 5;
  s.num_generation_tokens = 16;
  s.num_cached_prompt_tokens = 0;
  s.arrival_time = At(0);
  s.first_scheduled_time = At(2);
  s.first_token_time = At(40);
  s.last_token_time = At(500);
  s.finish_time = At(501);
  return s;
}

const absl::Time kNow = absl::FromUnixMillis(1735732800123);  // 2025-01-01T12:00:00.123Z

TEST(RequestLogTest, FormatsOneJsonLineWithVllmsIntervals) {
  EXPECT_EQ(RequestLog::FormatLine("tiny", FinishedRequest(), kNow),
            R"({"time":"2025-01-01T12:00:00.123000Z","event":"request_finished","id":"gen-7",)"
            R"("model":"tiny","status":"length","prompt_tokens":5,"generation_tokens":16,)"
            R"("cached_prompt_tokens":0,"queue_time_s":0.002000,"ttft_s":0.040000,)"
            R"("e2e_s":0.501000})");
}

TEST(RequestLogTest, WritesNullForIntervalsThatNeverEndedAndEscapesTheClientsId) {
  engine::RequestStats s;
  s.request_id = "a\"b\\c\nd\x01";
  s.finish_reason = engine::FinishReason::kCancelled;
  s.num_prompt_tokens = 3;
  s.arrival_time = At(0);
  s.finish_time = At(7);
  EXPECT_EQ(RequestLog::FormatLine("m", s, kNow),
            R"({"time":"2025-01-01T12:00:00.123000Z","event":"request_finished",)"
            R"("id":"a\"b\\c\nd\u0001","model":"m","status":"cancelled","prompt_tokens":3,)"
            R"("generation_tokens":0,"cached_prompt_tokens":0,"queue_time_s":null,)"
            R"("ttft_s":null,"e2e_s":0.007000})");
}

TEST(RequestLogTest, RecordWritesEveryLineBeforeTheLogIsDestroyed) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  {
    RequestLog log(fds[1]);
    for (int i = 0; i < 3; ++i) log.Record("tiny", FinishedRequest());
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fds[0]);
  int lines = 0;
  for (char c : out) lines += c == '\n';
  EXPECT_EQ(lines, 3) << out;
  EXPECT_THAT(out, ::testing::StartsWith(R"({"time":")"));
  EXPECT_THAT(out, ::testing::HasSubstr(R"("id":"gen-7","model":"tiny","status":"length")"));
}

}  // namespace
}  // namespace kvserve::server
