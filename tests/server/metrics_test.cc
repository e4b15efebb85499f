// kvserve's Prometheus metrics end to end: an in-process server on 127.0.0.1:0 with /metrics on
// 127.0.0.1:0, driven over gRPC and scraped with a plain HTTP GET over a socket. Assertions are
// exact deltas between two scrapes: tokens, calls by outcome, histogram counts and sums.
//
// Counters fed by the engine's per-iteration report land a moment after the client has seen its
// last token (the report follows the iteration's events), so a test first waits until
// generation_tokens_total has moved by the expected amount (it is updated last in a report), then
// scrapes again and compares everything exactly.
//
// Also here, without a network: ModelMetrics fed with hand-made stats, and the failure-reason map.
#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/engine.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "server/kvserve_server.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kModel[] = "tiny-llama-gqa-random-weights";
constexpr std::chrono::seconds kCallTimeout(60);
constexpr std::chrono::seconds kSettleTimeout(10);

// ---------------------------------------------------------------------------------------------
// Scraping: HTTP/1.0 GET over a socket, and the text exposition format.

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

HttpResponse HttpGet(int port, const std::string& path) {
  HttpResponse response;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket() failed";
    return response;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "cannot connect to 127.0.0.1:" << port;
    ::close(fd);
    return response;
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    ADD_FAILURE() << "short write";
  }
  std::string raw;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) raw.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t end_of_headers = raw.find("\r\n\r\n");
  if (end_of_headers == std::string::npos) {
    ADD_FAILURE() << "no HTTP header in: " << raw;
    return response;
  }
  response.headers = raw.substr(0, end_of_headers);
  response.body = raw.substr(end_of_headers + 4);
  // "HTTP/1.1 200 OK"
  const std::vector<std::string> status_line = absl::StrSplit(response.headers, ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &response.status)) {
    ADD_FAILURE() << "bad status line: " << response.headers;
  }
  return response;
}

using Labels = std::map<std::string, std::string>;

// A series' identity: name plus labels in name order.
std::string SeriesKey(const std::string& name, const Labels& labels) {
  std::string key = name;
  if (labels.empty()) return key;
  key += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) key += ',';
    first = false;
    absl::StrAppend(&key, k, "=\"", v, "\"");
  }
  key += '}';
  return key;
}

// One scrape, parsed: every sample by SeriesKey, and the declared type of every family.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;  // family name -> counter, gauge, histogram, ...
  std::map<std::string, std::string> help;

  static Scrape Parse(const std::string& text) {
    Scrape s;
    const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
    for (const std::string& line_text : lines) {
      const std::string_view line = line_text;
      if (line.starts_with("# TYPE ") || line.starts_with("# HELP ")) {
        const std::string rest(line.substr(7));
        const size_t space = rest.find(' ');
        (line[2] == 'T' ? s.types : s.help)[rest.substr(0, space)] =
            space == std::string::npos ? "" : rest.substr(space + 1);
        continue;
      }
      if (line.starts_with("#")) continue;
      std::string name;
      Labels labels;
      size_t i = 0;
      while (i < line.size() && line[i] != '{' && line[i] != ' ') name += line[i++];
      if (i < line.size() && line[i] == '{') {
        ++i;
        while (i < line.size() && line[i] != '}') {
          std::string key;
          while (line[i] != '=') key += line[i++];
          i += 2;  // ="
          std::string value;
          while (line[i] != '"') {
            if (line[i] == '\\') ++i;
            value += line[i++];
          }
          ++i;  // "
          if (line[i] == ',') ++i;
          labels[key] = value;
        }
        ++i;  // }
      }
      const std::string value_text(line.substr(i + 1));
      double value = std::numeric_limits<double>::quiet_NaN();
      if (value_text == "+Inf") {
        value = std::numeric_limits<double>::infinity();
      } else if (!absl::SimpleAtod(value_text, &value)) {
        value = std::numeric_limits<double>::quiet_NaN();  // "Nan" of an empty summary
      }
      s.samples[SeriesKey(name, labels)] = value;
    }
    return s;
  }

  bool Has(const std::string& name, const Labels& labels) const {
    return samples.contains(SeriesKey(name, labels));
  }
  double Get(const std::string& name, const Labels& labels) const {
    auto it = samples.find(SeriesKey(name, labels));
    if (it == samples.end()) {
      ADD_FAILURE() << "no series " << SeriesKey(name, labels);
      return std::numeric_limits<double>::quiet_NaN();
    }
    return it->second;
  }
  // The `le` bounds of a histogram's buckets, in order, +Inf excluded.
  std::vector<double> BucketBounds(const std::string& name, const Labels& labels) const {
    std::vector<double> bounds;
    const std::string prefix = name + "_bucket{";
    for (const auto& [key, value] : samples) {
      if (!key.starts_with(prefix)) continue;
      Labels l = labels;
      const size_t le = key.find("le=\"");
      const std::string bound = key.substr(le + 4, key.find('"', le + 4) - le - 4);
      l["le"] = bound;
      if (SeriesKey(name + "_bucket", l) != key || bound == "+Inf") continue;
      double b;
      EXPECT_TRUE(absl::SimpleAtod(bound, &b)) << bound;
      bounds.push_back(b);
    }
    std::sort(bounds.begin(), bounds.end());
    return bounds;
  }
};

