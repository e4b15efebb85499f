// Scheduler on a real, tiny paged KV cache: one attention layer (1 kv head, head_dim 2), blocks of
// 4 tokens, a budget of a few blocks. Each test drives Schedule() like the engine loop does: after
// every step each scheduled chunk advances num_computed and is committed to the cache; a sequence
// whose tokens are all computed "samples" one token. Assertions are exact: which sequences, how
// many tokens each, in which order, which were preempted, how many blocks are held.
#include "engine/scheduler.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cache/cache_spec.h"
#include "cache/kv_cache_manager.h"
#include "engine/engine_observer.h"
#include "engine/request.h"
#include "engine/sequence.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvserve::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr int32_t kBlockSize = 4;

class FakeClock final : public Clock {
 public:
  SteadyTime Now() const override { return now; }
  SteadyTime now = SteadyTime{} + std::chrono::seconds(100);
};

// A sequence's name in assertions: the request_id, plus ".i" for forked sample i.
std::string Label(const Sequence& seq) {
  return seq.index == 0 ? seq.request->request_id
                        : seq.request->request_id + "." + std::to_string(seq.index);
}

// What one Schedule() returned, by label.
struct Step {
  std::vector<std::pair<std::string, int32_t>> chunks;
  int32_t num_scheduled_tokens = 0;
  int32_t num_preemptions = 0;
  int64_t num_prefix_cache_queries = 0;
  int64_t num_prefix_cache_hits = 0;
};

class SchedulerTest : public ::testing::Test {
 protected:
  // A cache of exactly `num_blocks` blocks, and a scheduler over it.
  void Init(const SchedulerConfig& config, int32_t num_blocks, bool prefix_caching) {
    cache::CacheSpec spec;
    spec.block_size = kBlockSize;
    spec.layers.push_back(cache::LayerMemory::AttentionKv(/*num_kv_heads=*/1, /*head_dim=*/2));
    cache::CacheOptions options;
    options.block_size = kBlockSize;
    options.budget_bytes = spec.PagedBytesPerToken() * kBlockSize * num_blocks;
    options.enable_prefix_caching = prefix_caching;
    auto created = cache::KvCacheManager::Create(spec, options);
    ASSERT_TRUE(created.ok()) << created.status();
    cache_ = std::move(*created);
    ASSERT_EQ(cache_->num_blocks(), num_blocks);
    sched_ = std::make_unique<Scheduler>(config, cache_.get());
  }

  void TearDown() override {
    if (sched_ == nullptr) return;
    // Whatever a test left behind: removing it gives every block back.
    sched_->RemoveIf([](const Sequence&) { return true; });
    EXPECT_TRUE(sched_->empty());
    EXPECT_EQ(sched_->num_running_seqs(), 0);
    ExpectCacheReleased();
  }

  void ExpectCacheReleased() const {
    EXPECT_EQ(cache_->pool().num_free(), cache_->num_blocks());
    EXPECT_EQ(cache_->stats().num_used_blocks, 0);
  }

  // Queues a request named `name` with `prompt` (distinct tokens per request unless given).
  Sequence* Add(const std::string& name, int32_t prompt_len, int32_t priority = 0, int32_t n = 1) {
    std::vector<int32_t> prompt(prompt_len);
    for (int32_t i = 0; i < prompt_len; ++i) prompt[i] = static_cast<int32_t>(next_id_) * 1000 + i;
    return AddTokens(name, std::move(prompt), priority, n);
  }

  Sequence* AddTokens(const std::string& name, std::vector<int32_t> prompt, int32_t priority = 0,
                      int32_t n = 1) {
    auto req = std::make_shared<GenerationRequest>();
    req->request_id = name;
    req->prompt_token_ids = std::move(prompt);
    req->priority = priority;
    req->n = n;
    auto seq = std::make_unique<Sequence>(
        next_id_++, 0, std::shared_ptr<const GenerationRequest>(req), nullptr, /*seed=*/7);
    seq->arrival_order = next_arrival_++;
    Sequence* raw = seq.get();
    sched_->AddWaiting(std::move(seq));
    return raw;
  }

