// A small safetensors writer for tests: builds checkpoint files byte for byte in the layout
// engine/checkpoint/safetensors.h reads (and docs/model-format.md specifies).
#ifndef KVSERVE_TESTS_TESTING_SAFETENSORS_WRITER_H_
#define KVSERVE_TESTS_TESTING_SAFETENSORS_WRITER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"

namespace kvserve::engine {

// One tensor for SerializeSafetensors. `bytes` holds the row-major little-endian elements.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Returns the bytes of a safetensors file holding `tensors` (laid out in the given order) and, when
// non-empty, `metadata`. The header is space-padded to a multiple of 8 bytes so the data buffer
// starts 8-byte aligned, as other writers do.
// REQUIRES: names are unique, valid UTF-8 and not "__metadata__"; metadata is valid UTF-8; every
// dimension is non-negative; bytes.size() == product(shape) * DTypeSize(dtype). Checked (aborts).
std::string SerializeSafetensors(const std::vector<TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata = {});

}  // namespace kvserve::engine

#endif  // KVSERVE_TESTS_TESTING_SAFETENSORS_WRITER_H_