// Per model: {"model", kModel}.
Labels M(Labels extra = {}) {
  extra["model"] = kModel;
  return extra;
}

// ---------------------------------------------------------------------------------------------
// gRPC helpers.

pb::GenerateRequest TokensRequest(std::vector<int32_t> prompt, int32_t max_tokens) {
  pb::GenerateRequest request;
  request.mutable_prompt_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  request.set_max_tokens(max_tokens);
  request.set_ignore_eos(true);
  request.mutable_sampling()->set_temperature(0.0f);
  return request;
}

// Runs for seconds unless cancelled, timed out or shut down.
pb::GenerateRequest LongRequest() { return TokensRequest({10, 11, 12}, 2000); }

struct CallResult {
  grpc::Status status;
  int num_token_messages = 0;  // messages that carried tokens
};

CallResult Call(pb::KvServe::Stub& stub, const pb::GenerateRequest& request,
                std::chrono::milliseconds timeout = kCallTimeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  auto reader = stub.Generate(&context, request);
  CallResult result;
  pb::GenerateResponse message;
  while (reader->Read(&message)) {
    if (message.token_ids_size() > 0) ++result.num_token_messages;
  }
  result.status = reader->Finish();
  return result;
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer(ServerOptions())); }

  void StartServer(ServerOptions options) {
    options.listen_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.engine.num_threads = 1;
    auto server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->metrics_port(), 0);
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = pb::KvServe::NewStub(channel);
  }

  Scrape ScrapeNow() {
    HttpResponse r = HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_EQ(r.status, 200) << r.headers;
    return Scrape::Parse(r.body);
  }

  // Scrapes until `done` holds (or kSettleTimeout passes), then once more: whatever the report
  // that made `done` true carried is then visible in full.
  Scrape ScrapeWhen(const std::function<bool(const Scrape&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kSettleTimeout;
    while (!done(ScrapeNow()) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return ScrapeNow();
  }

  std::unique_ptr<KvServer> server_;
  std::unique_ptr<pb::KvServe::Stub> stub_;
};

// Delta of one series between two scrapes.
double Delta(const Scrape& before, const Scrape& after, const std::string& name,
             const Labels& labels) {
  return after.Get(name, labels) - before.Get(name, labels);
}

TEST_F(MetricsTest, ServesTheTextFormatOnSlashMetricsOnly) {
  HttpResponse r = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  const Scrape s = Scrape::Parse(r.body);
  // The scrapes are counted as prometheus-cpp's exposer counted them; this is the first one.
  EXPECT_EQ(s.types.at("exposer_scrapes_total"), "counter");
  EXPECT_EQ(s.types.at("exposer_request_latencies"), "summary");
  EXPECT_EQ(Scrape::Parse(HttpGet(server_->metrics_port(), "/metrics").body)
                .Get("exposer_scrapes_total", {}),
            s.Get("exposer_scrapes_total", {}) + 1);
  EXPECT_EQ(s.Get("kvserve_build_info", {{"version", "0.1.0"}}), 1);
  EXPECT_GT(s.Get("kvserve_process_resident_memory_bytes", {}), 1 << 20);
  EXPECT_EQ(s.types.at("kvserve_time_to_first_token_seconds"), "histogram");
  EXPECT_EQ(s.types.at("kvserve_generation_tokens_total"), "counter");
  EXPECT_EQ(s.types.at("kvserve_requests_running"), "gauge");
  for (const auto& [family, type] : s.types) {
    if (family.starts_with("kvserve_")) {
      EXPECT_NE(s.help.at(family), "") << family;
    }
  }
  EXPECT_EQ(HttpGet(server_->metrics_port(), "/other").status, 404);
}

// Read around the scrape with an independent source for each: getrlimit, CLOCK_PROCESS_CPUTIME_ID,
// memory this test touches, descriptors it opens, and the time the test binary was loaded.
const std::chrono::system_clock::time_point kLoadedAt = std::chrono::system_clock::now();

TEST_F(MetricsTest, ExportsPrometheusStandardProcessSeries) {
  const Scrape before = ScrapeNow();
  for (const char* name : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                           "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    EXPECT_EQ(before.types.at(name), "gauge") << name;
  }
  EXPECT_EQ(before.types.at("process_cpu_seconds_total"), "counter");

  rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(before.Get("process_max_fds", {}), static_cast<double>(limit.rlim_cur));
  const double loaded = std::chrono::duration<double>(kLoadedAt.time_since_epoch()).count();
  // /proc counts the start in clock ticks (1/100 s) since boot, and boot time in whole seconds.
  EXPECT_LE(before.Get("process_start_time_seconds", {}), loaded + 1.01);
  EXPECT_GE(before.Get("process_start_time_seconds", {}), loaded - 60);
  EXPECT_EQ(before.Get("process_resident_memory_bytes", {}),
            before.Get("kvserve_process_resident_memory_bytes", {}));
  EXPECT_GE(before.Get("process_virtual_memory_bytes", {}),
            before.Get("process_resident_memory_bytes", {}));

  // 64 MiB touched and 16 descriptors opened between two scrapes.
  constexpr size_t kBytes = 64 << 20;
  std::vector<char> memory(kBytes);
  for (size_t i = 0; i < kBytes; i += 4096) memory[i] = static_cast<char>(i);
  int pipes[8][2];
  for (auto& p : pipes) ASSERT_EQ(pipe(p), 0);
  timespec cpu_start;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_start);
  const Scrape after = ScrapeNow();
  timespec cpu_end;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu_end);
  for (auto& p : pipes) {
    close(p[0]);
    close(p[1]);
  }
  EXPECT_GE(Delta(before, after, "process_resident_memory_bytes", {}), kBytes * 0.95);
  EXPECT_EQ(Delta(before, after, "process_open_fds", {}), 16);
  const double tick = 1.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  const double cpu = after.Get("process_cpu_seconds_total", {});
  EXPECT_GE(cpu, cpu_start.tv_sec + cpu_start.tv_nsec * 1e-9 - 2 * tick);
  EXPECT_LE(cpu, cpu_end.tv_sec + cpu_end.tv_nsec * 1e-9 + tick);
  EXPECT_EQ(memory[4096], static_cast<char>(4096));
}

