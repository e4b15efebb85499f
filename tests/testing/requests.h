// Generation requests that engine tests build over and over.
#ifndef KVSERVE_TESTS_TESTING_REQUESTS_H_
#define KVSERVE_TESTS_TESTING_REQUESTS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/request.h"

namespace kvserve::testing {

// Greedy (temperature 0), exactly max_tokens tokens (EOS ignored), optionally salted.
inline engine::GenerationRequest GreedyRequest(std::vector<int32_t> prompt, int32_t max_tokens,
                                               std::string cache_salt = "") {
  engine::GenerationRequest r;
  r.prompt_token_ids = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  r.cache_salt = std::move(cache_salt);
  return r;
}

}  // namespace kvserve::testing

#endif  // KVSERVE_TESTS_TESTING_REQUESTS_H_
