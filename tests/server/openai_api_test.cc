// server/openai_api: OpenAI JSON -> engine requests and back, against an engine serving the
// tiny_llama_gqa fixture (vocab 64, byte-level tokenizer for bytes < 64, context 128). The gRPC
// conversion of the same request is the oracle for "one rule for both protocols".
#include "server/openai_api.h"

#include <memory>
#include <string>
#include <utility>

#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/proto_convert.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using Json = nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class OpenAiApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<engine::LoadedModel> loaded =
        engine::LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
        engine::Engine::Create("tiny", std::move(*loaded), engine::EngineOptions());
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  static absl::StatusOr<std::vector<engine::GenerationRequest>> Convert(OpenAiEndpoint endpoint,
                                                                        const Json& body) {
    absl::StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, body.dump());
    if (!parsed.ok()) return parsed.status();
    return ToEngineRequests(*parsed, *engine_);
  }

  static engine::Engine* engine_;
};

engine::Engine* OpenAiApiTest::engine_ = nullptr;

TEST_F(OpenAiApiTest, EveryGenerationFieldMatchesTheGrpcConversionOfTheSameRequest) {
  const Json body = {{"prompt", {1, 10, 20}},
                     {"max_tokens", 7},
                     {"temperature", 0.5},
                     {"top_p", 0.9},
                     {"top_k", 5},
                     {"min_p", 0.1},
                     {"repetition_penalty", 1.1},
                     {"presence_penalty", 0.25},
                     {"frequency_penalty", -0.5},
                     {"seed", 42},
                     {"normalizer", "entmax15"},
                     {"stop", {"ab", "cd"}},
                     {"stop_token_ids", {3}},
                     {"ignore_eos", true},
                     {"skip_special_tokens", false},
                     {"cache_salt", "tenant"},
                     {"priority", -2},
                     {"n", 3},
                     {"logprobs", 2}};
  absl::StatusOr<std::vector<engine::GenerationRequest>> http =
      Convert(OpenAiEndpoint::kCompletions, body);
  ASSERT_TRUE(http.ok()) << http.status();
  ASSERT_EQ(http->size(), 1u);

  pb::GenerateRequest proto;
  for (int32_t id : {1, 10, 20}) proto.mutable_prompt_token_ids()->add_ids(id);
  proto.set_max_tokens(7);
  pb::SamplingParams* s = proto.mutable_sampling();
  s->set_temperature(0.5f);
  s->set_top_p(0.9f);
  s->set_top_k(5);
  s->set_min_p(0.1f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(0.25f);
  s->set_frequency_penalty(-0.5f);
  s->set_seed(42);
  s->set_normalizer(pb::NORMALIZER_ENTMAX15);
  proto.add_stop("ab");
  proto.add_stop("cd");
  proto.add_stop_token_ids(3);
  proto.set_ignore_eos(true);
  proto.set_skip_special_tokens(false);
  proto.set_cache_salt("tenant");
  proto.set_priority(-2);
  proto.set_n(3);
  proto.set_logprobs(2);
  absl::StatusOr<engine::GenerationRequest> grpc =
      FromProto(proto, engine_->tokenizer(), engine_->info().default_sampling);
  ASSERT_TRUE(grpc.ok()) << grpc.status();

  const engine::GenerationRequest& a = http->front();
  const engine::GenerationRequest& b = *grpc;
  EXPECT_EQ(a.prompt_token_ids, b.prompt_token_ids);
  EXPECT_EQ(a.max_tokens, b.max_tokens);
  EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
  EXPECT_EQ(a.sampling.top_p, b.sampling.top_p);
  EXPECT_EQ(a.sampling.top_k, b.sampling.top_k);
  EXPECT_EQ(a.sampling.min_p, b.sampling.min_p);
  EXPECT_EQ(a.sampling.repetition_penalty, b.sampling.repetition_penalty);
  EXPECT_EQ(a.sampling.presence_penalty, b.sampling.presence_penalty);
  EXPECT_EQ(a.sampling.frequency_penalty, b.sampling.frequency_penalty);
  EXPECT_EQ(a.sampling.seed, b.sampling.seed);
  EXPECT_EQ(a.sampling.normalizer, b.sampling.normalizer);
  EXPECT_EQ(a.stop, b.stop);
  EXPECT_EQ(a.stop_token_ids, b.stop_token_ids);
  EXPECT_EQ(a.ignore_eos, b.ignore_eos);
  EXPECT_EQ(a.skip_special_tokens, b.skip_special_tokens);
  EXPECT_EQ(a.cache_salt, b.cache_salt);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.logprobs, b.logprobs);
}