TEST_F(MetricsTest, UsesVllmsBucketBoundaries) {
  const Scrape s = ScrapeNow();
  EXPECT_THAT(
      s.BucketBounds("kvserve_time_to_first_token_seconds", M()),
      ElementsAreArray({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
                        1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}));
  const std::vector<double> itl = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                   0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  EXPECT_THAT(s.BucketBounds("kvserve_inter_token_latency_seconds", M()), ElementsAreArray(itl));
  EXPECT_THAT(s.BucketBounds("kvserve_request_time_per_output_token_seconds", M()),
              ElementsAreArray(itl));
  const std::vector<double> latency = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                       5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                       60.0, 120., 240., 480.0, 960.0, 1920., 7680.};
  for (const char* name :
       {"kvserve_e2e_request_latency_seconds", "kvserve_request_queue_time_seconds",
        "kvserve_request_prefill_time_seconds", "kvserve_request_decode_time_seconds"}) {
    EXPECT_THAT(s.BucketBounds(name, M()), ElementsAreArray(latency)) << name;
  }
  // 1-2-5 up to the model's context length (2048).
  const std::vector<double> tokens = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000};
  EXPECT_THAT(s.BucketBounds("kvserve_request_prompt_tokens", M()), ElementsAreArray(tokens));
  EXPECT_THAT(s.BucketBounds("kvserve_request_generation_tokens", M()), ElementsAreArray(tokens));
  EXPECT_THAT(s.BucketBounds("kvserve_iteration_tokens", M()),
              ElementsAreArray(
                  {1., 8., 16., 32., 64., 128., 256., 512., 1024., 2048., 4096., 8192., 16384.}));
}