  // Forks sample `index` from the running `parent`, as the engine does after its prefill.
  Sequence* Fork(Sequence* parent, int32_t index) {
    auto child = std::make_unique<Sequence>(parent->id, index, parent->request, nullptr, 7);
    std::optional<cache::SequenceCache> forked = cache_->Fork(parent->cache);
    EXPECT_TRUE(forked.has_value());
    child->cache = std::move(*forked);
    child->has_cache = true;
    child->num_computed = parent->num_computed;
    child->arrival_order = parent->arrival_order;
    child->first_scheduled_time = parent->first_scheduled_time;
    child->tokens = parent->request->prompt_token_ids;
    child->tokens.push_back(SampledToken(*child));
    ++child->num_generated;
    Sequence* raw = child.get();
    sched_->AddFork(std::move(child), parent);
    return raw;
  }

  static int32_t SampledToken(const Sequence& seq) {
    return 500000 + static_cast<int32_t>(seq.id) * 1000 + seq.index * 100 + seq.num_generated;
  }

  // Schedule() only: the planned chunks are remembered for Compute().
  Step Plan() {
    const SchedulerOutput& out = sched_->Schedule(clock_);
    planned_ = out.chunks;
    Step step;
    int32_t sum = 0;
    for (const ScheduledChunk& c : out.chunks) {
      step.chunks.emplace_back(Label(*c.seq), c.num_tokens);
      sum += c.num_tokens;
      EXPECT_EQ(c.seq->scheduled_tokens, c.num_tokens) << Label(*c.seq);
      EXPECT_LE(c.seq->num_computed + c.num_tokens, c.seq->cache.num_slots) << Label(*c.seq);
    }
    EXPECT_EQ(out.num_scheduled_tokens, sum);
    EXPECT_LE(sum, sched_->config().max_num_batched_tokens);
    EXPECT_LE(sched_->num_running_seqs(), sched_->config().max_num_seqs);
    step.num_scheduled_tokens = out.num_scheduled_tokens;
    step.num_preemptions = out.num_preemptions;
    step.num_prefix_cache_queries = out.num_prefix_cache_queries;
    step.num_prefix_cache_hits = out.num_prefix_cache_hits;
    return step;
  }

  // The model step on the last plan: every chunk is computed and committed; a sequence whose
  // tokens are all computed samples one token.
  void Compute() {
    for (const ScheduledChunk& c : planned_) {
      Sequence* seq = c.seq;
      seq->num_computed += c.num_tokens;
      cache_->Commit(seq->cache, seq->tokens, seq->num_computed);
      if (seq->num_computed == static_cast<int32_t>(seq->tokens.size())) {
        seq->tokens.push_back(SampledToken(*seq));
        ++seq->num_generated;
      }
    }
    planned_.clear();
  }

  // One engine step: Plan() and Compute().
  Step Run() {
    Step step = Plan();
    Compute();
    return step;
  }

  std::vector<std::string> RunningLabels() const {
    std::vector<std::string> out;
    for (const auto& s : sched_->running()) out.push_back(Label(*s));
    return out;
  }
  std::vector<std::string> WaitingLabels() const {
    std::vector<std::string> out;
    for (const auto& s : sched_->waiting()) out.push_back(Label(*s));
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<cache::KvCacheManager> cache_;
  std::unique_ptr<Scheduler> sched_;
  std::vector<ScheduledChunk> planned_;
  RequestId next_id_ = 1;
  uint64_t next_arrival_ = 0;
};

SchedulerConfig Config(int32_t max_num_seqs, int32_t max_num_batched_tokens,
                       int32_t max_chunk_tokens) {
  SchedulerConfig config;
  config.max_num_seqs = max_num_seqs;
  config.max_num_batched_tokens = max_num_batched_tokens;
  config.max_chunk_tokens = max_chunk_tokens;
  config.model_name = "tiny";
  return config;
}

// ---- Budgets ----

TEST_F(SchedulerTest, SpendsAtMostMaxNumBatchedTokensPerStep) {
  Init(Config(/*max_num_seqs=*/8, /*max_num_batched_tokens=*/10, /*max_chunk_tokens=*/8), 32,
       false);
  Add("A", 6);
  Add("B", 6);
  Add("C", 6);

  // A's whole prompt, then B's cut to the 4 tokens left; C waits for a step with budget.
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 6), Pair("B", 4)));
  EXPECT_EQ(s.num_scheduled_tokens, 10);
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));

  s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1), Pair("B", 2), Pair("C", 6)));
  EXPECT_EQ(s.num_scheduled_tokens, 9);
  EXPECT_EQ(sched_->num_waiting(), 0);

  s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1), Pair("B", 1), Pair("C", 1)));
  EXPECT_EQ(s.num_scheduled_tokens, 3);
}

