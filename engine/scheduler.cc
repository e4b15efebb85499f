#include "engine/scheduler.h"

#include <algorithm>
#include <optional>
#include <tuple>
#include <utility>

#include "base/logging.h"
#include "cache/prefix_hash.h"

namespace kvserve::engine {
namespace {

// Lower runs first and is preempted last.
auto Rank(const Sequence& s) {
  return std::make_tuple(s.request->priority, s.arrival_order, s.index);
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, cache::KvCacheManager* cache)
    : config_(config),
      cache_(cache),
      // A chunk larger than the whole budget could never be scheduled.
      max_chunk_tokens_(std::min(config.max_chunk_tokens, config.max_num_batched_tokens)) {
  KV_CHECK(config.max_num_seqs >= 1 && config.max_num_batched_tokens >= 1 &&
           config.max_chunk_tokens >= 1);
  output_.chunks.reserve(config.max_num_seqs);
  running_.reserve(config.max_num_seqs);
}

Scheduler::~Scheduler() {
  for (auto& s : running_) {
    if (s != nullptr) FreeCache(*s);
  }
}

void Scheduler::AddWaiting(std::unique_ptr<Sequence> seq) {
  KV_CHECK(!seq->has_cache);
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), seq,
                             [](const auto& a, const auto& b) { return Rank(*a) < Rank(*b); });
  waiting_.insert(it, std::move(seq));
}

void Scheduler::AddFork(std::unique_ptr<Sequence> child, Sequence* parent) {
  KV_CHECK(child->has_cache && child->num_seqs == 1 && parent->num_seqs > 1);
  auto it = std::find_if(running_.begin(), running_.end(),
                         [parent](const auto& s) { return s.get() == parent; });
  KV_CHECK(it != running_.end()) << "Scheduler::AddFork: the parent is not running";
  --parent->num_seqs;
  // After the parent and the samples forked before this one.
  ++it;
  while (it != running_.end() && (*it)->id == parent->id) ++it;
  running_.insert(it, std::move(child));
}

void Scheduler::FreeCache(Sequence& seq) {
  if (!seq.has_cache) return;
  cache_->Free(seq.cache);
  seq.has_cache = false;
}

int32_t Scheduler::ChunkSize(const Sequence& seq, int32_t computed, int32_t budget) {
  int32_t total = static_cast<int32_t>(seq.tokens.size());
  if (config_.replay_generated_tokens && total > seq.prompt_len()) {
    total = computed < seq.prompt_len() ? seq.prompt_len() : computed + 1;
  }
  // Recurrent layers are checkpointed for prefix reuse only where a step ends: a chunk that does
  // not finish the sequence ends on a block boundary (0 when no boundary is within reach).
  auto align = [&](int32_t len) {
    if (!config_.align_chunks_to_blocks || computed + len >= total) return len;
    const int32_t bs = cache_->block_size();
    return std::max(0, (computed + len) / bs * bs - computed);
  };
  const int32_t whole = std::min(total - computed, max_chunk_tokens_);
  // A whole chunk too short to reach a boundary still runs: it only costs a checkpoint.
  const int32_t n = align(whole) > 0 ? align(whole) : whole;
  if (n <= budget) return n;
  if (config_.fixed_chunks) {
    deferred_ = true;
    return 0;
  }
  return align(budget);
}

void Scheduler::Preempt(size_t victim) {
  std::unique_ptr<Sequence> seq = std::move(running_[victim]);
  if (seq->scheduled_tokens > 0) {
    budget_ += seq->scheduled_tokens;
    output_.num_scheduled_tokens -= seq->scheduled_tokens;
    std::erase_if(output_.chunks, [&](const ScheduledChunk& c) { return c.seq == seq.get(); });
    seq->scheduled_tokens = 0;
  }
  FreeCache(*seq);
  seq->num_computed = 0;
  num_running_seqs_ -= seq->num_seqs;
  ++output_.num_preemptions;
  KV_LOG(DEBUG) << "request " << seq->id << "." << seq->index << " preempted after "
                << seq->num_generated << " tokens (out of KV-cache blocks)";
  AddWaiting(std::move(seq));
}

bool Scheduler::ScheduleRunning(size_t i) {
  Sequence& seq = *running_[i];
  const int32_t n = ChunkSize(seq, seq.num_computed, budget_);
  if (n == 0) return true;
  while (!cache_->AllocateSlots(seq.cache, seq.num_computed + n)) {
    size_t victim = i;
    for (size_t j = 0; j < running_.size(); ++j) {
      if (running_[j] != nullptr && Rank(*running_[j]) > Rank(*running_[victim])) victim = j;
    }
    Preempt(victim);
    if (victim == i) return false;
  }
  seq.scheduled_tokens = n;
  budget_ -= n;
  output_.num_scheduled_tokens += n;
  output_.chunks.push_back(ScheduledChunk{&seq, n});
  return true;
}

