// The OpenAI HTTP API end to end: an in-process KvServer with --http-address=127.0.0.1:0, driven
// over raw sockets (so malformed and half-sent requests can be sent as a hostile client would) and
// compared with the gRPC API on the same engine.
//
// The embedded default model (random weights, byte-level tokenizer, no chat template) serves every
// test: assertions are about the protocol, errors, cancellation and engine bookkeeping. Progress is
// controlled with Engine::Pause / Resume, never with timing; polling loops are bounded.
#include "server/http_server.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/kvserve_server.h"
#include "server/process_sockets.h"
#include "server/stream_budget.h"
#include "tests/testing/fake_clock.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using Json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kDefaultModel[] = "tiny-llama-gqa-random-weights";
// A bound on every socket read, so a broken server fails a test instead of hanging it.
constexpr int kSocketTimeoutSeconds = 60;
// Bounded polling: attempts x 1 ms.
constexpr int kPollAttempts = 20000;

// Bounded polling: true once `condition()` holds, false after kPollAttempts tries 1 ms apart.
template <typename Condition>
bool PollUntil(Condition condition) {
  for (int i = 0; i < kPollAttempts; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// One TCP connection to 127.0.0.1:port, with a receive timeout. `receive_buffer_bytes` > 0 fixes
// the socket's receive buffer (set before connect, so the window announced is small from the start
// and the kernel does not grow it).
class Connection {
 public:
  explicit Connection(int port, int receive_buffer_bytes = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{kSocketTimeoutSeconds, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (receive_buffer_bytes > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof(receive_buffer_bytes));
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Connection() { Close(); }
  bool connected() const { return connected_; }

  bool Send(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(n);
    }
    return true;
  }
  // Reads until `done(received)` or EOF / error / timeout; returns what was received.
  template <typename Done>
  std::string ReadUntil(Done done) {
    char buffer[4096];
    while (!done(received_)) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        eof_ = true;
        break;
      }
      received_.append(buffer, n);
    }
    return received_;
  }
  std::string ReadAll() {
    return ReadUntil([](const std::string&) { return false; });
  }
  bool eof() const { return eof_; }
  int fd() const { return fd_; }
  // The local port (the server sees it as the remote port).
  int LocalPort() const {
    sockaddr_in address{};
    socklen_t length = sizeof(address);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return -1;
    return ntohs(address.sin_port);
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string received_;
};

struct HttpResponse {
  int status = 0;
  std::string headers;  // raw header block
  std::string body;     // de-chunked
  std::string Header(absl::string_view name) const {
    for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
      if (line.size() > name.size() && absl::StartsWithIgnoreCase(line, name) &&
          line[name.size()] == ':') {
        absl::string_view value = line.substr(name.size() + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        return std::string(value);
      }
    }
    return "";
  }
  Json JsonBody() const { return Json::parse(body, nullptr, false); }
};

// Parses one complete response (status line, headers, Content-Length or chunked body).
HttpResponse ParseResponse(const std::string& raw) {
  HttpResponse r;
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || head_end == std::string::npos) return r;
  if (!absl::SimpleAtoi(raw.substr(9, 3), &r.status)) return HttpResponse();
  r.headers = raw.substr(0, head_end);
  std::string rest = raw.substr(head_end + 4);
  if (absl::StrContains(absl::AsciiStrToLower(r.headers), "transfer-encoding: chunked")) {
    size_t pos = 0;
    while (pos < rest.size()) {
      const size_t line_end = rest.find("\r\n", pos);
      if (line_end == std::string::npos) break;
      size_t size = 0;
      if (!absl::SimpleHexAtoi(rest.substr(pos, line_end - pos), &size) || size == 0) break;
      r.body += rest.substr(line_end + 2, size);
      pos = line_end + 2 + size + 2;
    }
  } else {
    r.body = rest;
  }
  return r;
}

std::string PostRequest(absl::string_view path, absl::string_view body,
                        absl::string_view content_type = "application/json") {
  return absl::StrCat("POST ", path, " HTTP/1.1\r\nHost: test\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

// One request on a fresh connection, answered in full (the server closes: Connection: close).
HttpResponse Exchange(int port, const std::string& request) {
  Connection c(port);
  EXPECT_TRUE(c.connected());
  EXPECT_TRUE(c.Send(request));
  return ParseResponse(c.ReadAll());
}

HttpResponse Post(int port, absl::string_view path, const Json& body) {
  return Exchange(port, PostRequest(path, body.dump()));
}

HttpResponse Get(int port, absl::string_view path) {
  return Exchange(
      port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
}

// The JSON objects of an SSE body's `data:` lines, up to (not including) "[DONE]"; `done` says
// whether the terminator came.
std::vector<Json> SseEvents(const std::string& body, bool* done) {
  std::vector<Json> events;
  *done = false;
  for (absl::string_view line : absl::StrSplit(body, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, "data: ")) continue;
    line.remove_prefix(6);
    if (line == "[DONE]") {
      *done = true;
      break;
    }
    events.push_back(Json::parse(line, nullptr, false));
  }
  return events;
}

// The value of the series of `family` whose labels contain `label` (e.g. reason="cancelled").
double MetricValue(const std::string& text, absl::string_view family, absl::string_view label) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, absl::StrCat(family, "{")) || !absl::StrContains(line, label)) {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
  }
  return -1;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(ServerOptionsForTest()); }

  static ServerOptions ServerOptionsForTest() {
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.engine.num_threads = 1;
    options.http.address = "127.0.0.1:0";
    options.http.max_connections = 4;
    options.http.read_timeout = std::chrono::seconds(kSocketTimeoutSeconds);
    return options;
  }

  void StartServer(const ServerOptions& options) {
    auto server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = server_->http_port();
    ASSERT_GT(port_, 0);
  }

  engine::Engine& engine() { return *server_->models().engines().front(); }

  double Failures(absl::string_view reason) {
    return MetricValue(server_->metrics().Serialize(), "kvserve_request_failure_total",
                       absl::StrCat("reason=\"", reason, "\""));
  }

  // The value of an unlabelled series, -1 if absent.
  double SeriesValueOrMinusOne(absl::string_view name) {
    for (absl::string_view line : absl::StrSplit(server_->metrics().Serialize(), '\n')) {
      if (!absl::StartsWith(line, absl::StrCat(name, " "))) continue;
      double value = 0;
      if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
    }
    return -1;
  }

  // Waits (bounded) until the engine holds no request and no cache block.
  bool EngineDrained() {
    return PollUntil([&] {
      const engine::EngineStats s = engine().stats();
      return s.num_running == 0 && s.num_waiting == 0 && s.kv_cache_bytes_in_use == 0;
    });
  }
  bool CancelledOnce() {
    return PollUntil([&] { return Failures("cancelled") == 1; });
  }

  // The same greedy request over gRPC: its text, for comparison.
  std::string GrpcText(const std::string& prompt, int max_tokens) {
    auto stub = pb::KvServe::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    pb::GenerateRequest request;
    request.set_prompt(prompt);
    request.set_max_tokens(max_tokens);
    request.mutable_sampling()->set_temperature(0);
    auto reader = stub->Generate(&context, request);
    std::string text;
    pb::GenerateResponse message;
    while (reader->Read(&message)) text += message.text();
    EXPECT_TRUE(reader->Finish().ok());
    return text;
  }

  std::unique_ptr<KvServer> server_;
  int port_ = 0;
};