TEST_F(SchedulerTest, AThirdRequestWaitsWhenMaxNumSeqsIsTwo) {
  Init(Config(/*max_num_seqs=*/2, 100, 100), 32, false);
  Add("A", 4);
  Sequence* b = Add("B", 4);
  Add("C", 4);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 4)));
  EXPECT_EQ(sched_->num_running_seqs(), 2);
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));

  sched_->Remove(sched_->running()[0].get());  // A finishes
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1), Pair("C", 4)));
  EXPECT_EQ(sched_->num_running_seqs(), 2);
  EXPECT_EQ(b->num_generated, 3);
}

// ---- Chunked prefill ----

TEST_F(SchedulerTest, ChunksALongPromptThenDecodesOneTokenAtATime) {
  Init(Config(8, 100, /*max_chunk_tokens=*/4), 32, false);
  Sequence* a = Add("A", 10);

  const std::vector<int32_t> expected_chunks = {4, 4, 2, 1, 1, 1};
  const std::vector<int32_t> expected_computed = {4, 8, 10, 11, 12, 13};
  const std::vector<size_t> expected_blocks = {1, 2, 3, 3, 3, 4};
  const std::vector<int32_t> expected_generated = {0, 0, 1, 2, 3, 4};
  for (size_t i = 0; i < expected_chunks.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1));
    Step s = Run();
    EXPECT_THAT(s.chunks, ElementsAre(Pair("A", expected_chunks[i])));
    EXPECT_EQ(a->num_computed, expected_computed[i]);
    EXPECT_EQ(a->cache.blocks.size(), expected_blocks[i]);
    EXPECT_EQ(a->num_generated, expected_generated[i]);
    EXPECT_EQ(cache_->pool().num_free(), 32 - static_cast<int32_t>(expected_blocks[i]));
  }
  EXPECT_EQ(a->tokens.size(), 14u);
}

// ---- Decode-first ordering, cut and fixed chunks ----

TEST_F(SchedulerTest, DecodesComeFirstAndAPrefillChunkIsCutToTheBudgetLeft) {
  Init(Config(8, /*max_num_batched_tokens=*/5, /*max_chunk_tokens=*/8), 32, false);
  Add("A", 4);
  Sequence* b = Add("B", 12);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 1)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  EXPECT_EQ(b->num_computed, 9);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 3)));
  EXPECT_EQ(b->num_generated, 1);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
}

TEST_F(SchedulerTest, ANewerDecodeGoesBeforeAnOlderPrefill) {
  Init(Config(8, /*max_num_batched_tokens=*/5, /*max_chunk_tokens=*/4), 32, false);
  Add("old", 12);
  Add("new", 2);

  // new's prompt is cut to 1 token; its last prompt token then runs in the decode pass.
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("old", 4), Pair("new", 1)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("new", 1), Pair("old", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("new", 1), Pair("old", 4)));
  // Both decoding: oldest first.
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("old", 1), Pair("new", 1)));
}

TEST_F(SchedulerTest, FixedChunksAreNotAdmittedWhenTheyDoNotFitWhole) {
  SchedulerConfig config = Config(8, /*max_num_batched_tokens=*/5, /*max_chunk_tokens=*/4);
  config.fixed_chunks = true;
  Init(config, 32, false);
  Add("A", 4);
  Add("B", 12);

  // One token of budget is left after A: B's 4-token chunk waits instead of being cut to 1.
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("B"));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
}

