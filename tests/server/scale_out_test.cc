// Scale-out on one machine: three kvserve replicas behind one client channel that balances with
// gRPC's client-side round_robin, the way a client of the headless Kubernetes Service in
// deploy/k8s spreads its calls over the pods.
//
// The replicas are in-process KvServers on 127.0.0.1:0, so each one's engine stats say exactly
// which requests it served; the client learns the same from ClientContext::peer(). "Killing" a
// replica is KvServer::Shutdown with a deadline of now: its streams in flight are ended at once,
// as a pod that runs out of drain budget ends them.
//
// Every call carries a deadline, so a broken server fails a test instead of hanging it.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/kvserve_server.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::testing::Each;
using ::testing::Eq;
using ::testing::Lt;

constexpr int kNumReplicas = 3;
constexpr std::chrono::seconds kCallTimeout(60);

std::chrono::system_clock::time_point DeadlineIn(std::chrono::milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("status ", static_cast<int>(status.error_code()), ": ",
                      status.error_message());
}

pb::GenerateRequest GreedyRequest(int32_t max_tokens) {
  pb::GenerateRequest request;
  request.set_prompt("Once upon a time");
  request.set_max_tokens(max_tokens);
  request.set_ignore_eos(true);  // exactly max_tokens tokens unless the stream is cut
  request.mutable_sampling()->set_temperature(0.0f);
  return request;
}

// A started Generate stream, read to the end by Finish().
class Stream {
 public:
  Stream(pb::KvServe::Stub& stub, const pb::GenerateRequest& request) {
    context_.set_deadline(DeadlineIn(kCallTimeout));
    reader_ = stub.Generate(&context_, request);
  }

  // Reads the first message; after it the call has a peer.
  bool ReadFirst() { return Read(); }
  std::string peer() const { return context_.peer(); }

  grpc::Status Finish() {
    while (Read()) {
    }
    return reader_->Finish();
  }
  int64_t num_tokens() const { return num_tokens_; }

 private:
  bool Read() {
    pb::GenerateResponse message;
    if (!reader_->Read(&message)) return false;
    num_tokens_ += message.token_ids_size();
    return true;
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader_;
  int64_t num_tokens_ = 0;
};

class ScaleOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> addresses;
    for (int i = 0; i < kNumReplicas; ++i) {
      ServerOptions options;
      options.listen_address = "127.0.0.1:0";
      options.engine.num_threads = 1;  // three engines share the machine's cores
      absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
      ASSERT_TRUE(server.ok()) << server.status();
      addresses.push_back(absl::StrCat("127.0.0.1:", (*server)->port()));
      peer_to_replica_[absl::StrCat("ipv4:", addresses.back())] = i;
      replicas_.push_back(std::move(*server));
    }
    // One target naming every replica, balanced per call: what the dns resolver hands a client
    // of the headless Service, minus the DNS.
    grpc::ChannelArguments args;
    args.SetLoadBalancingPolicyName("round_robin");
    channel_ = grpc::CreateCustomChannel(absl::StrCat("ipv4:", absl::StrJoin(addresses, ",")),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = pb::KvServe::NewStub(channel_);
  }

  void TearDown() override {
    for (auto& replica : replicas_) replica->Shutdown(std::chrono::system_clock::now());
  }

  // The replica that served a call, from ClientContext::peer(); -1 if unknown.
  int ReplicaOf(const std::string& peer) const {
    auto it = peer_to_replica_.find(peer);
    return it == peer_to_replica_.end() ? -1 : it->second;
  }

  int64_t NumFinished(int replica) const {
    return replicas_[replica]->models().engines()[0]->stats().num_finished;
  }
  std::vector<int64_t> NumFinishedPerReplica() const {
    std::vector<int64_t> counts;
    for (int i = 0; i < kNumReplicas; ++i) counts.push_back(NumFinished(i));
    return counts;
  }

  // One short request to the end; returns the replica that served it, or -1 on failure.
  int GenerateOnce() {
    Stream stream(*stub_, GreedyRequest(2));
    const grpc::Status status = stream.Finish();
    EXPECT_TRUE(status.ok()) << Describe(status);
    return status.ok() ? ReplicaOf(stream.peer()) : -1;
  }

  // round_robin only picks replicas it is connected to; connections come up one by one after the
  // first call. Sends requests until every replica has served one (bounded).
  void WarmUp() {
    std::vector<bool> seen(kNumReplicas, false);
    auto all_seen = [&] { return std::count(seen.begin(), seen.end(), true) == kNumReplicas; };
    for (int i = 0; i < 100 && !all_seen(); ++i) {
      const int replica = GenerateOnce();
      if (replica >= 0) seen[replica] = true;
    }
    ASSERT_TRUE(all_seen()) << "round_robin never reached every replica";
  }

  std::vector<std::unique_ptr<KvServer>> replicas_;
  std::map<std::string, int> peer_to_replica_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KvServe::Stub> stub_;
};

