// HttpListener (server/http_listener.h) on its own: start-up and shutdown on 127.0.0.1:0, and the
// errors that name the flag.
#include "server/http_listener.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

using ::testing::HasSubstr;

HttpListenerOptions Loopback() {
  HttpListenerOptions options;
  options.address = "127.0.0.1:0";
  options.flag = "--test-address";
  options.max_connections = 2;
  return options;
}

// httplib's stop() is lost when it comes before the accept loop has started; Start waits for the
// loop, so a Stop at once (a SIGTERM during start-up) always ends it. Repeated, because the
// window was narrow: before the fix, some of these Stops waited forever.
TEST(HttpListenerTest, StopRightAfterStartAlwaysReturns) {
  for (int i = 0; i < 200; ++i) {
    absl::StatusOr<std::unique_ptr<HttpListener>> listener = HttpListener::Create(Loopback());
    ASSERT_TRUE(listener.ok()) << listener.status();
    absl::StatusOr<int> port = (*listener)->Start();
    ASSERT_TRUE(port.ok()) << port.status();
    EXPECT_GT(*port, 0);
    (*listener)->Stop();
  }
}

// The second listener on a port fails (httplib's default SO_REUSEPORT would let it share the port,
// as gRPC's did before issue #18); errors name the flag.
TEST(HttpListenerTest, APortInUseIsAnErrorNamingTheFlag) {
  HttpListenerOptions options = Loopback();
  options.address = "no-port";
  absl::StatusOr<std::unique_ptr<HttpListener>> malformed = HttpListener::Create(options);
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(malformed.status().message(), HasSubstr("--test-address: expected HOST:PORT"));

  absl::StatusOr<std::unique_ptr<HttpListener>> first = HttpListener::Create(Loopback());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<int> port = (*first)->Start();
  ASSERT_TRUE(port.ok()) << port.status();
  options.address = absl::StrCat("127.0.0.1:", *port);
  absl::StatusOr<std::unique_ptr<HttpListener>> second = HttpListener::Create(options);
  ASSERT_TRUE(second.ok()) << second.status();
  absl::StatusOr<int> taken = (*second)->Start();
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(taken.status().message(),
              HasSubstr(absl::StrCat("--test-address: cannot listen on 127.0.0.1:", *port)));
}

}  // namespace
}  // namespace kvserve::server