// A running prefill behind three decodes (a request forked into 3 samples) with 2 tokens of budget
// left: cut to 2, or skipped with fixed_chunks.
class SchedulerChunkTest : public SchedulerTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SchedulerChunkTest, ARunningPrefillBehindDecodesIsCutOrSkipped) {
  const bool fixed = GetParam();
  SchedulerConfig config = Config(8, /*max_num_batched_tokens=*/5, /*max_chunk_tokens=*/4);
  config.fixed_chunks = fixed;
  Init(config, 32, false);
  Sequence* a = Add("A", 1, 0, /*n=*/3);
  Sequence* b = Add("B", 12);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 4)));
  Fork(a, 1);
  Fork(a, 2);
  ASSERT_THAT(RunningLabels(), ElementsAre("A", "A.1", "A.2", "B"));

  Step s = Run();
  if (fixed) {
    EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1), Pair("A.1", 1), Pair("A.2", 1)));
    EXPECT_EQ(s.num_scheduled_tokens, 3);
    EXPECT_EQ(b->num_computed, 4);
  } else {
    EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1), Pair("A.1", 1), Pair("A.2", 1), Pair("B", 2)));
    EXPECT_EQ(s.num_scheduled_tokens, 5);
    EXPECT_EQ(b->num_computed, 6);
  }
}

INSTANTIATE_TEST_SUITE_P(FixedChunks, SchedulerChunkTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Fixed" : "Cut"; });

// ---- Chunks aligned to blocks ----

TEST_F(SchedulerTest, AlignedChunksEndOnABlockBoundaryUnlessTheyFinishThePrompt) {
  SchedulerConfig config = Config(8, 100, /*max_chunk_tokens=*/6);
  config.align_chunks_to_blocks = true;
  Init(config, 32, false);
  Sequence* a = Add("A", 14);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));  // 6 rounded down to the block at 4
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));  // [4, 10) rounded down to [4, 8)
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 6)));  // [8, 14) finishes the prompt
  EXPECT_EQ(a->num_generated, 1);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1)));
}

TEST_F(SchedulerTest, AChunkCutToTheBudgetIsAlignedToo) {
  SchedulerConfig config = Config(8, /*max_num_batched_tokens=*/7, /*max_chunk_tokens=*/8);
  config.align_chunks_to_blocks = true;
  Init(config, 32, false);
  Add("A", 14);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));  // 8 > 7: cut to 7, aligned to 4
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));  // [4, 12) > 7: [4, 11) -> [4, 8)
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 6)));  // [8, 14) fits and finishes
}

TEST_F(SchedulerTest, UnalignedChunksWithoutAlignment) {
  Init(Config(8, /*max_num_batched_tokens=*/7, /*max_chunk_tokens=*/8), 32, false);
  Add("A", 14);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 7)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 7)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1)));
}

// ---- Priority and admission ----

TEST_F(SchedulerTest, WaitingQueueIsOrderedByPriorityThenArrival) {
  Init(Config(/*max_num_seqs=*/3, 100, 100), 32, false);
  Add("A", 4, /*priority=*/5);
  Sequence* b = Add("B", 4, /*priority=*/1);
  Add("C", 4, /*priority=*/5);
  Add("D", 4, /*priority=*/1);
  EXPECT_THAT(WaitingLabels(), ElementsAre("B", "D", "A", "C"));

  // B and D arrived after A but have the lower priority value; A and C are FCFS.
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 4), Pair("D", 4), Pair("A", 4)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));

  // A late urgent request goes to the head of the queue, ahead of C.
  Add("E", 4, /*priority=*/0);
  EXPECT_THAT(WaitingLabels(), ElementsAre("E", "C"));
  sched_->Remove(b);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("D", 1), Pair("A", 1), Pair("E", 4)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));
  EXPECT_THAT(RunningLabels(), ElementsAre("D", "A", "E"));
}