TEST_F(OpenAiApiTest, UnsetAndNullFieldsTakeTheSameDefaultsAsGrpc) {
  absl::StatusOr<std::vector<engine::GenerationRequest>> http = Convert(
      OpenAiEndpoint::kCompletions,
      {{"prompt", "12"}, {"temperature", nullptr}, {"stop", nullptr}, {"logprobs", nullptr}});
  ASSERT_TRUE(http.ok()) << http.status();
  pb::GenerateRequest proto;
  proto.set_prompt("12");
  absl::StatusOr<engine::GenerationRequest> grpc =
      FromProto(proto, engine_->tokenizer(), engine_->info().default_sampling);
  ASSERT_TRUE(grpc.ok());
  const engine::GenerationRequest& a = http->front();
  EXPECT_EQ(a.prompt_token_ids, grpc->prompt_token_ids);  // BOS added on both
  EXPECT_EQ(a.max_tokens, engine::kDefaultMaxTokens);
  EXPECT_EQ(a.sampling.temperature, grpc->sampling.temperature);
  EXPECT_FALSE(a.logprobs.has_value());
  EXPECT_TRUE(a.stop.empty());
  EXPECT_EQ(a.n, 1);
}

TEST_F(OpenAiApiTest, PromptTakesEveryOpenAiShape) {
  auto prompts = [](const Json& prompt) {
    absl::StatusOr<OpenAiRequest> r =
        ParseOpenAiRequest(OpenAiEndpoint::kCompletions, Json{{"prompt", prompt}}.dump());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->prompts : std::vector<OpenAiPrompt>();
  };
  EXPECT_EQ(prompts("hi").size(), 1u);
  EXPECT_EQ(prompts({"a", "b", "c"}).size(), 3u);
  const std::vector<OpenAiPrompt> ids = prompts({4, 5});
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_TRUE(ids[0].is_token_ids);
  EXPECT_THAT(ids[0].token_ids, ElementsAre(4, 5));
  const std::vector<OpenAiPrompt> lists = prompts({{1}, {2, 3}});
  ASSERT_EQ(lists.size(), 2u);
  EXPECT_THAT(lists[1].token_ids, ElementsAre(2, 3));
}

