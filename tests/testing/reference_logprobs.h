// The PyTorch reference's log-probabilities for a tests/data fixture: log_softmax, in double, of
// the logits tools/reference/ wrote to expected.safetensors (input_ids [T], logits [T, vocab]). The
// oracle for the scoring path (prompt_logprobs), in engine and server tests alike.
#ifndef KVSERVE_TESTS_TESTING_REFERENCE_LOGPROBS_H_
#define KVSERVE_TESTS_TESTING_REFERENCE_LOGPROBS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/checkpoint/safetensors.h"
#include "gtest/gtest.h"

namespace kvserve::testing {

struct ReferenceLogprobs {
  std::vector<int32_t> input_ids;  // [T]
  int32_t vocab = 0;
  std::vector<double> log_softmax;  // [T, vocab]: row t is the distribution of token t + 1

  // log P(input_ids[i] | input_ids[0..i)), for 1 <= i < T.
  double TokenLogprob(size_t i) const { return log_softmax[(i - 1) * vocab + input_ids[i]]; }
};

// `fixture_dir` holds expected.safetensors. Failures are reported through gtest.
inline ReferenceLogprobs LoadReferenceLogprobs(const std::string& fixture_dir) {
  ReferenceLogprobs ref;
  auto file = engine::SafetensorsFile::Open(fixture_dir + "/expected.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return ref;
  const engine::TensorView* ids = (*file)->Find("input_ids");
  const engine::TensorView* logits = (*file)->Find("logits");
  EXPECT_TRUE(ids != nullptr && logits != nullptr && ids->dtype == engine::DType::kI32);
  if (ids == nullptr || logits == nullptr) return ref;
  ref.input_ids.resize(ids->NumElements());
  std::memcpy(ref.input_ids.data(), ids->data, ids->num_bytes);
  std::vector<float> raw(logits->NumElements());
  EXPECT_TRUE(engine::ConvertToFloat(*logits, absl::MakeSpan(raw)).ok());
  ref.vocab = static_cast<int32_t>(raw.size() / std::max<size_t>(1, ref.input_ids.size()));
  ref.log_softmax.resize(raw.size());
  for (size_t t = 0; t < ref.input_ids.size(); ++t) {
    const float* row = &raw[t * ref.vocab];
    const double max = *std::max_element(row, row + ref.vocab);
    double sum = 0;
    for (int32_t v = 0; v < ref.vocab; ++v) sum += std::exp(row[v] - max);
    const double log_sum = std::log(sum);
    for (int32_t v = 0; v < ref.vocab; ++v) {
      ref.log_softmax[t * ref.vocab + v] = (row[v] - max) - log_sum;
    }
  }
  return ref;
}

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_REFERENCE_LOGPROBS_H_
