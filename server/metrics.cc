#include "server/metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/summary.h"
#include "prometheus/text_serializer.h"
#include "server/http_listener.h"
#include "server/process_collector.h"
#include "server/request_log.h"

#ifndef KVSERVE_VERSION
#define KVSERVE_VERSION "unknown"
#endif

namespace kvserve::server {

using engine::CacheKind;
using engine::FinishReason;
using engine::kNumCacheKinds;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

namespace {

// vLLM's bucket boundaries (vllm/v1/metrics/loggers.py), so that dashboards and SLOs built for vLLM
// read the same on kvserve.
const Histogram::BucketBoundaries& TimeToFirstTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *b;
}
const Histogram::BucketBoundaries& InterTokenBuckets() {
  static const auto* b =
      new Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                      0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
  return *b;
}
const Histogram::BucketBoundaries& RequestLatencyBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
      30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *b;
}
const Histogram::BucketBoundaries& IterationTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{1,   8,    16,   32,   64,   128,  256,
                                                         512, 1024, 2048, 4096, 8192, 16384};
  return *b;
}
// 1, 2, 5, 10, 20, 50, ... up to and including `max_value` (vLLM's build_1_2_5_buckets).
Histogram::BucketBoundaries OneTwoFiveBuckets(int64_t max_value) {
  Histogram::BucketBoundaries b;
  for (int64_t scale = 1;; scale *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (m * scale > max_value) return b;
      b.push_back(static_cast<double>(m * scale));
    }
  }
}

bool IsSet(engine::SteadyTime t) { return t != engine::SteadyTime{}; }

}  // namespace

std::string_view FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kInvalid:
      return "invalid";
    case FailureReason::kCancelled:
      return "cancelled";
    case FailureReason::kDeadline:
      return "deadline";
    case FailureReason::kRejected:
      return "rejected";
    case FailureReason::kAborted:
      return "aborted";
    case FailureReason::kInternal:
      return "internal";
  }
  return "internal";
}

FailureReason FailureReasonFor(absl::StatusCode code, bool reached_engine, bool deadline_passed) {
  switch (code) {
    case absl::StatusCode::kCancelled:
      return deadline_passed ? FailureReason::kDeadline : FailureReason::kCancelled;
    case absl::StatusCode::kDeadlineExceeded:
      return FailureReason::kDeadline;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
      return FailureReason::kInvalid;
    case absl::StatusCode::kResourceExhausted:
      return FailureReason::kRejected;
    case absl::StatusCode::kUnavailable:
      return reached_engine ? FailureReason::kAborted : FailureReason::kRejected;
    default:
      return FailureReason::kInternal;
  }
}

RequestIntervals IntervalsOf(const engine::RequestStats& s) {
  using engine::SecondsBetween;
  RequestIntervals r;
  if (IsSet(s.first_scheduled_time)) {
    r.queue = SecondsBetween(s.arrival_time, s.first_scheduled_time);
  }
  if (IsSet(s.first_token_time)) {
    r.ttft = SecondsBetween(s.arrival_time, s.first_token_time);
    if (IsSet(s.first_scheduled_time)) {
      r.prefill = SecondsBetween(s.first_scheduled_time, s.first_token_time);
    }
    if (IsSet(s.last_token_time)) {
      r.decode = SecondsBetween(s.first_token_time, s.last_token_time);
      if (s.num_generation_tokens > 1) {
        r.time_per_output_token = *r.decode / (s.num_generation_tokens - 1);
      }
    }
  }
  if (IsSet(s.finish_time)) r.e2e = SecondsBetween(s.arrival_time, s.finish_time);
  return r;
}

// Every family, registered once; ModelMetrics adds its label sets to them.
struct MetricFamilies {
  Family<Histogram>* time_to_first_token;
  Family<Histogram>* inter_token_latency;
  Family<Histogram>* time_per_output_token;
  Family<Histogram>* e2e_latency;
  Family<Histogram>* queue_time;
  Family<Histogram>* prefill_time;
  Family<Histogram>* decode_time;
  Family<Histogram>* prompt_tokens_hist;
  Family<Histogram>* generation_tokens_hist;
  Family<Histogram>* iteration_tokens;
  Family<Gauge>* requests_running;
  Family<Gauge>* requests_waiting;
  Family<Gauge>* kv_cache_usage;
  Family<Gauge>* state_slots_usage;
  Family<Gauge>* cache_blocks;
  Family<Gauge>* cache_bytes;
  Family<Gauge>* cache_capacity_bytes;
  Family<Counter>* cache_evicted_blocks;
  Family<Counter>* prompt_tokens;
  Family<Counter>* generation_tokens;
  Family<Counter>* prefix_queries;
  Family<Counter>* prefix_hits;
  Family<Counter>* preemptions;
  Family<Counter>* success;
  Family<Counter>* failure;
  Family<Gauge>* cache_config_info;
  Family<Gauge>* build_info;
};