TEST_F(MetricsTest, CountsTokensCallsAndIntervalsOfSuccessfulGenerationsExactly) {
  const Scrape before = ScrapeNow();
  // Prompts shorter than a cache block (16 tokens): no prefix-cache hits, every token computed.
  struct Case {
    std::vector<int32_t> prompt;
    int32_t max_tokens;
  };
  const std::vector<Case> cases = {
      {{1, 2, 3}, 4}, {{4, 5, 6, 7, 8}, 6}, {{9, 8, 7, 6, 5, 4, 3}, 8}};
  for (const Case& c : cases) {
    const CallResult r = Call(*stub_, TokensRequest(c.prompt, c.max_tokens));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  }
  constexpr double kPromptTokens = 3 + 5 + 7;
  constexpr double kGenerated = 4 + 6 + 8;
  const Scrape after = ScrapeWhen([&](const Scrape& s) {
    return Delta(before, s, "kvserve_generation_tokens_total", M()) >= kGenerated;
  });
  auto delta = [&](const std::string& name, const Labels& labels = {}) {
    return Delta(before, after, name, M(labels));
  };
  EXPECT_EQ(delta("kvserve_generation_tokens_total"), kGenerated);
  EXPECT_EQ(delta("kvserve_prompt_tokens_total"), kPromptTokens);
  EXPECT_EQ(delta("kvserve_request_success_total", {{"finished_reason", "length"}}), 3);
  EXPECT_EQ(delta("kvserve_request_success_total", {{"finished_reason", "stop"}}), 0);
  EXPECT_EQ(delta("kvserve_request_success_total", {{"finished_reason", "eos"}}), 0);
  for (const char* reason :
       {"invalid", "cancelled", "deadline", "rejected", "aborted", "internal"}) {
    EXPECT_EQ(delta("kvserve_request_failure_total", {{"reason", reason}}), 0) << reason;
  }
  // One TTFT per request, one ITL per later token; request-level histograms once per request.
  EXPECT_EQ(delta("kvserve_time_to_first_token_seconds_count"), 3);
  EXPECT_EQ(delta("kvserve_inter_token_latency_seconds_count"), kGenerated - 3);
  for (const char* name :
       {"kvserve_e2e_request_latency_seconds_count", "kvserve_request_queue_time_seconds_count",
        "kvserve_request_prefill_time_seconds_count", "kvserve_request_decode_time_seconds_count",
        "kvserve_request_time_per_output_token_seconds_count",
        "kvserve_request_prompt_tokens_count", "kvserve_request_generation_tokens_count"}) {
    EXPECT_EQ(delta(name), 3) << name;
  }
  EXPECT_EQ(delta("kvserve_request_prompt_tokens_sum"), kPromptTokens);
  EXPECT_EQ(delta("kvserve_request_generation_tokens_sum"), kGenerated);
  // The calls ran one after another: one iteration per generated token; the first of each
  // request also ran its prompt.
  EXPECT_EQ(delta("kvserve_iteration_tokens_count"), kGenerated);
  EXPECT_EQ(delta("kvserve_iteration_tokens_sum"), kPromptTokens + kGenerated - 3);
  EXPECT_EQ(delta("kvserve_prefix_cache_queries_total"), kPromptTokens);
  EXPECT_EQ(delta("kvserve_prefix_cache_hits_total"), 0);
  EXPECT_EQ(delta("kvserve_preemptions_total"), 0);
  // Every interval was measured: TTFT covers queue and prefill, e2e covers TTFT and decode.
  const double ttft = delta("kvserve_time_to_first_token_seconds_sum");
  EXPECT_GT(ttft, 0);
  EXPECT_GE(ttft, delta("kvserve_request_queue_time_seconds_sum") +
                      delta("kvserve_request_prefill_time_seconds_sum") - 1e-9);
  EXPECT_GE(delta("kvserve_e2e_request_latency_seconds_sum"),
            ttft + delta("kvserve_request_decode_time_seconds_sum") - 1e-9);
  // Each histogram's +Inf bucket is its count.
  EXPECT_EQ(after.Get("kvserve_inter_token_latency_seconds_bucket", M({{"le", "+Inf"}})),
            after.Get("kvserve_inter_token_latency_seconds_count", M()));
  // Idle again: nothing running, no cache block held.
  EXPECT_EQ(after.Get("kvserve_requests_running", M()), 0);
  EXPECT_EQ(after.Get("kvserve_requests_waiting", M()), 0);
  EXPECT_EQ(after.Get("kvserve_kv_cache_usage_ratio", M()), 0);
  EXPECT_EQ(after.Get("kvserve_cache_blocks", M({{"kind", "attention_kv"}, {"state", "used"}})), 0);
  EXPECT_EQ(after.Get("kvserve_cache_bytes", M({{"kind", "attention_kv"}})), 0);
  const engine::ModelInfo& info = server_->models().engines().front()->info();
  EXPECT_EQ(after.Get("kvserve_cache_blocks", M({{"kind", "attention_kv"}, {"state", "free"}})),
            info.kv_cache_blocks);
  EXPECT_GT(after.Get("kvserve_cache_capacity_bytes", M({{"kind", "attention_kv"}})), 0);
}

