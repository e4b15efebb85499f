// DecoderModel::EstimateMemory, the check that refuses a model before any weight is read: its
// parameter count is worked out from the config alone and must equal the count Create tallies
// tensor by tensor, for every architecture in tests/data and every weight precision.
#include "engine/model/decoder_model.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using ::testing::HasSubstr;

class EstimateMemoryTest : public ::testing::TestWithParam<const char*> {};

TEST_P(EstimateMemoryTest, CountsExactlyTheParametersCreateLoads) {
  for (WeightDType dtype : {WeightDType::kF32, WeightDType::kBf16, WeightDType::kInt8}) {
    SCOPED_TRACE(WeightDTypeName(dtype));
    absl::StatusOr<LoadedModel> loaded =
        LoadModelDirectory(std::string(KVSERVE_TEST_DATA_DIR) + "/" + GetParam(), dtype);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const DecoderModel& model = *loaded->model;
    WeightOptions options;
    options.dtype = dtype;
    const DecoderModel::MemoryEstimate estimate =
        DecoderModel::EstimateMemory(model.config(), options);
    EXPECT_EQ(estimate.num_parameters, model.num_parameters());
    // The estimate adds the layer records, one conversion copy and the attention scratch. (Not for
    // int8: these tiny matrices are mostly the panel padding the estimate leaves out.)
    if (dtype != WeightDType::kInt8) {
      EXPECT_GT(estimate.bytes, model.weight_bytes());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EstimateMemoryTest,
                         ::testing::Values("tiny_llama_gqa", "tiny_llama_mqa_tied",
                                           "tiny_llama3_rope_scaling", "tiny_qwen2_bias",
                                           "tiny_qwen2_sliding_window", "tiny_qwen3_qknorm",
                                           "tiny_deepseek_v2_mla",
                                           "tiny_deepseek_v2_mla_qlora_yarn", "tiny_hybrid_s4",
                                           "tiny_hybrid_s4_bilinear"));

TEST(DecoderModelTest, EstimatesTheEmbeddedDefaultModel) {
  absl::StatusOr<LoadedModel> loaded = CreateRandomModel(DefaultModelConfig(), kDefaultModelSeed);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(DecoderModel::EstimateMemory(DefaultModelConfig(), {}).num_parameters,
            loaded->model->num_parameters());
}

// A WeightSource that counts its calls and hands out zeros.
struct CountingSource {
  int* calls;
  absl::StatusOr<std::vector<float>> operator()(const std::string& /*name*/,
                                                const std::vector<int64_t>& shape) const {
    ++*calls;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return std::vector<float>(n, 1.0f);
  }
};

TEST(DecoderModelTest, RefusesAModelAboveTheAvailableMemoryBeforeReadingAnyWeight) {
  const ModelConfig config = DefaultModelConfig();
  WeightOptions options;
  const int64_t need = DecoderModel::EstimateMemory(config, options).bytes;
  int calls = 0;
  options.available_memory_bytes = need - 1;
  absl::StatusOr<std::unique_ptr<DecoderModel>> model =
      DecoderModel::Create(config, CountingSource{&calls}, options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(model.status().message(),
              HasSubstr(absl::StrCat("needs about ", need,
                                     " bytes with --weight-dtype auto, but "
                                     "only ",
                                     need - 1, " bytes of memory are available")));
  EXPECT_EQ(calls, 0);

  options.available_memory_bytes = need;
  EXPECT_TRUE(DecoderModel::Create(config, CountingSource{&calls}, options).ok());
  EXPECT_GT(calls, 0);
}

TEST(DecoderModelTest, AnAbsurdConfigIsRefusedInsteadOfAllocated) {
  // Each value passes ModelConfig::Validate; together they describe ~2^66 bytes of weights, which
  // used to end in std::bad_alloc (an abort) or in an OOM kill.
  ModelConfig config = DefaultModelConfig();
  config.num_hidden_layers = ModelConfig::kMaxNumHiddenLayers;
  config.hidden_size = 1 << 20;
  config.intermediate_size = 1 << 22;
  config.max_position_embeddings = INT32_MAX;
  ASSERT_TRUE(config.Validate().ok());
  WeightOptions options;
  options.available_memory_bytes = int64_t{1} << 40;
  int calls = 0;
  absl::StatusOr<std::unique_ptr<DecoderModel>> model =
      DecoderModel::Create(config, CountingSource{&calls}, options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace kvserve::engine
