// The engine against independent PyTorch references (tools/reference/llama.py,
// tools/reference/deepseek_v2.py and tools/reference/hybrid_s4.py): whole tiny checkpoints loaded
// from disk, logits compared position by position.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cache/kv_cache_manager.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/safetensors_writer.h"

namespace kvserve::engine {
namespace {

// The issues ask for 1e-4; 1e-5 still leaves ~5x margin over float32 error and also catches an
// rms_norm_eps mix-up, which moves these fixtures' logits by only 3e-5 to 9e-5.
constexpr float kTolerance = 1e-5f;

struct Expected {
  std::vector<int32_t> input_ids;
  std::vector<float> logits;  // [T, vocab]
};

Expected LoadExpected(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/expected.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  Expected e;
  const TensorView* ids = (*file)->Find("input_ids");
  const TensorView* logits = (*file)->Find("logits");
  EXPECT_NE(ids, nullptr);
  EXPECT_NE(logits, nullptr);
  EXPECT_EQ(ids->dtype, DType::kI32);
  e.input_ids.resize(ids->NumElements());
  std::memcpy(e.input_ids.data(), ids->data, ids->num_bytes);
  e.logits.resize(logits->NumElements());
  EXPECT_TRUE(ConvertToFloat(*logits, absl::MakeSpan(e.logits)).ok());
  return e;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

class ModelReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = std::string(KVSERVE_TEST_DATA_DIR) + "/" + GetParam();
    // f32 weights, as the references were computed (tiny_llama_gqa is stored in BF16, which
    // WeightDType::kAuto would keep; bf16 and int8: weight_dtype_test.cc).
    auto loaded = LoadModelDirectory(dir_, WeightDType::kF32);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = std::move(loaded->model);
    expected_ = LoadExpected(dir_);
    ASSERT_EQ(expected_.logits.size(), expected_.input_ids.size() * vocab());
  }
  int vocab() const { return model_->config().vocab_size; }
  // A paged cache of `num_blocks` blocks of `block_size` and one sequence with slots for every
  // fixture position. `filler_blocks` blocks are taken by another sequence first, so the tested
  // sequence's blocks do not start at 0.
  struct PagedSequence {
    std::unique_ptr<cache::KvCacheManager> cache;
    cache::SequenceCache seq;
  };
  PagedSequence NewSequence(int32_t block_size = 4, int32_t filler_blocks = 1) const {
    const cache::CacheSpec spec = model_->CacheSpec(block_size);
    cache::CacheOptions options;
    options.block_size = block_size;
    options.max_sequences = 2;  // the filler and the tested sequence (state slots for S4 layers)
    options.budget_bytes = spec.PagedBytesPerToken() * block_size * (16 + filler_blocks) +
                           spec.StateBytesPerSequence() * options.max_sequences;
    PagedSequence p;
    p.cache = *cache::KvCacheManager::Create(spec, options);
    cache::SequenceCache filler = *p.cache->Begin(0);
    EXPECT_TRUE(p.cache->AllocateSlots(filler, filler_blocks * block_size));
    p.seq = *p.cache->Begin(0);
    EXPECT_TRUE(p.cache->AllocateSlots(p.seq, static_cast<int32_t>(expected_.input_ids.size())));
    return p;
  }