TEST_F(ScaleOutTest, RoundRobinSpreadsRequestsEvenlyOverTheReplicas) {
  ASSERT_NO_FATAL_FAILURE(WarmUp());
  const std::vector<int64_t> before = NumFinishedPerReplica();

  constexpr int kNumRequests = 30;
  std::vector<int64_t> served_per_client(kNumReplicas, 0);
  for (int i = 0; i < kNumRequests; ++i) {
    const int replica = GenerateOnce();
    ASSERT_GE(replica, 0);
    ++served_per_client[replica];
  }

  // With every replica connected, round_robin takes them in strict rotation.
  std::vector<int64_t> served_per_server(kNumReplicas);
  for (int i = 0; i < kNumReplicas; ++i) served_per_server[i] = NumFinished(i) - before[i];
  EXPECT_THAT(served_per_server, Each(Eq(kNumRequests / kNumReplicas)));
  // The client's view (peer addresses) and the replicas' own stats agree.
  EXPECT_EQ(served_per_client, served_per_server);
}

TEST_F(ScaleOutTest, KillingAReplicaFailsOnlyItsInFlightStreamsAndNewRequestsGoToTheOthers) {
  ASSERT_NO_FATAL_FAILURE(WarmUp());

  // Two streams per replica, all in flight at once.
  constexpr int kNumStreams = 2 * kNumReplicas;
  constexpr int32_t kTokens = 500;  // still running when the replica is stopped
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<int> replica_of_stream;
  for (int i = 0; i < kNumStreams; ++i) {
    streams.push_back(std::make_unique<Stream>(*stub_, GreedyRequest(kTokens)));
    ASSERT_TRUE(streams.back()->ReadFirst()) << Describe(streams.back()->Finish());
    replica_of_stream.push_back(ReplicaOf(streams.back()->peer()));
    ASSERT_GE(replica_of_stream.back(), 0) << "unknown peer " << streams.back()->peer();
  }
  constexpr int kVictim = 1;
  const int num_on_victim =
      static_cast<int>(std::count(replica_of_stream.begin(), replica_of_stream.end(), kVictim));
  ASSERT_EQ(num_on_victim, 2) << "round_robin did not rotate the streams over the replicas";

  // Each stream is read on its own thread, as independent clients would.
  std::vector<grpc::Status> statuses(kNumStreams);
  std::vector<std::thread> readers;
  for (int i = 0; i < kNumStreams; ++i) {
    readers.emplace_back([&, i] { statuses[i] = streams[i]->Finish(); });
  }
  replicas_[kVictim]->Shutdown(std::chrono::system_clock::now());
  for (std::thread& t : readers) t.join();

  for (int i = 0; i < kNumStreams; ++i) {
    SCOPED_TRACE(absl::StrCat("stream ", i, " on replica ", replica_of_stream[i]));
    if (replica_of_stream[i] == kVictim) {
      EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(statuses[i]);
      EXPECT_THAT(streams[i]->num_tokens(), Lt(kTokens));
    } else {
      EXPECT_TRUE(statuses[i].ok()) << Describe(statuses[i]);
      EXPECT_EQ(streams[i]->num_tokens(), kTokens);
    }
  }

  // New requests all succeed, on the two replicas left.
  const std::vector<int64_t> before = NumFinishedPerReplica();
  constexpr int kNumRequests = 20;
  std::vector<int64_t> served(kNumReplicas, 0);
  for (int i = 0; i < kNumRequests; ++i) {
    const int replica = GenerateOnce();
    ASSERT_GE(replica, 0);
    ++served[replica];
  }
  EXPECT_EQ(served[kVictim], 0);
  EXPECT_GT(served[0], 0);
  EXPECT_GT(served[2], 0);
  EXPECT_EQ(NumFinished(kVictim), before[kVictim]);
  EXPECT_EQ(NumFinished(0) - before[0] + NumFinished(2) - before[2], kNumRequests);
}

// --max-connection-age makes clients reconnect (and so re-resolve and find new replicas) without
// cutting anything: a stream that outlives its connection's age still finishes.
TEST(MaxConnectionAgeTest, AStreamOutlivingItsConnectionFinishesAndLaterCallsWork) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.engine.num_threads = 1;
  options.max_connection_age = std::chrono::milliseconds(100);
  absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = pb::KvServe::NewStub(channel);

  const auto start = std::chrono::steady_clock::now();
  Stream stream(*stub, GreedyRequest(1000));  // most of a second or more
  const grpc::Status status = stream.Finish();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(stream.num_tokens(), 1000);
  // Only meaningful if the stream really outlived the age (plus gRPC's 10% jitter).
  EXPECT_GT(elapsed, std::chrono::milliseconds(250)) << "the stream was too quick to test this";

  // The first connection has been sent GOAWAY by now; the channel connects again for this call.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Stream after(*stub, GreedyRequest(2));
  const grpc::Status after_status = after.Finish();
  EXPECT_TRUE(after_status.ok()) << Describe(after_status);
  (*server)->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kvserve::server