// ---------------------------------------------------------------------------------------------
// ModelMetrics

ModelMetrics::ModelMetrics(const MetricFamilies& f, std::string model, int64_t max_model_len,
                           std::shared_ptr<RequestLog> log,
                           std::shared_ptr<prometheus::Registry> registry)
    : model_(std::move(model)), log_(std::move(log)), registry_(std::move(registry)) {
  const prometheus::Labels m{{"model", model_}};
  time_to_first_token_ = &f.time_to_first_token->Add(m, TimeToFirstTokenBuckets());
  inter_token_latency_ = &f.inter_token_latency->Add(m, InterTokenBuckets());
  time_per_output_token_ = &f.time_per_output_token->Add(m, InterTokenBuckets());
  e2e_latency_ = &f.e2e_latency->Add(m, RequestLatencyBuckets());
  queue_time_ = &f.queue_time->Add(m, RequestLatencyBuckets());
  prefill_time_ = &f.prefill_time->Add(m, RequestLatencyBuckets());
  decode_time_ = &f.decode_time->Add(m, RequestLatencyBuckets());
  const Histogram::BucketBoundaries token_buckets =
      OneTwoFiveBuckets(std::max<int64_t>(1, max_model_len));
  prompt_tokens_hist_ = &f.prompt_tokens_hist->Add(m, token_buckets);
  generation_tokens_hist_ = &f.generation_tokens_hist->Add(m, token_buckets);
  iteration_tokens_ = &f.iteration_tokens->Add(m, IterationTokenBuckets());
  requests_running_ = &f.requests_running->Add(m);
  requests_waiting_ = &f.requests_waiting->Add(m);
  kv_cache_usage_ = &f.kv_cache_usage->Add(m);
  state_slots_usage_ = &f.state_slots_usage->Add(m);
  for (int k = 0; k < kNumCacheKinds; ++k) {
    const std::string kind(engine::CacheKindName(static_cast<CacheKind>(k)));
    used_blocks_[k] = &f.cache_blocks->Add({{"model", model_}, {"kind", kind}, {"state", "used"}});
    free_blocks_[k] = &f.cache_blocks->Add({{"model", model_}, {"kind", kind}, {"state", "free"}});
    used_bytes_[k] = &f.cache_bytes->Add({{"model", model_}, {"kind", kind}});
    capacity_bytes_[k] = &f.cache_capacity_bytes->Add({{"model", model_}, {"kind", kind}});
    evicted_blocks_[k] = &f.cache_evicted_blocks->Add({{"model", model_}, {"kind", kind}});
  }
  prompt_tokens_ = &f.prompt_tokens->Add(m);
  generation_tokens_ = &f.generation_tokens->Add(m);
  prefix_queries_ = &f.prefix_queries->Add(m);
  prefix_hits_ = &f.prefix_hits->Add(m);
  preemptions_ = &f.preemptions->Add(m);
  const FinishReason successes[] = {FinishReason::kLength, FinishReason::kStop, FinishReason::kEos};
  for (size_t i = 0; i < success_.size(); ++i) {
    success_[i] = &f.success->Add(
        {{"model", model_}, {"finished_reason", engine::FinishReasonName(successes[i])}});
  }
  for (int i = 0; i < kNumFailureReasons; ++i) {
    failure_[i] = &f.failure->Add(
        {{"model", model_},
         {"reason", std::string(FailureReasonName(static_cast<FailureReason>(i)))}});
  }
}

ModelMetrics::~ModelMetrics() = default;

