// WeightSource: how layers get their weights, whoever provides them (a checkpoint on disk, or the
// seeded random generator of the embedded default model).
#ifndef KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_
#define KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

// Supplies the tensor `name` as row-major f32 of exactly `shape`, or an error naming it.
using WeightSource = std::function<absl::StatusOr<std::vector<float>>(
    const std::string& name, const std::vector<int64_t>& shape)>;

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_
