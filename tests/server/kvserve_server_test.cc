// KvServer end to end over real gRPC: an in-process server on 127.0.0.1:0, driven through the
// generated sync client stubs (and a generic stub for bytes that are not a GenerateRequest).
//
// Most tests use the embedded default model (random weights, byte-level tokenizer: ids 0-255 are
// bytes, BOS 256, EOS 257, vocab 320). Its output is seeded noise, so the assertions are about the
// protocol: determinism, message shape, exact error texts, cancellation and engine bookkeeping.
// The tiny_llama_gqa fixture (vocab 64) serves the tests that need a second model.
//
// Every call carries a deadline, so a broken server fails a test instead of hanging it.
#include "server/kvserve_server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <future>
#include <latch>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "tests/testing/fake_clock.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr char kDefaultModel[] = "tiny-llama-gqa-random-weights";
constexpr int32_t kBos = 256;
constexpr int32_t kEos = 257;
constexpr char kFixtureModel[] = "tiny";
constexpr char kFixtureDir[] = KVSERVE_TEST_DATA_DIR "/tiny_llama_gqa";

// Generous: a healthy call takes milliseconds, but the build machine may be busy.
constexpr std::chrono::seconds kCallTimeout(60);
// How long the engine may take to drop a cancelled request.
constexpr std::chrono::seconds kReleaseTimeout(2);

std::chrono::system_clock::time_point DeadlineIn(std::chrono::milliseconds timeout) {
  return std::chrono::system_clock::now() + timeout;
}

// ---------------------------------------------------------------------------------------------
// An independent UTF-8 oracle for the text the server streams.

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Decodes `bytes`, replacing each maximal subpart of an ill-formed sequence with one U+FFFD
// (Unicode Standard section 3.9, "U+FFFD Substitution of Maximal Subparts"). The lead byte fixes
// the sequence length and the range of the second byte (Table 3-7); later bytes are 80..BF.
std::string DecodeWithReplacement(std::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char lead = static_cast<unsigned char>(bytes[i]);
    if (lead < 0x80) {
      out += static_cast<char>(lead);
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead == 0xE0) {
      length = 3;
      second_min = 0xA0;  // no overlong forms
    } else if (lead == 0xED) {
      length = 3;
      second_max = 0x9F;  // no surrogates
    } else if (lead >= 0xE1 && lead <= 0xEF) {
      length = 3;
    } else if (lead == 0xF0) {
      length = 4;
      second_min = 0x90;  // no overlong forms
    } else if (lead >= 0xF1 && lead <= 0xF3) {
      length = 4;
    } else if (lead == 0xF4) {
      length = 4;
      second_max = 0x8F;  // nothing above U+10FFFF
    }
    if (length == 0) {  // 80..C1, F5..FF never start a character
      out += kReplacement;
      ++i;
      continue;
    }
    size_t matched = 1;  // bytes of a well-formed sequence seen so far
    while (matched < length && i + matched < bytes.size()) {
      const unsigned char c = static_cast<unsigned char>(bytes[i + matched]);
      const unsigned char min = matched == 1 ? second_min : 0x80;
      const unsigned char max = matched == 1 ? second_max : 0xBF;
      if (c < min || c > max) break;
      ++matched;
    }
    if (matched == length) {
      out.append(bytes.substr(i, length));
    } else {
      out += kReplacement;  // the maximal subpart bytes[i, i + matched)
    }
    i += matched;
  }
  return out;
}

// Well-formed text is exactly the text the decoder leaves unchanged: every replacement either
// changes the length or puts EF BF BD where an ill-formed (hence different) subpart was.
bool IsWellFormedUtf8(std::string_view text) { return DecodeWithReplacement(text) == text; }

// The bytes the default model's byte-level tokenizer decodes `ids` to (BOS, EOS and the unused ids
// above 257 decode to nothing).
std::string TokenBytes(const std::vector<int32_t>& ids) {
  std::string bytes;
  for (int32_t id : ids) {
    if (id >= 0 && id < 256) bytes += static_cast<char>(id);
  }
  return bytes;
}

TEST(Utf8OracleTest, ReplacesEachMaximalSubpartOfAnIllFormedSequence) {
  // Unicode Standard Table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  const std::string r(kReplacement);
  EXPECT_EQ(DecodeWithReplacement("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            absl::StrCat("a", r, r, r, "b", r, "c", r, r, "d"));
  EXPECT_EQ(DecodeWithReplacement("\xE2\x82\x61"), absl::StrCat(r, "a"));
  // A surrogate: no well-formed sequence starts ED A0, so each byte is its own subpart.
  EXPECT_EQ(DecodeWithReplacement("\xED\xA0\x80"), absl::StrCat(r, r, r));
  EXPECT_EQ(DecodeWithReplacement("\xC0\xAF"), absl::StrCat(r, r));         // an overlong '/'
  EXPECT_EQ(DecodeWithReplacement("x\xF0\x9F\x98"), absl::StrCat("x", r));  // cut off at the end
  EXPECT_EQ(DecodeWithReplacement("\xF0\x9F\x98\x80\xC3\xA9"), "\xF0\x9F\x98\x80\xC3\xA9");
  EXPECT_TRUE(IsWellFormedUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80 \xEF\xBF\xBD"));
  EXPECT_FALSE(IsWellFormedUtf8("\xC3"));
  EXPECT_FALSE(IsWellFormedUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

// ---------------------------------------------------------------------------------------------
// Client helpers.

// One Generate call, read to the end.
struct Generation {
  grpc::Status status;
  std::vector<pb::GenerateResponse> messages;
  std::vector<int32_t> token_ids;  // all messages' token_ids, in order
  std::string text;                // all messages' text, in order

  pb::FinishReason finish_reason() const {
    return messages.empty() ? pb::FINISH_REASON_UNSPECIFIED : messages.back().finish_reason();
  }

  // Appends the stream's next message.
  void Add(const pb::GenerateResponse& message) {
    token_ids.insert(token_ids.end(), message.token_ids().begin(), message.token_ids().end());
    text += message.text();
    messages.push_back(message);
  }
};

// Reads what is left of a stream into `g`, then its final status.
void ReadToEnd(grpc::ClientReader<pb::GenerateResponse>& reader, Generation* g) {
  pb::GenerateResponse message;
  while (reader.Read(&message)) g->Add(message);
  g->status = reader.Finish();
}

// Reads a whole Generate or Chat stream.
template <typename Request>
Generation ReadStream(pb::KvServe::Stub& stub, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  Generation generation;
  std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader;
  if constexpr (std::is_same_v<Request, pb::ChatRequest>) {
    reader = stub.Chat(&context, request);
  } else {
    reader = stub.Generate(&context, request);
  }
  ReadToEnd(*reader, &generation);
  return generation;
}

Generation Generate(pb::KvServe::Stub& stub, const pb::GenerateRequest& request) {
  return ReadStream(stub, request);
}

std::string Describe(const grpc::Status& status) {
  return absl::StrCat("status ", static_cast<int>(status.error_code()), ": ",
                      status.error_message());
}

// Checks the stream contract of a successful generation: request id on the first message only,
// finish reason and usage on the last message only, every text valid UTF-8, and the usage counts.
void ExpectWellFormedStream(const Generation& g, int32_t prompt_tokens,
                            const std::string& client_request_id = "") {
  ASSERT_TRUE(g.status.ok()) << Describe(g.status);
  ASSERT_THAT(g.messages, ::testing::Not(::testing::IsEmpty()));
  if (client_request_id.empty()) {
    EXPECT_NE(g.messages.front().request_id(), "");
  } else {
    EXPECT_EQ(g.messages.front().request_id(), client_request_id);
  }
  for (size_t i = 0; i < g.messages.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("message ", i, " of ", g.messages.size()));
    const pb::GenerateResponse& m = g.messages[i];
    const bool last = i + 1 == g.messages.size();
    if (i > 0) {
      EXPECT_EQ(m.request_id(), "");
    }
    EXPECT_TRUE(IsWellFormedUtf8(m.text()));
    EXPECT_EQ(m.finish_reason() != pb::FINISH_REASON_UNSPECIFIED, last);
    EXPECT_EQ(m.has_usage(), last);
  }
  const pb::Usage& usage = g.messages.back().usage();
  EXPECT_EQ(usage.prompt_tokens(), prompt_tokens);
  EXPECT_EQ(usage.completion_tokens(), static_cast<int32_t>(g.token_ids.size()));
}

pb::GenerateRequest GreedyRequest(const std::string& prompt, int32_t max_tokens) {
  pb::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(0.0f);
  return request;
}

pb::GenerateRequest SeededRequest(const std::string& prompt, int32_t max_tokens, uint64_t seed) {
  pb::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(1.0f);
  request.mutable_sampling()->set_seed(seed);
  return request;
}

// A generation that would run for seconds: only cancellation, a deadline or shutdown ends it early.
pb::GenerateRequest LongRequest() {
  pb::GenerateRequest request = GreedyRequest("Once upon a time", 2000);
  request.set_ignore_eos(true);
  return request;
}

// The value of `series` (name plus labels, as exposed) in a text exposition; NaN when absent.
double SeriesValue(const std::string& exposition, const std::string& series) {
  const std::string prefix = series + " ";
  for (size_t pos = 0; pos < exposition.size();) {
    const size_t end = std::min(exposition.find('\n', pos), exposition.size());
    const std::string_view line(exposition.data() + pos, end - pos);
    if (line.starts_with(prefix)) return std::stod(std::string(line.substr(prefix.size())));
    pos = end + 1;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// Polls until the engine holds no request and no KV cache; returns the last stats seen.
engine::EngineStats WaitUntilEngineIdle(const engine::Engine& engine,
                                        std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    engine::EngineStats stats = engine.stats();
    const bool idle =
        stats.num_running == 0 && stats.num_waiting == 0 && stats.kv_cache_bytes_in_use == 0;
    if (idle || std::chrono::steady_clock::now() >= deadline) return stats;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Reads the rest of a stream on a thread of its own; its final status lands in *status.
std::thread ReadRestInBackground(grpc::ClientReader<pb::GenerateResponse>* reader,
                                 grpc::Status* status) {
  return std::thread([reader, status] {
    pb::GenerateResponse message;
    while (reader->Read(&message)) {
    }
    *status = reader->Finish();
  });
}

#define EXPECT_ENGINE_IDLE(stats)           \
  do {                                      \
    const engine::EngineStats s_ = (stats); \
    EXPECT_EQ(s_.num_running, 0);           \
    EXPECT_EQ(s_.num_waiting, 0);           \
    EXPECT_EQ(s_.kv_cache_bytes_in_use, 0); \
  } while (false)

// ---------------------------------------------------------------------------------------------
// Fixtures.

class KvServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer(ServerOptions())); }

  void StartServer(ServerOptions options) {
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = pb::KvServe::NewStub(channel_);
  }

  const engine::Engine& engine(size_t i = 0) const { return *server_->models().engines().at(i); }

  // ListModels' answer; a failed call fails the test.
  pb::ListModelsResponse ListModels() {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kCallTimeout));
    pb::ListModelsResponse response;
    const grpc::Status status = stub_->ListModels(&context, pb::ListModelsRequest(), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  std::unique_ptr<KvServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::KvServe::Stub> stub_;
};

// Serves the embedded default model first and the tiny_llama_gqa fixture as "tiny".
class KvServerTwoModelTest : public KvServerTest {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.models = {ModelSpec{}, ModelSpec{kFixtureModel, kFixtureDir}};
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
  }
};

// Serves the fixture from its absolute path, and says so in ListModels (--show-model-paths).
class KvServerShowPathsTest : public KvServerTest {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.models = {ModelSpec{kFixtureModel, kFixtureDir}};
    options.show_model_paths = true;
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
  }
};

// ---------------------------------------------------------------------------------------------
// Health, ListModels, Tokenize.

TEST_F(KvServerTest, HealthReportsServingForTheServerAndForKvServe) {
  auto health = Health::NewStub(channel_);
  for (const std::string service : {"", kServiceName}) {
    SCOPED_TRACE(absl::StrCat("service '", service, "'"));
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kCallTimeout));
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  }
}