TEST_F(SchedulerTest, AdmissionStopsAtAHeadThatDoesNotFitInTheCache) {
  Init(Config(8, 100, 100), /*num_blocks=*/4, false);
  Sequence* a = Add("A", 7);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 7)));  // 2 blocks
  // B needs 3 blocks, 2 are free; C needs 1 and would fit, but may not overtake B.
  Add("B", 12);
  Add("C", 4);

  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(cache_->pool().num_free(), 2);
  EXPECT_THAT(WaitingLabels(), ElementsAre("B", "C"));

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1)));  // A takes its third block
  EXPECT_EQ(cache_->pool().num_free(), 1);
  EXPECT_THAT(WaitingLabels(), ElementsAre("B", "C"));

  sched_->Remove(a);
  EXPECT_EQ(cache_->pool().num_free(), 4);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 12), Pair("C", 4)));
  EXPECT_EQ(cache_->pool().num_free(), 0);
}

TEST_F(SchedulerTest, AdmissionStopsAtAHeadThatDoesNotFitInMaxNumSeqs) {
  Init(Config(/*max_num_seqs=*/3, 100, 100), 32, false);
  Sequence* a = Add("A", 4);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4)));
  Add("B", 4, 0, /*n=*/3);  // needs 3 slots, 2 are free
  Add("C", 4);              // needs 1

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("B", "C"));
  EXPECT_EQ(sched_->num_running_seqs(), 1);

  sched_->Remove(a);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 4)));
  EXPECT_EQ(sched_->num_running_seqs(), 3);
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));
}

TEST_F(SchedulerTest, StampsFirstScheduledTimeAndCountsPrefixHitsOnFirstAdmission) {
  Init(Config(8, 100, 100), 32, /*prefix_caching=*/true);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  Sequence* a = AddTokens("A", prompt);
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 9)));
  EXPECT_EQ(s.num_prefix_cache_queries, 9);
  EXPECT_EQ(s.num_prefix_cache_hits, 0);
  EXPECT_EQ(a->first_scheduled_time, clock_.now);
  EXPECT_EQ(a->num_cached_prompt_tokens, 0);

  const SteadyTime first = clock_.now;
  clock_.now += std::chrono::seconds(1);
  Sequence* b = AddTokens("B", prompt);
  s = Run();
  // Two full blocks of A's prompt are reused; B computes only its last token.
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
  EXPECT_EQ(s.num_prefix_cache_queries, 9);
  EXPECT_EQ(s.num_prefix_cache_hits, 8);
  EXPECT_EQ(b->num_cached_prompt_tokens, 8);
  EXPECT_EQ(b->first_scheduled_time, clock_.now);
  EXPECT_EQ(a->first_scheduled_time, first);
  EXPECT_EQ(b->cache.blocks[0], a->cache.blocks[0]);
  EXPECT_EQ(b->cache.blocks[1], a->cache.blocks[1]);
}

// ---- Preemption ----

TEST_F(SchedulerTest, PreemptsTheNewestRunningSequenceWhenTheCacheRunsOut) {
  Init(Config(8, 100, 100), /*num_blocks=*/4, false);
  Sequence* a = Add("A", 8);
  Sequence* b = Add("B", 8);
  const SteadyTime b_first = clock_.now;

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 8), Pair("B", 8)));
  EXPECT_EQ(cache_->pool().num_free(), 0);

  // A's decode needs a third block: B, the newest, gives its two back.
  clock_.now += std::chrono::seconds(1);
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_THAT(RunningLabels(), ElementsAre("A"));
  EXPECT_THAT(WaitingLabels(), ElementsAre("B"));
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_FALSE(b->has_cache);
  EXPECT_THAT(b->cache.blocks, IsEmpty());
  EXPECT_EQ(b->tokens.size(), 9u);  // prompt + its sampled token
  EXPECT_EQ(b->num_generated, 1);
  EXPECT_EQ(a->cache.blocks.size(), 3u);
  EXPECT_EQ(cache_->pool().num_free(), 1);

  // B needs 3 blocks for its 9 tokens; 1 is free.
  s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(s.num_preemptions, 0);
  EXPECT_THAT(WaitingLabels(), ElementsAre("B"));

  sched_->Remove(a);
  s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("B", 9)));  // recomputes prompt and output
  EXPECT_EQ(b->num_generated, 2);
  EXPECT_EQ(b->first_scheduled_time, b_first);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1)));
}

