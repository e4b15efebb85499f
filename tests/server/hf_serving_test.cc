// End-to-end serving with real Hugging Face tokenizer files: an in-process KvServer on
// 127.0.0.1:0 serves two random-weight models whose directories carry the real Qwen3 and
// Llama 3.2 tokenizer.json + tokenizer_config.json, and what it reports over gRPC must equal the
// JavaScript references (@huggingface/tokenizers, @huggingface/jinja):
//   - Generate: the prompt ids the server used (return_prompt_token_ids) = encode(prompt), with
//     add_special_tokens true and false;
//   - Chat: the prompt ids = encode(render(messages), add_special_tokens=false), with exactly one
//     BOS where the model has one (Llama 3.2's template writes <|begin_of_text|> itself);
//   - Detokenize: = decode(ids, skip_special_tokens) on ids holding special tokens.
// The references are computed by hf_serving/expected.mjs; run through
// tests/server/hf_serving/check_hf_serving.sh (ctest `hf_serving`), which sets
//   KVSERVE_HF_SERVING_EXPECTED      expected.json
//   KVSERVE_HF_SERVING_NODE_MODULES  the node_modules directory holding the tokenizer packages.
// Run alone without them, every test is skipped.
//
// The weights are seeded random numbers (a fixture, not a trained model): the generated tokens are
// noise and nothing here looks at them; only the prompt side is compared. Request validation and
// chat errors (bad role, no template) are kvserve_server_test's.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/kvserve_server.h"
#include "tests/testing/safetensors_writer.h"

namespace kvserve::server {
namespace {

namespace fs = std::filesystem;
namespace pb = ::kvserve::v1;
using nlohmann::json;

constexpr std::chrono::seconds kCallTimeout(120);
// The fixture's shape: tiny, except for the real tokenizers' vocabularies.
constexpr int kHidden = 32;
constexpr int kHeads = 4;
constexpr int kKvHeads = 2;
constexpr int kHeadDim = 16;  // heads * head_dim != hidden, as in Qwen3
constexpr int kLayers = 2;
constexpr int kIntermediate = 64;
constexpr uint64_t kWeightSeed = 20261205;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

std::vector<int32_t> Ids(const json& j) { return j.get<std::vector<int32_t>>(); }

template <typename Repeated>
std::vector<int32_t> Ids(const Repeated& r) {
  return std::vector<int32_t>(r.begin(), r.end());
}

// "got" vs "want" from their first difference, with a few ids of context.
std::string IdDiff(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  const size_t from = i < 3 ? 0 : i - 3;
  auto window = [from](const std::vector<int32_t>& ids) {
    const size_t to = std::min(ids.size(), from + 12);
    return absl::StrCat(
        from > 0 ? "... " : "",
        absl::StrJoin(ids.begin() + std::min(from, ids.size()), ids.begin() + to, " "),
        to < ids.size() ? " ..." : "");
  };
  return absl::StrCat("server (", got.size(), " ids) and reference (", want.size(),
                      " ids) first differ at index ", i, "\n  server:    ", window(got),
                      "\n  reference: ", window(want));
}

// Little-endian f32 bytes of `count` seeded uniform values in [-scale, scale].
std::string RandomF32(std::mt19937_64& rng, int64_t count, float scale) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::string bytes(static_cast<size_t>(count) * sizeof(float), '\0');
  for (int64_t i = 0; i < count; ++i) {
    const float v = uniform(rng);
    std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
  }
  return bytes;
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A random-weight model directory with the real tokenizer files of `tokenizer_dir`: a tiny
// decoder with tied embeddings whose vocab_size is the tokenizer's, Qwen3-shaped (head_dim given,
// q_norm/k_norm) or Llama-shaped.
void WriteRandomWeightModel(const fs::path& dir, const fs::path& tokenizer_dir, int32_t vocab_size,
                            const json& eos_id, bool qwen3) {
  fs::create_directories(dir);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(tokenizer_dir / file, dir / file);
  }
  json config = {
      {"architectures", {qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"}},
      {"model_type", qwen3 ? "qwen3" : "llama"},
      {"hidden_act", "silu"},
      {"hidden_size", kHidden},
      {"intermediate_size", kIntermediate},
      {"num_hidden_layers", kLayers},
      {"num_attention_heads", kHeads},
      {"num_key_value_heads", kKvHeads},
      {"head_dim", kHeadDim},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 1000000.0},
      {"tie_word_embeddings", true},
      {"vocab_size", vocab_size},
      {"torch_dtype", "float32"},
  };
  if (!eos_id.is_null()) config["eos_token_id"] = eos_id;
  WriteFile(dir / "config.json", config.dump(2));

  std::mt19937_64 rng(kWeightSeed);
  std::vector<engine::TensorToWrite> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    tensors.push_back({name, engine::DType::kF32, std::move(shape), RandomF32(rng, count, scale)});
  };
  auto add_ones = [&](const std::string& name, int64_t n) {
    std::string bytes(static_cast<size_t>(n) * sizeof(float), '\0');
    const float one = 1.0f;
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(bytes.data() + i * sizeof(float), &one, sizeof(one));
    tensors.push_back({name, engine::DType::kF32, {n}, std::move(bytes)});
  };
  add("model.embed_tokens.weight", {vocab_size, kHidden}, 1.0f);
  for (int i = 0; i < kLayers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add_ones(p + "input_layernorm.weight", kHidden);
    add(p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden}, 0.2f);
    add(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden}, 0.2f);
    add(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden}, 0.2f);
    add(p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim}, 0.2f);
    if (qwen3) {
      add_ones(p + "self_attn.q_norm.weight", kHeadDim);
      add_ones(p + "self_attn.k_norm.weight", kHeadDim);
    }
    add_ones(p + "post_attention_layernorm.weight", kHidden);
    add(p + "mlp.gate_proj.weight", {kIntermediate, kHidden}, 0.2f);
    add(p + "mlp.up_proj.weight", {kIntermediate, kHidden}, 0.2f);
    add(p + "mlp.down_proj.weight", {kHidden, kIntermediate}, 0.2f);
  }
  add_ones("model.norm.weight", kHidden);
  WriteFile(
      dir / "model.safetensors",
      engine::SerializeSafetensors(
          tensors, {{"format", "pt"},
                    {"kvserve_fixture", absl::StrCat("random weights, seed ", kWeightSeed)}}));
}

