// WeightSource: how layers get their weights, whoever provides them (a checkpoint on disk, or the
// seeded random generator of the embedded default model), and WeightOptions: the precision the
// model keeps its matrices in, and how a 16-bit checkpoint hands them over without widening.
#ifndef KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_
#define KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvserve::engine {

// Supplies the tensor `name` as row-major f32 of exactly `shape`, or an error naming it.
using WeightSource = std::function<absl::StatusOr<std::vector<float>>(
    const std::string& name, const std::vector<int64_t>& shape)>;

// The storage of the model's matrices (every nn.Linear weight, the embedding table and the LM
// head); norms and S4 parameters always stay f32.
//   kAuto  the tensor's own precision: F32 → f32; BF16 → bf16; F16 → bf16 (same bytes, wider
//          range; F16's 3 extra mantissa bits are rounded away)
//   kF32   every matrix widened to f32 (exact for F16 and BF16)
//   kBf16  bf16 (F32 and F16 rounded to nearest even; a value beyond bf16's range fails the load)
//   kInt8  int8, one f32 scale per output channel and block of 32 inputs (int8_matmul.h)
enum class WeightDType { kAuto, kF32, kBf16, kInt8 };

// "auto", "f32", "bf16", "int8".
std::string_view WeightDTypeName(WeightDType dtype);
// Inverse of WeightDTypeName; nullopt for anything else.
std::optional<WeightDType> ParseWeightDType(std::string_view name);

// The precision a source stores a tensor in.
enum class StoredDType { kF32, kF16, kBf16 };

struct WeightOptions {
  WeightDType dtype = WeightDType::kAuto;
  // The stored precision of tensor `name`; null = every tensor is f32 (the random model).
  std::function<absl::StatusOr<StoredDType>(const std::string& name)> stored_dtype;
  // A BF16 tensor's bit patterns as stored, row-major of exactly `shape`, so that a bf16 matrix
  // is packed without an f32 copy; null = BF16 tensors are read through the WeightSource.
  std::function<absl::StatusOr<std::vector<uint16_t>>(const std::string& name,
                                                      const std::vector<int64_t>& shape)>
      bf16_bits;
  // The memory the model may occupy; nullopt = base::AvailableMemoryBytes() when Create runs (the
  // smaller of the host's MemAvailable and the cgroup limit). Tests set it to stay independent of
  // the machine.
  std::optional<int64_t> available_memory_bytes;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_CHECKPOINT_WEIGHT_SOURCE_H_
