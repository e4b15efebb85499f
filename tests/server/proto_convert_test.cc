// server/proto_convert: wire defaults and field mapping, against an engine serving the
// tiny_llama_gqa fixture (vocab 64, byte-level tokenizer for bytes < 64, context 128).
#include "server/proto_convert.h"

#include <memory>
#include <string>
#include <utility>

#include "engine/engine.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

namespace pb = ::kvserve::v1;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class ProtoConvertTest : public ::testing::Test {
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

  // A request with a token-id prompt and nothing else set.
  static pb::GenerateRequest MinimalRequest() {
    pb::GenerateRequest request;
    for (int32_t id : {1, 10, 20}) request.mutable_prompt_token_ids()->add_ids(id);
    return request;
  }

  static engine::Engine* engine_;
};

engine::Engine* ProtoConvertTest::engine_ = nullptr;

TEST_F(ProtoConvertTest, UnsetFieldsTakeTheApiDefaults) {
  absl::StatusOr<engine::GenerationRequest> r = FromProto(MinimalRequest(), engine_->tokenizer());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->prompt_token_ids, ElementsAre(1, 10, 20));
  EXPECT_EQ(r->max_tokens, engine::kDefaultMaxTokens);
  EXPECT_EQ(r->n, 1);
  EXPECT_EQ(r->priority, 0);
  EXPECT_FALSE(r->logprobs.has_value());
  EXPECT_FALSE(r->prompt_logprobs.has_value());
  EXPECT_EQ(r->deadline, std::chrono::steady_clock::time_point{});  // the reactor sets it
  EXPECT_FALSE(r->ignore_eos);
  EXPECT_THAT(r->stop, IsEmpty());
  EXPECT_THAT(r->stop_token_ids, IsEmpty());
  const engine::SamplingParams& s = r->sampling;
  EXPECT_EQ(s.temperature, 1.0f);
  EXPECT_EQ(s.top_k, 0);
  EXPECT_EQ(s.top_p, 1.0f);
  EXPECT_EQ(s.min_p, 0.0f);
  EXPECT_EQ(s.repetition_penalty, 1.0f);
  EXPECT_EQ(s.presence_penalty, 0.0f);
  EXPECT_EQ(s.frequency_penalty, 0.0f);
  EXPECT_EQ(s.normalizer, engine::Normalizer::kSoftmax);
  EXPECT_FALSE(s.seed.has_value());
}

TEST_F(ProtoConvertTest, CopiesEverySetField) {
  pb::GenerateRequest request = MinimalRequest();
  request.set_max_tokens(7);
  request.add_stop("ab");
  request.add_stop_token_ids(3);
  request.set_ignore_eos(true);
  request.set_request_id("id-1");
  request.set_cache_salt("tenant");
  request.set_priority(-4);
  request.set_n(5);
  request.set_logprobs(3);
  request.set_prompt_logprobs(2);
  pb::SamplingParams& s = *request.mutable_sampling();
  s.set_temperature(0.5f);
  s.set_top_k(9);
  s.set_top_p(0.75f);
  s.set_seed(11);
  s.set_min_p(0.125f);
  s.set_repetition_penalty(1.5f);
  s.set_presence_penalty(-0.5f);
  s.set_frequency_penalty(0.25f);
  s.set_normalizer(pb::NORMALIZER_SPARSEMAX);

  absl::StatusOr<engine::GenerationRequest> r = FromProto(request, engine_->tokenizer());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->max_tokens, 7);
  EXPECT_THAT(r->stop, ElementsAre("ab"));
  EXPECT_THAT(r->stop_token_ids, ElementsAre(3));
  EXPECT_TRUE(r->ignore_eos);
  EXPECT_EQ(r->request_id, "id-1");
  EXPECT_EQ(r->cache_salt, "tenant");
  EXPECT_EQ(r->priority, -4);
  EXPECT_EQ(r->n, 5);
  EXPECT_EQ(r->logprobs, 3);
  EXPECT_EQ(r->prompt_logprobs, 2);
  EXPECT_EQ(r->sampling.temperature, 0.5f);
  EXPECT_EQ(r->sampling.top_k, 9);
  EXPECT_EQ(r->sampling.top_p, 0.75f);
  EXPECT_EQ(r->sampling.seed, 11u);
  EXPECT_EQ(r->sampling.min_p, 0.125f);
  EXPECT_EQ(r->sampling.repetition_penalty, 1.5f);
  EXPECT_EQ(r->sampling.presence_penalty, -0.5f);
  EXPECT_EQ(r->sampling.frequency_penalty, 0.25f);
  EXPECT_EQ(r->sampling.normalizer, engine::Normalizer::kSparsemax);
}

// Presence, not value, decides: an explicit 0 is passed on (for Validate to judge) rather than
// replaced by the default.
TEST_F(ProtoConvertTest, ExplicitZerosOfOptionalFieldsAreKept) {
  pb::GenerateRequest request = MinimalRequest();
  request.set_n(0);
  request.set_logprobs(0);
  request.set_prompt_logprobs(0);
  request.set_max_tokens(0);
  request.mutable_sampling()->set_repetition_penalty(0.0f);
  request.mutable_sampling()->set_temperature(0.0f);
  absl::StatusOr<engine::GenerationRequest> r = FromProto(request, engine_->tokenizer());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->n, 0);
  EXPECT_EQ(r->logprobs, 0);
  EXPECT_EQ(r->prompt_logprobs, 0);
  EXPECT_EQ(r->max_tokens, 0);
  EXPECT_EQ(r->sampling.repetition_penalty, 0.0f);
  EXPECT_EQ(r->sampling.temperature, 0.0f);
}