// Before any request the engine has run no iteration, yet the pool is there: a scraper (the
// inference gateway's endpoint picker, an autoscaler) must read the whole cache free, not an
// empty one. Values are computed from the model's shape, not read back from the cache.
TEST_F(MetricsTest, ShowsTheWholeCacheFreeBeforeTheFirstRequest) {
  const Scrape s = ScrapeNow();
  const engine::ModelInfo& info = server_->models().engines().front()->info();
  ASSERT_GT(info.kv_cache_blocks, 0);
  EXPECT_EQ(
      s.Get("kvserve_cache_capacity_bytes", M({{"kind", "attention_kv"}})),
      static_cast<double>(info.kv_cache_blocks) * info.block_size * info.kv_cache_bytes_per_token);
  EXPECT_EQ(s.Get("kvserve_cache_blocks", M({{"kind", "attention_kv"}, {"state", "free"}})),
            info.kv_cache_blocks);
  EXPECT_EQ(s.Get("kvserve_cache_blocks", M({{"kind", "attention_kv"}, {"state", "used"}})), 0);
  EXPECT_EQ(s.Get("kvserve_cache_capacity_bytes", M({{"kind", "mla_latent"}})), 0);
  // The three gauges the gateway's endpoint picker scores by, and the block size it hashes by.
  EXPECT_EQ(s.types.at("kvserve_requests_waiting"), "gauge");
  EXPECT_EQ(s.types.at("kvserve_requests_running"), "gauge");
  EXPECT_EQ(s.types.at("kvserve_kv_cache_usage_ratio"), "gauge");
  EXPECT_EQ(s.Get("kvserve_requests_waiting", M()), 0);
  EXPECT_EQ(s.Get("kvserve_requests_running", M()), 0);
  EXPECT_EQ(s.Get("kvserve_kv_cache_usage_ratio", M()), 0);
  bool found_config = false;
  for (const auto& [key, value] : s.samples) {
    if (!key.starts_with("kvserve_cache_config_info{")) continue;
    found_config = true;
    const std::string blocks = absl::StrCat(info.kv_cache_blocks);
    EXPECT_THAT(key, HasSubstr(absl::StrCat("block_size=\"", info.block_size, "\"")));
    EXPECT_THAT(key, HasSubstr(absl::StrCat("num_gpu_blocks=\"", blocks, "\"")));
    EXPECT_THAT(key, HasSubstr(absl::StrCat("num_blocks=\"", blocks, "\"")));
    EXPECT_EQ(value, 1);
  }
  EXPECT_TRUE(found_config);
}

TEST_F(MetricsTest, CountsPrefixCacheHitsInTokens) {
  // 40 tokens = two full blocks of 16 and a partial one; the second call finds the two blocks.
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(20 + i);
  const Scrape before = ScrapeNow();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(Call(*stub_, TokensRequest(prompt, 2)).status.ok());
  const Scrape after = ScrapeWhen([&](const Scrape& s) {
    return Delta(before, s, "kvserve_generation_tokens_total", M()) >= 4;
  });
  EXPECT_EQ(Delta(before, after, "kvserve_prefix_cache_queries_total", M()), 80);
  EXPECT_EQ(Delta(before, after, "kvserve_prefix_cache_hits_total", M()), 32);
  // Prompt tokens count whole prompts, cached or not (as vLLM counts them).
  EXPECT_EQ(Delta(before, after, "kvserve_prompt_tokens_total", M()), 80);
  // The hit tokens were not run through the model.
  EXPECT_EQ(Delta(before, after, "kvserve_iteration_tokens_sum", M()), 40 + 1 + (40 - 32) + 1);
}