TEST_F(KvServerTest, HealthAnswersNotFoundForAnUnknownService) {
  auto health = Health::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  HealthCheckRequest request;
  request.set_service("kvserve.v1.NoSuchService");
  HealthCheckResponse response;
  const grpc::Status status = health->Check(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(status);
}

TEST_F(KvServerTest, ListModelsReportsTheDefaultModelShape) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::ListModelsResponse response;
  const grpc::Status status = stub_->ListModels(&context, pb::ListModelsRequest(), &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_THAT(response.models(), SizeIs(1));
  const pb::ModelInfo& m = response.models(0);
  EXPECT_EQ(m.name(), kDefaultModel);
  EXPECT_EQ(m.architecture(), "LlamaForCausalLM");
  EXPECT_EQ(m.source(),
            absl::StrCat("embedded (random weights, seed ", engine::kDefaultModelSeed, ")"));
  EXPECT_TRUE(m.random_weights());
  EXPECT_EQ(m.attention(), "GQA");
  EXPECT_EQ(m.num_layers(), 4);
  EXPECT_EQ(m.num_attention_heads(), 8);
  EXPECT_EQ(m.num_key_value_heads(), 2);
  EXPECT_EQ(m.head_dim(), 32);
  EXPECT_EQ(m.hidden_size(), 256);
  EXPECT_EQ(m.vocab_size(), 320);
  EXPECT_EQ(m.max_context_length(), 2048);
  // K and V x 2 kv heads x 32 head_dim x 4 layers x 4 bytes (f32).
  EXPECT_EQ(m.kv_cache_bytes_per_token(), 2 * 2 * 32 * 4 * 4);
  EXPECT_EQ(m.tokenizer(), "byte-level (ids 0-255 are bytes, BOS 256, EOS 257)");
  EXPECT_EQ(m.eos_token_id(), kEos);
  // 32 rotary dims at 2048 tokens need a base of at least b* in (204359, 204360] (204360 is the
  // smallest integer base, by tools/reference/math_oracles.py's brute-force scan), far above 1e4;
  // the engine finds b* to a relative 1e-6, from above (docs/math.md §3.1).
  EXPECT_EQ(m.rope_theta(), 10000.0);
  EXPECT_GT(m.min_rope_theta(), 204359.0);
  EXPECT_LE(m.min_rope_theta(), 204360.0 * (1 + 1e-6));
  // f32 (random weights under --weight-dtype=auto): untied embedding and head, per layer
  // q/o [256x256], k/v [64x256], gate/up/down 688x256 and two norms, then the final norm.
  EXPECT_EQ(m.weight_dtype(), "f32");
  EXPECT_EQ(
      m.weight_bytes(),
      4 * (2 * 320 * 256 + 4 * (2 * 256 * 256 + 2 * 64 * 256 + 3 * 688 * 256 + 2 * 256) + 256));
}

TEST_F(KvServerTest, TokenizePrependsBosToTheUtf8Bytes) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::TokenizeRequest request;
  request.set_text("Hi");
  pb::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_THAT(response.token_ids(), ElementsAre(kBos, 'H', 'i'));
}

TEST_F(KvServerTest, TokenizeWithoutSpecialTokensLeavesOutTheBos) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::TokenizeRequest request;
  request.set_text("Hi");
  request.set_add_special_tokens(false);
  pb::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_THAT(response.token_ids(), ElementsAre('H', 'i'));
}

TEST_F(KvServerTest, DetokenizeTurnsIdsBackIntoTextAndNamesABadId) {
  {
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(kCallTimeout));
    pb::DetokenizeRequest request;
    for (int32_t id : {kBos, int32_t{'H'}, int32_t{'i'}, kEos}) request.add_token_ids(id);
    pb::DetokenizeResponse response;
    const grpc::Status status = stub_->Detokenize(&context, request, &response);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(response.text(), "Hi");
  }
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::DetokenizeRequest request;
  request.add_token_ids('H');
  request.add_token_ids(100000);
  pb::DetokenizeResponse response;
  const grpc::Status status = stub_->Detokenize(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("token_ids[1]: 100000 is outside the vocabulary"));
}

TEST_F(KvServerTest, FirstMessageEchoesThePromptIdsOnlyWhenAsked) {
  pb::GenerateRequest request = GreedyRequest("Hi", 2);
  const Generation plain = Generate(*stub_, request);
  ASSERT_FALSE(plain.messages.empty());
  EXPECT_THAT(plain.messages.front().prompt_token_ids(), IsEmpty());
  request.set_return_prompt_token_ids(true);
  request.set_add_special_tokens(false);
  const Generation echoed = Generate(*stub_, request);
  ASSERT_FALSE(echoed.messages.empty());
  EXPECT_THAT(echoed.messages.front().prompt_token_ids(), ElementsAre('H', 'i'));
  for (size_t i = 1; i < echoed.messages.size(); ++i) {
    EXPECT_THAT(echoed.messages[i].prompt_token_ids(), IsEmpty());
  }
}

pb::ChatRequest UserChat(const std::string& text, int32_t max_tokens) {
  pb::ChatRequest request;
  pb::ChatMessage* m = request.add_messages();
  m->set_role("user");
  m->set_content(text);
  request.set_max_tokens(max_tokens);
  request.mutable_sampling()->set_temperature(0);
  request.set_return_prompt_token_ids(true);
  return request;
}

TEST_F(KvServerTest, ChatWithoutAModelTemplateIsAFailedPrecondition) {
  const Generation g = ReadStream(*stub_, UserChat("Hi", 4));
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(g.status.error_message(), HasSubstr("this model has no chat template"));
}

TEST_F(KvServerTest, ChatRendersTheRequestsTemplateAndAddsNoSecondBos) {
  pb::ChatRequest request = UserChat("Hi", 4);
  // The byte model's BOS is id 256; a template writes it as text only if asked, so the prompt is
  // exactly the rendered bytes: the tokenizer's own BOS is not added on top.
  request.set_chat_template("[{{ messages[0].role }}]{{ messages[0].content }}>");
  const Generation g = ReadStream(*stub_, request);
  ASSERT_TRUE(g.status.ok()) << Describe(g.status);
  ASSERT_FALSE(g.messages.empty());
  const std::string rendered = "[user]Hi>";
  EXPECT_THAT(g.messages.front().prompt_token_ids(),
              ElementsAreArray(rendered.begin(), rendered.end()));
  // The same ids through Generate give the same greedy tokens.
  pb::GenerateRequest same = GreedyRequest(rendered, 4);
  same.set_add_special_tokens(false);
  EXPECT_EQ(Generate(*stub_, same).token_ids, g.token_ids);
}

TEST_F(KvServerTest, ChatNamesABadRoleAndATemplateThatRaises) {
  pb::ChatRequest request = UserChat("Hi", 4);
  request.set_chat_template("x");
  request.mutable_messages(0)->set_role("wizard");
  Generation g = ReadStream(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.status.error_message(),
            "messages[0].role: must be system, user, assistant or tool, got 'wizard'");
  request = UserChat("Hi", 4);
  request.set_chat_template("{{ raise_exception('no user turns here') }}");
  g = ReadStream(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.status.error_message(), "chat_template: no user turns here");
}

TEST_F(KvServerTest, TokenizeOfAnUnknownModelIsNotFound) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::TokenizeRequest request;
  request.set_model("gpt-nope");
  request.set_text("Hi");
  pb::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(),
            absl::StrCat("model: no model named 'gpt-nope'; available: ", kDefaultModel));
}

// ---------------------------------------------------------------------------------------------
// Generation.

TEST_F(KvServerTest, GreedyGenerationIsDeterministicAndStreamsWellFormedMessages) {
  const pb::GenerateRequest request = GreedyRequest("Once upon a time", 24);
  const Generation first = Generate(*stub_, request);
  const Generation second = Generate(*stub_, request);
  // BOS + the 16 bytes of the prompt.
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(first, /*prompt_tokens=*/17));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(second, /*prompt_tokens=*/17));
  EXPECT_EQ(first.token_ids, second.token_ids);
  EXPECT_EQ(first.text, second.text);

  const std::vector<int32_t>& ids = first.token_ids;
  if (ids.size() < 24) {
    EXPECT_EQ(first.finish_reason(), pb::FINISH_REASON_EOS);
    EXPECT_EQ(ids.back(), kEos);
  } else {
    EXPECT_THAT(ids, SizeIs(24));
    EXPECT_EQ(first.finish_reason(), pb::FINISH_REASON_LENGTH);
  }
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 320);
  }
  // The stream is the byte-wise decoding of the tokens, ill-formed UTF-8 replaced per Unicode.
  EXPECT_EQ(first.text, DecodeWithReplacement(TokenBytes(ids)));
}