bool Scheduler::TryAdmit(size_t i, const Clock& clock, SteadyTime* now) {
  Sequence& seq = *waiting_[i];
  if (num_running_seqs_ + seq.num_seqs > config_.max_num_seqs) return false;
  std::optional<cache::SequenceCache> cache =
      cache_->Begin(cache::PrefixRootHash(config_.model_name, seq.request->cache_salt));
  if (!cache.has_value()) return false;  // no recurrent-state slot free
  // Positions that must produce logits cannot come from the cache (Sequence::max_cached_prefix).
  // Reusing cached blocks takes the free ones out of the free queue, so the first chunk must fit
  // in what is left: look first (changing nothing), then decide, then attach.
  const int32_t size = static_cast<int32_t>(seq.tokens.size());
  const int32_t max_hit = seq.max_cached_prefix();
  int32_t free_hit_blocks = 0;
  const int32_t hit = cache_->PeekCachedPrefix(*cache, seq.tokens, max_hit, &free_hit_blocks);
  const int32_t n = ChunkSize(seq, hit, budget_);
  const int32_t new_blocks = cache_->BlocksForTokens(hit + n) - cache_->BlocksForTokens(hit);
  if (n == 0 || new_blocks > cache_->pool().num_free() - free_hit_blocks) {
    cache_->Free(*cache);
    return false;
  }
  KV_CHECK(cache_->AttachCachedPrefix(*cache, seq.tokens, max_hit) == hit);
  KV_CHECK(cache_->AllocateSlots(*cache, hit + n));
  output_.num_prefix_cache_queries += size;
  output_.num_prefix_cache_hits += hit;
  // A sequence readmitted after a preemption finds its own blocks: not a prompt-cache hit.
  if (seq.first_scheduled_time == SteadyTime{}) {
    seq.num_cached_prompt_tokens = hit;
    if (*now == SteadyTime{}) *now = clock.Now();
    seq.first_scheduled_time = *now;
  }
  seq.cache = std::move(*cache);
  seq.has_cache = true;
  seq.num_computed = hit;
  seq.scheduled_tokens = n;
  budget_ -= n;
  output_.num_scheduled_tokens += n;
  output_.chunks.push_back(ScheduledChunk{&seq, n});
  num_running_seqs_ += seq.num_seqs;
  running_.push_back(std::move(waiting_[i]));
  waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  return true;
}

const SchedulerOutput& Scheduler::Schedule(const Clock& clock) {
  output_.chunks.clear();
  output_.num_scheduled_tokens = 0;
  output_.num_preemptions = 0;
  output_.num_prefix_cache_queries = 0;
  output_.num_prefix_cache_hits = 0;
  budget_ = config_.max_num_batched_tokens;
  deferred_ = false;
  for (auto& s : running_) s->scheduled_tokens = 0;
  // Decodes first, then the chunks of prompts in progress; both oldest first. A preemption nulls
  // its slot in running_ (compacted below), so indices stay valid during the passes.
  for (bool decode : {true, false}) {
    for (size_t i = 0; i < running_.size() && budget_ > 0; ++i) {
      if (running_[i] == nullptr || running_[i]->held || running_[i]->scheduled_tokens > 0) {
        continue;
      }
      if ((running_[i]->num_uncomputed() == 1) != decode) continue;
      ScheduleRunning(i);
    }
  }
  std::erase(running_, nullptr);
  // Admission only when nothing was preempted (the cache just ran out for running sequences) and
  // no running sequence's fixed chunk is waiting for budget (newcomers would keep taking it).
  if (output_.num_preemptions == 0 && !deferred_) {
    SteadyTime now{};
    for (size_t i = 0; i < waiting_.size() && budget_ > 0;) {
      if (waiting_[i]->held) {
        ++i;
        continue;
      }
      if (!TryAdmit(i, clock, &now)) break;  // admitted: waiting_[i] is now the next one
    }
  }
  return output_;
}

void Scheduler::SetHeld(RequestId id, bool held) {
  for (auto& s : running_) {
    if (s->id == id) s->held = held;
  }
  for (auto& s : waiting_) {
    if (s->id == id) s->held = held;
  }
}

bool Scheduler::has_schedulable() const {
  auto schedulable = [](const auto& s) { return !s->held; };
  return std::any_of(running_.begin(), running_.end(), schedulable) ||
         std::any_of(waiting_.begin(), waiting_.end(), schedulable);
}

std::unique_ptr<Sequence> Scheduler::Remove(const Sequence* seq) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() == seq) {
      std::unique_ptr<Sequence> out = std::move(*it);
      running_.erase(it);
      num_running_seqs_ -= out->num_seqs;
      FreeCache(*out);
      return out;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->get() == seq) {
      std::unique_ptr<Sequence> out = std::move(*it);
      waiting_.erase(it);
      return out;
    }
  }
  KV_CHECK(false) << "Scheduler::Remove: unknown sequence";
  return nullptr;
}

std::vector<std::unique_ptr<Sequence>> Scheduler::RemoveIf(
    const std::function<bool(const Sequence&)>& pred) {
  std::vector<std::unique_ptr<Sequence>> removed;
  for (auto& s : running_) {
    if (pred(*s)) {
      num_running_seqs_ -= s->num_seqs;
      FreeCache(*s);
      removed.push_back(std::move(s));
    }
  }
  std::erase(running_, nullptr);
  for (auto& s : waiting_) {
    if (pred(*s)) removed.push_back(std::move(s));
  }
  std::erase(waiting_, nullptr);
  return removed;
}

}  // namespace kvserve::engine
