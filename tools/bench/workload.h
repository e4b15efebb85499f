// Workloads: the prompts and output lengths a benchmark sends, built up front so that nothing is
// generated on the request path.
//
//   random             prompts of random printable ASCII (0x20..0x7e); lengths drawn uniformly
//                      from [len * (1 - range_ratio), len * (1 + range_ratio)], at least 1.
//   prefix-repetition  num_prefixes random prefixes of prefix_len bytes; request i uses prefix
//                      i % num_prefixes followed by a unique random suffix of suffix_len bytes, so
//                      all but the first request per prefix can hit the server's prefix cache.
//   chat               conversations for the Chat RPC (the model's chat template, or
//                      --chat-template): request i has chat_turns user turns of random printable
//                      text of input_len bytes each, with the assistant turns between them
//                      holding output_len random bytes, as a client that keeps its history sends.
//                      Its prompt length is what the template renders, so the server's usage
//                      counts replace the byte estimate.
//   jsonl              one JSON object per line, {"prompt": "...", "max_tokens": N}; max_tokens
//                      is optional (default: output_len). Lines are used in order and reused from
//                      the top when more requests than lines are asked for. Blank lines are
//                      skipped.
//
// Lengths are in bytes. kvserve's models use the byte-level tokenizer, so a prompt of L bytes is
// L tokens plus the tokenizer's special tokens (BOS for the default model); the runner asks the
// server how many (runner.h). Every request is sent with ignore_eos and max_tokens = its output
// length, so output lengths are exact.
//
// Deterministic for a given seed. Thread-compatible.
#ifndef KVSERVE_TOOLS_BENCH_WORKLOAD_H_
#define KVSERVE_TOOLS_BENCH_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvserve::bench {

enum class WorkloadKind { kRandom, kPrefixRepetition, kChat, kJsonl };

// "random", "prefix-repetition", "chat", "jsonl".
absl::StatusOr<WorkloadKind> ParseWorkloadKind(absl::string_view name);
const char* WorkloadKindName(WorkloadKind kind);

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kRandom;
  uint64_t seed = 0;
  // random
  int64_t input_len = 64;
  int64_t output_len = 64;   // also the default max_tokens of jsonl prompts, and of prefix runs
  double range_ratio = 0.0;  // in [0, 1)
  // prefix-repetition
  int64_t num_prefixes = 4;
  int64_t prefix_len = 256;
  int64_t suffix_len = 32;
  // chat
  int64_t chat_turns = 2;
  std::string chat_template;  // sent as ChatRequest.chat_template; empty = the model's
  // jsonl
  std::string prompts_file;
};

struct BenchMessage {
  std::string role;
  std::string content;
};

struct BenchRequest {
  std::string prompt;  // Generate; empty for chat requests
  int32_t max_tokens = 0;
  std::vector<BenchMessage> messages;  // Chat, when not empty
  std::string chat_template;           // Chat: the request's own template, if any
};

// Fails with InvalidArgument naming the flag for a bad option, NotFound for a missing file, and
// InvalidArgument with the file's line number for a bad jsonl line.
absl::StatusOr<std::vector<BenchRequest>> BuildWorkload(const WorkloadOptions& options,
                                                        int64_t num_requests);

}  // namespace kvserve::bench

#endif  // KVSERVE_TOOLS_BENCH_WORKLOAD_H_