TEST_F(MetricsTest, CountsFailuresByReason) {
  const Scrape before = ScrapeNow();

  // invalid: a field out of range, and a request without a prompt (caught while converting).
  pb::GenerateRequest bad = TokensRequest({1, 2}, 0);
  EXPECT_EQ(Call(*stub_, bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  pb::GenerateRequest empty;
  EXPECT_EQ(Call(*stub_, empty).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // An unknown model is invalid too, counted with model="".
  pb::GenerateRequest unknown = TokensRequest({1, 2}, 2);
  unknown.set_model("no-such-model");
  EXPECT_EQ(Call(*stub_, unknown).status.error_code(), grpc::StatusCode::NOT_FOUND);

  // cancelled: the client cancels after the first tokens.
  int num_with_first_token = 0;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    auto reader = stub_->Generate(&context, LongRequest());
    pb::GenerateResponse message;
    ASSERT_TRUE(reader->Read(&message));
    ++num_with_first_token;
    context.TryCancel();
    while (reader->Read(&message)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // deadline: the call's deadline passes while tokens are still coming.
  const CallResult timed_out = Call(*stub_, LongRequest(), std::chrono::milliseconds(300));
  EXPECT_EQ(timed_out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  if (timed_out.num_token_messages > 0) ++num_with_first_token;

  const Scrape after = ScrapeWhen([&](const Scrape& s) {
    return Delta(before, s, "kvserve_request_failure_total", M({{"reason", "cancelled"}})) >= 1 &&
           Delta(before, s, "kvserve_request_failure_total", M({{"reason", "deadline"}})) >= 1 &&
           s.Get("kvserve_requests_running", M()) == 0;
  });
  auto failures = [&](const char* reason) {
    return Delta(before, after, "kvserve_request_failure_total", M({{"reason", reason}}));
  };
  EXPECT_EQ(failures("invalid"), 2);
  EXPECT_EQ(failures("cancelled"), 1);
  EXPECT_EQ(failures("deadline"), 1);
  EXPECT_EQ(failures("rejected"), 0);
  EXPECT_EQ(failures("aborted"), 0);
  EXPECT_EQ(failures("internal"), 0);
  const double unknown_before =
      before.Has("kvserve_request_failure_total", {{"model", ""}, {"reason", "invalid"}})
          ? before.Get("kvserve_request_failure_total", {{"model", ""}, {"reason", "invalid"}})
          : 0;
  EXPECT_EQ(after.Get("kvserve_request_failure_total", {{"model", ""}, {"reason", "invalid"}}) -
                unknown_before,
            1);
  for (const char* reason : {"length", "stop", "eos"}) {
    EXPECT_EQ(
        Delta(before, after, "kvserve_request_success_total", M({{"finished_reason", reason}})), 0);
  }
  // Failed requests stay out of the request-level histograms; their tokens still count.
  EXPECT_EQ(Delta(before, after, "kvserve_e2e_request_latency_seconds_count", M()), 0);
  EXPECT_EQ(Delta(before, after, "kvserve_request_generation_tokens_count", M()), 0);
  EXPECT_EQ(Delta(before, after, "kvserve_time_to_first_token_seconds_count", M()),
            num_with_first_token);
  EXPECT_GE(Delta(before, after, "kvserve_generation_tokens_total", M()), num_with_first_token);
}

TEST(MetricsRejectionTest, CountsRequestsTurnedAwayByAFullQueueAsRejected) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.engine.num_threads = 1;
  options.engine.max_num_seqs = 1;
  options.engine.max_queued_requests = 0;
  auto server = KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = pb::KvServe::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));
  const Scrape before = Scrape::Parse(HttpGet((*server)->metrics_port(), "/metrics").body);

  grpc::ClientContext running;
  running.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  auto reader = stub->Generate(&running, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));  // it holds the only slot now
  EXPECT_EQ(Call(*stub, TokensRequest({1, 2}, 2)).status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  running.TryCancel();
  while (reader->Read(&message)) {
  }
  reader->Finish();

  // The cancel is counted when the server finishes the call, a moment after the client's Finish.
  auto cancelled = [&](const Scrape& s) {
    return Delta(before, s, "kvserve_request_failure_total", M({{"reason", "cancelled"}}));
  };
  Scrape after;
  const auto deadline = std::chrono::steady_clock::now() + kSettleTimeout;
  do {
    after = Scrape::Parse(HttpGet((*server)->metrics_port(), "/metrics").body);
  } while (cancelled(after) < 1 && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(Delta(before, after, "kvserve_request_failure_total", M({{"reason", "rejected"}})), 1);
  EXPECT_EQ(Delta(before, after, "kvserve_request_failure_total", M({{"reason", "cancelled"}})), 1);
}

TEST(MetricsShutdownTest, CountsStreamsEndedAtTheDrainDeadlineAsAborted) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.engine.num_threads = 1;
  auto server = KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->metrics_port(), 0);  // not served, still kept
  auto stub = pb::KvServe::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  auto reader = stub->Generate(&context, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));
  (*server)->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  const Scrape after = Scrape::Parse((*server)->metrics().Serialize());
  EXPECT_EQ(after.Get("kvserve_request_failure_total", M({{"reason", "aborted"}})), 1);
  EXPECT_EQ(after.Get("kvserve_request_failure_total", M({{"reason", "cancelled"}})), 0);
}

TEST(MetricsAddressTest, FailsToStartWhenTheMetricsAddressCannotBeBound) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = "256.0.0.1:0";
  auto server = KvServer::Create(options);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--metrics-address"));
}

// ---------------------------------------------------------------------------------------------
// ModelMetrics fed by hand: the arithmetic of intervals and gauges, without a server.

engine::SteadyTime At(double seconds) {
  return engine::SteadyTime{} + std::chrono::duration_cast<engine::SteadyTime::duration>(
                                    std::chrono::duration<double>(100 + seconds));
}