TEST_F(KvServerTest, FirstMessageEchoesTheClientRequestId) {
  pb::GenerateRequest request = GreedyRequest("Hi", 4);
  request.set_request_id("client-chosen-id-7");
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, /*prompt_tokens=*/3, "client-chosen-id-7"));
}

TEST_F(KvServerTest, ServerAssignsDistinctRequestIdsWhenTheClientSendsNone) {
  const Generation a = Generate(*stub_, GreedyRequest("Hi", 2));
  const Generation b = Generate(*stub_, GreedyRequest("Hi", 2));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(a, /*prompt_tokens=*/3));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(b, /*prompt_tokens=*/3));
  EXPECT_NE(a.messages.front().request_id(), b.messages.front().request_id());
}

TEST_F(KvServerTest, SeededSamplingIsReproducibleAndDependsOnTheSeed) {
  const std::string prompt = "Once upon a time";
  const Generation a = Generate(*stub_, SeededRequest(prompt, 32, 42));
  const Generation b = Generate(*stub_, SeededRequest(prompt, 32, 42));
  const Generation c = Generate(*stub_, SeededRequest(prompt, 32, 43));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(a, 17));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(b, 17));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(c, 17));
  EXPECT_EQ(a.token_ids, b.token_ids) << "seed 42";
  EXPECT_EQ(a.text, b.text) << "seed 42";
  EXPECT_NE(a.token_ids, c.token_ids) << "seeds 42 and 43";
  // Sampled bytes are mostly not ASCII: a workout for the server's UTF-8 repair.
  for (const Generation* g : {&a, &c}) {
    EXPECT_EQ(g->text, DecodeWithReplacement(TokenBytes(g->token_ids)));
  }
}

TEST_F(KvServerTest, GenerateDefaultsToSixteenTokens) {
  pb::GenerateRequest request = GreedyRequest("Hi", 1);
  request.clear_max_tokens();
  request.set_ignore_eos(true);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
  EXPECT_THAT(g.token_ids, SizeIs(16));
  EXPECT_EQ(g.finish_reason(), pb::FINISH_REASON_LENGTH);
}

// ---------------------------------------------------------------------------------------------
// Parallel samples (n), logprobs, priority, normalizers.

// One sample's part of a Generate stream.
struct SampleStream {
  std::vector<const pb::GenerateResponse*> messages;
  std::vector<int32_t> token_ids;
  std::vector<pb::TokenLogprobs> logprobs;
  std::string text;
};

// Splits `g` by GenerateResponse.index; fails the test on an index outside [0, n).
std::vector<SampleStream> SplitBySample(const Generation& g, int32_t n) {
  std::vector<SampleStream> samples(n);
  for (const pb::GenerateResponse& m : g.messages) {
    EXPECT_GE(m.index(), 0);
    EXPECT_LT(m.index(), n);
    if (m.index() < 0 || m.index() >= n) continue;
    SampleStream& sample = samples[m.index()];
    sample.messages.push_back(&m);
    sample.token_ids.insert(sample.token_ids.end(), m.token_ids().begin(), m.token_ids().end());
    sample.logprobs.insert(sample.logprobs.end(), m.logprobs().begin(), m.logprobs().end());
    sample.text += m.text();
  }
  return samples;
}

// The stream contract with n samples: the request id on the stream's first message only; per
// sample, finish reason and usage on its last message only (so exactly n messages carry one), the
// usage counting that sample's tokens, every text valid UTF-8 and equal to its tokens' decoding.
void ExpectWellFormedSamples(const Generation& g, int32_t n, int32_t prompt_tokens) {
  ASSERT_TRUE(g.status.ok()) << Describe(g.status);
  ASSERT_THAT(g.messages, ::testing::Not(::testing::IsEmpty()));
  EXPECT_NE(g.messages.front().request_id(), "");
  int num_finished = 0;
  for (size_t i = 0; i < g.messages.size(); ++i) {
    if (i > 0) {
      EXPECT_EQ(g.messages[i].request_id(), "") << "message " << i;
    }
    if (g.messages[i].finish_reason() != pb::FINISH_REASON_UNSPECIFIED) ++num_finished;
  }
  EXPECT_EQ(num_finished, n);
  const std::vector<SampleStream> samples = SplitBySample(g, n);
  for (int32_t i = 0; i < n; ++i) {
    SCOPED_TRACE(absl::StrCat("sample ", i));
    const SampleStream& sample = samples[i];
    ASSERT_THAT(sample.messages, ::testing::Not(::testing::IsEmpty()));
    for (size_t j = 0; j < sample.messages.size(); ++j) {
      const pb::GenerateResponse& m = *sample.messages[j];
      const bool last = j + 1 == sample.messages.size();
      EXPECT_EQ(m.finish_reason() != pb::FINISH_REASON_UNSPECIFIED, last) << "message " << j;
      EXPECT_EQ(m.has_usage(), last) << "message " << j;
      EXPECT_TRUE(IsWellFormedUtf8(m.text()));
      // Logprobs, when present, come one per token in the same message.
      if (m.logprobs_size() > 0) {
        EXPECT_EQ(m.logprobs_size(), m.token_ids_size());
      }
    }
    const pb::Usage& usage = sample.messages.back()->usage();
    EXPECT_EQ(usage.prompt_tokens(), prompt_tokens);
    EXPECT_EQ(usage.completion_tokens(), static_cast<int32_t>(sample.token_ids.size()));
    EXPECT_EQ(sample.text, DecodeWithReplacement(TokenBytes(sample.token_ids)));
  }
}

TEST_F(KvServerTest, SingleSampleMessagesAreIndexZeroWithoutLogprobs) {
  const Generation g = Generate(*stub_, GreedyRequest("Hi", 8));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
  for (const pb::GenerateResponse& m : g.messages) {
    EXPECT_EQ(m.index(), 0);
    EXPECT_THAT(m.logprobs(), ::testing::IsEmpty());
  }
}

TEST_F(KvServerTest, GreedyParallelSamplesAreIdenticalAndEachFinishesExactlyOnce) {
  pb::GenerateRequest request = GreedyRequest("Once upon a time", 12);
  const Generation solo = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(solo, 17));
  request.set_n(3);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedSamples(g, 3, 17));
  const std::vector<SampleStream> samples = SplitBySample(g, 3);
  for (int32_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(absl::StrCat("sample ", i));
    // Greedy decoding has one answer, whether the prompt's cache is shared and batched or not.
    EXPECT_EQ(samples[i].token_ids, solo.token_ids);
    EXPECT_EQ(samples[i].text, solo.text);
    EXPECT_EQ(samples[i].messages.back()->finish_reason(), solo.finish_reason());
  }
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
}

TEST_F(KvServerTest, SeededParallelSamplesAreReproducibleAndSampleIUsesSeedPlusI) {
  constexpr uint64_t kSeed = 42;
  pb::GenerateRequest request = SeededRequest("Once upon a time", 24, kSeed);
  request.set_n(3);
  request.set_logprobs(1);
  const Generation first = Generate(*stub_, request);
  const Generation second = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedSamples(first, 3, 17));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedSamples(second, 3, 17));
  const std::vector<SampleStream> a = SplitBySample(first, 3);
  const std::vector<SampleStream> b = SplitBySample(second, 3);
  for (int32_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(absl::StrCat("sample ", i));
    EXPECT_EQ(a[i].token_ids, b[i].token_ids);
    EXPECT_EQ(a[i].text, b[i].text);
    ASSERT_THAT(a[i].logprobs, SizeIs(a[i].token_ids.size()));
    for (const pb::TokenLogprobs& lp : a[i].logprobs) {
      EXPECT_LE(lp.logprob(), 0.0f);
      EXPECT_THAT(lp.top(), SizeIs(1));
    }
    // The documented seeding: the same request alone with seed + i gives sample i.
    const Generation alone = Generate(*stub_, SeededRequest("Once upon a time", 24, kSeed + i));
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(alone, 17));
    EXPECT_EQ(a[i].token_ids, alone.token_ids);
  }
  // 24 draws over 320 tokens: distinct seeds give distinct samples.
  EXPECT_NE(a[0].token_ids, a[1].token_ids);
  EXPECT_NE(a[1].token_ids, a[2].token_ids);
}

TEST_F(KvServerTest, GreedyLogprobsAreSortedAndTheirTopEntryIsTheGeneratedToken) {
  pb::GenerateRequest request = GreedyRequest("Once upon a time", 16);
  request.set_logprobs(2);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  const std::vector<SampleStream> samples = SplitBySample(g, 1);
  const SampleStream& sample = samples[0];
  for (const pb::GenerateResponse* m : sample.messages) {
    EXPECT_EQ(m->logprobs_size(), m->token_ids_size());
  }
  ASSERT_THAT(sample.logprobs, SizeIs(sample.token_ids.size()));
  ASSERT_THAT(sample.token_ids, ::testing::Not(::testing::IsEmpty()));
  for (size_t i = 0; i < sample.token_ids.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("token ", i, " (id ", sample.token_ids[i], ")"));
    const pb::TokenLogprobs& lp = sample.logprobs[i];
    EXPECT_LE(lp.logprob(), 0.0f);
    ASSERT_THAT(lp.top(), SizeIs(2));
    EXPECT_GE(lp.top(0).logprob(), lp.top(1).logprob());
    EXPECT_LE(lp.top(0).logprob(), 0.0f);
    EXPECT_NE(lp.top(0).token_id(), lp.top(1).token_id());
    // Greedy picks the argmax of the raw logits, which log_softmax keeps on top.
    EXPECT_EQ(lp.top(0).token_id(), sample.token_ids[i]);
    EXPECT_FLOAT_EQ(lp.top(0).logprob(), lp.logprob());
  }

  // logprobs = 0: the generated token's logprob only, and the same value.
  request.set_logprobs(0);
  const Generation only = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(only, 17));
  const std::vector<SampleStream> only_samples = SplitBySample(only, 1);
  EXPECT_EQ(only_samples[0].token_ids, sample.token_ids);
  ASSERT_THAT(only_samples[0].logprobs, SizeIs(sample.token_ids.size()));
  for (size_t i = 0; i < sample.token_ids.size(); ++i) {
    EXPECT_THAT(only_samples[0].logprobs[i].top(), ::testing::IsEmpty());
    EXPECT_FLOAT_EQ(only_samples[0].logprobs[i].logprob(), sample.logprobs[i].logprob());
  }
}

