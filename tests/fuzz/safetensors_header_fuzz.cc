// libFuzzer target: a whole safetensors file from untrusted bytes (scripts/fuzz.sh). Whatever the
// bytes, FromBytes returns a status; every view it accepts must lie inside the file, which
// ConvertToFloat then reads end to end (ASan reports any read past it).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kvserve::engine::DType;
  auto file = kvserve::engine::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const kvserve::engine::TensorView& t : (*file)->tensors()) {
    if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) continue;
    std::vector<float> out(t.NumElements());
    (void)kvserve::engine::ConvertToFloat(t, absl::MakeSpan(out));
  }
  return 0;
}