TEST_F(SchedulerTest, PreemptsTheLowestPriorityEvenIfItIsOlder) {
  Init(Config(8, 100, 100), /*num_blocks=*/4, false);
  Sequence* a = Add("A", 8, /*priority=*/5);
  Add("B", 8, /*priority=*/0);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 8), Pair("A", 8)));
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("B", 1)));
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_THAT(RunningLabels(), ElementsAre("B"));
  EXPECT_THAT(WaitingLabels(), ElementsAre("A"));
  EXPECT_EQ(a->num_computed, 0);
  EXPECT_FALSE(a->has_cache);
  EXPECT_EQ(a->tokens.size(), 9u);
}

TEST_F(SchedulerTest, TheSequenceAskingForABlockIsPreemptedWhenItIsTheLeastImportant) {
  Init(Config(8, 100, 100), /*num_blocks=*/4, false);
  Add("A", 7);
  Sequence* b = Add("B", 8);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 7), Pair("B", 8)));
  // A's decode fits its 2 blocks; B's needs a third and B is the newest.
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_THAT(WaitingLabels(), ElementsAre("B"));
  EXPECT_FALSE(b->has_cache);
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  EXPECT_EQ(cache_->pool().num_free(), 2);
}

TEST_F(SchedulerTest, AVictimAlreadyScheduledIsUnscheduledAndNothingIsAdmitted) {
  Init(Config(8, 100, /*max_chunk_tokens=*/4), /*num_blocks=*/4, false);
  Sequence* a = Add("A", 12);
  Sequence* b = Add("B", 4);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1), Pair("A", 4)));
  EXPECT_EQ(cache_->pool().num_free(), 0);
  EXPECT_EQ(b->num_generated, 2);
  Sequence* c = Add("C", 2, /*priority=*/-1);  // 1 block

  // B's decode is scheduled first; A's chunk then needs a block and B, the newest, is preempted:
  // its token leaves the batch. One block is left, enough for C, but nothing is admitted.
  Step s = Plan();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 4)));
  EXPECT_EQ(s.num_scheduled_tokens, 4);
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_EQ(b->scheduled_tokens, 0);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_FALSE(b->has_cache);
  EXPECT_EQ(b->tokens.size(), 6u);  // 4 prompt + 2 generated
  EXPECT_EQ(b->num_generated, 2);
  EXPECT_EQ(cache_->pool().num_free(), 1);
  EXPECT_THAT(RunningLabels(), ElementsAre("A"));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C", "B"));
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  Compute();
  EXPECT_EQ(a->num_generated, 1);

  sched_->Remove(a);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("C", 2), Pair("B", 4)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("C", 1), Pair("B", 2)));  // 4 + 2 = tokens.size()
  EXPECT_EQ(b->num_generated, 3);
  EXPECT_EQ(c->num_generated, 2);
  EXPECT_EQ(sched_->num_running_seqs(), 2);
}

TEST_F(SchedulerTest, APreemptedSequenceFindsItsOwnBlocksInThePrefixCache) {
  Init(Config(8, 100, 100), /*num_blocks=*/5, /*prefix_caching=*/true);
  Sequence* a = Add("A", 7);  // 2 blocks
  Sequence* b = Add("B", 9);  // 3 blocks: 2 full, 1 partial

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 7), Pair("B", 9)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
  EXPECT_EQ(cache_->pool().num_free(), 0);
  const std::vector<cache::BlockId> b_blocks = b->cache.blocks;
  ASSERT_EQ(b_blocks.size(), 3u);

  // A needs a third block; B gives its blocks back, tail first, so A takes B's partial tail and
  // B's two full blocks stay cached.
  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_EQ(a->cache.blocks.back(), b_blocks[2]);
  EXPECT_EQ(b->tokens.size(), 11u);
  EXPECT_EQ(b->num_generated, 2);

  sched_->Remove(a);
  s = Plan();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("B", 3)));
  EXPECT_EQ(s.num_prefix_cache_queries, 11);
  EXPECT_EQ(s.num_prefix_cache_hits, 8);
  EXPECT_EQ(b->num_computed, 8);
  ASSERT_EQ(b->cache.blocks.size(), 3u);
  EXPECT_EQ(b->cache.blocks[0], b_blocks[0]);
  EXPECT_EQ(b->cache.blocks[1], b_blocks[1]);
  EXPECT_EQ(b->num_cached_prompt_tokens, 0);  // its own blocks: not a prompt-cache hit
  Compute();
  EXPECT_EQ(b->num_computed, 11);
  EXPECT_EQ(b->num_generated, 3);
}