TEST(ModelMetricsTest, ObservesVllmsIntervalsOfASuccessfulRequest) {
  PrometheusMetrics metrics;
  std::shared_ptr<ModelMetrics> m = metrics.AddModel("m", 100, nullptr);
  engine::RequestStats r;
  r.finish_reason = engine::FinishReason::kStop;
  r.num_prompt_tokens = 7;
  r.num_generation_tokens = 5;
  r.arrival_time = At(0);
  r.first_scheduled_time = At(1);
  r.first_token_time = At(3);
  r.last_token_time = At(4);
  r.finish_time = At(10);
  m->OnRequestFinished(r);
  const Scrape s = Scrape::Parse(metrics.Serialize());
  const Labels l = {{"model", "m"}};
  EXPECT_DOUBLE_EQ(s.Get("kvserve_request_queue_time_seconds_sum", l), 1);
  EXPECT_DOUBLE_EQ(s.Get("kvserve_request_prefill_time_seconds_sum", l), 2);
  EXPECT_DOUBLE_EQ(s.Get("kvserve_request_decode_time_seconds_sum", l), 1);
  EXPECT_DOUBLE_EQ(s.Get("kvserve_request_time_per_output_token_seconds_sum", l), 0.25);
  EXPECT_DOUBLE_EQ(s.Get("kvserve_e2e_request_latency_seconds_sum", l), 10);
  EXPECT_EQ(s.Get("kvserve_e2e_request_latency_seconds_bucket", {{"model", "m"}, {"le", "5"}}), 0);
  EXPECT_EQ(s.Get("kvserve_e2e_request_latency_seconds_bucket", {{"model", "m"}, {"le", "10"}}), 1);
  EXPECT_EQ(s.Get("kvserve_request_prompt_tokens_sum", l), 7);
  EXPECT_EQ(s.Get("kvserve_request_generation_tokens_sum", l), 5);
  // TTFT comes from the iteration that produced the token, not from here.
  EXPECT_EQ(s.Get("kvserve_time_to_first_token_seconds_count", l), 0);
  // 1-2-5 buckets up to the context length.
  EXPECT_THAT(s.BucketBounds("kvserve_request_prompt_tokens", l),
              ElementsAreArray({1., 2., 5., 10., 20., 50., 100.}));
}

TEST(ModelMetricsTest, LeavesFailedRequestsAndSingleTokenTpotOutOfRequestHistograms) {
  PrometheusMetrics metrics;
  std::shared_ptr<ModelMetrics> m = metrics.AddModel("m", 100, nullptr);
  engine::RequestStats cancelled;
  cancelled.finish_reason = engine::FinishReason::kCancelled;
  cancelled.arrival_time = At(0);
  cancelled.finish_time = At(1);
  m->OnRequestFinished(cancelled);
  engine::RequestStats one_token;
  one_token.finish_reason = engine::FinishReason::kLength;
  one_token.num_generation_tokens = 1;
  one_token.arrival_time = At(0);
  one_token.first_scheduled_time = At(0);
  one_token.first_token_time = At(1);
  one_token.last_token_time = At(1);
  one_token.finish_time = At(1);
  m->OnRequestFinished(one_token);
  const Scrape s = Scrape::Parse(metrics.Serialize());
  const Labels l = {{"model", "m"}};
  EXPECT_EQ(s.Get("kvserve_e2e_request_latency_seconds_count", l), 1);
  EXPECT_EQ(s.Get("kvserve_request_decode_time_seconds_count", l), 1);
  EXPECT_EQ(s.Get("kvserve_request_time_per_output_token_seconds_count", l), 0);
}

TEST(ModelMetricsTest, SetsGaugesAndCountersFromAnIterationReport) {
  PrometheusMetrics metrics;
  std::shared_ptr<ModelMetrics> m = metrics.AddModel("m", 100, nullptr);
  engine::IterationStats it;
  it.num_scheduled_tokens = 9;
  it.num_prompt_tokens = 8;
  it.num_generation_tokens = 2;
  it.num_preemptions = 1;
  it.num_prefix_cache_queries = 32;
  it.num_prefix_cache_hits = 16;
  it.num_evicted_blocks[0] = 3;
  it.time_to_first_tokens = {0.5};
  it.inter_token_latencies = {0.02, 0.03};
  it.scheduler.num_running = 2;
  it.scheduler.num_waiting = 5;
  auto& kv = it.scheduler.cache.kinds[static_cast<int>(engine::CacheKind::kAttentionKv)];
  kv = {.num_blocks = 100, .num_used_blocks = 25, .used_bytes = 2500, .capacity_bytes = 10000};
  auto& mla = it.scheduler.cache.kinds[static_cast<int>(engine::CacheKind::kMlaLatent)];
  mla = {.num_blocks = 10, .num_used_blocks = 5, .used_bytes = 50, .capacity_bytes = 100};
  it.scheduler.cache.num_state_slots = 8;
  it.scheduler.cache.num_used_state_slots = 2;
  m->OnIteration(it);
  const Scrape s = Scrape::Parse(metrics.Serialize());
  auto l = [](Labels extra = {}) {
    extra["model"] = "m";
    return extra;
  };
  EXPECT_EQ(s.Get("kvserve_requests_running", l()), 2);
  EXPECT_EQ(s.Get("kvserve_requests_waiting", l()), 5);
  EXPECT_EQ(s.Get("kvserve_kv_cache_usage_ratio", l()), 0.5);  // the fuller paged kind
  EXPECT_EQ(s.Get("kvserve_state_slots_usage_ratio", l()), 0.25);
  EXPECT_EQ(s.Get("kvserve_cache_blocks", l({{"kind", "attention_kv"}, {"state", "used"}})), 25);
  EXPECT_EQ(s.Get("kvserve_cache_blocks", l({{"kind", "attention_kv"}, {"state", "free"}})), 75);
  EXPECT_EQ(s.Get("kvserve_cache_bytes", l({{"kind", "mla_latent"}})), 50);
  EXPECT_EQ(s.Get("kvserve_cache_capacity_bytes", l({{"kind", "attention_kv"}})), 10000);
  EXPECT_EQ(s.Get("kvserve_cache_evicted_blocks_total", l({{"kind", "attention_kv"}})), 3);
  EXPECT_EQ(s.Get("kvserve_prompt_tokens_total", l()), 8);
  EXPECT_EQ(s.Get("kvserve_generation_tokens_total", l()), 2);
  EXPECT_EQ(s.Get("kvserve_preemptions_total", l()), 1);
  EXPECT_EQ(s.Get("kvserve_prefix_cache_queries_total", l()), 32);
  EXPECT_EQ(s.Get("kvserve_prefix_cache_hits_total", l()), 16);
  EXPECT_EQ(s.Get("kvserve_iteration_tokens_sum", l()), 9);
  EXPECT_EQ(s.Get("kvserve_time_to_first_token_seconds_count", l()), 1);
  EXPECT_DOUBLE_EQ(s.Get("kvserve_inter_token_latency_seconds_sum", l()), 0.05);
  EXPECT_EQ(s.Get("kvserve_inter_token_latency_seconds_bucket", l({{"le", "0.025"}})), 1);
}

