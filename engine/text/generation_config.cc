#include "engine/text/generation_config.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/text/json_reader.h"

namespace kvserve::engine {
namespace {

constexpr char kFile[] = "generation_config.json";

absl::StatusOr<int32_t> TokenId(const JsonReader& value) {
  KV_ASSIGN_OR_RETURN(int64_t id, value.Int());
  if (id < 0 || id > INT32_MAX) return value.Error("token id out of range");
  return static_cast<int32_t>(id);
}

absl::StatusOr<GenerationConfig> Parse(const nlohmann::json& json) {
  const JsonReader root(json, kFile);
  KV_RETURN_IF_ERROR(root.ExpectObject());
  GenerationConfig config;
  const JsonReader eos = root["eos_token_id"];
  if (eos.is_array()) {
    for (size_t i = 0; i < eos.size(); ++i) {
      KV_ASSIGN_OR_RETURN(int32_t id, TokenId(eos[i]));
      config.eos_token_ids.push_back(id);
    }
  } else if (!eos.is_null()) {
    KV_ASSIGN_OR_RETURN(int32_t id, TokenId(eos));
    config.eos_token_ids.push_back(id);
  }
  if (root.Has("bos_token_id")) {
    KV_ASSIGN_OR_RETURN(config.bos_token_id, TokenId(root["bos_token_id"]));
  }
  if (root.Has("temperature")) {
    KV_ASSIGN_OR_RETURN(config.temperature, root["temperature"].Number());
  }
  if (root.Has("top_p")) {
    KV_ASSIGN_OR_RETURN(config.top_p, root["top_p"].Number());
  }
  if (root.Has("top_k")) {
    KV_ASSIGN_OR_RETURN(int64_t top_k, root["top_k"].Int());
    if (top_k < 0 || top_k > INT32_MAX) return root["top_k"].Error("out of range");
    config.top_k = static_cast<int32_t>(top_k);
  }
  if (root.Has("repetition_penalty")) {
    KV_ASSIGN_OR_RETURN(config.repetition_penalty, root["repetition_penalty"].Number());
  }
  if (root.Has("do_sample")) {
    KV_ASSIGN_OR_RETURN(config.do_sample, root["do_sample"].Bool());
  }
  return config;
}

}  // namespace

absl::StatusOr<GenerationConfig> GenerationConfig::Load(const std::string& dir) {
  KV_ASSIGN_OR_RETURN(nlohmann::json json, ParseJsonFile(absl::StrCat(dir, "/", kFile), kFile));
  return Parse(json);
}

absl::StatusOr<GenerationConfig> GenerationConfig::FromJson(std::string_view text) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(kFile, ": not valid JSON: ", e.what()));
  }
  return Parse(json);
}

}  // namespace kvserve::engine
