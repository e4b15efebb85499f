#include "engine/checkpoint/weight_source.h"

namespace kvserve::engine {

std::string_view WeightDTypeName(WeightDType dtype) {
  switch (dtype) {
    case WeightDType::kAuto:
      return "auto";
    case WeightDType::kF32:
      return "f32";
    case WeightDType::kBf16:
      return "bf16";
    case WeightDType::kInt8:
      return "int8";
  }
  return "?";
}

std::optional<WeightDType> ParseWeightDType(std::string_view name) {
  for (WeightDType d :
       {WeightDType::kAuto, WeightDType::kF32, WeightDType::kBf16, WeightDType::kInt8}) {
    if (name == WeightDTypeName(d)) return d;
  }
  return std::nullopt;
}

}  // namespace kvserve::engine
