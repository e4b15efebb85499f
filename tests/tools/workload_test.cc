// kvserve-bench workloads: random prompts of the asked lengths, prefix repetition with shared
// prefixes and unique suffixes, JSONL files, determinism per seed, and option errors.
#include "tools/bench/workload.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::bench {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSeed = 7;

bool Printable(const std::string& s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string WriteTempFile(const std::string& contents) {
  std::string path = absl::StrCat(::testing::TempDir(), "/prompts_", getpid(), "_",
                                  ::testing::UnitTest::GetInstance()->random_seed(), ".jsonl");
  std::ofstream(path) << contents;
  return path;
}

TEST(WorkloadTest, RandomPromptsHaveExactLengthsWithoutRange) {
  WorkloadOptions o;
  o.seed = kSeed;
  o.input_len = 64;
  o.output_len = 16;
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 50);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 50u);
  std::set<std::string> distinct;
  for (const BenchRequest& b : *r) {
    EXPECT_EQ(b.prompt.size(), 64u);
    EXPECT_EQ(b.max_tokens, 16);
    EXPECT_TRUE(Printable(b.prompt)) << b.prompt;
    distinct.insert(b.prompt);
  }
  EXPECT_EQ(distinct.size(), 50u);
}

TEST(WorkloadTest, RandomLengthsStayInTheRangeAndAreSeeded) {
  SCOPED_TRACE(absl::StrCat("seed ", kSeed));
  WorkloadOptions o;
  o.seed = kSeed;
  o.input_len = 100;
  o.output_len = 10;
  o.range_ratio = 0.5;
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 400);
  ASSERT_TRUE(r.ok()) << r.status();
  std::set<size_t> input_lengths;
  std::set<int32_t> output_lengths;
  for (const BenchRequest& b : *r) {
    EXPECT_GE(b.prompt.size(), 50u);
    EXPECT_LE(b.prompt.size(), 150u);
    EXPECT_GE(b.max_tokens, 5);
    EXPECT_LE(b.max_tokens, 15);
    input_lengths.insert(b.prompt.size());
    output_lengths.insert(b.max_tokens);
  }
  EXPECT_GT(input_lengths.size(), 50u);   // the range is used, not one length
  EXPECT_EQ(output_lengths.size(), 11u);  // 5..15, all hit in 400 draws
  absl::StatusOr<std::vector<BenchRequest>> again = BuildWorkload(o, 400);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < r->size(); ++i) EXPECT_EQ((*again)[i].prompt, (*r)[i].prompt);
  o.seed = kSeed + 1;
  absl::StatusOr<std::vector<BenchRequest>> other = BuildWorkload(o, 1);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].prompt, (*r)[0].prompt);
}

TEST(WorkloadTest, PrefixRepetitionSharesPrefixesAndNotSuffixes) {
  WorkloadOptions o;
  o.kind = WorkloadKind::kPrefixRepetition;
  o.seed = kSeed;
  o.num_prefixes = 3;
  o.prefix_len = 40;
  o.suffix_len = 8;
  o.output_len = 4;
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 9);
  ASSERT_TRUE(r.ok()) << r.status();
  std::set<std::string> prefixes, suffixes;
  for (size_t i = 0; i < r->size(); ++i) {
    const std::string& p = (*r)[i].prompt;
    ASSERT_EQ(p.size(), 48u);
    EXPECT_EQ((*r)[i].max_tokens, 4);
    EXPECT_EQ(p.substr(0, 40), (*r)[i % 3].prompt.substr(0, 40)) << i;
    prefixes.insert(p.substr(0, 40));
    suffixes.insert(p.substr(40));
  }
  EXPECT_EQ(prefixes.size(), 3u);
  EXPECT_EQ(suffixes.size(), 9u);
}