TEST_F(ProtoConvertTest, MapsEachNormalizer) {
  EXPECT_EQ(FromProto(pb::NORMALIZER_SOFTMAX).value(), engine::Normalizer::kSoftmax);
  EXPECT_EQ(FromProto(pb::NORMALIZER_SPARSEMAX).value(), engine::Normalizer::kSparsemax);
  EXPECT_EQ(FromProto(pb::NORMALIZER_ENTMAX15).value(), engine::Normalizer::kEntmax15);
}

TEST_F(ProtoConvertTest, UnknownNormalizerIsInvalidArgumentNamingTheField) {
  pb::GenerateRequest request = MinimalRequest();
  request.mutable_sampling()->set_normalizer(static_cast<pb::Normalizer>(3));
  absl::StatusOr<engine::GenerationRequest> r = FromProto(request, engine_->tokenizer());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "sampling.normalizer: must be NORMALIZER_SOFTMAX, NORMALIZER_SPARSEMAX or "
            "NORMALIZER_ENTMAX15, got 3");
  EXPECT_EQ(FromProto(static_cast<pb::Normalizer>(-1)).status().message(),
            "sampling.normalizer: must be NORMALIZER_SOFTMAX, NORMALIZER_SPARSEMAX or "
            "NORMALIZER_ENTMAX15, got -1");
}

TEST_F(ProtoConvertTest, PromptLogprobsGetOneEntryPerPromptTokenTheFirstWithoutALogprob) {
  // The engine's entries for prompt tokens 1 and 2 of a 3-token prompt.
  const std::vector<engine::TokenLogprobs> scored = {{-0.5f, {{4, -0.25f}}}, {0.0f, {}}};
  pb::GenerateResponse out;
  PromptLogprobsToProto(scored, &out);
  ASSERT_EQ(out.prompt_logprobs_size(), 3);
  EXPECT_FALSE(out.prompt_logprobs(0).has_logprob());
  EXPECT_EQ(out.prompt_logprobs(0).top_size(), 0);
  EXPECT_EQ(out.prompt_logprobs(1).logprob(), -0.5f);
  ASSERT_EQ(out.prompt_logprobs(1).top_size(), 1);
  EXPECT_EQ(out.prompt_logprobs(1).top(0).token_id(), 4);
  // A logprob of exactly 0 (probability 1) is present, not absent.
  EXPECT_TRUE(out.prompt_logprobs(2).has_logprob());
  EXPECT_EQ(out.prompt_logprobs(2).logprob(), 0.0f);

  pb::GenerateResponse one_token;
  PromptLogprobsToProto({}, &one_token);
  ASSERT_EQ(one_token.prompt_logprobs_size(), 1);
  EXPECT_FALSE(one_token.prompt_logprobs(0).has_logprob());
}

TEST_F(ProtoConvertTest, TokenLogprobsKeepTheirOrder) {
  engine::TokenLogprobs logprobs;
  logprobs.logprob = -0.5f;
  logprobs.top = {{7, -0.25f}, {3, -0.5f}, {9, -3.0f}};
  pb::TokenLogprobs out;
  ToProto(logprobs, &out);
  EXPECT_EQ(out.logprob(), -0.5f);
  ASSERT_EQ(out.top_size(), 3);
  EXPECT_EQ(out.top(0).token_id(), 7);
  EXPECT_EQ(out.top(0).logprob(), -0.25f);
  EXPECT_EQ(out.top(1).token_id(), 3);
  EXPECT_EQ(out.top(1).logprob(), -0.5f);
  EXPECT_EQ(out.top(2).token_id(), 9);
  EXPECT_EQ(out.top(2).logprob(), -3.0f);

  pb::TokenLogprobs sampled_only;
  ToProto(engine::TokenLogprobs{-1.0f, {}}, &sampled_only);
  EXPECT_EQ(sampled_only.logprob(), -1.0f);
  EXPECT_THAT(sampled_only.top(), IsEmpty());
}

TEST_F(ProtoConvertTest, OnlySuccessfulFinishReasonsReachTheWire) {
  EXPECT_EQ(ToProto(engine::FinishReason::kLength), pb::FINISH_REASON_LENGTH);
  EXPECT_EQ(ToProto(engine::FinishReason::kStop), pb::FINISH_REASON_STOP);
  EXPECT_EQ(ToProto(engine::FinishReason::kEos), pb::FINISH_REASON_EOS);
  // These end the call with a status instead (CANCELLED, UNAVAILABLE, DEADLINE_EXCEEDED).
  EXPECT_EQ(ToProto(engine::FinishReason::kCancelled), pb::FINISH_REASON_UNSPECIFIED);
  EXPECT_EQ(ToProto(engine::FinishReason::kAborted), pb::FINISH_REASON_UNSPECIFIED);
  EXPECT_EQ(ToProto(engine::FinishReason::kDeadline), pb::FINISH_REASON_UNSPECIFIED);
}

}  // namespace
}  // namespace kvserve::server
