#include "server/protobuf_logging.h"

#include <string>

#include "base/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.pb.h"

namespace kvserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(IsLoggedOccurrenceTest, IsTruePowersOfTwoOnly) {
  int64_t logged = 0;
  for (int64_t n = 1; n <= 1024; ++n) logged += IsLoggedOccurrence(n) ? 1 : 0;
  EXPECT_EQ(logged, 11);  // 1, 2, 4, ..., 1024
  EXPECT_TRUE(IsLoggedOccurrence(1));
  EXPECT_TRUE(IsLoggedOccurrence(int64_t{1} << 40));
  EXPECT_FALSE(IsLoggedOccurrence(0));
  EXPECT_FALSE(IsLoggedOccurrence(3));
  EXPECT_FALSE(IsLoggedOccurrence(-4));
}

int NumLines(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// Field 2 of GenerateRequest (prompt, a proto3 string) holding the byte FF.
const std::string kInvalidUtf8Request("\x12\x01\xff", 3);

// One test: the line counts are process-wide, so the order of these steps is the test.
TEST(ProtobufLoggingTest, RoutesLibprotobufLinesThroughTheLoggerThinnedToPowersOfTwo) {
  RouteProtobufLogging();
  RouteProtobufLogging();  // idempotent

  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 9; ++i) {
    kvserve::v1::GenerateRequest request;
    EXPECT_FALSE(request.ParseFromString(kInvalidUtf8Request));
  }
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(NumLines(err, "libprotobuf: "), 4) << err;
  EXPECT_EQ(NumLines(err, "invalid UTF-8"), 4) << err;
  for (const char* n : {"(line 1 of", "(line 2 of", "(line 4 of", "(line 8 of"}) {
    EXPECT_THAT(err, HasSubstr(n));
  }
  EXPECT_THAT(err, Not(HasSubstr("(line 3 of")));
  EXPECT_THAT(err, Not(HasSubstr("[libprotobuf ERROR")));  // libprotobuf's own format

  // --log-level applies: above ERROR, line 16 is not written either.
  base::SetMinLogSeverity(base::LogSeverity::kFatal);
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 8; ++i) {
    kvserve::v1::GenerateRequest request;
    EXPECT_FALSE(request.ParseFromString(kInvalidUtf8Request));
  }
  err = ::testing::internal::GetCapturedStderr();
  base::SetMinLogSeverity(base::LogSeverity::kInfo);
  EXPECT_EQ(err, "");
}

}  // namespace
}  // namespace kvserve::server
