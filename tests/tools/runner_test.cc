// kvserve-bench's target rules, without a network: loopback hosts pass, anything else needs
// --allow-remote, and the refusal says why. (The runner itself is exercised against a real server
// in tests/tools/integration/.)
#include "tools/bench/runner.h"

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::HasSubstr;

TEST(IsLoopbackHostTest, KnowsTheLoopbackNames) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost", "LocalHost", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"10.0.0.1", "128.0.0.1", "0.0.0.0", "example.com", "127.0.0",
                           "::", "127.0.0.256", "localhost.example.com", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST(ValidateTargetTest, AcceptsLoopbackTargetsInEveryForm) {
  for (const char* target :
       {"127.0.0.1:50051", "localhost:50051", "[::1]:50051", "dns:///localhost:50051",
        "dns://8.8.8.8/127.0.0.1:50051", "ipv4:127.0.0.1:1,127.0.0.2:2", "ipv6:[::1]:50051",
        "unix:/tmp/kvserve.sock", "unix-abstract:kvserve"}) {
    EXPECT_TRUE(ValidateTarget(target, /*allow_remote=*/false).ok()) << target;
  }
}

TEST(ValidateTargetTest, RefusesRemoteTargetsUnlessAllowed) {
  for (const char* target : {"10.1.2.3:50051", "kvserve.prod:50051", "dns:///kvserve:50051",
                             "ipv4:127.0.0.1:1,10.0.0.1:2", "0.0.0.0:50051"}) {
    const absl::Status status = ValidateTarget(target, /*allow_remote=*/false);
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << target;
    EXPECT_THAT(std::string(status.message()), HasSubstr("--allow-remote")) << target;
    EXPECT_TRUE(ValidateTarget(target, /*allow_remote=*/true).ok()) << target;
  }
  EXPECT_EQ(ValidateTarget("", true).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RunnerTest, CreateRefusesARemoteTarget) {
  RunnerOptions options;
  options.targets = {"127.0.0.1:1", "192.168.0.9:50051"};
  absl::StatusOr<std::unique_ptr<Runner>> runner = Runner::Create(options);
  ASSERT_FALSE(runner.ok());
  EXPECT_THAT(std::string(runner.status().message()), HasSubstr("192.168.0.9"));
}

}  // namespace
}  // namespace kvserve::bench