TEST_F(HttpServerTest, HealthAndModelsAnswerWhileServing) {
  const HttpResponse health = Get(port_, "/health");
  EXPECT_EQ(health.status, 200);
  const HttpResponse models = Get(port_, "/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  const Json json = models.JsonBody();
  EXPECT_EQ(json["object"], "list");
  ASSERT_EQ(json["data"].size(), 1u);
  EXPECT_EQ(json["data"][0]["id"], kDefaultModel);
  EXPECT_EQ(json["data"][0]["object"], "model");
}

TEST_F(HttpServerTest, TokenizeAnswersThePromptIdsWithoutGenerating) {
  const HttpResponse r = Post(port_, "/tokenize", {{"prompt", "Hi"}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json json = r.JsonBody();
  EXPECT_EQ(json["tokens"], Json({256, 'H', 'i'}));  // BOS, then one id per byte
  EXPECT_EQ(json["count"], 3);
  EXPECT_EQ(json["max_model_len"], 2048);
  EXPECT_EQ(Post(port_, "/tokenize", {{"prompt", "Hi"}, {"add_special_tokens", false}})
                .JsonBody()["count"],
            2);
  EXPECT_EQ(Post(port_, "/tokenize", {{"text", "Hi"}}).status, 400);
  EXPECT_EQ(engine().stats().num_finished, 0);
}

TEST_F(HttpServerTest, GreedyCompletionMatchesGrpcGenerateExactly) {
  const HttpResponse r = Post(port_, "/v1/completions",
                              {{"prompt", "Once upon a time"},
                               {"max_tokens", 12},
                               {"temperature", 0},
                               {"model", kDefaultModel}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json json = r.JsonBody();
  EXPECT_EQ(json["object"], "text_completion");
  EXPECT_THAT(json["id"].get<std::string>(), StartsWith("cmpl-"));
  EXPECT_EQ(json["model"], kDefaultModel);
  ASSERT_EQ(json["choices"].size(), 1u);
  EXPECT_EQ(json["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(json["choices"][0]["text"], GrpcText("Once upon a time", 12));
  // The byte-level tokenizer: one token per byte plus BOS.
  EXPECT_EQ(json["usage"]["prompt_tokens"], 17);
  EXPECT_EQ(json["usage"]["completion_tokens"], 12);
  EXPECT_EQ(json["usage"]["total_tokens"], 29);
}

TEST_F(HttpServerTest, StreamingSendsChunksThenUsageThenDone) {
  const HttpResponse r = Post(port_, "/v1/completions",
                              {{"prompt", "Once upon a time"},
                               {"max_tokens", 12},
                               {"temperature", 0},
                               {"stream", true},
                               {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.Header("Content-Type"), StartsWith("text/event-stream"));
  bool done = false;
  const std::vector<Json> events = SseEvents(r.body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 2u);
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    ASSERT_EQ(events[i]["choices"].size(), 1u) << events[i];
    text += events[i]["choices"][0]["text"].get<std::string>();
    EXPECT_TRUE(events[i]["usage"].is_null());
    const bool last = i + 2 == events.size();
    EXPECT_EQ(events[i]["choices"][0]["finish_reason"].is_null(), !last) << events[i];
  }
  EXPECT_EQ(text, GrpcText("Once upon a time", 12));
  const Json& usage = events.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 12);
}

TEST_F(HttpServerTest, ListOfPromptsWithNSamplesGivesPromptMajorChoices) {
  const HttpResponse r =
      Post(port_, "/v1/completions",
           {{"prompt", {"abc", "xyz"}}, {"max_tokens", 4}, {"n", 2}, {"seed", 7}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json json = r.JsonBody();
  ASSERT_EQ(json["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(json["choices"][i]["index"], i);
  EXPECT_EQ(json["usage"]["prompt_tokens"], 8);  // 4 + 4: counted once per prompt
  EXPECT_EQ(json["usage"]["completion_tokens"], 16);
  // Seeded sampling is reproducible: the same request gives the same four texts.
  const Json again = Post(port_, "/v1/completions",
                          {{"prompt", {"abc", "xyz"}}, {"max_tokens", 4}, {"n", 2}, {"seed", 7}})
                         .JsonBody();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(json["choices"][i]["text"], again["choices"][i]["text"]);
}

TEST_F(HttpServerTest, LogprobsListEveryTokenWithItsAlternatives) {
  const HttpResponse r =
      Post(port_, "/v1/completions", {{"prompt", {1, 2, 3}}, {"max_tokens", 5}, {"logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  const Json logprobs = r.JsonBody()["choices"][0]["logprobs"];
  ASSERT_EQ(logprobs["tokens"].size(), 5u);
  ASSERT_EQ(logprobs["token_logprobs"].size(), 5u);
  ASSERT_EQ(logprobs["top_logprobs"].size(), 5u);
  for (const Json& top : logprobs["top_logprobs"]) EXPECT_LE(top.size(), 3u);
  for (const Json& lp : logprobs["token_logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);
}

TEST_F(HttpServerTest, ChatWithoutATemplateIsRejectedNamingTheTemplate) {
  const HttpResponse r =
      Post(port_, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}});
  EXPECT_EQ(r.status, 400);
  const Json error = r.JsonBody()["error"];
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("no chat template"));
  EXPECT_EQ(error["param"], "chat_template");
  EXPECT_EQ(error["type"], "invalid_request_error");
}

TEST_F(HttpServerTest, ChatRendersTheRequestTemplateAndStreamsTheAssistantRoleFirst) {
  const Json body = {
      {"messages", {{{"role", "user"}, {"content", "hi"}}}},
      {"chat_template", "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"},
      {"max_completion_tokens", 6},
      {"temperature", 0},
      {"stream", true}};
  const HttpResponse r = Post(port_, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  bool done = false;
  const std::vector<Json> events = SseEvents(r.body, &done);
  ASSERT_TRUE(done);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string text;
  for (const Json& e : events) text += e["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "length");
  // Non-streaming gives the same message.
  Json unstreamed = body;
  unstreamed["stream"] = false;
  const Json json = Post(port_, "/v1/chat/completions", unstreamed).JsonBody();
  EXPECT_EQ(json["object"], "chat.completion");
  EXPECT_EQ(json["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(json["choices"][0]["message"]["content"], text);
  EXPECT_EQ(json["usage"]["prompt_tokens"], 9);  // "user: hi\n", no BOS added to a rendered chat
}

TEST_F(HttpServerTest, WrongTypesAndValuesAreAnswered400NamingTheField) {
  struct Case {
    Json body;
    std::string param;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"prompt", "a"}, {"max_tokens", "ten"}},
       "max_tokens",
       "max_tokens: must be an integer, got \"ten\""},
      {{{"prompt", "a"}, {"temperature", "hot"}}, "temperature", "temperature: must be a number"},
      {{{"prompt", "a"}, {"top_p", 1.5}}, "top_p", "top_p: must be in (0, 1], got 1.5"},
      {{{"prompt", "a"}, {"stop", {1}}}, "stop", "stop[0]: must be a string, got 1"},
      {{{"prompt", {"a", 3}}}, "prompt", "prompt[1]: must be a string or a list of token ids"},
      {{{"prompt", Json::array()}}, "prompt", "prompt: must not be empty"},
      {{{"max_tokens", 3}}, "prompt", "prompt: is required"},
      {{{"prompt", {1, 100000}}}, "prompt", "prompt[1]"},
      {{{"prompt", "a"}, {"n", 17}}, "n", "n: "},
      {{{"prompt", "a"}, {"normalizer", "argmax"}}, "normalizer", "normalizer: must be"},
      {{{"prompt", "a"}, {"echo", true}}, "echo", "echo: is not supported"},
  };
  for (const Case& c : cases) {
    const HttpResponse r = Post(port_, "/v1/completions", c.body);
    EXPECT_EQ(r.status, 400) << c.body << " -> " << r.body;
    const Json error = r.JsonBody()["error"];
    EXPECT_EQ(error["type"], "invalid_request_error") << r.body;
    EXPECT_EQ(error["param"], c.param) << r.body;
    EXPECT_THAT(error["message"].get<std::string>(), HasSubstr(c.message)) << r.body;
  }
}

TEST_F(HttpServerTest, UnknownFieldsAreIgnored) {
  const HttpResponse r = Post(port_, "/v1/completions",
                              {{"prompt", "a"},
                               {"max_tokens", 2},
                               {"no_such_field", {1, 2}},
                               {"user", "someone"},
                               {"logit_bias", Json::object()}});
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(HttpServerTest, UnknownModelIs404) {
  const HttpResponse r = Post(port_, "/v1/completions", {{"prompt", "a"}, {"model", "gpt-9"}});
  EXPECT_EQ(r.status, 404);
  const Json error = r.JsonBody()["error"];
  EXPECT_EQ(error["code"], "model_not_found");
  EXPECT_EQ(error["param"], "model");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("gpt-9"));
}

TEST_F(HttpServerTest, MalformedJsonIs400) {
  const HttpResponse r = Exchange(port_, PostRequest("/v1/completions", "{\"prompt\": \"a\""));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.JsonBody()["error"]["message"].get<std::string>(), HasSubstr("not valid JSON"));
  const HttpResponse not_object = Exchange(port_, PostRequest("/v1/completions", "[1, 2]"));
  EXPECT_EQ(not_object.status, 400);
  EXPECT_THAT(not_object.body, HasSubstr("must be a JSON object"));
}

TEST_F(HttpServerTest, WrongContentTypeIs415) {
  const HttpResponse r =
      Exchange(port_, PostRequest("/v1/completions", "{\"prompt\": \"a\"}", "text/plain"));
  EXPECT_EQ(r.status, 415);
  EXPECT_EQ(r.JsonBody()["error"]["param"], "Content-Type");
}

TEST_F(HttpServerTest, TenMegabyteBodyIs413AndOtherRequestsGoOn) {
  const std::string body(10 << 20, 'x');
  Connection big(port_);
  ASSERT_TRUE(big.connected());
  // The server may answer before reading the whole body; send it from another thread.
  std::thread sender([&] { big.Send(PostRequest("/v1/completions", body)); });
  const HttpResponse r = ParseResponse(
      big.ReadUntil([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }));
  sender.join();
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(Get(port_, "/health").status, 200);
}

TEST_F(HttpServerTest, HalfSentRequestDoesNotStopAnotherFromCompleting) {
  Connection slow(port_);
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.Send("POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Ty"));
  Connection slow_body(port_);
  ASSERT_TRUE(slow_body.Send(
      "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Content-Length: 100\r\n\r\n{\"prompt\""));
  const HttpResponse r = Post(port_, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2}});
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitAreRefusedWith503) {
  // max_connections = 4: four idle connections hold every worker.
  std::vector<std::unique_ptr<Connection>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<Connection>(port_));
    ASSERT_TRUE(held.back()->connected());
  }
  // The server accepts in order, so the fifth is the one over the limit.
  const HttpResponse refused = Get(port_, "/health");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  EXPECT_EQ(refused.headers.find("Retry-After", refused.headers.find("Retry-After") + 1),
            std::string::npos)
      << "Retry-After sent twice:\n"
      << refused.headers;
  EXPECT_THAT(refused.body, HasSubstr("--http-max-connections=4"));
  // Once one closes, a new connection is served again (bounded retries: the worker notices the
  // close asynchronously).
  held.front()->Close();
  EXPECT_TRUE(PollUntil([&] { return Get(port_, "/health").status == 200; }));
}

TEST_F(HttpServerTest, ClientThatHangsUpMidStreamCancelsItsRequestAndFreesTheCache) {
  Connection c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send(PostRequest(
      "/v1/completions",
      Json{{"prompt", "abc"}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}}
          .dump())));
  // A first chunk: the request runs and holds cache blocks.
  c.ReadUntil([](const std::string& s) { return s.find("data: {") != std::string::npos; });
  engine().Pause();  // it cannot finish by itself from here on
  // Stats are published at the end of each step: the one under way at Pause completes.
  EXPECT_TRUE(PollUntil([&] { return engine().stats().kv_cache_bytes_in_use > 0; }));
  EXPECT_EQ(engine().stats().num_running, 1);
  c.Close();
  // The connection thread sees the hang-up and cancels (counted as it does so).
  EXPECT_TRUE(CancelledOnce());
  engine().Resume();
  EXPECT_TRUE(EngineDrained());
  EXPECT_EQ(MetricValue(server_->metrics().Serialize(), "kvserve_request_success_total",
                        "finished_reason=\"length\""),
            0);
}

TEST_F(HttpServerTest, ClientThatHangsUpBeforeANonStreamingAnswerCancelsItsRequest) {
  engine().Pause();  // the request waits in the engine's queue
  Connection c(port_);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send(PostRequest("/v1/completions", R"({"prompt": "abc", "max_tokens": 50})")));
  // Nothing can be answered while paused; hang up, then let the engine go on.
  c.Close();
  EXPECT_TRUE(CancelledOnce());
  engine().Resume();
  EXPECT_TRUE(EngineDrained());
}

TEST_F(HttpServerTest, FullQueueIs429WithRetryAfter) {
  ServerOptions options = ServerOptionsForTest();
  options.engine.max_num_seqs = 1;
  options.engine.max_queued_requests = 0;
  server_.reset();
  StartServer(options);
  engine().Pause();  // the first request holds the one slot; nothing finishes
  Connection first(port_);
  ASSERT_TRUE(first.Send(
      PostRequest("/v1/completions", R"({"prompt": "abc", "max_tokens": 3, "stream": true})")));
  // Streaming headers are sent once the request was submitted.
  first.ReadUntil([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  const HttpResponse refused = Post(port_, "/v1/completions", {{"prompt", "a"}});
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  EXPECT_EQ(refused.JsonBody()["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(Failures("rejected"), 1);
  engine().Resume();
  bool done = false;
  SseEvents(ParseResponse(first.ReadAll()).body, &done);
  EXPECT_TRUE(done);
}

// The HTTP API checks the same keys as gRPC (server/api_keys.h): /health stays open for probes,
// everything else needs "Authorization: Bearer <key>", and a key's tenant salts the prefix cache,
// so the same prompt hits the cache within a tenant and never across tenants.
TEST_F(HttpServerTest, ApiKeysGuardEveryRouteButHealthAndSaltTheCacheByTenant) {
  const std::string keys_path =
      absl::StrCat(::testing::TempDir(), "/http_server_test_keys_", getpid(), ".txt");
  std::ofstream(keys_path)
      << "key-acme-one-0000001 acme\nkey-acme-two-0000002 acme\nkey-globex-00000003 globex\n";
  ApiKeyAuthenticator::Options auth;
  auth.keys_file = keys_path;
  absl::StatusOr<std::unique_ptr<ApiKeyAuthenticator>> keys = ApiKeyAuthenticator::Create(auth);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ServerOptions options = ServerOptionsForTest();
  options.api_keys = *std::move(keys);
  server_.reset();
  StartServer(options);
  std::remove(keys_path.c_str());

  const auto with_key = [&](absl::string_view key, absl::string_view path, const Json& body) {
    const std::string request = PostRequest(path, body.dump());
    // The header goes right after the request line.
    const size_t line_end = request.find("\r\n") + 2;
    return Exchange(port_, absl::StrCat(request.substr(0, line_end), "Authorization: Bearer ", key,
                                        "\r\n", request.substr(line_end)));
  };
  EXPECT_EQ(Get(port_, "/health").status, 200);
  const HttpResponse no_key = Get(port_, "/v1/models");
  EXPECT_EQ(no_key.status, 401) << no_key.body;
  EXPECT_EQ(no_key.JsonBody()["error"]["type"], "authentication_error") << no_key.body;
  EXPECT_EQ(with_key("wrong", "/v1/completions", {{"prompt", "a"}}).status, 401);

  // 40 token ids: two full blocks of 16 that a second request can find in the prefix cache.
  Json prompt = Json::array();
  for (int i = 0; i < 40; ++i) prompt.push_back(20 + i);
  const Json body = {{"prompt", prompt}, {"max_tokens", 1}};
  const auto counter = [&](absl::string_view family) {
    return MetricValue(server_->metrics().Serialize(), family, "");
  };
  // Hits and queries come in the same engine report: once the queries of the k-th request are
  // counted, so are its hits.
  const auto send = [&](absl::string_view key, int k) {
    const HttpResponse r = with_key(key, "/v1/completions", body);
    ASSERT_EQ(r.status, 200) << r.body;
    ASSERT_TRUE(PollUntil([&] {
      return counter("kvserve_prefix_cache_queries_total") == 40.0 * k;
    })) << counter("kvserve_prefix_cache_queries_total");
  };
  ASSERT_NO_FATAL_FAILURE(send("key-acme-one-0000001", 1));
  ASSERT_NO_FATAL_FAILURE(send("key-globex-00000003", 2));
  EXPECT_EQ(counter("kvserve_prefix_cache_hits_total"), 0)
      << "a tenant hit another tenant's cached prompt";
  ASSERT_NO_FATAL_FAILURE(send("key-acme-two-0000002", 3));
  EXPECT_EQ(counter("kvserve_prefix_cache_hits_total"), 32);
}

TEST_F(HttpServerTest, DrainingAnswers503OnHealthAndNewRequests) {
  std::thread shutdown;
  engine().Pause();
  Connection c(port_);
  ASSERT_TRUE(c.Send(
      PostRequest("/v1/completions", R"({"prompt": "abc", "max_tokens": 3, "stream": true})")));
  c.ReadUntil([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  // The stream in flight keeps the drain waiting while the engine is paused.
  shutdown = std::thread(
      [this] { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(60)); });
  EXPECT_TRUE(PollUntil([&] { return Get(port_, "/health").status == 503; }));
  const HttpResponse refused = Post(port_, "/v1/completions", {{"prompt", "a"}});
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.Header("Retry-After"), "1");
  engine().Resume();
  bool done = false;
  SseEvents(ParseResponse(c.ReadAll()).body, &done);
  EXPECT_TRUE(done);  // the stream in flight finished normally
  shutdown.join();
}

// ---------------------------------------------------------------------------------------------
// Backpressure: a client that does not read.

// The server's end (in this process) of the TCP connection from 127.0.0.1:client_port to the
// server's `server_port`; -1 if none.
int ServerSideSocket(int server_port, int client_port) {
  return FindOwnSocket([&](int fd) {
    sockaddr_in local{}, peer{};
    socklen_t local_length = sizeof(local), peer_length = sizeof(peer);
    return getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0 &&
           getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0 &&
           local.sin_family == AF_INET && ntohs(local.sin_port) == server_port &&
           ntohs(peer.sin_port) == client_port;
  });
}

// A server whose HTTP calls hold at most ~kStreamLimit bytes of unsent output each.
class HttpBackpressureTest : public HttpServerTest {
 protected:
  static constexpr int64_t kStreamLimit = 8 << 10;
  static constexpr int kTokens = 1000;
  // Kernel socket buffers of the connection, fixed on both ends so the kernel does not grow them.
  static constexpr int kSocketBufferBytes = 16 << 10;

  void SetUp() override { StartServer(BackpressureOptions()); }

  static ServerOptions BackpressureOptions() {
    ServerOptions options = ServerOptionsForTest();
    options.max_stream_buffer_bytes = kStreamLimit;
    options.http.write_timeout = std::chrono::seconds(kSocketTimeoutSeconds);
    return options;
  }

  // The most an event of one greedy token with 20 alternatives adds to the unsent count.
  static int64_t MaxEventBytes() {
    engine::TokenEvent event;
    event.token_ids = {0};
    // One byte-level token frees at most the 3 bytes held back before it
    // (engine/text/utf8_stream.h), each at worst its own U+FFFD.
    for (int i = 0; i < 4; ++i) event.text += "\xEF\xBF\xBD";
    event.logprobs.emplace_back().top.resize(engine::kMaxLogprobs + 1);
    return StreamBudget::EventBytes(event);
  }

  // Opens a connection whose kernel buffers are already full when the streaming request is sent,
  // so the server's very first write of the response (its headers) cannot complete until the
  // client reads: from then on the engine's output can only pile up in kvserve's own buffer, and
  // the hold that stops it is the last one whatever the threads' timing (the HTTP analogue of
  // KvServerBackpressureTest's undeliverable first message). The filler is written, in this
  // process, through the server's end of the connection until the kernel refuses more with
  // nothing left in flight: an acknowledgement still to come would free send space again (on a
  // busy machine, loopback delivery lags behind send()), and the headers would go out. The client
  // skips its `filler_bytes` before the response when it reads.
  std::unique_ptr<Connection> UnreadStream(int64_t* filler_bytes) {
    auto c = std::make_unique<Connection>(port_, kSocketBufferBytes);
    EXPECT_TRUE(c->connected());
    int server_fd = -1;
    EXPECT_TRUE(PollUntil([&] {
      return (server_fd = ServerSideSocket(port_, c->LocalPort())) >= 0;
    })) << "the listener never accepted the connection";
    const int buffer = kSocketBufferBytes;
    setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    *filler_bytes = 0;
    const std::string filler(4096, 'x');
    // Bytes sent and not yet acknowledged (queued minus not yet sent).
    auto in_flight = [server_fd] {
      int queued = 0, unsent = 0;
      if (ioctl(server_fd, SIOCOUTQ, &queued) != 0 || ioctl(server_fd, SIOCOUTQNSD, &unsent) != 0) {
        return -1;
      }
      return queued - unsent;
    };
    EXPECT_TRUE(PollUntil([&] {
      if (in_flight() != 0) return false;
      bool accepted = false;
      for (;;) {
        const ssize_t n =
            send(server_fd, filler.data(), filler.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0) break;  // EAGAIN
        *filler_bytes += n;
        accepted = true;
      }
      // Refused with nothing in flight: the client's window is closed and the send buffer full.
      return !accepted && in_flight() == 0;
    })) << "the connection's buffers never filled";
    EXPECT_GT(*filler_bytes, 0);
    EXPECT_TRUE(
        c->Send(PostRequest("/v1/completions", Json{{"prompt", "Once upon a time"},
                                                    {"max_tokens", kTokens},
                                                    {"ignore_eos", true},
                                                    {"temperature", 0},
                                                    {"logprobs", engine::kMaxLogprobs},
                                                    {"stream", true},
                                                    {"stream_options", {{"include_usage", true}}}}
                                                   .dump())));
    return c;
  }

  double GenerationTokens() {
    return MetricValue(server_->metrics().Serialize(), "kvserve_generation_tokens_total",
                       absl::StrCat("model=\"", kDefaultModel, "\""));
  }

  // What an UnreadStream client read to the end: its filler, then one well-formed stream of every
  // token.
  static void ExpectFillerThenEveryToken(const std::string& raw, int64_t filler_bytes) {
    ASSERT_GE(raw.size(), static_cast<size_t>(filler_bytes));
    EXPECT_EQ(raw.substr(0, filler_bytes), std::string(filler_bytes, 'x'));
    const HttpResponse r = ParseResponse(raw.substr(filler_bytes));
    ASSERT_EQ(r.status, 200) << r.headers;
    bool done = false;
    const std::vector<Json> events = SseEvents(r.body, &done);
    EXPECT_TRUE(done);
    ASSERT_GE(events.size(), 2u);
    size_t tokens = 0;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
      ASSERT_EQ(events[i]["choices"].size(), 1u) << events[i];
      const Json& logprobs = events[i]["choices"][0]["logprobs"];
      tokens += logprobs["tokens"].size();
    }
    EXPECT_EQ(tokens, static_cast<size_t>(kTokens));
    EXPECT_EQ(events.back()["usage"]["completion_tokens"], kTokens);
  }
};

TEST_F(HttpBackpressureTest, AnUnreadStreamStopsGeneratingUntilItsClientReads) {
  int64_t filler_bytes = 0;
  std::unique_ptr<Connection> c = UnreadStream(&filler_bytes);

  // The call's unsent output reaches the limit and its request is held in the engine.
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 1; }))
      << "the unread stream never held its request";
  // The engine publishes num_held after reporting the step whose event made the call hold, and the
  // hold stops the request before its next token: this is every token before the client reads.
  const double held_at = GenerationTokens();
  EXPECT_LT(held_at, kTokens);
  // Unsent output: at least the limit, at most the limit plus the event that reached it.
  const int64_t buffered = server_->streams().buffered_bytes();
  EXPECT_GE(buffered, kStreamLimit);
  EXPECT_LE(buffered, kStreamLimit - 1 + MaxEventBytes());
  EXPECT_EQ(SeriesValueOrMinusOne("kvserve_stream_buffered_bytes"), static_cast<double>(buffered));

  // The engine goes on serving others and generates nothing more for the held call: after a
  // 5-token request, the token counter moved by exactly 5.
  const HttpResponse other =
      Post(port_, "/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 5}, {"ignore_eos", true}});
  ASSERT_EQ(other.status, 200) << other.body;
  // The counter is updated by the engine's report after the step (see metrics_test.cc).
  EXPECT_TRUE(PollUntil([&] { return GenerationTokens() >= held_at + 5; }));
  EXPECT_EQ(GenerationTokens(), held_at + 5);
  EXPECT_EQ(engine().stats().num_held, 1);
  EXPECT_EQ(engine().stats().num_running, 1);  // it keeps its slot and its cache
  EXPECT_GT(engine().stats().kv_cache_bytes_in_use, 0);
  EXPECT_EQ(server_->streams().buffered_bytes(), buffered);

  // Reading resumes it: every token arrives, in one well-formed stream.
  ASSERT_NO_FATAL_FAILURE(ExpectFillerThenEveryToken(c->ReadAll(), filler_bytes));
  EXPECT_TRUE(EngineDrained());
  EXPECT_EQ(engine().stats().num_held, 0);
  EXPECT_TRUE(PollUntil([&] { return server_->streams().buffered_bytes() == 0; }));
}

TEST_F(HttpBackpressureTest, ClosingAHeldStreamFreesItsCacheAndBuffer) {
  int64_t filler_bytes = 0;
  std::unique_ptr<Connection> c = UnreadStream(&filler_bytes);
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 1; }));
  EXPECT_GE(server_->streams().buffered_bytes(), kStreamLimit);

  // Unread data makes the close a reset: the connection thread's blocked write fails, and it
  // cancels the call.
  c->Close();
  EXPECT_TRUE(CancelledOnce());
  EXPECT_TRUE(EngineDrained());
  EXPECT_EQ(engine().stats().num_held, 0);
  EXPECT_TRUE(PollUntil([&] { return server_->streams().buffered_bytes() == 0; }));
  EXPECT_EQ(SeriesValueOrMinusOne("kvserve_stream_buffered_bytes"), 0);
}

// The server's cap, with a per-stream limit no stream reaches: a stream holds when the total of
// all streams reaches the cap, and (being re-evaluated only on its own events and writes) resumes
// only when its own client reads.
class HttpServerCapTest : public HttpBackpressureTest {
 protected:
  static constexpr int64_t kServerCap = 12 << 10;
  void SetUp() override {
    ServerOptions options = BackpressureOptions();
    options.max_stream_buffer_bytes = 1 << 20;
    options.max_buffered_bytes = kServerCap;
    StartServer(options);
  }
};

TEST_F(HttpServerCapTest, StreamsHeldByTheServerCapEachResumeWhenTheirOwnClientReads) {
  int64_t first_filler = 0;
  std::unique_ptr<Connection> first = UnreadStream(&first_filler);
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 1; }))
      << "the first unread stream never held its request";
  const int64_t first_bytes = server_->streams().buffered_bytes();
  EXPECT_GE(first_bytes, kServerCap);
  EXPECT_LE(first_bytes, kServerCap - 1 + MaxEventBytes());
  const double first_held_at = GenerationTokens();

  // The server is at its cap: a second unread stream holds after its first event (its first
  // token).
  int64_t second_filler = 0;
  std::unique_ptr<Connection> second = UnreadStream(&second_filler);
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 2; }))
      << "the second unread stream never held its request";
  const int64_t total = server_->streams().buffered_bytes();
  EXPECT_GT(total, first_bytes);
  EXPECT_LE(total, kServerCap - 1 + 2 * MaxEventBytes());
  EXPECT_EQ(GenerationTokens(), first_held_at + 1);

  // Reading the first lets it finish. The second stays held, below the cap as the server now is:
  // nothing happens to it until its own client reads.
  ASSERT_NO_FATAL_FAILURE(ExpectFillerThenEveryToken(first->ReadAll(), first_filler));
  EXPECT_TRUE(PollUntil([&] { return GenerationTokens() >= kTokens + 1; }));
  EXPECT_EQ(GenerationTokens(), kTokens + 1);
  EXPECT_TRUE(
      PollUntil([&] { return server_->streams().buffered_bytes() == total - first_bytes; }));
  EXPECT_EQ(engine().stats().num_held, 1);
  EXPECT_EQ(engine().stats().num_running, 1);

  // Its client reads: every token arrives.
  ASSERT_NO_FATAL_FAILURE(ExpectFillerThenEveryToken(second->ReadAll(), second_filler));
  EXPECT_TRUE(EngineDrained());
  EXPECT_EQ(engine().stats().num_held, 0);
  EXPECT_TRUE(PollUntil([&] { return server_->streams().buffered_bytes() == 0; }));
}

