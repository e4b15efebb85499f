// LoadModelDirectory with the files a real Hugging Face directory has besides the weights:
// tokenizer.json / tokenizer_config.json and generation_config.json.
#include "engine/model/model_loader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/text/json_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/safetensors_writer.h"

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

// Malformed model directories (issue #18): each is refused with a message naming the file, key or
// tensor, and none crashes, hangs or grows memory without bound.

// Rewrites the copied fixture's model.safetensors: `edit` may change, add or drop tensors.
void EditCheckpoint(const std::string& dir,
                    const std::function<void(std::vector<TensorToWrite>&)>& edit) {
  const std::string path = dir + "/model.safetensors";
  std::vector<TensorToWrite> tensors;
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    for (const TensorView& t : (*file)->tensors()) {
      tensors.push_back({t.name, t.dtype, t.shape,
                         std::string(reinterpret_cast<const char*>(t.data), t.num_bytes)});
    }
  }
  edit(tensors);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << SerializeSafetensors(tensors);
}

TensorToWrite* FindTensor(std::vector<TensorToWrite>& tensors, const std::string& name) {
  for (TensorToWrite& t : tensors) {
    if (t.name == name) return &t;
  }
  ADD_FAILURE() << "fixture has no tensor " << name;
  return &tensors.front();
}

absl::Status LoadStatus(const std::string& dir) { return LoadModelDirectory(dir).status(); }

TEST(ModelLoaderTest, RefusesConfigJsonThatIsADeviceOrAFifoWithoutReadingIt) {
  const std::string dir = CopyFixture("config_device");
  std::filesystem::remove(dir + "/config.json");
  std::filesystem::create_symlink("/dev/zero", dir + "/config.json");
  absl::Status status = LoadStatus(dir);  // /dev/zero never ends: this used to grow unbounded
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("config.json: not a regular file (a character device)"));

  std::filesystem::remove(dir + "/config.json");
  ASSERT_EQ(::mkfifo((dir + "/config.json").c_str(), 0600), 0) << std::strerror(errno);
  status = LoadStatus(dir);  // opening a FIFO with no writer used to block forever
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("config.json: not a regular file (a FIFO)"));
}

TEST(ModelLoaderTest, RefusesEveryOtherModelFileThatIsNotARegularFile) {
  for (const char* file : {"model.safetensors", "tokenizer.json", "generation_config.json"}) {
    SCOPED_TRACE(file);
    const std::string dir = CopyFixture(absl::StrCat("fifo_", file));
    std::filesystem::remove(dir + "/" + file);
    ASSERT_EQ(::mkfifo((dir + "/" + file).c_str(), 0600), 0) << std::strerror(errno);
    const absl::Status status = LoadStatus(dir);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(file, ": not a regular file (a FIFO)")));
  }
}

TEST(ModelLoaderTest, RefusesAConfigJsonLargerThanTheCapBeforeReadingIt) {
  const std::string dir = CopyFixture("config_huge");
  // Sparse: the size is what is checked, so the test writes nothing.
  ASSERT_EQ(::truncate((dir + "/config.json").c_str(), kMaxJsonFileBytes + 1), 0);
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("config.json: ", kMaxJsonFileBytes + 1,
                                     " bytes, more than the ", kMaxJsonFileBytes, " bytes")));
}

TEST(ModelLoaderTest, RefusesANonFiniteWeightNamingTheTensor) {
  // The fixture is BF16: NaN and -inf as bf16 bit patterns.
  for (const auto& [bits, shown] : {std::pair<uint16_t, const char*>{0x7FC0, "nan"},
                                    std::pair<uint16_t, const char*>{0xFF80, "-inf"}}) {
    SCOPED_TRACE(shown);
    const std::string dir = CopyFixture("nonfinite");
    // A norm: vectors are widened to f32, so no bf16 matrix packing would have caught it.
    EditCheckpoint(dir, [bits = bits](std::vector<TensorToWrite>& tensors) {
      TensorToWrite* norm = FindTensor(tensors, "model.layers.1.post_attention_layernorm.weight");
      ASSERT_EQ(norm->dtype, DType::kBF16);
      std::memcpy(norm->bytes.data() + 3 * sizeof(uint16_t), &bits, sizeof(uint16_t));
    });
    const absl::Status status = LoadStatus(dir);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(),
                HasSubstr(absl::StrCat("tensor 'model.layers.1.post_attention_layernorm.weight' "
                                       "holds ",
                                       shown, " at element 3")));
  }
}

TEST(ModelLoaderTest, RefusesTensorsTheConfigDoesNotDescribe) {
  const std::string dir = CopyFixture("extra_tensor");
  EditCheckpoint(dir, [](std::vector<TensorToWrite>& tensors) {
    tensors.push_back({"model.mystery.weight", DType::kF32, {2}, std::string(8, '\0')});
  });
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("checkpoint has 1 tensor(s) the model described by config.json does not "
                        "use: 'model.mystery.weight'"));
}

TEST(ModelLoaderTest, IgnoresOnlyTheDerivedRotaryBuffer) {
  const std::string dir = CopyFixture("inv_freq");
  EditCheckpoint(dir, [](std::vector<TensorToWrite>& tensors) {
    tensors.push_back(
        {"model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {2}, std::string(8, '\0')});
  });
  EXPECT_TRUE(LoadStatus(dir).ok());
}

TEST(ModelLoaderTest, RefusesACheckpointWithMoreLayersThanTheConfig) {
  const std::string dir = CopyFixture("more_layers");
  EditCheckpoint(dir, [](std::vector<TensorToWrite>& tensors) {
    TensorToWrite copy = *FindTensor(tensors, "model.layers.1.input_layernorm.weight");
    copy.name = "model.layers.2.input_layernorm.weight";
    tensors.push_back(copy);
  });
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("checkpoint has tensor 'model.layers.2.input_layernorm.weight' of layer 2 "
                        "but config.json's num_hidden_layers is 2"));
}

TEST(ModelLoaderTest, RefusesAnEosIdBeyondInt32InsteadOfTruncatingIt) {
  const std::string dir = CopyFixture("eos_2p40");
  json config = json::parse(std::ifstream(dir + "/config.json"));
  config["eos_token_id"] = int64_t{1} << 40;  // its low 32 bits are 0, a valid id
  Write(dir + "/config.json", config);
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              HasSubstr("'eos_token_id' must be a 32-bit integer, got 1099511627776"));
}

TEST(ModelLoaderTest, RefusesAModelThatCannotFitBeforeReadingAnyTensor) {
  const std::string dir = CopyFixture("too_big");
  json config = json::parse(std::ifstream(dir + "/config.json"));
  // 2^31-1 x 2^20 embedding and head: 2^53 bytes as f32, beyond any machine's memory.
  config["vocab_size"] = 2147483647;
  config["hidden_size"] = 1 << 20;
  config["num_attention_heads"] = 1 << 16;
  config["num_key_value_heads"] = 1 << 15;
  Write(dir + "/config.json", config);
  const absl::Status status = LoadStatus(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("bytes of memory are available"));
}

}  // namespace
}  // namespace kvserve::engine