  std::string dir_;
  std::unique_ptr<DecoderModel> model_;
  Expected expected_;
};

TEST_P(ModelReferenceTest, OneShotPrefillMatchesReferenceLogitsAtEveryPosition) {
  const size_t t = expected_.input_ids.size();
  std::vector<float> logits(t * vocab());
  PagedSequence p = NewSequence();
  model_->Forward(expected_.input_ids, 0, *p.cache, p.seq, /*all_logits=*/true, logits.data());
  for (size_t i = 0; i < t; ++i) {
    EXPECT_LE(MaxAbsDiff(&logits[i * vocab()], &expected_.logits[i * vocab()], vocab()), kTolerance)
        << "position " << i;
  }
}

TEST_P(ModelReferenceTest, PrefillThenEightDecodeStepsMatchReference) {
  const size_t t = expected_.input_ids.size();
  ASSERT_EQ(t, 12u);
  const size_t prefill = t - 8;
  PagedSequence p = NewSequence();
  std::vector<float> logits(vocab());
  model_->Forward(absl::MakeConstSpan(expected_.input_ids).subspan(0, prefill), 0, *p.cache, p.seq,
                  /*all_logits=*/false, logits.data());
  EXPECT_LE(MaxAbsDiff(logits.data(), &expected_.logits[(prefill - 1) * vocab()], vocab()),
            kTolerance);
  for (size_t pos = prefill; pos < t; ++pos) {
    model_->Forward(absl::MakeConstSpan(expected_.input_ids).subspan(pos, 1),
                    static_cast<int32_t>(pos), *p.cache, p.seq, /*all_logits=*/false,
                    logits.data());
    EXPECT_LE(MaxAbsDiff(logits.data(), &expected_.logits[pos * vocab()], vocab()), kTolerance)
        << "decode position " << pos;
  }
}

TEST_P(ModelReferenceTest, ChunkedPrefillMatchesOneShotPrefill) {
  const size_t t = expected_.input_ids.size();
  std::vector<float> one_shot(t * vocab()), chunked(t * vocab());
  PagedSequence a = NewSequence(), b = NewSequence();
  model_->Forward(expected_.input_ids, 0, *a.cache, a.seq, true, one_shot.data());
  for (size_t start = 0; start < t; start += 5) {
    const size_t n = std::min<size_t>(5, t - start);
    model_->Forward(absl::MakeConstSpan(expected_.input_ids).subspan(start, n),
                    static_cast<int32_t>(start), *b.cache, b.seq, true, &chunked[start * vocab()]);
  }
  EXPECT_LE(MaxAbsDiff(one_shot.data(), chunked.data(), one_shot.size()), 1e-5f);
}

// Paged with small blocks at arbitrary block ids vs one block holding the whole sequence (the
// contiguous layout): bit-identical logits.
TEST_P(ModelReferenceTest, PagedCacheMatchesContiguousCacheExactly) {
  const size_t t = expected_.input_ids.size();
  std::vector<float> paged(t * vocab()), contiguous(t * vocab());
  PagedSequence small = NewSequence(/*block_size=*/2, /*filler_blocks=*/3);
  PagedSequence whole = NewSequence(/*block_size=*/64, /*filler_blocks=*/0);
  ASSERT_EQ(whole.seq.blocks.size(), 1u);
  for (size_t pos = 0; pos < t; pos += 3) {
    const size_t n = std::min<size_t>(3, t - pos);
    auto chunk = absl::MakeConstSpan(expected_.input_ids).subspan(pos, n);
    model_->Forward(chunk, static_cast<int32_t>(pos), *small.cache, small.seq, true,
                    &paged[pos * vocab()]);
    model_->Forward(chunk, static_cast<int32_t>(pos), *whole.cache, whole.seq, true,
                    &contiguous[pos * vocab()]);
  }
  EXPECT_EQ(paged, contiguous);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelReferenceTest,
                         ::testing::Values("tiny_llama_gqa", "tiny_llama_mqa_tied",
                                           "tiny_qwen2_bias", "tiny_qwen2_sliding_window",
                                           "tiny_qwen3_qknorm", "tiny_llama3_rope_scaling",
                                           "tiny_deepseek_v2_mla",
                                           "tiny_deepseek_v2_mla_qlora_yarn", "tiny_hybrid_s4",
                                           "tiny_hybrid_s4_bilinear"));

TEST(ModelLoaderTest, ReportsMissingTensorByName) {
  const std::string dir = ::testing::TempDir() + "/kvserve_missing_tensor";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa/config.json",
                             dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto file = SafetensorsFile::Open(std::string(KVSERVE_TEST_DATA_DIR) +
                                    "/tiny_llama_gqa/model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<TensorToWrite> tensors;
  for (const TensorView& t : (*file)->tensors()) {
    if (t.name == "model.layers.1.mlp.up_proj.weight") continue;
    tensors.push_back({t.name, t.dtype, t.shape,
                       std::string(reinterpret_cast<const char*>(t.data), t.num_bytes)});
  }
  std::ofstream(dir + "/model.safetensors", std::ios::binary) << SerializeSafetensors(tensors);
  auto loaded = LoadModelDirectory(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(loaded.status().message(), ::testing::HasSubstr("model.layers.1.mlp.up_proj.weight"));
}

TEST(ModelLoaderTest, ReportsShapeMismatchAgainstConfig) {
  const std::string dir = ::testing::TempDir() + "/kvserve_bad_shape";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(
      std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa/model.safetensors",
      dir + "/model.safetensors", std::filesystem::copy_options::overwrite_existing);
  std::ifstream in(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string from = "\"intermediate_size\": 32", to = "\"intermediate_size\": 30";
  ASSERT_NE(config.find(from), std::string::npos);
  config.replace(config.find(from), from.size(), to);
  std::ofstream(dir + "/config.json") << config;
  auto loaded = LoadModelDirectory(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(),
              ::testing::HasSubstr("mlp.gate_proj.weight' has shape [32, 16]"));
}

}  // namespace
}  // namespace kvserve::engine