TEST_F(KvServerTest, PriorityIsAcceptedAndDoesNotChangeTheTokens) {
  const pb::GenerateRequest request = GreedyRequest("Hi", 8);
  const Generation base = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(base, 3));
  for (int32_t priority : {-7, 1000, std::numeric_limits<int32_t>::max()}) {
    SCOPED_TRACE(absl::StrCat("priority ", priority));
    pb::GenerateRequest prioritized = request;
    prioritized.set_priority(priority);
    const Generation g = Generate(*stub_, prioritized);
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
    EXPECT_EQ(g.token_ids, base.token_ids);
  }
}

TEST_F(KvServerTest, EveryNormalizerSamplesReproducibly) {
  for (pb::Normalizer normalizer :
       {pb::NORMALIZER_SOFTMAX, pb::NORMALIZER_SPARSEMAX, pb::NORMALIZER_ENTMAX15}) {
    SCOPED_TRACE(pb::Normalizer_Name(normalizer));
    pb::GenerateRequest request = SeededRequest("Once upon a time", 16, 5);
    request.mutable_sampling()->set_normalizer(normalizer);
    request.mutable_sampling()->set_min_p(0.05f);
    request.mutable_sampling()->set_repetition_penalty(1.2f);
    request.mutable_sampling()->set_presence_penalty(0.5f);
    request.mutable_sampling()->set_frequency_penalty(0.25f);
    const Generation a = Generate(*stub_, request);
    const Generation b = Generate(*stub_, request);
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(a, 17));
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(b, 17));
    EXPECT_EQ(a.token_ids, b.token_ids);
  }
}

TEST_F(KvServerTest, CancellingAParallelRequestFreesEverySample) {
  pb::GenerateRequest request = LongRequest();
  request.set_n(3);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse message;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(reader->Read(&message));
  EXPECT_GT(engine().stats().kv_cache_bytes_in_use, 0);
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
}

// ---------------------------------------------------------------------------------------------
// Scoring: prompt_logprobs.

// One entry per prompt token on the first message only, the first entry without a logprob; the
// generation itself is what it is without them.
TEST_F(KvServerTest, PromptLogprobsComeOnTheFirstMessageOnePerPromptToken) {
  pb::GenerateRequest request = GreedyRequest("Hello", 6);  // 6 prompt tokens (BOS + 5 bytes)
  const Generation plain = Generate(*stub_, request);
  request.set_prompt_logprobs(3);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 6));
  EXPECT_EQ(g.token_ids, plain.token_ids);
  const pb::GenerateResponse& first = g.messages.front();
  ASSERT_EQ(first.prompt_logprobs_size(), 6);
  EXPECT_FALSE(first.prompt_logprobs(0).has_logprob());
  EXPECT_EQ(first.prompt_logprobs(0).top_size(), 0);
  for (int i = 1; i < 6; ++i) {
    EXPECT_TRUE(first.prompt_logprobs(i).has_logprob());
    EXPECT_LT(first.prompt_logprobs(i).logprob(), 0.0f);
    EXPECT_EQ(first.prompt_logprobs(i).top_size(), 3);
  }
  for (size_t i = 1; i < g.messages.size(); ++i) EXPECT_EQ(g.messages[i].prompt_logprobs_size(), 0);
}

// Scoring a greedy continuation gives back the logprobs the generation reported for it: the same
// logits, computed once by decode steps and once inside a prompt.
TEST_F(KvServerTest, ScoringAGeneratedContinuationReproducesItsLogprobs) {
  pb::GenerateRequest request = GreedyRequest("Once", 8);
  request.set_logprobs(0);
  request.set_return_prompt_token_ids(true);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 5));
  std::vector<float> generated;
  for (const pb::GenerateResponse& m : g.messages) {
    for (const pb::TokenLogprobs& lp : m.logprobs()) generated.push_back(lp.logprob());
  }
  ASSERT_EQ(generated.size(), g.token_ids.size());

  pb::GenerateRequest score;
  pb::TokenIds* ids = score.mutable_prompt_token_ids();
  ids->mutable_ids()->Add(g.messages.front().prompt_token_ids().begin(),
                          g.messages.front().prompt_token_ids().end());
  ids->mutable_ids()->Add(g.token_ids.begin(), g.token_ids.end());
  score.set_prompt_logprobs(0);
  score.set_max_tokens(0);
  const Generation s = Generate(*stub_, score);
  ASSERT_TRUE(s.status.ok()) << Describe(s.status);
  // Pure scoring: one message, LENGTH, nothing generated.
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_EQ(s.finish_reason(), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.messages[0].usage().completion_tokens(), 0);
  EXPECT_EQ(s.messages[0].usage().prompt_tokens(), ids->ids_size());
  EXPECT_TRUE(s.token_ids.empty());
  ASSERT_EQ(s.messages[0].prompt_logprobs_size(), ids->ids_size());
  for (size_t i = 0; i < generated.size(); ++i) {
    EXPECT_NEAR(s.messages[0].prompt_logprobs(5 + i).logprob(), generated[i], 1e-5) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Validation.

struct BadRequest {
  std::string what;
  pb::GenerateRequest request;
  grpc::StatusCode code;
  std::string message;
};

std::vector<BadRequest> BadRequests() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const pb::GenerateRequest valid = GreedyRequest("Hi", 4);  // 3 prompt tokens
  std::vector<BadRequest> cases;
  auto add = [&](std::string what, grpc::StatusCode code, std::string message, auto mutate) {
    pb::GenerateRequest request = valid;
    mutate(request);
    cases.push_back({std::move(what), std::move(request), code, std::move(message)});
  };
  constexpr grpc::StatusCode kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

  add("no prompt", kInvalid, "prompt: set either prompt or prompt_token_ids",
      [](pb::GenerateRequest& r) { r.clear_input(); });
  add("empty prompt", kInvalid, "prompt: must not be empty",
      [](pb::GenerateRequest& r) { r.set_prompt(""); });
  add("empty prompt_token_ids", kInvalid, "prompt_token_ids: must not be empty",
      [](pb::GenerateRequest& r) { r.mutable_prompt_token_ids(); });
  add("token id == vocab size", kInvalid,
      "prompt_token_ids[2]: 320 is outside the vocabulary [0, 320)", [](pb::GenerateRequest& r) {
        for (int32_t id : {kBos, 72, 320}) r.mutable_prompt_token_ids()->add_ids(id);
      });
  add("negative token id", kInvalid, "prompt_token_ids[1]: -5 is outside the vocabulary [0, 320)",
      [](pb::GenerateRequest& r) {
        for (int32_t id : {kBos, -5}) r.mutable_prompt_token_ids()->add_ids(id);
      });
  add("max_tokens 0", kInvalid, "max_tokens: must be >= 1 (or 0 with prompt_logprobs set), got 0",
      [](pb::GenerateRequest& r) { r.set_max_tokens(0); });
  add("max_tokens -1", kInvalid, "max_tokens: must be >= 1 (or 0 with prompt_logprobs set), got -1",
      [](pb::GenerateRequest& r) { r.set_max_tokens(-1); });
  add("prompt_logprobs 21", kInvalid, "prompt_logprobs: must be in [0, 20], got 21",
      [](pb::GenerateRequest& r) { r.set_prompt_logprobs(21); });
  add("max_tokens 0 with n 2", kInvalid,
      "n: must be 1 when max_tokens is 0 (nothing is sampled), got 2", [](pb::GenerateRequest& r) {
        r.set_prompt_logprobs(0);
        r.set_max_tokens(0);
        r.set_n(2);
      });
  add("max_tokens 5000", kInvalid,
      "max_tokens: prompt length 3 + max_tokens 5000 exceeds the model's context length 2048",
      [](pb::GenerateRequest& r) { r.set_max_tokens(5000); });
  add("max_tokens one past the context", kInvalid,
      "max_tokens: prompt length 3 + max_tokens 2046 exceeds the model's context length 2048",
      [](pb::GenerateRequest& r) { r.set_max_tokens(2046); });
  add("temperature -1", kInvalid, "sampling.temperature: must be a finite number >= 0, got -1",
      [](pb::GenerateRequest& r) { r.mutable_sampling()->set_temperature(-1); });
  add("temperature NaN", kInvalid, "sampling.temperature: must be a finite number >= 0, got nan",
      [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_temperature(nan); });
  add("top_p 0", kInvalid, "sampling.top_p: must be in (0, 1], got 0",
      [](pb::GenerateRequest& r) { r.mutable_sampling()->set_top_p(0); });
  add("top_p 1.5", kInvalid, "sampling.top_p: must be in (0, 1], got 1.5",
      [](pb::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5f); });
  add("top_p NaN", kInvalid, "sampling.top_p: must be in (0, 1], got nan",
      [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_top_p(nan); });
  add("top_k -1", kInvalid, "sampling.top_k: must be >= 0 (0 = disabled), got -1",
      [](pb::GenerateRequest& r) { r.mutable_sampling()->set_top_k(-1); });
  add("empty stop string", kInvalid, "stop[1]: must not be empty", [](pb::GenerateRequest& r) {
    r.add_stop("ok");
    r.add_stop("");
  });
  add("stop token id out of vocab", kInvalid,
      "stop_token_ids[0]: 320 is outside the vocabulary [0, 320)",
      [](pb::GenerateRequest& r) { r.add_stop_token_ids(320); });
  add("unknown normalizer", kInvalid,
      "sampling.normalizer: must be NORMALIZER_SOFTMAX, NORMALIZER_SPARSEMAX or "
      "NORMALIZER_ENTMAX15, got 7",
      [](pb::GenerateRequest& r) {
        // proto3 enums are open: a newer client can send a value this server does not know.
        r.mutable_sampling()->set_normalizer(static_cast<pb::Normalizer>(7));
      });
  add("unknown model", grpc::StatusCode::NOT_FOUND,
      absl::StrCat("model: no model named 'gpt-nope'; available: ", kDefaultModel),
      [](pb::GenerateRequest& r) { r.set_model("gpt-nope"); });
  // Echoed whole, a 10 kB name made the message too large for gRPC's metadata: RESOURCE_EXHAUSTED.
  add("a 10 kB unknown model name", grpc::StatusCode::NOT_FOUND,
      absl::StrCat("model: no model named '", std::string(64, 'x'),
                   "... (10000 bytes)'; available: ", kDefaultModel),
      [](pb::GenerateRequest& r) { r.set_model(std::string(10000, 'x')); });
  add("request_id one byte too long", kInvalid, "request_id: 257 bytes, at most 256",
      [](pb::GenerateRequest& r) { r.set_request_id(std::string(257, 'r')); });
  return cases;
}