TEST_F(SchedulerTest, PreemptingAnUnforkedRequestFreesAllItsSlots) {
  Init(Config(/*max_num_seqs=*/4, 100, 100), /*num_blocks=*/4, false);
  Add("A", 8);
  Sequence* b = Add("B", 8, 0, /*n=*/3);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 8), Pair("B", 8)));
  EXPECT_EQ(sched_->num_running_seqs(), 4);

  Step s = Run();
  EXPECT_THAT(s.chunks, ElementsAre(Pair("A", 1)));
  EXPECT_EQ(s.num_preemptions, 1);
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  EXPECT_EQ(b->num_seqs, 3);
}

// ---- Removal ----

TEST_F(SchedulerTest, RemoveAndRemoveIfFreeTheCacheOfRunningAndWaitingSequences) {
  Init(Config(/*max_num_seqs=*/3, 100, 100), /*num_blocks=*/16, /*prefix_caching=*/true);
  Add("A", 5, 0, /*n=*/2);
  Sequence* b = Add("B", 5);
  Add("C", 5);
  Add("D", 5);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 5), Pair("B", 5)));
  EXPECT_EQ(sched_->num_running_seqs(), 3);
  EXPECT_EQ(cache_->pool().num_free(), 12);

  const std::set<std::string> doomed = {"A", "C"};
  std::vector<std::unique_ptr<Sequence>> removed =
      sched_->RemoveIf([&](const Sequence& s) { return doomed.contains(Label(s)); });
  ASSERT_EQ(removed.size(), 2u);
  EXPECT_EQ(Label(*removed[0]), "A");  // running first, then waiting
  EXPECT_EQ(Label(*removed[1]), "C");
  EXPECT_FALSE(removed[0]->has_cache);
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  EXPECT_THAT(RunningLabels(), ElementsAre("B"));
  EXPECT_THAT(WaitingLabels(), ElementsAre("D"));
  EXPECT_EQ(cache_->pool().num_free(), 14);

  Sequence* e = Add("E", 5);
  std::unique_ptr<Sequence> waiting = sched_->Remove(e);
  EXPECT_EQ(waiting.get(), e);
  EXPECT_THAT(WaitingLabels(), ElementsAre("D"));

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1), Pair("D", 5)));
  EXPECT_EQ(sched_->num_running_seqs(), 2);
  EXPECT_EQ(cache_->pool().num_free(), 12);

  std::unique_ptr<Sequence> gone = sched_->Remove(b);
  EXPECT_FALSE(gone->has_cache);
  EXPECT_EQ(sched_->num_running_seqs(), 1);
  sched_->Remove(sched_->running()[0].get());
  EXPECT_EQ(sched_->num_running_seqs(), 0);
  EXPECT_TRUE(sched_->empty());
  ExpectCacheReleased();
}

TEST_F(SchedulerTest, DestroyingTheSchedulerFreesRunningSequences) {
  Init(Config(8, 100, 100), 8, /*prefix_caching=*/true);
  Add("A", 5);
  Add("B", 9);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 5), Pair("B", 9)));
  EXPECT_EQ(cache_->pool().num_free(), 3);
  sched_.reset();
  ExpectCacheReleased();
}

// ---- Parallel samples ----