// One server for the whole suite, serving one model per tokenizer of expected.json, named as there.
class HfServingTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    const std::string expected_path = Env("KVSERVE_HF_SERVING_EXPECTED");
    const std::string node_modules = Env("KVSERVE_HF_SERVING_NODE_MODULES");
    if (expected_path.empty() || node_modules.empty()) return;  // each test skips
    std::ifstream in(expected_path);
    ASSERT_TRUE(in.good()) << "cannot read " << expected_path;
    expected_ = new json(json::parse(in));

    std::string tmpl = (fs::temp_directory_path() / "kvserve-hf-serving.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    model_root_ = new fs::path(tmpl);
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.engine.kv_cache_bytes = 8 << 20;
    options.engine.max_num_seqs = 4;
    for (const json& t : (*expected_)["tokenizers"]) {
      const std::string name = t["name"];
      const fs::path dir = *model_root_ / name;
      ASSERT_NO_FATAL_FAILURE(
          WriteRandomWeightModel(dir, fs::path(node_modules) / t["models_dir"].get<std::string>(),
                                 t["vocab_size"], t["eos_id"],
                                 /*qwen3=*/name.find("qwen3") != std::string::npos));
      options.models.push_back(ModelSpec{name, dir.string()});
    }
    absl::StatusOr<std::unique_ptr<KvServer>> server = KvServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    stub_ = pb::KvServe::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                                     grpc::InsecureChannelCredentials()))
                .release();
  }

  static void TearDownTestSuite() {
    delete stub_;
    delete server_;
    if (model_root_ != nullptr) fs::remove_all(*model_root_);
    delete model_root_;
    delete expected_;
    stub_ = nullptr;
    server_ = nullptr;
    model_root_ = nullptr;
    expected_ = nullptr;
  }

  void SetUp() override {
    if (expected_ == nullptr) {
      GTEST_SKIP() << "KVSERVE_HF_SERVING_EXPECTED / KVSERVE_HF_SERVING_NODE_MODULES unset: run "
                      "tests/server/hf_serving/check_hf_serving.sh BUILD_DIR (ctest hf_serving)";
    }
    ASSERT_NE(server_, nullptr) << "the server did not start (see SetUpTestSuite's failure)";
    for (const json& t : (*expected_)["tokenizers"]) {
      if (t["name"] == GetParam()) tokenizer_ = &t;
    }
    ASSERT_NE(tokenizer_, nullptr) << "expected.json has no tokenizer " << GetParam();
  }

  // Reads a whole Generate or Chat stream and returns its first message's prompt_token_ids;
  // checks the call succeeded and that the ids are what usage.prompt_tokens counts.
  template <typename Request>
  static std::vector<int32_t> PromptIdsUsed(const Request& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader;
    if constexpr (std::is_same_v<Request, pb::ChatRequest>) {
      reader = stub_->Chat(&context, request);
    } else {
      reader = stub_->Generate(&context, request);
    }
    std::vector<pb::GenerateResponse> messages;
    pb::GenerateResponse message;
    while (reader->Read(&message)) messages.push_back(message);
    const grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << "status " << status.error_code() << ": " << status.error_message();
    if (!status.ok() || messages.empty()) return {};
    std::vector<int32_t> ids = Ids(messages.front().prompt_token_ids());
    EXPECT_EQ(messages.back().usage().prompt_tokens(), static_cast<int32_t>(ids.size()));
    return ids;
  }

  static inline json* expected_ = nullptr;
  static inline fs::path* model_root_ = nullptr;
  static inline KvServer* server_ = nullptr;
  static inline pb::KvServe::Stub* stub_ = nullptr;
  const json* tokenizer_ = nullptr;
};