TEST_F(OpenAiApiTest, ChatFieldsMapToTheEngineRequest) {
  const Json body = {
      {"messages",
       {{{"role", "system"}, {"content", "0123"}},
        {{"role", "user"},
         {"content", {{{"type", "text"}, {"text", "4"}}, {{"type", "text"}, {"text", "5"}}}}}}},
      {"max_tokens", 3},
      {"max_completion_tokens", 9},
      {"logprobs", true},
      {"top_logprobs", 4},
      {"chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}"}};
  absl::StatusOr<std::vector<engine::GenerationRequest>> r =
      Convert(OpenAiEndpoint::kChatCompletions, body);
  ASSERT_TRUE(r.ok()) << r.status();
  const engine::GenerationRequest& request = r->front();
  EXPECT_EQ(request.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(request.logprobs, 4);
  // "0123" + "45", rendered and tokenized byte by byte without a BOS.
  EXPECT_THAT(request.prompt_token_ids, ElementsAre('0', '1', '2', '3', '4', '5'));
}

TEST_F(OpenAiApiTest, ChatRejectsWhatItCannotRepresent) {
  auto error = [](const Json& body) {
    absl::StatusOr<OpenAiRequest> r =
        ParseOpenAiRequest(OpenAiEndpoint::kChatCompletions, body.dump());
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  EXPECT_EQ(error({{"model", "x"}}), "messages: is required");
  EXPECT_THAT(error({{"messages", {{{"content", "hi"}}}}}),
              HasSubstr("messages[0].role: is required"));
  EXPECT_THAT(error({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}),
              HasSubstr("messages[0].content[0].type: only \"text\""));
  EXPECT_THAT(error({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}}),
              HasSubstr("top_logprobs: needs \"logprobs\": true"));
  EXPECT_THAT(error({{"messages", {{{"role", "user"}, {"content", 5}}}}}),
              HasSubstr("messages[0].content: must be a string or a list of content parts"));
}

TEST_F(OpenAiApiTest, ErrorsMapToOpenAiShapesAndStatuses) {
  const HttpError invalid =
      HttpErrorFor(absl::InvalidArgumentError("sampling.top_p: must be in (0, 1], got 1.5"));
  EXPECT_EQ(invalid.status, 400);
  const Json body = Json::parse(invalid.body);
  EXPECT_EQ(body["error"]["message"], "top_p: must be in (0, 1], got 1.5");
  EXPECT_EQ(body["error"]["param"], "top_p");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(body["error"]["code"].is_null());
  EXPECT_EQ(invalid.retry_after_seconds, 0);

  const HttpError full = HttpErrorFor(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(full.status, 429);
  EXPECT_EQ(full.retry_after_seconds, 1);
  EXPECT_EQ(Json::parse(full.body)["error"]["code"], "rate_limit_exceeded");

  const HttpError draining = HttpErrorFor(absl::UnavailableError("draining"));
  EXPECT_EQ(draining.status, 503);
  EXPECT_EQ(draining.retry_after_seconds, 1);

  EXPECT_EQ(HttpErrorFor(absl::NotFoundError("model: no model named 'x'")).status, 404);
  EXPECT_EQ(HttpErrorFor(absl::UnauthenticatedError("no key")).status, 401);
  EXPECT_EQ(HttpErrorFor(absl::FailedPreconditionError("chat_template: none")).status, 400);
  EXPECT_EQ(HttpErrorFor(absl::InternalError("boom")).status, 500);
  // A message that does not start with a field has no param.
  EXPECT_TRUE(
      Json::parse(HttpErrorFor(absl::InvalidArgumentError("bad thing: x")).body)["error"]["param"]
          .is_null());
}

TEST_F(OpenAiApiTest, ResponsesHaveOpenAiShapes) {
  OpenAiRequest request;
  request.endpoint = OpenAiEndpoint::kChatCompletions;
  request.overrides.logprobs = 1;
  const ResponseHeader header{"chatcmpl-1", 1700000000, "tiny"};
  ChoiceOutput out;
  out.text = "!";
  out.token_ids = {'!'};
  out.logprobs = {engine::TokenLogprobs{-0.5f, {{'!', -0.5f}}}};
  out.finish_reason = engine::FinishReason::kEos;
  const Json json = Json::parse(
      CompletionResponseJson(request, header, {out}, Usage{3, 1}, engine_->tokenizer()));
  EXPECT_EQ(json["object"], "chat.completion");
  EXPECT_EQ(json["choices"][0]["finish_reason"], "stop");  // EOS is OpenAI's "stop"
  EXPECT_EQ(json["choices"][0]["message"]["content"], "!");
  EXPECT_EQ(json["choices"][0]["logprobs"]["content"][0]["token"], "!");
  EXPECT_EQ(json["choices"][0]["logprobs"]["content"][0]["logprob"], -0.5);
  EXPECT_EQ(json["choices"][0]["logprobs"]["content"][0]["bytes"], Json({'!'}));
  EXPECT_EQ(json["usage"]["total_tokens"], 4);

  const std::string chunk =
      StreamChunkEvent(request, header, 2, ChoiceOutput{"x", {}, {}, engine::FinishReason::kNone},
                       /*first=*/true, engine_->tokenizer());
  ASSERT_EQ(chunk.substr(0, 6), "data: ");
  ASSERT_EQ(chunk.substr(chunk.size() - 2), "\n\n");
  const Json c = Json::parse(chunk.substr(6));
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["choices"][0]["index"], 2);
  EXPECT_EQ(c["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
}

TEST_F(OpenAiApiTest, InvalidUtf8InOutputNeverBreaksTheJson) {
  OpenAiRequest request;
  ChoiceOutput out;
  out.text = "\xff\xfe";
  const Json json = Json::parse(
      CompletionResponseJson(request, {"cmpl-1", 0, "tiny"}, {out}, Usage{}, engine_->tokenizer()));
  EXPECT_EQ(json["choices"][0]["text"], "\xEF\xBF\xBD\xEF\xBF\xBD");
}

}  // namespace
}  // namespace kvserve::server