TEST_F(SchedulerTest, AnUnforkedRequestHoldsNSlotsAndForksTakeThemOver) {
  Init(Config(/*max_num_seqs=*/4, 100, 100), 32, false);
  Sequence* a = Add("A", 4, 0, /*n=*/3);
  Add("B", 4);
  Add("C", 4);

  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 4)));
  EXPECT_EQ(sched_->num_running_seqs(), 4);
  EXPECT_EQ(a->num_seqs, 3);
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));

  Sequence* a1 = Fork(a, 1);
  EXPECT_EQ(a->num_seqs, 2);
  EXPECT_EQ(sched_->num_running_seqs(), 4);
  EXPECT_THAT(RunningLabels(), ElementsAre("A", "A.1", "B"));
  Fork(a, 2);
  EXPECT_EQ(a->num_seqs, 1);
  EXPECT_EQ(sched_->num_running_seqs(), 4);
  EXPECT_THAT(RunningLabels(), ElementsAre("A", "A.1", "A.2", "B"));

  EXPECT_THAT(Run().chunks,
              ElementsAre(Pair("A", 1), Pair("A.1", 1), Pair("A.2", 1), Pair("B", 1)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));
  // The prompt block is shared by the three samples; each decode has a block of its own.
  EXPECT_EQ(cache_->pool().num_free(), 32 - (1 + 3 + 2));

  sched_->Remove(a1);
  EXPECT_EQ(sched_->num_running_seqs(), 3);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("A.2", 1), Pair("B", 1), Pair("C", 4)));
  EXPECT_EQ(sched_->num_running_seqs(), 4);
}

}  // namespace
}  // namespace kvserve::engine

// ---- Backpressure (held sequences) ----

namespace kvserve::engine {
namespace {

TEST_F(SchedulerTest, AHeldRunningSequenceKeepsItsCacheAndSlotButGetsNoTokens) {
  Init(Config(/*max_num_seqs=*/2, 100, 100), 32, false);
  Sequence* a = Add("A", 4);
  Sequence* b = Add("B", 4);
  Add("C", 4);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 4)));
  const int32_t a_slots = a->cache.num_slots;

  sched_->SetHeld(a->id, true);
  EXPECT_TRUE(sched_->has_schedulable());
  // Only B decodes; A keeps its slot, so C still waits (max_num_seqs 2), and its blocks.
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1)));
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("C"));
  EXPECT_EQ(a->num_generated, 1);
  EXPECT_TRUE(a->has_cache);
  EXPECT_EQ(a->cache.num_slots, a_slots);
  EXPECT_EQ(b->num_generated, 3);

  // Let go: A decodes again from where it stopped.
  sched_->SetHeld(a->id, false);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 1), Pair("B", 1)));
  EXPECT_EQ(a->num_generated, 2);
}

TEST_F(SchedulerTest, AdmissionPassesOverAHeldWaitingSequence) {
  Init(Config(/*max_num_seqs=*/4, 100, 100), 32, false);
  Sequence* a = Add("A", 4);
  Add("B", 4);
  sched_->SetHeld(a->id, true);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 4)));
  EXPECT_THAT(WaitingLabels(), ElementsAre("A"));
  EXPECT_FALSE(a->has_cache);

  sched_->SetHeld(a->id, false);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("B", 1), Pair("A", 4)));
}

TEST_F(SchedulerTest, NothingIsSchedulableWhenEverySequenceIsHeld) {
  Init(Config(/*max_num_seqs=*/4, 100, 100), 32, false);
  Sequence* a = Add("A", 4);
  Sequence* b = Add("B", 4);
  EXPECT_THAT(Run().chunks, ElementsAre(Pair("A", 4), Pair("B", 4)));
  sched_->SetHeld(a->id, true);
  sched_->SetHeld(b->id, true);
  sched_->SetHeld(/*unknown id=*/999, false);
  EXPECT_FALSE(sched_->has_schedulable());
  EXPECT_FALSE(sched_->empty());
  EXPECT_THAT(Run().chunks, IsEmpty());
  EXPECT_EQ(sched_->num_running_seqs(), 2);
}

}  // namespace
}  // namespace kvserve::engine
