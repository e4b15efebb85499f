#include "engine/model/matrix_loader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"

namespace kvserve::engine {

absl::StatusOr<MatmulWeight> MatrixLoader::Load(const std::string& name, int64_t n, int64_t k) {
  StoredDType stored = StoredDType::kF32;
  if (options_.stored_dtype) {
    KV_ASSIGN_OR_RETURN(stored, options_.stored_dtype(name));
  }
  WeightDType dtype = options_.dtype;
  if (dtype == WeightDType::kAuto) {
    dtype = stored == StoredDType::kF32 ? WeightDType::kF32 : WeightDType::kBf16;
  }
  MatmulWeight weight;
  if (dtype == WeightDType::kBf16 && stored == StoredDType::kBf16 && options_.bf16_bits) {
    // As stored: no f32 copy, and no rounding.
    KV_ASSIGN_OR_RETURN(std::vector<uint16_t> bits, options_.bf16_bits(name, {n, k}));
    KV_ASSIGN_OR_RETURN(PackedBf16Weight packed, PackBf16(bits.data(), n, k, name));
    weight = std::move(packed);
  } else {
    KV_ASSIGN_OR_RETURN(std::vector<float> f32, weights_(name, {n, k}));
    const WeightFormat format = dtype == WeightDType::kF32    ? WeightFormat::kF32
                                : dtype == WeightDType::kBf16 ? WeightFormat::kBf16
                                                              : WeightFormat::kInt8Block32;
    KV_ASSIGN_OR_RETURN(weight, PrepareWeight(f32, n, k, format, name));
  }
  num_elements_ += n * k;
  num_bytes_ += WeightBytes(weight);
  const std::string format_name = WeightFormatName(weight);
  bool seen = false;
  for (absl::string_view f : absl::StrSplit(formats_, '+', absl::SkipEmpty())) {
    seen = seen || f == format_name;
  }
  if (!seen) formats_ = formats_.empty() ? format_name : absl::StrCat(formats_, "+", format_name);
  return weight;
}

}  // namespace kvserve::engine