TEST_F(KvServerTest, RejectsEachInvalidRequestWithAMessageNamingTheField) {
  for (const BadRequest& bad : BadRequests()) {
    SCOPED_TRACE(bad.what);
    const Generation g = Generate(*stub_, bad.request);
    EXPECT_EQ(g.status.error_code(), bad.code) << Describe(g.status);
    EXPECT_EQ(g.status.error_message(), bad.message);
    EXPECT_THAT(g.messages, ::testing::IsEmpty());
  }
  // None of them reached the engine, and the server still serves.
  EXPECT_EQ(engine().stats().num_finished, 0);
  const Generation ok = Generate(*stub_, GreedyRequest("Hi", 4));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(ok, 3));
  EXPECT_EQ(engine().stats().num_finished, 1);
}

// Fields whose checks live in Engine::Validate: the message starts with the field's name, as the
// proto spells it ("field: ..."); the exact wording is the engine's.
TEST_F(KvServerTest, RejectsOutOfRangeSamplesLogprobsAndPenaltiesNamingTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::string field;
    std::function<void(pb::GenerateRequest&)> mutate;
  };
  const std::vector<Case> cases = {
      {"n", [](pb::GenerateRequest& r) { r.set_n(0); }},
      {"n", [](pb::GenerateRequest& r) { r.set_n(-1); }},
      {"n", [](pb::GenerateRequest& r) { r.set_n(engine::kMaxSamples + 1); }},
      {"logprobs", [](pb::GenerateRequest& r) { r.set_logprobs(-1); }},
      {"logprobs", [](pb::GenerateRequest& r) { r.set_logprobs(engine::kMaxLogprobs + 1); }},
      {"sampling.min_p", [](pb::GenerateRequest& r) { r.mutable_sampling()->set_min_p(-0.1f); }},
      {"sampling.min_p", [](pb::GenerateRequest& r) { r.mutable_sampling()->set_min_p(1.5f); }},
      {"sampling.min_p", [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_min_p(nan); }},
      {"sampling.repetition_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(0); }},
      {"sampling.repetition_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(-1); }},
      {"sampling.repetition_penalty",
       [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(nan); }},
      {"sampling.repetition_penalty",
       [inf](pb::GenerateRequest& r) { r.mutable_sampling()->set_repetition_penalty(inf); }},
      {"sampling.presence_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(2.5f); }},
      {"sampling.presence_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(-2.5f); }},
      {"sampling.presence_penalty",
       [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_presence_penalty(nan); }},
      {"sampling.frequency_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(3); }},
      {"sampling.frequency_penalty",
       [](pb::GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(-2.01f); }},
      {"sampling.frequency_penalty",
       [nan](pb::GenerateRequest& r) { r.mutable_sampling()->set_frequency_penalty(nan); }},
  };
  for (const Case& c : cases) {
    pb::GenerateRequest request = GreedyRequest("Hi", 4);
    c.mutate(request);
    SCOPED_TRACE(request.ShortDebugString());
    const Generation g = Generate(*stub_, request);
    EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(g.status);
    EXPECT_THAT(g.status.error_message(), ::testing::StartsWith(c.field + ": "));
    EXPECT_THAT(g.messages, ::testing::IsEmpty());
  }
  EXPECT_EQ(engine().stats().num_finished, 0);
}

TEST_F(KvServerTest, AcceptsTheBoundaryValuesOfTheNewFields) {
  pb::GenerateRequest request = SeededRequest("Hi", 4, 7);
  request.set_n(engine::kMaxSamples);
  request.set_logprobs(engine::kMaxLogprobs);
  request.set_priority(std::numeric_limits<int32_t>::min());
  pb::SamplingParams& s = *request.mutable_sampling();
  s.set_min_p(1.0f);
  s.set_repetition_penalty(1e-3f);
  s.set_presence_penalty(-2.0f);
  s.set_frequency_penalty(2.0f);
  s.set_normalizer(pb::NORMALIZER_ENTMAX15);
  const Generation g = Generate(*stub_, request);
  EXPECT_TRUE(g.status.ok()) << Describe(g.status);
}

TEST_F(KvServerTest, AcceptsAPromptThatFillsTheContextExactly) {
  // 3 prompt tokens + 2045 = 2048. Cancelled once it is known to be running.
  pb::GenerateRequest request = GreedyRequest("Hi", 2045);
  request.set_ignore_eos(true);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  auto reader = stub_->Generate(&context, request);
  pb::GenerateResponse message;
  EXPECT_TRUE(reader->Read(&message));
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// ---------------------------------------------------------------------------------------------
// Cancellation, deadlines, shutdown.

TEST_F(KvServerTest, ClientCancelEndsTheStreamAndFreesTheEngine) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  auto reader = stub_->Generate(&context, LongRequest());
  pb::GenerateResponse message;
  size_t num_tokens = 0;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(reader->Read(&message));
    num_tokens += message.token_ids_size();
  }
  EXPECT_GT(engine().stats().kv_cache_bytes_in_use, 0);
  context.TryCancel();
  while (reader->Read(&message)) num_tokens += message.token_ids_size();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << Describe(status);
  EXPECT_LT(num_tokens, 2000u);

  const engine::EngineStats stats = WaitUntilEngineIdle(engine(), kReleaseTimeout);
  EXPECT_ENGINE_IDLE(stats);
  EXPECT_EQ(stats.num_finished, 1);
}

TEST_F(KvServerTest, ClientDeadlineEndsTheStreamAndFreesTheEngine) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(std::chrono::milliseconds(200)));
  auto reader = stub_->Generate(&context, LongRequest());
  pb::GenerateResponse message;
  size_t num_tokens = 0;
  while (reader->Read(&message)) num_tokens += message.token_ids_size();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(status);
  EXPECT_LT(num_tokens, 2000u);

  const engine::EngineStats stats = WaitUntilEngineIdle(engine(), kReleaseTimeout);
  EXPECT_ENGINE_IDLE(stats);
  // On a very busy machine the deadline can pass before the call reaches the engine at all; once
  // tokens arrived, the engine must have ended the request.
  if (num_tokens > 0) {
    EXPECT_EQ(stats.num_finished, 1);
  }
}

TEST_F(KvServerTest, AnAlreadyShortDeadlineIsExceededAndLeavesNothingInTheEngine) {
  for (int32_t n : {1, 3}) {
    SCOPED_TRACE(absl::StrCat("n = ", n));
    pb::GenerateRequest request = LongRequest();
    request.set_n(n);
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(std::chrono::milliseconds(1)));
    auto reader = stub_->Generate(&context, request);
    pb::GenerateResponse message;
    size_t num_tokens = 0;
    while (reader->Read(&message)) num_tokens += message.token_ids_size();
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(status);
    EXPECT_LT(num_tokens, 2000u * n);
    EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  }
  // And the server goes on serving.
  const Generation ok = Generate(*stub_, GreedyRequest("Hi", 4));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(ok, 3));
}

TEST_F(KvServerTest, ShutdownEndsAnInFlightStreamAndReturns) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  auto reader = stub_->Generate(&context, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));

  grpc::Status status;
  std::thread drain = ReadRestInBackground(reader.get(), &status);
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(DeadlineIn(std::chrono::milliseconds(100)));
  const auto shutdown_time = std::chrono::steady_clock::now() - start;
  drain.join();

  EXPECT_LT(shutdown_time, std::chrono::seconds(10));
  EXPECT_THAT(status.error_code(), AnyOf(Eq(grpc::StatusCode::OK), Eq(grpc::StatusCode::CANCELLED),
                                         Eq(grpc::StatusCode::UNAVAILABLE)))
      << Describe(status);
  EXPECT_ENGINE_IDLE(engine().stats());

  // The listener is gone.
  const Generation after = Generate(*stub_, GreedyRequest("Hi", 1));
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(after.status);
}

