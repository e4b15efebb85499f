#include "server/model_registry.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "engine/model/model_loader.h"
#include "server/status_map.h"

namespace kvserve::server {

ModelSpec ParseModelSpec(std::string_view flag_value) {
  ModelSpec spec;
  const size_t eq = flag_value.find('=');
  if (eq != std::string_view::npos) {
    spec.name = std::string(flag_value.substr(0, eq));
    spec.dir = std::string(flag_value.substr(eq + 1));
  } else {
    spec.dir = std::string(flag_value);
  }
  if (spec.name.empty() && !spec.dir.empty()) {
    std::filesystem::path p = std::filesystem::path(spec.dir).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();
    spec.name = p.filename().string();
  }
  return spec;
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Create(
    const std::vector<ModelSpec>& specs, const engine::EngineOptions& options,
    const ObserverFactory& make_observer) {
  std::vector<ModelSpec> to_load = specs;
  if (to_load.empty()) to_load.push_back(ModelSpec{});
  auto registry = std::make_unique<ModelRegistry>();
  for (const ModelSpec& spec : to_load) {
    engine::LoadedModel loaded;
    std::string name = spec.name;
    if (spec.dir.empty()) {
      KV_ASSIGN_OR_RETURN(
          loaded, engine::CreateRandomModel(engine::DefaultModelConfig(), engine::kDefaultModelSeed,
                                            spec.weight_dtype));
      if (name.empty()) name = engine::kDefaultModelName;
    } else {
      KV_ASSIGN_OR_RETURN(loaded, engine::LoadModelDirectory(spec.dir, spec.weight_dtype));
    }
    for (const auto& e : registry->engines_) {
      if (e->info().name == name) {
        return absl::InvalidArgumentError(
            absl::StrCat("--model: two models are named '", name, "'; use NAME=DIR to rename one"));
      }
    }
    engine::EngineOptions engine_options = options;
    if (make_observer) engine_options.observer = make_observer(name, loaded.model->config());
    KV_ASSIGN_OR_RETURN(auto engine,
                        engine::Engine::Create(name, std::move(loaded), engine_options));
    const engine::ModelInfo& info = engine->info();
    KV_LOG(INFO) << "model '" << info.name << "': " << info.config.architecture << " "
                 << info.config.AttentionKind() << ", " << info.num_parameters << " parameters, "
                 << info.weight_dtype << " weights " << info.weight_bytes / (1 << 20) << " MiB ("
                 << info.weight_bytes << " bytes), " << info.kv_cache_bytes_per_token << " "
                 << cache::KvDtypeName(info.kv_cache_dtype) << " KV bytes/token, from "
                 << info.source << "; KV cache " << info.kv_cache_bytes / (1 << 20)
                 << " MiB = " << info.kv_cache_blocks << " blocks of " << info.block_size
                 << " tokens";
    registry->engines_.push_back(std::move(engine));
  }
  return registry;
}

absl::StatusOr<engine::Engine*> ModelRegistry::Find(std::string_view name) const {
  if (name.empty()) return engines_.front().get();
  std::vector<std::string> names;
  for (const auto& e : engines_) {
    if (e->info().name == name) return e.get();
    names.push_back(e->info().name);
  }
  return absl::NotFoundError(absl::StrCat("model: no model named '", QuoteClientText(name),
                                          "'; available: ", absl::StrJoin(names, ", ")));
}

void ModelRegistry::Shutdown() {
  for (auto& e : engines_) e->Shutdown();
}

}  // namespace kvserve::server