TEST(WorkloadTest, ChatConversationsAlternateUserAndAssistantTurns) {
  WorkloadOptions o;
  o.kind = WorkloadKind::kChat;
  o.seed = kSeed;
  o.chat_turns = 3;
  o.input_len = 10;
  o.output_len = 5;
  o.chat_template = "t";
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  for (const BenchRequest& b : *r) {
    EXPECT_TRUE(b.prompt.empty());
    EXPECT_EQ(b.max_tokens, 5);
    EXPECT_EQ(b.chat_template, "t");
    ASSERT_EQ(b.messages.size(), 5u);  // user, assistant, user, assistant, user
    for (size_t i = 0; i < b.messages.size(); ++i) {
      EXPECT_EQ(b.messages[i].role, i % 2 == 0 ? "user" : "assistant");
      EXPECT_EQ(b.messages[i].content.size(), i % 2 == 0 ? 10u : 5u);
    }
  }
  EXPECT_NE((*r)[0].messages[0].content, (*r)[1].messages[0].content);
  o.chat_turns = 0;
  EXPECT_EQ(BuildWorkload(o, 1).status().message(), "--chat-turns must be in [1, 64], got 0");
}

TEST(WorkloadTest, ReadsJsonlAndCyclesThroughItsLines) {
  const std::string path = WriteTempFile(
      "{\"prompt\": \"Hello\", \"max_tokens\": 3}\n"
      "\n"
      "{\"prompt\": \"caf\\u00e9\"}\n");
  WorkloadOptions o;
  o.kind = WorkloadKind::kJsonl;
  o.prompts_file = path;
  o.output_len = 7;
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 5);
  std::remove(path.c_str());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].prompt, "Hello");
  EXPECT_EQ((*r)[0].max_tokens, 3);
  EXPECT_EQ((*r)[1].prompt, "caf\xc3\xa9");
  EXPECT_EQ((*r)[1].max_tokens, 7);
  EXPECT_EQ((*r)[2].prompt, "Hello");
  EXPECT_EQ((*r)[4].prompt, "Hello");
}

TEST(WorkloadTest, NamesTheLineOfABadJsonlRecord) {
  const std::string path = WriteTempFile("{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n");
  WorkloadOptions o;
  o.kind = WorkloadKind::kJsonl;
  o.prompts_file = path;
  absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(o, 1);
  std::remove(path.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("line 2"));

  o.prompts_file = "/nonexistent/prompts.jsonl";
  r = BuildWorkload(o, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(WorkloadTest, RefusesBadOptionsNamingTheFlag) {
  struct Case {
    WorkloadOptions options;
    int64_t num_requests;
    const char* flag;
  };
  WorkloadOptions zero_input;
  zero_input.input_len = 0;
  WorkloadOptions big_ratio;
  big_ratio.range_ratio = 1.0;
  WorkloadOptions no_prefixes;
  no_prefixes.kind = WorkloadKind::kPrefixRepetition;
  no_prefixes.num_prefixes = 0;
  WorkloadOptions no_file;
  no_file.kind = WorkloadKind::kJsonl;
  const std::vector<Case> cases = {{WorkloadOptions(), 0, "--num-requests"},
                                   {zero_input, 1, "--input-len"},
                                   {big_ratio, 1, "--range-ratio"},
                                   {no_prefixes, 1, "--num-prefixes"},
                                   {no_file, 1, "--prompts-file"}};
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<BenchRequest>> r = BuildWorkload(c.options, c.num_requests);
    ASSERT_FALSE(r.ok()) << c.flag;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.flag));
  }
}

TEST(WorkloadTest, ParsesWorkloadNames) {
  for (WorkloadKind kind :
       {WorkloadKind::kRandom, WorkloadKind::kPrefixRepetition, WorkloadKind::kJsonl}) {
    absl::StatusOr<WorkloadKind> parsed = ParseWorkloadKind(WorkloadKindName(kind));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_FALSE(ParseWorkloadKind("sharegpt").ok());
}

}  // namespace
}  // namespace kvserve::bench