void ModelMetrics::OnIteration(const engine::IterationStats& s) {
  for (double t : s.time_to_first_tokens) time_to_first_token_->Observe(t);
  for (double t : s.inter_token_latencies) inter_token_latency_->Observe(t);
  // An iteration that only dropped cancelled requests ran no model step.
  if (s.num_scheduled_tokens > 0) iteration_tokens_->Observe(s.num_scheduled_tokens);

  const engine::SchedulerStats& sched = s.scheduler;
  requests_running_->Set(sched.num_running);
  requests_waiting_->Set(sched.num_waiting);
  SetCacheUsage(sched.cache);
  for (int k = 0; k < kNumCacheKinds; ++k) {
    if (s.num_evicted_blocks[k] > 0) {
      evicted_blocks_[k]->Increment(static_cast<double>(s.num_evicted_blocks[k]));
    }
  }

  if (s.num_prompt_tokens > 0) prompt_tokens_->Increment(s.num_prompt_tokens);
  if (s.num_prefix_cache_queries > 0) {
    prefix_queries_->Increment(static_cast<double>(s.num_prefix_cache_queries));
  }
  if (s.num_prefix_cache_hits > 0) {
    prefix_hits_->Increment(static_cast<double>(s.num_prefix_cache_hits));
  }
  if (s.num_preemptions > 0) preemptions_->Increment(s.num_preemptions);
  // Last: a scraper that sees an iteration's generation tokens sees the rest of that iteration too.
  if (s.num_generation_tokens > 0) generation_tokens_->Increment(s.num_generation_tokens);
}

void ModelMetrics::SetCacheUsage(const engine::CacheUsage& cache) {
  double kv_usage = 0;
  for (int k = 0; k < kNumCacheKinds; ++k) {
    const engine::CacheKindUsage& u = cache.kinds[k];
    used_blocks_[k]->Set(static_cast<double>(u.num_used_blocks));
    free_blocks_[k]->Set(static_cast<double>(u.num_blocks - u.num_used_blocks));
    used_bytes_[k]->Set(static_cast<double>(u.used_bytes));
    capacity_bytes_[k]->Set(static_cast<double>(u.capacity_bytes));
    // Paged kinds may share one pool or have one each: report the fullest.
    if (static_cast<CacheKind>(k) != CacheKind::kRecurrentState && u.num_blocks > 0) {
      kv_usage = std::max(kv_usage, static_cast<double>(u.num_used_blocks) / u.num_blocks);
    }
  }
  kv_cache_usage_->Set(kv_usage);
  state_slots_usage_->Set(cache.num_state_slots > 0
                              ? static_cast<double>(cache.num_used_state_slots) /
                                    cache.num_state_slots
                              : 0.0);
}

void ModelMetrics::OnRequestFinished(const engine::RequestStats& s) {
  const bool success = s.finish_reason == FinishReason::kLength ||
                       s.finish_reason == FinishReason::kStop ||
                       s.finish_reason == FinishReason::kEos;
  // Request-level distributions describe served requests; a cancelled request's "latency" is the
  // client's patience. (TTFT and ITL were observed as the tokens happened, for every request.)
  if (success) {
    const RequestIntervals iv = IntervalsOf(s);
    if (iv.e2e) e2e_latency_->Observe(*iv.e2e);
    if (iv.queue) queue_time_->Observe(*iv.queue);
    if (iv.prefill) prefill_time_->Observe(*iv.prefill);
    if (iv.decode) decode_time_->Observe(*iv.decode);
    if (iv.time_per_output_token) time_per_output_token_->Observe(*iv.time_per_output_token);
    prompt_tokens_hist_->Observe(s.num_prompt_tokens);
    generation_tokens_hist_->Observe(s.num_generation_tokens);
  }
  if (log_ != nullptr) log_->Record(model_, s);
}

void ModelMetrics::CountSuccess(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      success_[0]->Increment();
      return;
    case FinishReason::kStop:
      success_[1]->Increment();
      return;
    case FinishReason::kEos:
      success_[2]->Increment();
      return;
    default:
      KV_CHECK(false) << "not a successful finish reason: " << engine::FinishReasonName(reason);
  }
}

void ModelMetrics::CountFailure(FailureReason reason) {
  failure_[static_cast<int>(reason)]->Increment();
}

// ---------------------------------------------------------------------------------------------
// PrometheusMetrics

