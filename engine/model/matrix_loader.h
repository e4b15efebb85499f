// MatrixLoader: reads a model's matrices (nn.Linear weights, embedding table, LM head) from a
// WeightSource into the storage WeightOptions asks for (weight_source.h), and tallies what it
// loaded so the model can report its resident bytes.
//
// Peak memory: a BF16 tensor stored as BF16 and kept as bf16 is packed from its bit patterns (one
// 2-byte copy); every other conversion goes through at most one f32 copy of the one tensor being
// loaded, freed before the next.
//
// Thread-safety: not thread-safe; used by one thread during DecoderModel::Create.
#ifndef KVSERVE_ENGINE_MODEL_MATRIX_LOADER_H_
#define KVSERVE_ENGINE_MODEL_MATRIX_LOADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/checkpoint/weight_source.h"
#include "engine/kernels/matmul_weight.h"

namespace kvserve::engine {

class MatrixLoader {
 public:
  // Both must outlive the loader.
  MatrixLoader(const WeightSource& weights, const WeightOptions& options)
      : weights_(weights), options_(options) {}

  // The matrix `name` of shape [n, k]. Errors name the tensor: missing or misshapen, NaN/inf, a
  // value beyond bf16's range (kBf16), an int8 scale that underflows (kInt8).
  absl::StatusOr<MatmulWeight> Load(const std::string& name, int64_t n, int64_t k);

  int64_t num_elements() const { return num_elements_; }  // Σ n·k over loaded matrices
  int64_t num_bytes() const { return num_bytes_; }        // Σ WeightBytes over them
  // The formats used, distinct, in first-use order joined by '+': "bf16", "f32", "bf16+f32".
  const std::string& formats() const { return formats_; }

 private:
  const WeightSource& weights_;
  const WeightOptions& options_;
  int64_t num_elements_ = 0;
  int64_t num_bytes_ = 0;
  std::string formats_;
};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_MODEL_MATRIX_LOADER_H_