// --stream-idle-timeout on a fake clock that only the test moves: CheckNow returns once every
// stream due has been ended.
class HttpIdleTimeoutTest : public HttpBackpressureTest {
 protected:
  static constexpr std::chrono::seconds kIdleTimeout{300};
  void SetUp() override {
    ServerOptions options = BackpressureOptions();
    options.stream_idle_timeout = kIdleTimeout;
    options.stream_idle_clock = clock_;
    StartServer(options);
  }

  void AdvanceIdleClock(std::chrono::seconds by) {
    clock_->Advance(by);
    server_->streams().idle_timeout()->CheckNow();
  }
  double IdleTimeouts() { return SeriesValueOrMinusOne("kvserve_stream_idle_timeouts_total"); }

  std::shared_ptr<testing::FakeClock> clock_ = std::make_shared<testing::FakeClock>();
};

TEST_F(HttpIdleTimeoutTest, AStreamHeldForTheTimeoutIsEndedAndItsConnectionClosed) {
  int64_t filler_bytes = 0;
  std::unique_ptr<Connection> c = UnreadStream(&filler_bytes);
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 1; }));
  EXPECT_GE(server_->streams().buffered_bytes(), kStreamLimit);

  // A second short of the timeout: still held.
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 0);
  EXPECT_EQ(engine().stats().num_held, 1);

  // At the timeout: its output is released and its request cancelled before CheckNow returns, and
  // its socket shut down, so the connection thread's blocked write (the response headers) fails.
  AdvanceIdleClock(std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 1);
  EXPECT_EQ(server_->streams().buffered_bytes(), 0);
  EXPECT_TRUE(EngineDrained());
  EXPECT_EQ(engine().stats().num_held, 0);
  EXPECT_TRUE(CancelledOnce());
  // The client finds the connection closed after the filler, without a response to its request.
  const std::string raw = c->ReadAll();
  EXPECT_TRUE(c->eof());
  EXPECT_FALSE(absl::StrContains(raw, "[DONE]"));
  // Counted once each.
  EXPECT_EQ(Failures("cancelled"), 1);
  EXPECT_EQ(SeriesValueOrMinusOne("kvserve_stream_buffered_bytes"), 0);
  EXPECT_EQ(IdleTimeouts(), 1);
}

TEST_F(HttpIdleTimeoutTest, AStreamWhoseClientReadsWithinTheTimeoutIsNotEnded) {
  int64_t filler_bytes = 0;
  std::unique_ptr<Connection> c = UnreadStream(&filler_bytes);
  ASSERT_TRUE(PollUntil([&] { return engine().stats().num_held == 1; }));
  const double held_at = GenerationTokens();
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));

  // The client reads past its filler: the headers go out, the stream lets go (its clock stops)
  // and generates on, until the socket's buffers and its own fill up again.
  c->ReadUntil([&](const std::string& r) { return r.size() > static_cast<size_t>(filler_bytes); });
  ASSERT_TRUE(PollUntil([&] { return GenerationTokens() > held_at; }))
      << "reading did not let the stream go";
  // Every hold from here on started at the current time, so none is due a second short of the
  // timeout later, 2 s short of twice the timeout since the first hold.
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 0);

  ASSERT_NO_FATAL_FAILURE(ExpectFillerThenEveryToken(c->ReadAll(), filler_bytes));
  EXPECT_EQ(IdleTimeouts(), 0);
  EXPECT_TRUE(EngineDrained());
}

}  // namespace
}  // namespace kvserve::server