PrometheusMetrics::PrometheusMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<MetricFamilies>()),
      process_(std::make_shared<ProcessCollector>()) {
  prometheus::Registry& r = *registry_;
  auto histogram = [&r](const char* name, const char* help) {
    return &prometheus::BuildHistogram()
                .Name(absl::StrCat("kvserve_", name))
                .Help(help)
                .Register(r);
  };
  auto gauge = [&r](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(absl::StrCat("kvserve_", name)).Help(help).Register(r);
  };
  auto counter = [&r](const char* name, const char* help) {
    return &prometheus::BuildCounter().Name(absl::StrCat("kvserve_", name)).Help(help).Register(r);
  };
  MetricFamilies& f = *families_;
  f.time_to_first_token =
      histogram("time_to_first_token_seconds",
                "Time from the request's arrival at the server to its first generated token.");
  f.inter_token_latency = histogram(
      "inter_token_latency_seconds",
      "Time between two consecutive generated tokens of one request (one sample per token).");
  f.time_per_output_token = histogram(
      "request_time_per_output_token_seconds",
      "Per successful request with at least two tokens: decode time / (generation tokens - 1).");
  f.e2e_latency = histogram("e2e_request_latency_seconds",
                            "Successful requests: time from arrival to the end of generation.");
  f.queue_time = histogram("request_queue_time_seconds",
                           "Successful requests: time from arrival to being first scheduled.");
  f.prefill_time = histogram(
      "request_prefill_time_seconds",
      "Successful requests: time from being first scheduled to the first generated token.");
  f.decode_time =
      histogram("request_decode_time_seconds",
                "Successful requests: time from the first to the last generated token.");
  f.prompt_tokens_hist =
      histogram("request_prompt_tokens", "Successful requests: prompt length in tokens.");
  f.generation_tokens_hist =
      histogram("request_generation_tokens", "Successful requests: generated tokens.");
  f.iteration_tokens = histogram(
      "iteration_tokens", "Tokens run through the model per engine iteration (prefill + decode).");
  f.requests_running = gauge("requests_running", "Requests in the engine's running batch.");
  f.requests_waiting = gauge("requests_waiting", "Requests waiting to be scheduled.");
  f.kv_cache_usage =
      gauge("kv_cache_usage_ratio",
            "Fraction of paged KV cache blocks in use (0..1; 0 while the cache is not paged).");
  f.state_slots_usage = gauge(
      "state_slots_usage_ratio",
      "Fraction of recurrent-state slots in use (0..1; 0 for models without recurrent layers).");
  f.cache_blocks = gauge("cache_blocks", "Paged cache blocks by memory kind and state.");
  f.cache_bytes = gauge("cache_bytes", "Cache bytes held by requests, by memory kind.");
  f.cache_capacity_bytes = gauge("cache_capacity_bytes",
                                 "Cache bytes allocated up front, by memory kind (0 while the "
                                 "cache is allocated per request).");
  f.cache_evicted_blocks = counter("cache_evicted_blocks_total",
                                   "Prefix-cached blocks evicted for reuse, by memory kind.");
  f.prompt_tokens = counter("prompt_tokens_total",
                            "Prompt tokens of requests whose prefill completed (first token).");
  f.generation_tokens = counter("generation_tokens_total", "Generated tokens.");
  f.prefix_queries =
      counter("prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
  f.prefix_hits = counter("prefix_cache_hits_total", "Prompt tokens found in the prefix cache.");
  f.preemptions = counter("preemptions_total", "Requests preempted to free cache space.");
  f.success = counter("request_success_total",
                      "Generate calls that delivered all their tokens, by finish reason.");
  f.failure = counter("request_failure_total", "Generate calls that failed, by reason.");
  f.cache_config_info = gauge("cache_config_info", "Cache configuration of a model (value 1).");
  f.build_info = gauge("build_info", "kvserve build (value 1).");
  f.build_info->Add({{"version", KVSERVE_VERSION}}).Set(1);
  malformed_requests_ =
      &counter("malformed_requests_total",
               "Calls whose request message could not be parsed (malformed protobuf, or invalid "
               "UTF-8 in a string field; also calls the client cancelled before its message "
               "arrived); gRPC answers them UNIMPLEMENTED before any handler runs.")
           ->Add({});
  stream_buffered_bytes_ =
      &gauge("stream_buffered_bytes",
             "Bytes of generated output held by the server for streams whose clients have not "
             "read them yet, all models.")
           ->Add({});
  stream_idle_timeouts_ =
      &counter("stream_idle_timeouts_total",
               "Streams ended because they were held for a client that took no output for "
               "--stream-idle-timeout, all models.")
           ->Add({});
}

PrometheusMetrics::~PrometheusMetrics() = default;

std::shared_ptr<ModelMetrics> PrometheusMetrics::AddModel(const std::string& model,
                                                          int64_t max_model_len,
                                                          std::shared_ptr<RequestLog> log) {
  KV_CHECK(!models_.contains(model)) << "model '" << model << "' added twice";
  auto metrics = std::shared_ptr<ModelMetrics>(
      new ModelMetrics(*families_, model, max_model_len, std::move(log), registry_));
  models_[model] = metrics;
  return metrics;
}

void PrometheusMetrics::SetEngineInfo(const engine::ModelInfo& info,
                                      const engine::EngineOptions& options,
                                      const engine::CacheUsage& cache_at_start) {
  families_->cache_config_info
      ->Add({{"model", info.name},
             {"dtype", info.kv_cache_dtype == cache::KvDtype::kBf16 ? "bfloat16" : "float32"},
             {"block_size", absl::StrCat(info.block_size)},
             {"num_blocks", absl::StrCat(info.kv_cache_blocks)},
             // vLLM's name for the same count, which the inference gateway's endpoint picker reads
             // (with block_size) to size its prefix index per server (docs/metrics.md).
             {"num_gpu_blocks", absl::StrCat(info.kv_cache_blocks)},
             {"cache_bytes", absl::StrCat(info.kv_cache_bytes)},
             {"kv_bytes_per_token", absl::StrCat(info.kv_cache_bytes_per_token)},
             {"enable_prefix_caching", options.enable_prefix_caching ? "true" : "false"},
             {"max_num_seqs", absl::StrCat(options.max_num_seqs)},
             {"prefill_chunk_tokens", absl::StrCat(options.prefill_chunk_tokens)}})
      .Set(1);
  // The same setter each iteration uses (OnIteration), so start-up and steady state agree.
  ModelMetrics* model = ForModel(info.name);
  KV_CHECK(model != nullptr) << "SetEngineInfo before AddModel for '" << info.name << "'";
  model->SetCacheUsage(cache_at_start);
}

ModelMetrics* PrometheusMetrics::ForModel(std::string_view model) const {
  // Debian's Abseil has its own string_view type; the map looks it up without a copy.
  auto it = models_.find(absl::string_view(model.data(), model.size()));
  return it == models_.end() ? nullptr : it->second.get();
}

void PrometheusMetrics::CountMalformedRequest() { malformed_requests_->Increment(); }

void PrometheusMetrics::CountUnknownModel() {
  // Rare, and off the engine thread: resolving the label set here is fine.
  families_->failure->Add({{"model", ""}, {"reason", "invalid"}}).Increment();
}

absl::Status PrometheusMetrics::Serve(const std::string& address,
                                      std::shared_ptr<TlsCertificateReloader> tls) {
  KV_CHECK(listener_ == nullptr) << "Serve called twice";
  // prometheus-cpp's exposer counted its scrapes in series of its own; they stay, with the same
  // names, types and units (the latency in microseconds), so dashboards built on them still read.
  exposer_registry_ = std::make_shared<prometheus::Registry>();
  scraped_bytes_ = &prometheus::BuildCounter()
                        .Name("exposer_transferred_bytes_total")
                        .Help("Transferred bytes to metrics services")
                        .Register(*exposer_registry_)
                        .Add({});
  scrapes_ = &prometheus::BuildCounter()
                  .Name("exposer_scrapes_total")
                  .Help("Number of times metrics were scraped")
                  .Register(*exposer_registry_)
                  .Add({});
  scrape_latency_us_ =
      &prometheus::BuildSummary()
           .Name("exposer_request_latencies")
           .Help("Latencies of serving scrape requests, in microseconds")
           .Register(*exposer_registry_)
           .Add({}, prometheus::Summary::Quantiles{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}});
  HttpListenerOptions options;
  options.address = address;
  options.flag = "--metrics-address";
  options.max_body_bytes = 1 << 10;  // a scrape is a GET
  // Prometheus keeps one connection per target; the rest leaves room for a person with curl and a
  // second Prometheus (an HA pair).
  options.max_connections = 4;
  options.tls = std::move(tls);
  KV_ASSIGN_OR_RETURN(listener_, HttpListener::Create(std::move(options)));
  listener_->server().Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const auto start = std::chrono::steady_clock::now();
    std::string body = Serialize();
    scraped_bytes_->Increment(static_cast<double>(body.size()));
    res.set_content(std::move(body), "text/plain; version=0.0.4; charset=utf-8");
    scrapes_->Increment();
    scrape_latency_us_->Observe(
        static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count()));
  });
  absl::StatusOr<int> port = listener_->Start();
  if (!port.ok()) {
    listener_.reset();
    return port.status();
  }
  port_ = *port;
  return absl::OkStatus();
}

void PrometheusMetrics::StopServing() {
  if (listener_ != nullptr) listener_->Stop();
}

std::string PrometheusMetrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families;
  if (exposer_registry_ != nullptr) families = exposer_registry_->Collect();
  for (prometheus::MetricFamily& f : registry_->Collect()) families.push_back(std::move(f));
  for (prometheus::MetricFamily& f : process_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace kvserve::server