TEST_F(KvServerTest, DrainKeepsAnsweringHealthNotServingWhileAStreamIsInFlight) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  auto reader = stub_->Generate(&context, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));
  grpc::Status stream_status;
  std::thread read_rest = ReadRestInBackground(reader.get(), &stream_status);
  std::thread shutdown([&] { server_->Shutdown(DeadlineIn(kCallTimeout)); });

  // A probe on a new connection, as a kubelet's: it connects and reads NOT_SERVING (before, the
  // listener closed at once and probes got "connection refused").
  auto probe_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                           grpc::InsecureChannelCredentials());
  auto health = Health::NewStub(probe_channel);
  HealthCheckRequest request;
  request.set_service(kServiceName);
  HealthCheckResponse response;
  grpc::Status status;
  const auto give_up = std::chrono::steady_clock::now() + kCallTimeout;
  do {  // until Shutdown has flipped readiness
    grpc::ClientContext probe;
    probe.set_deadline(DeadlineIn(kCallTimeout));
    status = health->Check(&probe, request, &response);
  } while (status.ok() && response.status() == HealthCheckResponse::SERVING &&
           std::chrono::steady_clock::now() < give_up);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
  // New streams on the new connection are refused with the retryable code.
  auto probe_stub = pb::KvServe::NewStub(probe_channel);
  const Generation refused = Generate(*probe_stub, GreedyRequest("Hi", 1));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(refused.status);
  EXPECT_EQ(refused.status.error_message(),
            "server is draining: send the request to another replica");
  EXPECT_EQ(server_->streams().num_open(), 1);

  // The drain ends when the last stream does; then the listener closes.
  context.TryCancel();
  read_rest.join();
  shutdown.join();
  EXPECT_EQ(stream_status.error_code(), grpc::StatusCode::CANCELLED) << Describe(stream_status);
  EXPECT_EQ(server_->streams().num_open(), 0);
  grpc::ClientContext late;
  late.set_deadline(DeadlineIn(kCallTimeout));
  EXPECT_EQ(health->Check(&late, request, &response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

// ---------------------------------------------------------------------------------------------
// Backpressure: a client that does not read.

// A server whose streams hold at most ~kStreamLimit bytes of unsent output each.
class KvServerBackpressureTest : public KvServerTest {
 protected:
  static constexpr int64_t kStreamLimit = 512;
  static constexpr int64_t kServerLimit = 1 << 20;
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartServer(BackpressureOptions())); }

  static ServerOptions BackpressureOptions() {
    ServerOptions options;
    options.max_stream_buffer_bytes = kStreamLimit;
    options.max_buffered_bytes = kServerLimit;
    options.engine.num_threads = 1;
    return options;
  }

  // The slow reader's stream window: the lookahead is the HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE it
  // announces, and with BDP probing off and no read pending it announces no more, so the server
  // may send at most this many bytes of DATA on a stream before the client reads.
  static constexpr int kClientWindowBytes = 1024;

  // A client that stops taking a stream's data once kClientWindowBytes of it have arrived unread.
  std::unique_ptr<pb::KvServe::Stub> SlowReaderStub() const {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kClientWindowBytes);
    return pb::KvServe::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials(), args));
  }

  // A greedy request whose first message does not fit in the slow reader's window: its
  // prompt_logprobs (20 alternatives per prompt token, ~3 kB) ride on it. So that first write
  // stays in flight until the client reads, every later event waits in the stream's buffer, and the
  // stream holds exactly when that buffer reaches kStreamLimit and stays held until the client
  // reads, however gRPC's and the engine's threads are scheduled. (With a first message that fits,
  // the write in flight when the buffer fills may still complete, drain the buffer and let the
  // hold go: a hold that a test cannot tell from the final one.)
  static pb::GenerateRequest UnreadFirstMessageRequest(int32_t max_tokens) {
    pb::GenerateRequest request = GreedyRequest("Once upon a time", max_tokens);
    request.set_ignore_eos(true);
    request.set_prompt_logprobs(20);
    request.set_logprobs(5);  // ~100 bytes of logprobs per token
    return request;
  }

  // Sends UnreadFirstMessageRequest(max_tokens) from a slow reader that reads nothing, and waits
  // (bounded) until the stream holds its request.
  std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> HeldStream(grpc::ClientContext* context,
                                                                       int32_t max_tokens) {
    slow_stub_ = SlowReaderStub();
    context->set_deadline(DeadlineIn(kCallTimeout));
    auto reader = slow_stub_->Generate(context, UnreadFirstMessageRequest(max_tokens));
    WaitUntil([&] { return engine().stats().num_held > 0; });
    return reader;
  }

  // Bounded waits on the server's state (never on time itself).
  void WaitUntil(const std::function<bool()>& done) const {
    const auto give_up = std::chrono::steady_clock::now() + kCallTimeout;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  double GenerationTokens() const {
    return SeriesValue(
        server_->metrics().Serialize(),
        absl::StrCat("kvserve_generation_tokens_total{model=\"", kDefaultModel, "\"}"));
  }

  std::unique_ptr<pb::KvServe::Stub> slow_stub_;  // HeldStream's
};

TEST_F(KvServerBackpressureTest, AnUnreadStreamStopsGeneratingUntilItsClientReads) {
  constexpr int32_t kTokens = 2000;
  grpc::ClientContext context;
  // Sent; nothing is read. The stream fills its buffer behind its first message and holds its
  // request in the engine.
  auto reader = HeldStream(&context, kTokens);
  ASSERT_EQ(engine().stats().num_held, 1) << "the unread stream never held its request";
  // The engine publishes num_held after reporting the step whose event made the stream hold, and
  // the hold stops the request before its next token: this is every token the stream will get
  // before its client reads.
  const double held_at = GenerationTokens();
  EXPECT_LT(held_at, kTokens);
  // Unsent output: at least the per-stream limit, at most it plus the first event and one more.
  const int64_t buffered = server_->streams().buffered_bytes();
  EXPECT_GE(buffered, kStreamLimit);
  EXPECT_LE(buffered, kStreamLimit + 2 * 256);
  EXPECT_EQ(SeriesValue(server_->metrics().Serialize(), "kvserve_stream_buffered_bytes"),
            static_cast<double>(buffered));

  // The engine goes on serving others, and generates nothing more for the held stream: after a
  // 5-token request, the token counter moved by exactly 5.
  const Generation other = Generate(*stub_, GreedyRequest("Hi", 5));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(other, 3));
  // The counter is updated by the engine's report after the step (see metrics_test.cc).
  WaitUntil([&] { return GenerationTokens() >= held_at + 5; });
  EXPECT_EQ(GenerationTokens(), held_at + 5);
  EXPECT_EQ(engine().stats().num_held, 1);
  EXPECT_EQ(engine().stats().num_running, 1);  // still holds its slot and cache
  EXPECT_GT(engine().stats().kv_cache_bytes_in_use, 0);

  // Reading resumes it: every token arrives, in one well-formed stream.
  Generation g;
  ReadToEnd(*reader, &g);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  EXPECT_EQ(g.token_ids.size(), static_cast<size_t>(kTokens));
  // What the hold rests on: the first message (the first token) was too big for the window, and the
  // second carries exactly the tokens generated behind it up to the hold, none after.
  ASSERT_GE(g.messages.size(), 2u);
  EXPECT_GT(g.messages[0].ByteSizeLong(), static_cast<size_t>(kClientWindowBytes));
  EXPECT_EQ(g.messages[0].token_ids_size(), 1);
  EXPECT_EQ(g.messages[1].token_ids_size() + 1, static_cast<int>(held_at));
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  EXPECT_EQ(engine().stats().num_held, 0);
  WaitUntil([&] { return server_->streams().num_open() == 0; });
  EXPECT_EQ(server_->streams().buffered_bytes(), 0);
}

TEST_F(KvServerBackpressureTest, CancellingAHeldStreamFreesItsCacheAndBuffer) {
  grpc::ClientContext context;
  auto reader = HeldStream(&context, 2000);
  ASSERT_EQ(engine().stats().num_held, 1);

  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  WaitUntil([&] { return server_->streams().num_open() == 0; });
  EXPECT_EQ(server_->streams().buffered_bytes(), 0);
  EXPECT_EQ(engine().stats().num_held, 0);
}

// A held stream whose client takes nothing for --stream-idle-timeout is ended. The timeout runs on
// a fake clock that only the test moves: CheckNow returns once every stream due has been ended.
class KvServerIdleTimeoutTest : public KvServerBackpressureTest {
 protected:
  static constexpr std::chrono::seconds kIdleTimeout{300};
  void SetUp() override {
    ServerOptions options = BackpressureOptions();
    options.stream_idle_timeout = kIdleTimeout;
    options.stream_idle_clock = clock_;
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
  }

  void AdvanceIdleClock(std::chrono::seconds by) {
    clock_->Advance(by);
    server_->streams().idle_timeout()->CheckNow();
  }
  double IdleTimeouts() const {
    return SeriesValue(server_->metrics().Serialize(), "kvserve_stream_idle_timeouts_total");
  }
  double CancelledCalls() const {
    return SeriesValue(server_->metrics().Serialize(),
                       absl::StrCat("kvserve_request_failure_total{model=\"", kDefaultModel,
                                    "\",reason=\"cancelled\"}"));
  }

  std::shared_ptr<kvserve::testing::FakeClock> clock_ =
      std::make_shared<kvserve::testing::FakeClock>();
};

TEST_F(KvServerIdleTimeoutTest, AStreamHeldForTheTimeoutIsEndedAndEverythingItHeldFreed) {
  grpc::ClientContext context;
  auto reader = HeldStream(&context, 2000);
  ASSERT_EQ(engine().stats().num_held, 1) << "the unread stream never held its request";
  EXPECT_GE(server_->streams().buffered_bytes(), kStreamLimit);
  EXPECT_GT(engine().stats().kv_cache_bytes_in_use, 0);

  // A second short of the timeout: still held, still there.
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 0);
  EXPECT_EQ(server_->streams().num_open(), 1);
  EXPECT_EQ(engine().stats().num_held, 1);

  // At the timeout: ended. Its output is released and its request cancelled before CheckNow
  // returns; the engine frees slot and cache at its next step.
  AdvanceIdleClock(std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 1);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  EXPECT_EQ(engine().stats().num_held, 0);
  // The call is torn down: the client's stream breaks off (gRPC hands over the status once the
  // data that arrived before it has been read) and ends CANCELLED.
  pb::GenerateResponse message;
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  WaitUntil([&] { return server_->streams().num_open() == 0; });
  EXPECT_EQ(server_->streams().num_open(), 0);
  // Counted once each: the bytes released exactly (not below zero), the call once as cancelled.
  EXPECT_EQ(server_->streams().buffered_bytes(), 0);
  EXPECT_EQ(SeriesValue(server_->metrics().Serialize(), "kvserve_stream_buffered_bytes"), 0);
  EXPECT_EQ(CancelledCalls(), 1);
  EXPECT_EQ(IdleTimeouts(), 1);

  // The server serves on.
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(Generate(*stub_, GreedyRequest("Hi", 5)), 3));
}

