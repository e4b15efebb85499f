// ModelRegistry: the served models by name, each with its own Engine.
//
// Built once at start-up and immutable afterwards, so lookups need no lock.
#ifndef KVSERVE_SERVER_MODEL_REGISTRY_H_
#define KVSERVE_SERVER_MODEL_REGISTRY_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/checkpoint/weight_source.h"
#include "engine/engine.h"

namespace kvserve::server {

// One --model flag: "DIR", "NAME=DIR", or empty for the embedded default.
struct ModelSpec {
  std::string name;  // empty: the directory's base name
  std::string dir;   // empty: the embedded random-weight default model
  engine::WeightDType weight_dtype = engine::WeightDType::kAuto;  // --weight-dtype
};
// Parses a --model value.
ModelSpec ParseModelSpec(std::string_view flag_value);

class ModelRegistry {
 public:
  // The observer for a model's engine (EngineOptions::observer), given its name and config.
  using ObserverFactory = std::function<std::shared_ptr<engine::EngineObserver>(
      const std::string& name, const engine::ModelConfig& config)>;

  // Loads every model (the embedded default when `specs` is empty) and starts its engine, with an
  // observer from `make_observer` when it is set.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Create(
      const std::vector<ModelSpec>& specs, const engine::EngineOptions& options,
      const ObserverFactory& make_observer = nullptr);

  // The engine serving `name`; the first model for an empty name. NOT_FOUND names the known models.
  absl::StatusOr<engine::Engine*> Find(std::string_view name) const;
  const std::vector<std::unique_ptr<engine::Engine>>& engines() const { return engines_; }
  // Shuts every engine down (unfinished requests end as aborted).
  void Shutdown();

 private:
  std::vector<std::unique_ptr<engine::Engine>> engines_;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_MODEL_REGISTRY_H_