TEST(FailureReasonTest, MapsStatusCodesToReasons) {
  using absl::StatusCode;
  EXPECT_EQ(FailureReasonFor(StatusCode::kInvalidArgument, false, false), FailureReason::kInvalid);
  EXPECT_EQ(FailureReasonFor(StatusCode::kNotFound, false, false), FailureReason::kInvalid);
  EXPECT_EQ(FailureReasonFor(StatusCode::kResourceExhausted, false, false),
            FailureReason::kRejected);
  EXPECT_EQ(FailureReasonFor(StatusCode::kUnavailable, false, false), FailureReason::kRejected);
  EXPECT_EQ(FailureReasonFor(StatusCode::kUnavailable, true, false), FailureReason::kAborted);
  EXPECT_EQ(FailureReasonFor(StatusCode::kCancelled, true, false), FailureReason::kCancelled);
  EXPECT_EQ(FailureReasonFor(StatusCode::kCancelled, true, true), FailureReason::kDeadline);
  EXPECT_EQ(FailureReasonFor(StatusCode::kDeadlineExceeded, true, false), FailureReason::kDeadline);
  EXPECT_EQ(FailureReasonFor(StatusCode::kInternal, true, false), FailureReason::kInternal);
}

TEST(MetricsAddressTest, AnEmptyHostTakesTheGrpcListenHost) {
  EXPECT_EQ(MetricsListenAddress(":9464", "127.0.0.1:50051"), "127.0.0.1:9464");
  EXPECT_EQ(MetricsListenAddress(":9464", "0.0.0.0:50051"), "0.0.0.0:9464");
  EXPECT_EQ(MetricsListenAddress(":0", "[::1]:50051"), "[::1]:0");
  EXPECT_EQ(MetricsListenAddress(":9464", "[::1]"), "[::1]:9464");
  EXPECT_EQ(MetricsListenAddress(":9464", "localhost:0"), "localhost:9464");
  EXPECT_EQ(MetricsListenAddress(":9464", "unix:/run/kvserve.sock"), "127.0.0.1:9464");
  // A host given explicitly is kept, whatever gRPC listens on.
  EXPECT_EQ(MetricsListenAddress("0.0.0.0:9464", "127.0.0.1:50051"), "0.0.0.0:9464");
}

TEST(MetricsAddressTest, ALoopbackServerServesMetricsOnLoopbackOnly) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.metrics_address = ":0";
  absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->metrics_port();
  ASSERT_GT(port, 0);
  // The listening socket's local address, from the kernel's table: 127.0.0.1 (0100007F), not
  // 0.0.0.0. Ports appear in hex.
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::string local;
  const std::string port_hex = absl::StrCat(":", absl::Hex(port, absl::kZeroPad4));
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, address, remote, state;
    fields >> slot >> address >> remote >> state;
    if (state == "0A" && absl::EndsWithIgnoreCase(address, port_hex)) local = address;
  }
  EXPECT_TRUE(absl::EqualsIgnoreCase(local, absl::StrCat("0100007F", port_hex))) << local;
}

}  // namespace
}  // namespace kvserve::server