TEST_P(HfServingTest, GenerateUsesThePromptIdsOfTheReferenceEncoder) {
  int checked = 0;
  for (const json& c : (*tokenizer_)["generate"]) {
    const std::string prompt = c["prompt"];
    const bool add_special_tokens = c["add_special_tokens"];
    SCOPED_TRACE(
        absl::StrCat("prompt ", json(prompt).dump(), ", add_special_tokens ", add_special_tokens));
    pb::GenerateRequest request;
    request.set_model(GetParam());
    request.set_prompt(prompt);
    request.set_add_special_tokens(add_special_tokens);
    request.set_return_prompt_token_ids(true);
    request.set_max_tokens(1);
    request.mutable_sampling()->set_temperature(0.0f);
    const std::vector<int32_t> got = PromptIdsUsed(request);
    const std::vector<int32_t> want = Ids(c["ids"]);
    EXPECT_EQ(got, want) << IdDiff(got, want);
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST_P(HfServingTest, ChatUsesTheIdsOfTheReferenceRenderThenEncodeWithOneBos) {
  const json& bos_id = (*tokenizer_)["bos_id"];
  int checked = 0;
  for (const json& c : (*tokenizer_)["chat"]) {
    SCOPED_TRACE(absl::StrCat("conversation '", c["name"].get<std::string>(),
                              "', add_generation_prompt ", c["add_generation_prompt"].dump()));
    pb::ChatRequest request;
    request.set_model(GetParam());
    for (const json& m : c["messages"]) {
      pb::ChatMessage* message = request.add_messages();
      message->set_role(m["role"].get<std::string>());
      message->set_content(m["content"].get<std::string>());
    }
    request.set_add_generation_prompt(c["add_generation_prompt"]);
    request.set_return_prompt_token_ids(true);
    request.set_max_tokens(1);
    request.mutable_sampling()->set_temperature(0.0f);

    // A template that prints the date (Llama 3.2's strftime_now("%d %b %Y")) was rendered by the
    // reference for yesterday, today and tomorrow. The server formats its clock as below when it
    // renders, somewhere inside the call: a call that starts and ends on the same day rendered
    // that day; one that straddles midnight is repeated.
    std::vector<int32_t> got;
    const json* reference = &c;
    for (int attempt = 0;; ++attempt) {
      const std::string before = absl::FormatTime("%d %b %Y", absl::Now(), absl::LocalTimeZone());
      got = PromptIdsUsed(request);
      const std::string after = absl::FormatTime("%d %b %Y", absl::Now(), absl::LocalTimeZone());
      if (!c.contains("by_date")) break;
      if (before == after) {
        ASSERT_TRUE(c["by_date"].contains(before))
            << "expected.json has no rendering for " << before << " (written on another day?)";
        reference = &c["by_date"][before];
        break;
      }
      ASSERT_LT(attempt, 2) << "the call straddled midnight twice";
    }
    const std::vector<int32_t> want = Ids((*reference)["ids"]);
    EXPECT_EQ(got, want) << IdDiff(got, want)
                         << "\n  reference text: " << json((*reference)["text"]).dump();
    if (!bos_id.is_null()) {
      // The template writes the BOS; tokenizing must not add a second one. Message text that
      // spells the BOS token becomes that token too (as in the reference and transformers: added
      // tokens are matched in all text), so those are counted on top of the template's one.
      const std::string bos_token = (*tokenizer_)["bos_token"];
      int64_t spelled = 0;
      for (const json& m : c["messages"]) {
        const std::string content = m["content"];
        for (size_t at = content.find(bos_token); at != std::string::npos;
             at = content.find(bos_token, at + bos_token.size())) {
          ++spelled;
        }
      }
      ASSERT_FALSE(got.empty());
      EXPECT_EQ(got.front(), bos_id.get<int32_t>());
      EXPECT_EQ(std::count(got.begin(), got.end(), bos_id.get<int32_t>()), 1 + spelled);
    }
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST_P(HfServingTest, DetokenizeEqualsTheReferenceDecodeWithAndWithoutSpecialTokens) {
  for (const json& c : (*tokenizer_)["detokenize"]) {
    const bool skip = c["skip_special_tokens"];
    SCOPED_TRACE(absl::StrCat("ids ", c["ids"].dump(), ", skip_special_tokens ", skip));
    pb::DetokenizeRequest request;
    request.set_model(GetParam());
    for (int32_t id : Ids(c["ids"])) request.add_token_ids(id);
    request.set_skip_special_tokens(skip);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    pb::DetokenizeResponse response;
    const grpc::Status status = stub_->Detokenize(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.text(), c["text"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, HfServingTest, ::testing::Values("qwen3", "llama3_2"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace kvserve::server
