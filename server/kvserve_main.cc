// kvserve: the model-serving gRPC server, with the OpenAI-compatible HTTP API beside it.
//
//   kvserve [--listen=HOST:PORT] [--model=[NAME=]DIR ...] [flags]
//
// SIGINT / SIGTERM: readiness goes NOT_SERVING, new calls get UNAVAILABLE, in-flight streams get
// --shutdown-timeout seconds to finish (those still running then end with UNAVAILABLE) while the
// listener stays open for health checks, then it closes and the process exits 0.
#include <signal.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "base/flags.h"
#include "base/logging.h"
#include "engine/model/model_loader.h"
#include "server/default_model.h"
#include "server/kvserve_server.h"

namespace {

using kvserve::base::FlagSet;

constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

// With no --model: the default model directory beside the binary (server/default_model.h), named
// after the directory it resolves to (models/default -> models/<name> serves "<name>"), else the
// embedded random-weight model.
kvserve::server::ModelSpec DefaultModel(const char* argv0) {
  std::error_code error;
  std::filesystem::path binary = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) binary = std::filesystem::absolute(argv0, error);
  const kvserve::server::DefaultModelLookup lookup = kvserve::server::FindDefaultModel(
      binary.string(), std::getenv(kvserve::server::kDefaultModelEnv));
  kvserve::server::ModelSpec spec;
  if (!lookup.dir.has_value()) {
    KV_LOG(WARNING) << "no --model and no default model directory (searched "
                    << absl::StrJoin(lookup.searched, ", ") << "): serving the embedded model '"
                    << kvserve::engine::kDefaultModelName
                    << "', whose weights are seeded random numbers (its output is noise)";
    return spec;
  }
  spec.dir = *lookup.dir;
  const std::filesystem::path resolved = std::filesystem::canonical(spec.dir, error);
  spec.name =
      (error ? std::filesystem::path(spec.dir).lexically_normal() : resolved).filename().string();
  KV_LOG(INFO) << "no --model: serving the default model '" << spec.name << "' from " << spec.dir
               << (error ? "" : " (" + resolved.string() + ")");
  return spec;
}

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
  std::string metrics_address = ":9464";
  bool log_requests = false;
  int64_t max_stream_buffer_bytes = options.max_stream_buffer_bytes;
  int64_t max_buffered_bytes = options.max_buffered_bytes;
  int64_t stream_idle_timeout = options.stream_idle_timeout.count();
  std::string api_keys_file;
  int64_t tls_refresh_interval = options.tls.refresh_interval_seconds;
  bool share_prefix_cache = false;
  std::string http_address = "127.0.0.1:8000";
  int64_t http_max_body_bytes = 8 << 20;
  int64_t http_max_connections = 64;
  int64_t http_read_timeout = 10;
  int64_t http_write_timeout = 10;

  FlagSet flags("kvserve",
                "Serves decoder language models over gRPC (kvserve.v1.KvServe, grpc.health.v1, "
                "reflection) and OpenAI-compatible HTTP (--http-address). With no --model it "
                "serves the first of $" +
                    std::string(kvserve::server::kDefaultModelEnv) +
                    ", <binary dir>/../share/kvserve/models/" +
                    kvserve::server::kDefaultModelDirName + " and <binary dir>/../../models/" +
                    kvserve::server::kDefaultModelDirName +
                    " (the build tree) that holds a config.json; if none does, or with --model= "
                    "(empty), the embedded model '" +
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
                  "port; no HOST, ':PORT', = the --listen host, so metrics are as reachable as "
                  "gRPC; empty = off). Served without API keys; over HTTPS with --tls-cert, and "
                  "with --tls-client-ca scrapers present a client certificate");
  flags.AddBool("log-requests", &log_requests,
                "write one JSON line per finished request to stderr");
  flags.AddInt("max-stream-buffer-bytes", &max_stream_buffer_bytes,
               "generated output a stream (gRPC Generate or HTTP call) may hold for a client that "
               "is not reading; beyond it the request stops generating (keeping its cache) until "
               "the client reads");
  flags.AddInt("max-buffered-bytes", &max_buffered_bytes,
               "the same bound for all streams of both APIs together (the "
               "kvserve_stream_buffered_bytes gauge)");
  flags.AddInt("stream-idle-timeout", &stream_idle_timeout,
               "seconds a stream held by those bounds may wait for its client to read; then its "
               "request is cancelled (freeing its running slot and cache) and the call ended "
               "(0 = wait for ever)");

  flags.AddString("api-keys-file", &api_keys_file,
                  "require 'authorization: Bearer <key>' on every kvserve.v1 call (health and "
                  "reflection stay open); the file holds one key per line, optionally followed by "
                  "its tenant, and is reloaded when it changes (docs/security.md)");
  flags.AddString("tls-cert", &options.tls.cert_file,
                  "serve gRPC, the HTTP API and /metrics over TLS with this PEM certificate chain "
                  "(leaf first); with --tls-key. Re-read when it changes (docs/security.md)");
  flags.AddString("tls-key", &options.tls.key_file, "the PEM private key of --tls-cert");
  flags.AddString("tls-client-ca", &options.tls.client_ca_file,
                  "with --tls-cert: require client certificates signed by a CA in this PEM "
                  "bundle (mutual TLS) on every port");
  flags.AddInt("tls-refresh-interval", &tls_refresh_interval,
               "seconds between checks of the TLS files for a rotated certificate");
  flags.AddBool("show-model-paths", &options.show_model_paths,
                "ListModels reports each model directory's absolute path (default: only its "
                "name)");
  flags.AddBool("share-prefix-cache-across-tenants", &share_prefix_cache,
                "with --api-keys-file: let all tenants reuse each other's cached prompt blocks "
                "(off: each tenant's prefix cache is its own, so no tenant can probe another's "
                "prompts by timing)");

  flags.AddString("http-address", &http_address,
                  "serve the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
                  "/v1/models, /health) on HOST:PORT (port 0 picks a free port; empty = off)");
  flags.AddInt("http-max-body-bytes", &http_max_body_bytes,
               "largest HTTP request body; larger ones are answered 413");
  flags.AddInt("http-max-connections", &http_max_connections,
               "HTTP connections served at once (one thread each); more are answered 503");
  flags.AddInt("http-read-timeout", &http_read_timeout,
               "seconds an HTTP client may stall while sending headers or body before it is "
               "disconnected");
  flags.AddInt("http-write-timeout", &http_write_timeout,
               "seconds an HTTP client may stall reading the response before it is disconnected "
               "(its request is cancelled)");

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
      block_size > 1024 || !(shutdown_timeout >= 0) || max_stream_buffer_bytes < 1 ||
      max_buffered_bytes < 1) {
    std::fprintf(stderr,
                 "kvserve: --max-num-seqs, --max-num-batched-tokens and --prefill-chunk-tokens "
                 "must be in [1, 2^31), --max-queued-requests, --threads, --kv-cache-bytes and "
                 "--shutdown-timeout >= 0, --block-size in [1, 1024], --max-stream-buffer-bytes "
                 "and --max-buffered-bytes >= 1\n");
    return 2;
  }
  if (max_batched_tokens < max_num_seqs) {
    std::fprintf(stderr,
                 "kvserve: --max-num-batched-tokens (%lld) must be >= --max-num-seqs (%lld): every "
                 "running sequence needs a token of each step\n",
                 static_cast<long long>(max_batched_tokens), static_cast<long long>(max_num_seqs));
    return 2;
  }
  if (http_max_body_bytes < 1 || http_max_connections < 1 || http_max_connections > 4096 ||
      http_read_timeout < 1 || http_write_timeout < 1) {
    std::fprintf(stderr,
                 "kvserve: --http-max-body-bytes, --http-read-timeout and --http-write-timeout "
                 "must be >= 1, --http-max-connections in [1, 4096]\n");
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
  options.max_stream_buffer_bytes = max_stream_buffer_bytes;
  options.max_buffered_bytes = max_buffered_bytes;
  options.stream_idle_timeout = std::chrono::seconds(stream_idle_timeout);
  if (absl::Status s = kvserve::server::ValidateStreamIdleTimeout(options.stream_idle_timeout);
      !s.ok()) {
    std::fprintf(stderr, "kvserve: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  if (tls_refresh_interval < 1 || tls_refresh_interval > 86400) {
    std::fprintf(stderr, "kvserve: --tls-refresh-interval must be in [1, 86400] seconds\n");
    return 2;
  }
  options.tls.refresh_interval_seconds = static_cast<int>(tls_refresh_interval);
  if (!options.tls.client_ca_file.empty() && !options.tls.enabled()) {
    std::fprintf(stderr, "kvserve: --tls-client-ca needs --tls-cert and --tls-key\n");
    return 2;
  }
  if (options.tls.enabled()) {
    if (absl::StatusOr<kvserve::server::TlsPem> pem = kvserve::server::ReadTlsFiles(options.tls);
        !pem.ok()) {
      std::fprintf(stderr, "kvserve: %s\n", std::string(pem.status().message()).c_str());
      return 2;
    }
  }
  if (share_prefix_cache && api_keys_file.empty()) {
    std::fprintf(stderr,
                 "kvserve: --share-prefix-cache-across-tenants needs --api-keys-file (without "
                 "keys there are no tenants)\n");
    return 2;
  }
  if (!api_keys_file.empty()) {
    kvserve::server::ApiKeyAuthenticator::Options auth;
    auth.keys_file = api_keys_file;
    auth.share_prefix_cache_across_tenants = share_prefix_cache;
    auto api_keys = kvserve::server::ApiKeyAuthenticator::Create(auth);
    if (!api_keys.ok()) {
      std::fprintf(stderr, "kvserve: %s\n", std::string(api_keys.status().message()).c_str());
      return 2;
    }
    KV_LOG(INFO) << "API keys: " << (*api_keys)->num_keys() << " key(s) from " << api_keys_file;
    options.api_keys = *std::move(api_keys);
  }
  options.http.address = http_address;
  options.http.max_body_bytes = http_max_body_bytes;
  options.http.max_connections = static_cast<int32_t>(http_max_connections);
  options.http.read_timeout = std::chrono::seconds(http_read_timeout);
  options.http.write_timeout = std::chrono::seconds(http_write_timeout);
  for (const std::string& m : models) options.models.push_back(kvserve::server::ParseModelSpec(m));
  if (options.models.empty()) options.models.push_back(DefaultModel(argv[0]));
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
  KV_LOG(INFO) << "transport (gRPC, HTTP, metrics): "
               << (!options.tls.enabled()               ? "plaintext"
                   : options.tls.client_ca_file.empty() ? "TLS"
                                                        : "mutual TLS")
               << (options.api_keys != nullptr ? ", API keys required" : ", no API keys");
  if (options.api_keys != nullptr && !options.tls.enabled()) {
    KV_LOG(WARNING) << "API keys travel in plaintext: serve TLS (--tls-cert, --tls-key) unless "
                       "the network encrypts the connection (docs/security.md)";
  }
  if (!metrics_address.empty()) {
    const std::string address =
        kvserve::server::MetricsListenAddress(metrics_address, options.listen_address);
    KV_LOG(INFO) << "metrics on " << (options.tls.enabled() ? "https://" : "http://")
                 << address.substr(0, address.rfind(':')) << ":" << (*server)->metrics_port()
                 << "/metrics";
  }
  if (!http_address.empty()) {
    KV_LOG(INFO) << "OpenAI-compatible HTTP API on "
                 << (options.tls.enabled() ? "https://" : "http://") << http_address << " (port "
                 << (*server)->http_port() << ")";
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
