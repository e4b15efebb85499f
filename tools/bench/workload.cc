#include "tools/bench/workload.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace kvserve::bench {
namespace {

// The engine's limits are per model; this only keeps one request's max_tokens inside the proto's
// int32 and prompts to a sane size, so a typo does not allocate gigabytes.
constexpr int64_t kMaxLength = 1 << 20;

std::string RandomPrintable(std::mt19937_64& rng, int64_t length) {
  std::uniform_int_distribution<int> byte(0x20, 0x7e);
  std::string s(static_cast<size_t>(length), ' ');
  for (char& c : s) c = static_cast<char>(byte(rng));
  return s;
}

absl::Status CheckLength(const char* flag, int64_t value, int64_t min) {
  if (value < min || value > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be in [", min, ", ", kMaxLength, "], got ", value));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<BenchRequest>> BuildRandom(const WorkloadOptions& o, int64_t n) {
  if (absl::Status s = CheckLength("input-len", o.input_len, 1); !s.ok()) return s;
  if (absl::Status s = CheckLength("output-len", o.output_len, 1); !s.ok()) return s;
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--range-ratio must be in [0, 1), got ", o.range_ratio));
  }
  std::mt19937_64 rng(o.seed);
  auto range = [&](int64_t len) {
    const int64_t lo = std::max<int64_t>(1, std::llround(len * (1 - o.range_ratio)));
    const int64_t hi = std::max<int64_t>(lo, std::llround(len * (1 + o.range_ratio)));
    return std::uniform_int_distribution<int64_t>(lo, hi);
  };
  auto input = range(o.input_len);
  auto output = range(o.output_len);
  std::vector<BenchRequest> requests;
  requests.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t in = input(rng);
    const int64_t out = output(rng);
    requests.push_back({RandomPrintable(rng, in), static_cast<int32_t>(out), {}, {}});
  }
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> BuildPrefixRepetition(const WorkloadOptions& o,
                                                                int64_t n) {
  if (absl::Status s = CheckLength("num-prefixes", o.num_prefixes, 1); !s.ok()) return s;
  if (absl::Status s = CheckLength("prefix-len", o.prefix_len, 1); !s.ok()) return s;
  if (absl::Status s = CheckLength("suffix-len", o.suffix_len, 0); !s.ok()) return s;
  if (absl::Status s = CheckLength("output-len", o.output_len, 1); !s.ok()) return s;
  std::mt19937_64 rng(o.seed);
  std::vector<std::string> prefixes;
  for (int64_t k = 0; k < o.num_prefixes; ++k)
    prefixes.push_back(RandomPrintable(rng, o.prefix_len));
  std::vector<BenchRequest> requests;
  requests.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    requests.push_back(
        {prefixes[static_cast<size_t>(i % o.num_prefixes)] + RandomPrintable(rng, o.suffix_len),
         static_cast<int32_t>(o.output_len),
         {},
         {}});
  }
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> BuildChat(const WorkloadOptions& o, int64_t n) {
  if (absl::Status s = CheckLength("input-len", o.input_len, 1); !s.ok()) return s;
  if (absl::Status s = CheckLength("output-len", o.output_len, 1); !s.ok()) return s;
  if (o.chat_turns < 1 || o.chat_turns > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chat-turns must be in [1, 64], got ", o.chat_turns));
  }
  std::mt19937_64 rng(o.seed);
  std::vector<BenchRequest> requests;
  requests.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    BenchRequest request;
    request.max_tokens = static_cast<int32_t>(o.output_len);
    request.chat_template = o.chat_template;
    for (int64_t t = 0; t < o.chat_turns; ++t) {
      if (t > 0) request.messages.push_back({"assistant", RandomPrintable(rng, o.output_len)});
      request.messages.push_back({"user", RandomPrintable(rng, o.input_len)});
    }
    requests.push_back(std::move(request));
  }
  return requests;
}

absl::StatusOr<std::vector<BenchRequest>> BuildJsonl(const WorkloadOptions& o, int64_t n) {
  if (o.prompts_file.empty()) {
    return absl::InvalidArgumentError("--workload=jsonl needs --prompts-file");
  }
  if (absl::Status s = CheckLength("output-len", o.output_len, 1); !s.ok()) return s;
  std::ifstream in(o.prompts_file);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompts-file: cannot open ", o.prompts_file));
  std::vector<BenchRequest> lines;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompts-file ", o.prompts_file, " line ", number, ": ", why));
    };
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
    const auto prompt = j.find("prompt");
    if (prompt == j.end() || !prompt->is_string() || prompt->get<std::string>().empty()) {
      return bad("needs a non-empty string \"prompt\"");
    }
    BenchRequest request{prompt->get<std::string>(), static_cast<int32_t>(o.output_len), {}, {}};
    if (const auto max_tokens = j.find("max_tokens"); max_tokens != j.end()) {
      if (!max_tokens->is_number_integer() || max_tokens->get<int64_t>() < 1 ||
          max_tokens->get<int64_t>() > kMaxLength) {
        return bad(absl::StrCat("\"max_tokens\" must be an integer in [1, ", kMaxLength, "]"));
      }
      request.max_tokens = static_cast<int32_t>(max_tokens->get<int64_t>());
    }
    lines.push_back(std::move(request));
  }
  if (lines.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--prompts-file ", o.prompts_file, " is empty"));
  }
  std::vector<BenchRequest> requests;
  requests.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) requests.push_back(lines[static_cast<size_t>(i) % lines.size()]);
  return requests;
}

}  // namespace

absl::StatusOr<WorkloadKind> ParseWorkloadKind(absl::string_view name) {
  if (name == "random") return WorkloadKind::kRandom;
  if (name == "prefix-repetition") return WorkloadKind::kPrefixRepetition;
  if (name == "chat") return WorkloadKind::kChat;
  if (name == "jsonl") return WorkloadKind::kJsonl;
  return absl::InvalidArgumentError(absl::StrCat(
      "--workload must be random, prefix-repetition, chat or jsonl, got '", name, "'"));
}

const char* WorkloadKindName(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kRandom:
      return "random";
    case WorkloadKind::kPrefixRepetition:
      return "prefix-repetition";
    case WorkloadKind::kChat:
      return "chat";
    case WorkloadKind::kJsonl:
      return "jsonl";
  }
  return "unknown";
}

absl::StatusOr<std::vector<BenchRequest>> BuildWorkload(const WorkloadOptions& options,
                                                        int64_t num_requests) {
  if (num_requests < 1 || num_requests > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--num-requests must be in [1, ", int64_t{1} << 24, "], got ", num_requests));
  }
  switch (options.kind) {
    case WorkloadKind::kRandom:
      return BuildRandom(options, num_requests);
    case WorkloadKind::kPrefixRepetition:
      return BuildPrefixRepetition(options, num_requests);
    case WorkloadKind::kChat:
      return BuildChat(options, num_requests);
    case WorkloadKind::kJsonl:
      return BuildJsonl(options, num_requests);
  }
  return absl::InvalidArgumentError("unknown workload");
}

}  // namespace kvserve::bench
