// kvserve: the model-serving gRPC server.
//
//   kvserve [--listen=HOST:PORT] [--model=[NAME=]DIR ...] [flags]
//
// SIGINT / SIGTERM: readiness goes NOT_SERVING, new calls get UNAVAILABLE, the listener closes,
// in-flight streams get --shutdown-timeout seconds to finish (those still running then end with
// UNAVAILABLE), then the process exits 0.
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "base/flags.h"
#include "base/logging.h"
#include "engine/model/model_loader.h"
#include "server/kvserve_server.h"

namespace {

using kvserve::base::FlagSet;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

int Run(int argc, char** argv) {
  kvserve::server::ServerOptions options;
  std::vector<std::string> models;
  int64_t max_num_seqs = options.engine.max_num_seqs;
  int64_t max_running = options.engine.max_num_seqs;  // the old name of --max-num-seqs
  int64_t max_batched_tokens = options.engine.max_num_batched_tokens;
  bool batch_invariant = options.engine.batch_invariant;
  int64_t max_queued = options.engine.max_queued_requests;
  int64_t prefill_chunk = options.engine.prefill_chunk_tokens;
  uint64_t seed = options.engine.seed;
  int64_t threads = options.engine.num_threads;
  int64_t kv_cache_bytes = options.engine.kv_cache_bytes;
  int64_t block_size = options.engine.block_size;
  bool prefix_caching = options.engine.enable_prefix_caching;
  bool reflection = options.enable_reflection;
  double shutdown_timeout = 30.0;
  double max_connection_age = 0;
  std::string log_level = "info";
  std::string weight_dtype = "auto";
  std::string kv_cache_dtype(kvserve::cache::KvDtypeName(options.engine.kv_cache_dtype));
  std::string metrics_address = "0.0.0.0:9464";
  bool log_requests = false;

  FlagSet flags("kvserve",
                "Serves decoder language models over gRPC (kvserve.v1.KvServe, grpc.health.v1, "
                "reflection). With no --model it serves the embedded default model, '" +
                    std::string(kvserve::engine::kDefaultModelName) +
                    "', whose weights are seeded random numbers: it produces noise, not language.");
  flags.AddString("listen", &options.listen_address,
                  "gRPC address to listen on (HOST:PORT; port 0 picks a free port)");
  flags.AddRepeatedString(
      "model", &models,
      "model to serve: DIR or NAME=DIR, a Hugging Face directory with config.json "
      "and model.safetensors (repeatable; the first is the default model)");
  flags.AddString("weight-dtype", &weight_dtype,
                  "precision the weight matrices are kept in: auto (the checkpoint's: F32 stays "
                  "f32, BF16 and F16 become bf16), f32, bf16, or int8 (per 32 inputs one scale); "
                  "norms stay f32");
  flags.AddInt("max-num-seqs", &max_num_seqs,
               "sequences decoded concurrently per model (a request with n samples counts n); "
               "further requests wait");
  flags.AddInt("max-running-requests", &max_running, "alias of --max-num-seqs");
  flags.AddInt("max-num-batched-tokens", &max_batched_tokens,
               "tokens per engine step per model: decode tokens of running sequences first, then "
               "prefill chunks, in one batched model step");
  flags.AddBool("batch-invariant", &batch_invariant,
                "compute every matmul row exactly as it would be computed alone, so a greedy "
                "request gives the same tokens alone or in any batch (costs some speed on small "
                "batches)");
  flags.AddInt("max-queued-requests", &max_queued,
               "requests allowed to wait per model; beyond it RESOURCE_EXHAUSTED");
  flags.AddInt("prefill-chunk-tokens", &prefill_chunk,
               "longest prompt chunk prefilled in one engine step");
  flags.AddUint64("seed", &seed, "seed for requests that do not set sampling.seed");
  flags.AddInt("threads", &threads,
               "threads per model for matmuls (0 = auto: 1 for models under 100M parameters, "
               "whose matmuls are too small to share, else one per core)");
  flags.AddInt("kv-cache-bytes", &kv_cache_bytes,
               "KV-cache budget per model, allocated at start (0 = enough for every running "
               "request at full context, at most 40% of available memory; printed at start-up)");
  flags.AddInt("block-size", &block_size, "tokens per KV-cache block");
  flags.AddString("kv-cache-dtype", &kv_cache_dtype,
                  "storage of attention keys and values in the KV cache: f32, or bf16 (half the "
                  "bytes, so twice the tokens per --kv-cache-bytes; values rounded to nearest "
                  "even, attention accumulates in f32); MLA latents stay f32");
  flags.AddBool("prefix-caching", &prefix_caching,
                "reuse the cached KV blocks of earlier prompts that share a prefix");
  flags.AddBool("reflection", &reflection, "serve gRPC server reflection (v1alpha)");
  flags.AddDouble("shutdown-timeout", &shutdown_timeout,
                  "seconds in-flight streams may run after SIGTERM");
  flags.AddDouble("max-connection-age", &max_connection_age,
                  "seconds after which a client connection is sent GOAWAY, so clients re-resolve "
                  "and spread over new replicas; its streams finish first (0 = never)");
  flags.AddString("log-level", &log_level, "debug, info, warning or error");
  flags.AddString("metrics-address", &metrics_address,
                  "serve Prometheus metrics on http://HOST:PORT/metrics (port 0 picks a free "
                  "port; empty = off)");
  flags.AddBool("log-requests", &log_requests,
                "write one JSON line per finished request to stderr");

  absl::Status parsed = flags.Parse(argc, argv, 1, nullptr);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "kvserve: %s\nRun kvserve --help for the flags.\n",
                 std::string(parsed.message()).c_str());
    return 2;
  }
  kvserve::base::LogSeverity severity;
  if (!kvserve::base::ParseLogSeverity(log_level, &severity)) {
    std::fprintf(stderr, "kvserve: --log-level: unknown level '%s'\n", log_level.c_str());
    return 2;
  }
  kvserve::base::SetMinLogSeverity(severity);
  const std::optional<kvserve::engine::WeightDType> dtype =
      kvserve::engine::ParseWeightDType(weight_dtype);
  if (!dtype.has_value()) {
    std::fprintf(stderr,
                 "kvserve: --weight-dtype: unknown precision '%s' (auto, f32, bf16 or int8)\n",
                 weight_dtype.c_str());
    return 2;
  }
  const std::optional<kvserve::cache::KvDtype> kv_dtype =
      kvserve::cache::ParseKvDtype(kv_cache_dtype);
  if (!kv_dtype.has_value()) {
    std::fprintf(stderr, "kvserve: --kv-cache-dtype: unknown type '%s' (f32 or bf16)\n",
                 kv_cache_dtype.c_str());
    return 2;
  }
  if (flags.IsSet("max-running-requests")) {
    if (flags.IsSet("max-num-seqs") && max_num_seqs != max_running) {
      std::fprintf(stderr,
                   "kvserve: --max-num-seqs=%lld and its alias --max-running-requests=%lld "
                   "disagree\n",
                   static_cast<long long>(max_num_seqs), static_cast<long long>(max_running));
      return 2;
    }
    max_num_seqs = max_running;
  }
  if (max_num_seqs < 1 || max_num_seqs > kMaxInt32 || max_batched_tokens < 1 ||
      max_batched_tokens > kMaxInt32 || max_queued < 0 || prefill_chunk < 1 ||
      prefill_chunk > kMaxInt32 || threads < 0 || kv_cache_bytes < 0 || block_size < 1 ||
      block_size > 1024 || !(shutdown_timeout >= 0)) {
    std::fprintf(stderr,
                 "kvserve: --max-num-seqs, --max-num-batched-tokens and --prefill-chunk-tokens "
                 "must be in [1, 2^31), --max-queued-requests, --threads, --kv-cache-bytes and "
                 "--shutdown-timeout >= 0, --block-size in [1, 1024]\n");
    return 2;
  }
  if (max_batched_tokens < max_num_seqs) {
    std::fprintf(stderr,
                 "kvserve: --max-num-batched-tokens (%lld) must be >= --max-num-seqs (%lld): every "
                 "running sequence needs a token of each step\n",
                 static_cast<long long>(max_batched_tokens), static_cast<long long>(max_num_seqs));
    return 2;
  }
  // gRPC takes the age in int milliseconds.
  if (!(max_connection_age >= 0 && max_connection_age <= 2e6)) {
    std::fprintf(stderr, "kvserve: --max-connection-age must be in [0, 2000000] seconds\n");
    return 2;
  }
  options.max_connection_age = std::chrono::milliseconds(std::llround(max_connection_age * 1000));
  options.engine.max_num_seqs = static_cast<int32_t>(max_num_seqs);
  options.engine.max_num_batched_tokens = static_cast<int32_t>(max_batched_tokens);
  options.engine.batch_invariant = batch_invariant;
  options.engine.max_queued_requests = static_cast<int32_t>(max_queued);
  options.engine.prefill_chunk_tokens = static_cast<int32_t>(prefill_chunk);
  options.engine.seed = seed;
  options.engine.num_threads = static_cast<int32_t>(threads);
  options.engine.kv_cache_bytes = kv_cache_bytes;
  options.engine.block_size = static_cast<int32_t>(block_size);
  options.engine.kv_cache_dtype = *kv_dtype;
  options.engine.enable_prefix_caching = prefix_caching;
  options.enable_reflection = reflection;
  options.metrics_address = metrics_address;
  options.log_requests = log_requests;
  for (const std::string& m : models) options.models.push_back(kvserve::server::ParseModelSpec(m));
  if (options.models.empty()) options.models.push_back({});  // the embedded default model
  for (kvserve::server::ModelSpec& spec : options.models) spec.weight_dtype = *dtype;

  // Block the shutdown signals in every thread (threads inherit the mask) and wait for them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = kvserve::server::KvServer::Create(options);
  if (!server.ok()) {
    KV_LOG(ERROR) << server.status().message();
    return 1;
  }
  KV_LOG(INFO) << "kvserve listening on " << options.listen_address << " (port "
               << (*server)->port() << "), " << (*server)->models().engines().size() << " model(s)";
  if (!metrics_address.empty()) {
    KV_LOG(INFO) << "metrics on http://" << metrics_address.substr(0, metrics_address.rfind(':'))
                 << ":" << (*server)->metrics_port() << "/metrics";
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  KV_LOG(INFO) << "received " << (signal_number == SIGTERM ? "SIGTERM" : "SIGINT")
               << ": draining for up to " << shutdown_timeout << " s";
  const auto grace = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(shutdown_timeout));
  (*server)->Shutdown(std::chrono::system_clock::now() + grace);
  (*server)->Wait();
  KV_LOG(INFO) << "shutdown complete";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
