// LoadModelDirectory with the files a real Hugging Face directory has besides the weights:
// tokenizer.json / tokenizer_config.json and generation_config.json.
#include "engine/model/model_loader.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvserve::engine {
namespace {

using ::nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A copy of the tiny_llama_gqa fixture (vocab 64, BOS 1, EOS 2) in a fresh directory.
std::string CopyFixture(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/kvserve_loader_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* file : {"config.json", "model.safetensors"}) {
    std::filesystem::copy_file(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa/" + file,
                               dir + "/" + file);
  }
  return dir;
}

void Write(const std::string& path, const json& value) { std::ofstream(path) << value.dump(); }

// A byte-free BPE vocabulary: <unk> <s> </s> a b ab, plus a special <|end|> added token.
json SmallTokenizer(int32_t end_id) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"a", 3}, {"b", 4}, {"ab", 5}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           {{{"id", end_id},
             {"content", "<|end|>"},
             {"single_word", false},
             {"lstrip", false},
             {"rstrip", false},
             {"normalized", false},
             {"special", true}},
            {{"id", 1},
             {"content", "<s>"},
             {"single_word", false},
             {"lstrip", false},
             {"rstrip", false},
             {"normalized", false},
             {"special", true}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<unk>"},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", {"a b"}}}}};
}

TEST(ModelLoaderTest, ReadsTokenizerJsonAndGenerationConfig) {
  const std::string dir = CopyFixture("hf_files");
  Write(dir + "/tokenizer.json", SmallTokenizer(/*end_id=*/6));
  Write(dir + "/tokenizer_config.json", {{"bos_token", "<s>"}, {"eos_token", "<|end|>"}});
  Write(dir + "/generation_config.json",
        {{"eos_token_id", {2, 7}}, {"temperature", 0.6}, {"top_p", 0.9}, {"top_k", 20}});
  absl::StatusOr<LoadedModel> loaded = LoadModelDirectory(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  absl::StatusOr<std::vector<int32_t>> ids = loaded->tokenizer->Encode("abab a");
  ASSERT_TRUE(ids.ok()) << ids.status();
  // BOS from the post-processor, "ab" merged, the space has no token: <unk>.
  EXPECT_THAT(*ids, ElementsAre(1, 5, 5, 0, 3));
  EXPECT_TRUE(loaded->tokenizer->IsSpecial(6));
  // config.json's EOS first, then generation_config's new one, then tokenizer_config's.
  EXPECT_THAT(loaded->model->config().eos_token_ids, ElementsAre(2, 7, 6));
  EXPECT_EQ(loaded->generation.temperature, 0.6);
  EXPECT_EQ(loaded->generation.top_k, 20);
}

TEST(ModelLoaderTest, WithoutTokenizerJsonServesTheByteTokenizer) {
  const std::string dir = CopyFixture("bytes");
  absl::StatusOr<LoadedModel> loaded = LoadModelDirectory(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT(loaded->tokenizer->name(), HasSubstr("byte-level"));
  EXPECT_THAT(loaded->model->config().eos_token_ids, ElementsAre(2));
}

TEST(ModelLoaderTest, RejectsATokenizerWithIdsBeyondTheModelsVocabulary) {
  const std::string dir = CopyFixture("big_vocab");
  Write(dir + "/tokenizer.json", SmallTokenizer(/*end_id=*/64));
  absl::StatusOr<LoadedModel> loaded = LoadModelDirectory(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(),
              HasSubstr("tokenizer.json has ids up to 64 but config.json's vocab_size is 64"));
}

TEST(ModelLoaderTest, NamesTheFileAndPathOfAMalformedTokenizer) {
  const std::string dir = CopyFixture("bad_tokenizer");
  json tokenizer = SmallTokenizer(6);
  tokenizer["model"]["merges"] = {"a zz"};
  Write(dir + "/tokenizer.json", tokenizer);
  absl::StatusOr<LoadedModel> loaded = LoadModelDirectory(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr(dir + "/tokenizer.json: model.merges[0]"));
}

TEST(ModelLoaderTest, RejectsAnEosIdOutsideTheVocabularyInGenerationConfig) {
  const std::string dir = CopyFixture("bad_eos");
  Write(dir + "/generation_config.json", {{"eos_token_id", {2, 99}}});
  absl::StatusOr<LoadedModel> loaded = LoadModelDirectory(dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.status().message(), HasSubstr("eos_token_id 99 is outside [0, 64)"));
}

}  // namespace
}  // namespace kvserve::engine