TEST_F(KvServerIdleTimeoutTest, AStreamWhoseClientReadsWithinTheTimeoutIsNotEnded) {
  constexpr int32_t kTokens = 2000;
  grpc::ClientContext context;
  auto reader = HeldStream(&context, kTokens);
  ASSERT_EQ(engine().stats().num_held, 1);
  const double held_at = GenerationTokens();
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));

  // The client reads one message: the stream lets go (its clock stops) and generates on, until its
  // buffer fills again behind the unread rest.
  pb::GenerateResponse message;
  ASSERT_TRUE(reader->Read(&message));
  WaitUntil([&] { return GenerationTokens() > held_at; });
  ASSERT_GT(GenerationTokens(), held_at) << "reading did not let the stream go";
  // Every hold from here on started at the current time, so none is due a second short of the
  // timeout later, 2 s short of twice the timeout since the first hold.
  AdvanceIdleClock(kIdleTimeout - std::chrono::seconds(1));
  EXPECT_EQ(IdleTimeouts(), 0);
  EXPECT_EQ(server_->streams().num_open(), 1);

  // Reading the rest: every token, a well-formed stream.
  Generation g;
  g.Add(message);
  ReadToEnd(*reader, &g);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  EXPECT_EQ(g.token_ids.size(), static_cast<size_t>(kTokens));
  EXPECT_EQ(IdleTimeouts(), 0);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

TEST_F(KvServerTest, ConcurrentStreamsEachMatchTheirSoloRun) {
  constexpr int kNumStreams = 16;
  std::vector<pb::GenerateRequest> requests;
  for (int i = 0; i < kNumStreams; ++i) {
    const std::string prompt = absl::StrCat("stream ", i, std::string(i, '.'), " begins");
    if (i % 2 == 0) {
      requests.push_back(GreedyRequest(prompt, 16));
    } else {
      // Exercise top-k and top-p too; the seed makes the draws reproducible.
      pb::GenerateRequest request = SeededRequest(prompt, 16, 1000 + i);
      request.mutable_sampling()->set_temperature(0.8f);
      request.mutable_sampling()->set_top_k(40);
      request.mutable_sampling()->set_top_p(0.9f);
      requests.push_back(request);
    }
  }
  std::vector<Generation> solo;
  for (const pb::GenerateRequest& request : requests) solo.push_back(Generate(*stub_, request));

  std::vector<Generation> together(kNumStreams);
  std::latch start(kNumStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kNumStreams; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();  // all streams in flight at once
      together[i] = Generate(*stub_, requests[i]);
    });
  }
  for (std::thread& t : threads) t.join();

  for (int i = 0; i < kNumStreams; ++i) {
    SCOPED_TRACE(absl::StrCat("stream ", i, ": ", requests[i].ShortDebugString()));
    const int32_t prompt_tokens = static_cast<int32_t>(requests[i].prompt().size()) + 1;
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(solo[i], prompt_tokens));
    ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(together[i], prompt_tokens));
    EXPECT_EQ(together[i].token_ids, solo[i].token_ids);
    EXPECT_EQ(together[i].text, solo[i].text);
    EXPECT_EQ(together[i].finish_reason(), solo[i].finish_reason());
  }
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  EXPECT_EQ(engine().stats().num_finished, 2 * kNumStreams);
}

// ---------------------------------------------------------------------------------------------
// Bytes that are not a GenerateRequest.

// Sends `payload` as the one request message of /kvserve.v1.KvServe/Generate and reads a single
// response message, as a unary call would.
grpc::Status CallGenerateWithRawBytes(const std::shared_ptr<grpc::Channel>& channel,
                                      const std::string& payload, grpc::ByteBuffer* response) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/kvserve.v1.KvServe/Generate", grpc::StubOptions(), &request, response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  std::future<grpc::Status> result = done.get_future();
  // The call's own deadline bounds this wait; the extra margin only guards against a lost callback.
  if (result.wait_for(kCallTimeout + std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "the generic call never completed";
    context.TryCancel();
    return result.get();
  }
  return result.get();
}

TEST_F(KvServerTest, UnparsableRequestBytesAreRejectedAndTheServerKeepsServing) {
  // A control first: the generic path itself works for a well-formed request.
  pb::GenerateRequest valid = GreedyRequest("Hi", 1);
  grpc::ByteBuffer response_bytes;
  grpc::Status status =
      CallGenerateWithRawBytes(channel_, valid.SerializeAsString(), &response_bytes);
  ASSERT_TRUE(status.ok()) << Describe(status);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response_bytes.Dump(&slices).ok());
  std::string response_wire;
  for (const grpc::Slice& s : slices) response_wire.append(s.begin(), s.end());
  pb::GenerateResponse response;
  ASSERT_TRUE(response.ParseFromString(response_wire));
  EXPECT_THAT(response.token_ids(), SizeIs(1));
  EXPECT_EQ(response.finish_reason(), pb::FINISH_REASON_LENGTH);

  const std::vector<std::pair<std::string, std::string>> garbage = {
      {"a truncated varint tag", "\xff\xff\xff"},
      {"a length-delimited field longer than the message", std::string("\x12\x05Hi", 3)},
      // Field 2 (prompt, a proto3 string) holding the byte FF: libprotobuf rejects it and logs.
      {"invalid UTF-8 in a string field", std::string("\x12\x01\xff", 3)},
  };
  for (const auto& [what, payload] : garbage) {
    SCOPED_TRACE(what);
    grpc::ByteBuffer ignored;
    status = CallGenerateWithRawBytes(channel_, payload, &ignored);
    // gRPC (1.51) answers a request it cannot deserialize itself, before our handler runs: its
    // callback handler substitutes a reactor that finishes UNIMPLEMENTED with no message, so the
    // server cannot answer INVALID_ARGUMENT; it counts the call instead.
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << Describe(status);
  }
  EXPECT_EQ(SeriesValue(server_->metrics().Serialize(), "kvserve_malformed_requests_total"),
            static_cast<double>(garbage.size()));

  EXPECT_EQ(engine().stats().num_finished, 1);
  const Generation g = Generate(*stub_, GreedyRequest("Hi", 4));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
}

// ---------------------------------------------------------------------------------------------
// Stop strings and stop token ids.

// The first printable-ASCII pair at offset >= 1 in `text`, so that some text precedes it. By
// construction the pair does not occur earlier.
std::optional<size_t> FirstPrintablePair(const std::string& text) {
  auto printable = [](char c) { return c >= 0x21 && c <= 0x7E; };
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    if (printable(text[i]) && printable(text[i + 1])) return i;
  }
  return std::nullopt;
}

std::string Hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2), " ");
  return out;
}

TEST_F(KvServerTest, StopStringEndsTheTextRightBeforeIt) {
  // The model is random noise, so the stop string is taken from a free greedy run of the same
  // request: greedy decoding replays that run exactly up to the stop.
  const pb::GenerateRequest free_request = GreedyRequest("Once upon a time", 48);
  const Generation free_run = Generate(*stub_, free_request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(free_run, 17));
  const std::optional<size_t> at = FirstPrintablePair(free_run.text);
  ASSERT_TRUE(at.has_value()) << "no printable ASCII pair in the free run: " << Hex(free_run.text);
  const std::string stop = free_run.text.substr(*at, 2);

  pb::GenerateRequest request = free_request;
  request.add_stop("never-matches-\x7f");
  request.add_stop(stop);
  const Generation g = Generate(*stub_, request);
  SCOPED_TRACE(absl::StrCat("stop '", stop, "' at byte ", *at, " of ", Hex(free_run.text)));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  EXPECT_EQ(g.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(g.text, free_run.text.substr(0, *at));
  // Tokens up to and including the one that completed the stop string are all reported.
  ASSERT_LE(g.token_ids.size(), free_run.token_ids.size());
  EXPECT_THAT(g.token_ids, ElementsAreArray(free_run.token_ids.begin(),
                                            free_run.token_ids.begin() + g.token_ids.size()));
  EXPECT_EQ(g.token_ids.back(), static_cast<unsigned char>(stop.back()));
}

TEST_F(KvServerTest, StopStringAtTheVeryStartLeavesNoText) {
  const pb::GenerateRequest free_request = GreedyRequest("Once upon a time", 8);
  const Generation free_run = Generate(*stub_, free_request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(free_run, 17));
  ASSERT_FALSE(free_run.text.empty());
  // The first character of the free run's text, whatever it is (U+FFFD included).
  const unsigned char lead = static_cast<unsigned char>(free_run.text[0]);
  const size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  const std::string first_char = free_run.text.substr(0, length);
  ASSERT_TRUE(IsWellFormedUtf8(first_char)) << Hex(free_run.text);

  pb::GenerateRequest request = free_request;
  request.add_stop(first_char);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  EXPECT_EQ(g.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_EQ(g.text, "");
}

TEST_F(KvServerTest, TextHeldBackForAPossibleStopStringIsReleasedWhenGenerationEnds) {
  const pb::GenerateRequest free_request = GreedyRequest("Once upon a time", 32);
  const Generation free_run = Generate(*stub_, free_request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(free_run, 17));
  ASSERT_FALSE(free_run.text.empty());
  // A stop string that starts with the run's last character and can only continue past the end:
  // that character is held back until generation ends, then released.
  size_t last = free_run.text.size() - 1;
  while (last > 0 && (static_cast<unsigned char>(free_run.text[last]) & 0xC0) == 0x80) --last;
  const std::string stop = free_run.text.substr(last) + "\x01\x01";
  ASSERT_EQ(free_run.text.find(stop), std::string::npos) << Hex(free_run.text);

  pb::GenerateRequest request = free_request;
  request.add_stop(stop);
  const Generation g = Generate(*stub_, request);
  SCOPED_TRACE(absl::StrCat("stop ", Hex(stop), " after ", Hex(free_run.text)));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 17));
  EXPECT_EQ(g.finish_reason(), free_run.finish_reason());
  EXPECT_EQ(g.token_ids, free_run.token_ids);
  EXPECT_EQ(g.text, free_run.text);
}

TEST_F(KvServerTwoModelTest, StopTokenIdEndsGenerationWithStopAndIsReported) {
  // The fixture has no text tokenizer beyond bytes < 64, so prompts are token ids.
  pb::GenerateRequest free_request;
  free_request.set_model(kFixtureModel);
  for (int32_t id : {1, 10, 20, 30, 40}) free_request.mutable_prompt_token_ids()->add_ids(id);
  free_request.set_max_tokens(16);
  free_request.set_ignore_eos(true);
  free_request.mutable_sampling()->set_temperature(0.0f);
  const Generation free_run = Generate(*stub_, free_request);
  ASSERT_TRUE(free_run.status.ok()) << Describe(free_run.status);
  ASSERT_THAT(free_run.token_ids, SizeIs(16));
  for (int32_t id : free_run.token_ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 64);
  }

  // Stop at the latest token that makes its first appearance there, so generation ends as late
  // in the free run as possible.
  size_t stop_at = 0;
  for (size_t i = 0; i < free_run.token_ids.size(); ++i) {
    const auto first =
        std::find(free_run.token_ids.begin(), free_run.token_ids.end(), free_run.token_ids[i]);
    if (static_cast<size_t>(first - free_run.token_ids.begin()) == i) stop_at = i;
  }
  const int32_t stop_id = free_run.token_ids[stop_at];
  SCOPED_TRACE(absl::StrCat("stop token ", stop_id, " at index ", stop_at));

  pb::GenerateRequest request = free_request;
  request.add_stop_token_ids(stop_id);
  const Generation g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, /*prompt_tokens=*/5));
  EXPECT_EQ(g.finish_reason(), pb::FINISH_REASON_STOP);
  EXPECT_THAT(g.token_ids, ElementsAreArray(free_run.token_ids.begin(),
                                            free_run.token_ids.begin() + stop_at + 1));
  EXPECT_EQ(g.messages.back().usage().completion_tokens(), static_cast<int32_t>(stop_at + 1));
}

TEST_F(KvServerTwoModelTest, ValidatesAgainstTheChosenModel) {
  pb::GenerateRequest request = GreedyRequest("Hi", 4);
  request.set_model(kFixtureModel);
  Generation g = Generate(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.status.error_message(),
            "prompt: byte 0x48 at offset 0 has no token in this model's 64-token byte vocabulary");

  request.clear_input();
  for (int32_t id : {1, 10, 64}) request.mutable_prompt_token_ids()->add_ids(id);
  g = Generate(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.status.error_message(), "prompt_token_ids[2]: 64 is outside the vocabulary [0, 64)");

  request.mutable_prompt_token_ids()->set_ids(2, 11);
  request.set_max_tokens(126);  // 3 + 126 > 128
  g = Generate(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(g.status.error_message(),
            "max_tokens: prompt length 3 + max_tokens 126 exceeds the model's context length 128");

  request.set_max_tokens(125);  // fills the context exactly
  request.set_ignore_eos(true);
  g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
  EXPECT_THAT(g.token_ids, SizeIs(125));
  EXPECT_EQ(g.finish_reason(), pb::FINISH_REASON_LENGTH);

  // The same request without a model goes to the default (first) model, which has 320 tokens.
  request.clear_model();
  request.mutable_prompt_token_ids()->set_ids(2, 300);
  request.set_max_tokens(4);
  g = Generate(*stub_, request);
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(g, 3));
  EXPECT_EQ(engine(0).stats().num_finished, 1);
  EXPECT_EQ(engine(1).stats().num_finished, 1);
}

TEST_F(KvServerTwoModelTest, UnknownModelIsNotFoundAndNamesEveryAvailableModel) {
  pb::GenerateRequest request = GreedyRequest("Hi", 4);
  request.set_model("gpt-nope");
  const Generation g = Generate(*stub_, request);
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(g.status.error_message(), absl::StrCat("model: no model named 'gpt-nope'; available: ",
                                                   kDefaultModel, ", ", kFixtureModel));
}

TEST_F(KvServerTwoModelTest, ListModelsReportsBothModelsInOrder) {
  const pb::ListModelsResponse response = ListModels();
  ASSERT_THAT(response.models(), SizeIs(2));
  EXPECT_EQ(response.models(0).name(), kDefaultModel);
  const pb::ModelInfo& tiny = response.models(1);
  EXPECT_EQ(tiny.name(), kFixtureModel);
  EXPECT_EQ(tiny.source(), "tiny_llama_gqa");  // the directory's name, not where it lies
  EXPECT_FALSE(tiny.random_weights());
  EXPECT_EQ(tiny.attention(), "GQA");
  EXPECT_EQ(tiny.vocab_size(), 64);
  EXPECT_EQ(tiny.num_layers(), 2);
  EXPECT_EQ(tiny.num_attention_heads(), 4);
  EXPECT_EQ(tiny.num_key_value_heads(), 2);
  EXPECT_EQ(tiny.head_dim(), 4);
  EXPECT_EQ(tiny.max_context_length(), 128);
  EXPECT_EQ(tiny.kv_cache_bytes_per_token(), 2 * 2 * 4 * 2 * 4);
  EXPECT_EQ(tiny.eos_token_id(), 2);
}

TEST_F(KvServerShowPathsTest, ListModelsReportsTheDirectoryPathWhenAsked) {
  const pb::ListModelsResponse response = ListModels();
  ASSERT_THAT(response.models(), SizeIs(1));
  EXPECT_EQ(response.models(0).source(), kFixtureDir);
}

TEST_F(KvServerTwoModelTest, TokenizeRejectsTextOutsideTheModelsByteVocabulary) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(kCallTimeout));
  pb::TokenizeRequest request;
  request.set_model(kFixtureModel);
  request.set_text("\x05H");
  pb::TokenizeResponse response;
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "text: byte 0x48 at offset 1 has no token in this model's 64-token byte vocabulary");
}

// ---------------------------------------------------------------------------------------------
// Admission control.

// One running request and one waiting one at most.
class KvServerSmallQueueTest : public KvServerTest {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.engine.max_num_seqs = 1;
    options.engine.max_queued_requests = 1;
    ASSERT_NO_FATAL_FAILURE(StartServer(options));
  }

  // Polls until the engine's stats satisfy `done`; returns whether they did within 10 s.
  bool WaitForStats(const std::function<bool(const engine::EngineStats&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done(engine().stats())) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
};

TEST_F(KvServerSmallQueueTest,
       RequestBeyondTheQueueIsResourceExhaustedAndAWaitingOneCanBeCancelled) {
  // A runs; it is admitted once its first message arrives.
  grpc::ClientContext running_context;
  running_context.set_deadline(DeadlineIn(kCallTimeout));
  auto running = stub_->Generate(&running_context, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(running->Read(&message));

  // B waits behind it.
  grpc::ClientContext waiting_context;
  waiting_context.set_deadline(DeadlineIn(kCallTimeout));
  auto waiting = stub_->Generate(&waiting_context, GreedyRequest("Hi", 4));
  ASSERT_TRUE(WaitForStats([](const engine::EngineStats& s) { return s.num_waiting == 1; }))
      << "B never queued";
  EXPECT_EQ(engine().stats().num_running, 1);

  // C finds the queue full.
  const Generation rejected = Generate(*stub_, GreedyRequest("Hi", 4));
  EXPECT_EQ(rejected.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << Describe(rejected.status);
  EXPECT_EQ(rejected.status.error_message(), "the request queue is full (1 waiting); retry later");

  // Cancelling B while it waits frees its queue slot without it ever running.
  waiting_context.TryCancel();
  while (waiting->Read(&message)) {
    ADD_FAILURE() << "B produced output while queued";
  }
  EXPECT_EQ(waiting->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitForStats([](const engine::EngineStats& s) { return s.num_waiting == 0; }));
  EXPECT_EQ(engine().stats().num_running, 1);

  running_context.TryCancel();
  while (running->Read(&message)) {
  }
  EXPECT_EQ(running->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
  EXPECT_EQ(engine().stats().num_finished, 2);
}

TEST_F(KvServerSmallQueueTest, QueuedRequestRunsOnceTheRunningOneFinishes) {
  grpc::ClientContext running_context;
  running_context.set_deadline(DeadlineIn(kCallTimeout));
  pb::GenerateRequest long_request = GreedyRequest("Once upon a time", 200);
  long_request.set_ignore_eos(true);
  auto running = stub_->Generate(&running_context, long_request);
  pb::GenerateResponse message;
  ASSERT_TRUE(running->Read(&message));

  // Queued behind a 200-token stream, then served: same tokens as it gets alone afterwards.
  const Generation queued = Generate(*stub_, GreedyRequest("Hi", 8));
  while (running->Read(&message)) {
  }
  EXPECT_TRUE(running->Finish().ok());
  const Generation alone = Generate(*stub_, GreedyRequest("Hi", 8));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(queued, 3));
  ASSERT_NO_FATAL_FAILURE(ExpectWellFormedStream(alone, 3));
  EXPECT_EQ(queued.token_ids, alone.token_ids);
  EXPECT_EQ(engine().stats().num_finished, 3);
}

TEST_F(KvServerSmallQueueTest, DeadlinePassingWhileQueuedEndsTheCallWithoutRunningIt) {
  grpc::ClientContext running_context;
  running_context.set_deadline(DeadlineIn(kCallTimeout));
  auto running = stub_->Generate(&running_context, LongRequest());
  pb::GenerateResponse message;
  ASSERT_TRUE(running->Read(&message));

  // Queued behind the long stream until its deadline passes.
  grpc::ClientContext waiting_context;
  waiting_context.set_deadline(DeadlineIn(std::chrono::milliseconds(300)));
  auto waiting = stub_->Generate(&waiting_context, GreedyRequest("Hi", 4));
  while (waiting->Read(&message)) {
    ADD_FAILURE() << "the queued request produced output";
  }
  const grpc::Status status = waiting->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(status);
  ASSERT_TRUE(WaitForStats([](const engine::EngineStats& s) { return s.num_waiting == 0; }));
  EXPECT_EQ(engine().stats().num_running, 1);

  running_context.TryCancel();
  while (running->Read(&message)) {
  }
  EXPECT_EQ(running->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_ENGINE_IDLE(WaitUntilEngineIdle(engine(), kReleaseTimeout));
}

// With no queue at all, a request is still served when a running slot is free.
TEST_F(KvServerTest, ZeroQueuedRequestsStillAdmitsARequestWhenASlotIsFree) {
  server_.reset();
  ServerOptions options;
  // Engine::Create and --max-queued-requests both accept 0.
  options.engine.max_queued_requests = 0;
  ASSERT_NO_FATAL_FAILURE(StartServer(options));
  const Generation g = Generate(*stub_, GreedyRequest("Hi", 4));
  EXPECT_TRUE(g.status.ok()) << Describe(g.status);
}

}  // namespace
}  // namespace kvserve::server
