// kvserve-cli: command-line client for the kvserve gRPC API.
//
//   kvserve-cli [--target=HOST:PORT] [--timeout=SECONDS] [--api-key=KEY] [--tls-ca=FILE]
//               <command> [command flags]
//
// One function per command: each parses its own flags, makes one RPC, prints the result and returns
// the process exit status. Server errors print `error: <CODE_NAME>: <message>` and exit 2.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "base/flags.h"
#include "base/logging.h"
#include "base/status_macros.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "tools/client_security.h"

namespace kvserve::cli {
namespace {

namespace v1 = ::kvserve::v1;
namespace health = ::grpc::health::v1;
using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitUnhealthy = 1;
constexpr int kExitError = 2;
constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report a Ctrl-C'd command.

// A container HEALTHCHECK must not hang on a wedged server.
constexpr double kHealthDefaultTimeoutSeconds = 5;

// Where to connect and how long a call may take; every command accepts these flags, before or
// after the command name.
struct Connection {
  std::string target = "127.0.0.1:50051";
  double timeout_seconds = 0;  // Meaningful only when timeout_given.
  bool timeout_given = false;
  tools::ClientSecurity security;  // API key and TLS (tools/client_security.h)
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // set by ParseCommandFlags
};

void AddConnectionFlags(base::FlagSet& flags, Connection* connection) {
  flags.AddString("target", &connection->target, "Server address, host:port or a gRPC target URI.");
  flags.AddDouble("timeout", &connection->timeout_seconds,
                  "Deadline for the call in seconds; for generate it covers the whole stream.");
  flags.SetDefaultText("timeout", "none; 5 for health");
  tools::AddClientSecurityFlags(flags, &connection->security);
}

// The call's deadline and, with an API key, its authorization metadata.
void SetDeadline(const Connection& connection, std::optional<double> default_seconds,
                 grpc::ClientContext* context) {
  tools::Authorize(connection.security, context);
  std::optional<double> seconds = default_seconds;
  if (connection.timeout_given) seconds = connection.timeout_seconds;
  if (!seconds) return;
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(*seconds)));
}

int UsageError(absl::string_view command, absl::string_view message) {
  std::cerr << "error: " << message << "\nrun 'kvserve-cli" << (command.empty() ? "" : " ")
            << command << " --help' for usage\n";
  return kExitError;
}

int RpcError(const grpc::Status& status) {
  // gRPC and absl share the canonical code numbering, so absl supplies the names.
  std::cerr << "error: "
            << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) << ": "
            << status.error_message() << "\n";
  return kExitError;
}

// Parses a command's flags. Returns the exit status when the command should stop here (--help, or a
// usage error), nullopt when it should go on.
std::optional<int> ParseCommandFlags(absl::string_view command, base::FlagSet& flags,
                                     Connection* connection, int argc, char** argv, int first) {
  if (const absl::Status status = flags.Parse(argc, argv, first, nullptr); !status.ok()) {
    return UsageError(command, status.message());
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitOk;
  }
  connection->timeout_given |= flags.IsSet("timeout");
  if (connection->timeout_given && !(connection->timeout_seconds > 0)) {
    return UsageError(
        command, absl::StrCat("--timeout must be > 0 seconds, got ", connection->timeout_seconds));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      tools::ResolveClientSecurity(&connection->security);
  if (!credentials.ok()) return UsageError(command, credentials.status().message());
  connection->credentials = *std::move(credentials);
  return std::nullopt;
}

// Narrows an int flag to an int32 proto field.
absl::StatusOr<int32_t> ToInt32(absl::string_view flag, int64_t value) {
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid value '", value, "' for flag ", flag, ": out of range for int32"));
  }
  return static_cast<int32_t>(value);
}

std::shared_ptr<grpc::Channel> Connect(const Connection& connection) {
  return grpc::CreateChannel(connection.target, connection.credentials);
}

// Cancels a call when the user presses Ctrl-C, for as long as it lives.
//
// A signal handler may only call async-signal-safe functions and ClientContext::TryCancel is not
// one, so the handler only writes a byte to a pipe; a watcher thread reads it and cancels. The
// handler is installed with SA_RESETHAND: if cancelling gets stuck, a second Ctrl-C kills the
// process as usual. When SIGINT is ignored on entry (a background job of a non-interactive shell),
// it stays ignored.
class InterruptWatcher {
 public:
  explicit InterruptWatcher(grpc::ClientContext* context) {
    KV_CHECK(pipe2(pipe_, O_CLOEXEC) == 0) << "pipe2: errno " << errno;
    write_fd_ = pipe_[1];
    KV_CHECK(sigaction(SIGINT, nullptr, &previous_) == 0) << "sigaction: errno " << errno;
    if (previous_.sa_handler != SIG_IGN) {
      struct sigaction action = {};
      action.sa_handler = &InterruptWatcher::OnSignal;
      sigemptyset(&action.sa_mask);
      action.sa_flags = SA_RESTART | SA_RESETHAND;
      KV_CHECK(sigaction(SIGINT, &action, nullptr) == 0) << "sigaction: errno " << errno;
    }
    thread_ = std::thread([this, context] { Watch(context); });
  }
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  ~InterruptWatcher() {
    sigaction(SIGINT, &previous_, nullptr);
    WriteByte(pipe_[1], kQuit);
    thread_.join();
    write_fd_ = -1;
    close(pipe_[0]);
    close(pipe_[1]);
  }

  bool interrupted() const { return interrupted_.load(); }

 private:
  static constexpr char kInterrupt = 'i';
  static constexpr char kQuit = 'q';

  static void WriteByte(int fd, char byte) {
    const ssize_t ignored = write(fd, &byte, 1);
    (void)ignored;
  }

  static void OnSignal(int) {
    const int saved_errno = errno;
    WriteByte(write_fd_, kInterrupt);
    errno = saved_errno;
  }

  void Watch(grpc::ClientContext* context) {
    while (true) {
      char byte = 0;
      const ssize_t n = read(pipe_[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || byte == kQuit) return;
      interrupted_.store(true);
      context->TryCancel();
    }
  }

  // The handler cannot reach `this`; one watcher exists at a time.
  static inline volatile sig_atomic_t write_fd_ = -1;

  int pipe_[2] = {-1, -1};
  struct sigaction previous_ = {};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

std::string Milliseconds(Clock::duration duration) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1)
      << std::chrono::duration<double, std::milli>(duration).count() << " ms";
  return out.str();
}

// "FINISH_REASON_LENGTH" -> "length".
std::string FinishReasonName(v1::FinishReason reason) {
  const std::string& name = v1::FinishReason_Name(reason);
  if (name.empty()) return absl::StrCat("unknown (", static_cast<int>(reason), ")");
  return absl::AsciiStrToLower(absl::StripPrefix(name, "FINISH_REASON_"));
}

// --normalizer's values, as the proto's Normalizer enum spells them without the prefix.
std::optional<v1::Normalizer> ParseNormalizer(absl::string_view name) {
  v1::Normalizer value;
  if (absl::AsciiStrToLower(name) != name ||
      !v1::Normalizer_Parse(absl::StrCat("NORMALIZER_", absl::AsciiStrToUpper(name)), &value)) {
    return std::nullopt;
  }
  return value;
}

// What one sample of a Generate stream produced.
struct SampleOutput {
  std::vector<int32_t> token_ids;
  std::vector<v1::TokenLogprobs> logprobs;
  std::string text;
  bool finished = false;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};

// "-0.1234"
std::string Logprob(float logprob) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(4) << logprob;
  return out.str();
}

// One line per token: position, token id, its logprob, then the top entries as id=logprob.
void PrintLogprobs(const SampleOutput& sample, std::ostream& out) {
  for (size_t i = 0; i < sample.token_ids.size(); ++i) {
    out << "  " << i << "\t" << sample.token_ids[i];
    if (i >= sample.logprobs.size()) {
      out << "\t(none)\n";
      continue;
    }
    const v1::TokenLogprobs& lp = sample.logprobs[i];
    out << "\t" << Logprob(lp.logprob());
    if (lp.top_size() > 0) {
      out << "\ttop:";
      for (const v1::TopLogprob& top : lp.top()) {
        out << " " << top.token_id() << "=" << Logprob(top.logprob());
      }
    }
    out << "\n";
  }
}

// The generation flags Generate and Chat share. Defaults are the server's documented ones, for
// --help only: flags left out are not sent.
struct GenerationFlags {
  std::string model;
  int64_t max_tokens = 16;
  int64_t n = 1;
  int64_t priority = 0;
  int64_t logprobs = 0;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::string normalizer = "softmax";
  uint64_t seed = 0;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool print_token_ids = false;
};

void AddGenerationFlags(base::FlagSet& flags, GenerationFlags* g) {
  flags.AddString("model", &g->model, "Model name, see 'kvserve-cli models'.");
  flags.SetDefaultText("model", "server default");
  flags.AddInt("max-tokens", &g->max_tokens, "Maximum number of tokens to generate, per sample.");
  flags.AddInt("n", &g->n, "Number of samples of the prompt, in [1, 16].");
  flags.AddInt("priority", &g->priority, "Scheduling priority: lower values run first.");
  flags.AddInt("logprobs", &g->logprobs,
               "Print each generated token's log-probability on stderr, plus the N most likely "
               "tokens at its position (0 = the generated token's only; at most 20).");
  flags.SetDefaultText("logprobs", "none");
  // Sampling flags left unset are not sent: the server then applies the model's
  // generation_config.json, else the API's defaults (the values shown).
  flags.AddDouble("temperature", &g->temperature, "Sampling temperature; 0 = greedy.");
  flags.SetDefaultText("temperature", "the model's generation_config, else 1");
  flags.AddInt("top-k", &g->top_k, "Sample only from the k most likely tokens; 0 = all.");
  flags.SetDefaultText("top-k", "the model's generation_config, else 0");
  flags.AddDouble("top-p", &g->top_p, "Nucleus sampling probability mass, in (0, 1].");
  flags.SetDefaultText("top-p", "the model's generation_config, else 1");
  flags.AddDouble("min-p", &g->min_p,
                  "Drop tokens less likely than min-p times the most likely one; in [0, 1].");
  flags.AddDouble("repetition-penalty", &g->repetition_penalty,
                  "Penalize tokens already in the prompt or output (> 1 discourages them); > 0.");
  flags.SetDefaultText("repetition-penalty", "the model's generation_config, else 1");
  flags.AddDouble("presence-penalty", &g->presence_penalty,
                  "Subtracted once from the logit of each token already generated; in [-2, 2].");
  flags.AddDouble("frequency-penalty", &g->frequency_penalty,
                  "Subtracted from a token's logit per time it was generated; in [-2, 2].");
  flags.AddString("normalizer", &g->normalizer,
                  "What turns logits into probabilities: softmax, sparsemax or entmax15.");
  flags.AddUint64("seed", &g->seed,
                  "Random seed: the same seed and request give the same tokens (sample i of --n "
                  "uses seed + i).");
  flags.SetDefaultText("seed", "random");
  flags.AddRepeatedString("stop", &g->stop,
                          "Stop when the text contains this string (which is not printed). "
                          "Repeatable.");
  flags.AddBool("ignore-eos", &g->ignore_eos, "Keep generating past the end-of-sequence token.");
  flags.AddBool("token-ids", &g->print_token_ids,
                "Also print the generated token ids, space-separated, on stderr before the "
                "summary line.");
}

// Sets the fields of a GenerateRequest or ChatRequest (same names) whose flags were given.
template <typename Request>
absl::Status ApplyGenerationFlags(const base::FlagSet& flags, const GenerationFlags& g,
                                  Request* request_ptr) {
  Request& request = *request_ptr;
  if (flags.IsSet("model")) request.set_model(g.model);
  // Integer flags that map to int32 fields; each is sent only when given.
  struct IntField {
    const char* flag;
    int64_t value;
    void (*set)(Request&, int32_t);
  };
  const IntField int_fields[] = {
      {"max-tokens", g.max_tokens, [](Request& r, int32_t v) { r.set_max_tokens(v); }},
      {"n", g.n, [](Request& r, int32_t v) { r.set_n(v); }},
      {"priority", g.priority, [](Request& r, int32_t v) { r.set_priority(v); }},
      {"logprobs", g.logprobs, [](Request& r, int32_t v) { r.set_logprobs(v); }},
      {"top-k", g.top_k, [](Request& r, int32_t v) { r.mutable_sampling()->set_top_k(v); }},
  };
  for (const IntField& field : int_fields) {
    if (!flags.IsSet(field.flag)) continue;
    KV_ASSIGN_OR_RETURN(const int32_t value, ToInt32(absl::StrCat("--", field.flag), field.value));
    field.set(request, value);
  }
  v1::SamplingParams& sampling = *request.mutable_sampling();
  if (flags.IsSet("temperature")) sampling.set_temperature(static_cast<float>(g.temperature));
  if (flags.IsSet("top-p")) sampling.set_top_p(static_cast<float>(g.top_p));
  if (flags.IsSet("min-p")) sampling.set_min_p(static_cast<float>(g.min_p));
  if (flags.IsSet("repetition-penalty")) {
    sampling.set_repetition_penalty(static_cast<float>(g.repetition_penalty));
  }
  if (flags.IsSet("presence-penalty")) {
    sampling.set_presence_penalty(static_cast<float>(g.presence_penalty));
  }
  if (flags.IsSet("frequency-penalty")) {
    sampling.set_frequency_penalty(static_cast<float>(g.frequency_penalty));
  }
  if (flags.IsSet("normalizer")) {
    const std::optional<v1::Normalizer> value = ParseNormalizer(g.normalizer);
    if (!value) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value '", g.normalizer,
                       "' for flag --normalizer: must be softmax, sparsemax or entmax15"));
    }
    sampling.set_normalizer(*value);
  }
  if (flags.IsSet("seed")) sampling.set_seed(g.seed);
  for (const std::string& s : g.stop) request.add_stop(s);
  request.set_ignore_eos(g.ignore_eos);
  return absl::OkStatus();
}

// Streams one Generate or Chat call: text to stdout as it arrives (or each sample whole with
// n > 1), then token ids, logprobs and a summary line on stderr. `reply`, when given, receives
// sample 0's text (the chat loop's history).
template <typename Request>
int RunStream(const Connection& connection, const base::FlagSet& flags, const GenerationFlags& g,
              const Request& request, std::string* reply = nullptr) {
  const bool print_token_ids = g.print_token_ids;
  // One sample streams its text as it comes; several print each text whole when it is complete.
  const bool streaming = !request.has_n() || request.n() == 1;

  auto stub = v1::KvServe::NewStub(Connect(connection));
  grpc::ClientContext context;
  SetDeadline(connection, std::nullopt, &context);
  // Declared after `context`, so it stops watching before the context goes away.
  InterruptWatcher watcher(&context);

  const Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> first_token;
  std::vector<SampleOutput> samples(streaming ? 1 : static_cast<size_t>(request.n()));
  bool wrote_text = false;
  v1::GenerateResponse response;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  if constexpr (std::is_same_v<Request, v1::ChatRequest>) {
    reader = stub->Chat(&context, request);
  } else {
    reader = stub->Generate(&context, request);
  }
  while (reader->Read(&response)) {
    if (!first_token && response.token_ids_size() > 0) first_token = Clock::now();
    const size_t index = static_cast<size_t>(std::max(0, response.index()));
    if (index >= samples.size()) samples.resize(index + 1);
    SampleOutput& sample = samples[index];
    sample.token_ids.insert(sample.token_ids.end(), response.token_ids().begin(),
                            response.token_ids().end());
    sample.logprobs.insert(sample.logprobs.end(), response.logprobs().begin(),
                           response.logprobs().end());
    if (streaming) {
      if (!response.text().empty()) {
        std::cout << response.text() << std::flush;
        wrote_text = true;
      }
    }
    sample.text += response.text();
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      sample.finished = true;
      sample.finish_reason = response.finish_reason();
      sample.usage = response.usage();
      if (!streaming) std::cout << "[" << index << "] " << sample.text << std::endl;
    }
  }
  const grpc::Status status = reader->Finish();
  const Clock::duration total = Clock::now() - start;
  if (reply != nullptr) *reply = samples.front().text;

  if (streaming && (status.ok() || wrote_text)) std::cout << std::endl;
  // Samples cut off by an error: what they had so far.
  if (!streaming && !status.ok()) {
    for (size_t i = 0; i < samples.size(); ++i) {
      if (!samples[i].finished && !samples[i].text.empty()) {
        std::cout << "[" << i << "] " << samples[i].text << std::endl;
      }
    }
  }
  auto label = [&](size_t i) { return streaming ? std::string() : absl::StrCat(" [", i, "]"); };
  if (print_token_ids) {
    for (size_t i = 0; i < samples.size(); ++i) {
      std::cerr << "token ids" << label(i) << ": " << absl::StrJoin(samples[i].token_ids, " ")
                << "\n";
    }
  }
  if (flags.IsSet("logprobs")) {
    for (size_t i = 0; i < samples.size(); ++i) {
      if (samples[i].token_ids.empty()) continue;
      std::cerr << "logprobs" << label(i) << " (position, token id, logprob, top):\n";
      PrintLogprobs(samples[i], std::cerr);
    }
  }
  int64_t num_tokens = 0;
  for (const SampleOutput& sample : samples) num_tokens += sample.token_ids.size();
  if (!status.ok() && watcher.interrupted()) {
    std::cerr << "interrupted after " << num_tokens << " tokens, " << Milliseconds(total) << "\n";
    return kExitInterrupted;
  }
  if (!status.ok()) return RpcError(status);

  std::string finish;
  int64_t completion_tokens = 0;
  int32_t prompt_tokens = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const SampleOutput& sample = samples[i];
    if (streaming) {
      finish = FinishReasonName(sample.finish_reason);
    } else {
      absl::StrAppend(&finish, i == 0 ? "" : ", ", "[", i, "] ",
                      FinishReasonName(sample.finish_reason), " ",
                      sample.usage.completion_tokens());
    }
    completion_tokens += sample.usage.completion_tokens();
    prompt_tokens = sample.usage.prompt_tokens();
  }
  const double seconds = std::chrono::duration<double>(total).count();
  std::cerr << "finish: " << finish << " | prompt tokens: " << prompt_tokens
            << " | completion tokens: " << completion_tokens << " | time to first token: "
            << (first_token ? Milliseconds(*first_token - start) : std::string("n/a"))
            << " | total: " << Milliseconds(total) << " | " << std::fixed << std::setprecision(1)
            << (seconds > 0 ? completion_tokens / seconds : 0.0) << " tokens/s\n";
  return kExitOk;
}

int Generate(Connection connection, int argc, char** argv, int first) {
  std::string prompt;
  GenerationFlags g;
  base::FlagSet flags(
      "kvserve-cli generate",
      "Streams a completion of --prompt (KvServe.Generate). The text goes to stdout as it arrives, "
      "followed by a newline; then one summary line goes to stderr: finish reason, prompt and "
      "completion tokens, time to first token, total time, and completion tokens per second of "
      "total time. With --n > 1 each sample's text is printed whole, as '[i] text', when that "
      "sample finishes, and the summary gives every sample's finish reason and completion tokens. "
      "Sampling flags that are not given are not sent, so the server's defaults apply (shown "
      "below). Ctrl-C cancels the call (exit status 130).");
  AddConnectionFlags(flags, &connection);
  flags.AddString("prompt", &prompt, "Text to complete (required).");
  AddGenerationFlags(flags, &g);
  if (auto exit = ParseCommandFlags("generate", flags, &connection, argc, argv, first))
    return *exit;
  if (!flags.IsSet("prompt")) return UsageError("generate", "--prompt is required");
  v1::GenerateRequest request;
  request.set_prompt(prompt);
  if (absl::Status s = ApplyGenerationFlags(flags, g, &request); !s.ok()) {
    return UsageError("generate", s.message());
  }
  return RunStream(connection, flags, g, request);
}

int Chat(Connection connection, int argc, char** argv, int first) {
  std::string prompt;
  std::string system;
  std::string chat_template;
  GenerationFlags g;
  base::FlagSet flags(
      "kvserve-cli chat",
      "Talks to an instruct model through its chat template (KvServe.Chat). With --prompt: one "
      "user turn (after --system, if given), the reply streamed to stdout and a summary on "
      "stderr, as 'generate' does. Without --prompt: an interactive conversation that keeps the "
      "history; each line read from stdin is a user turn ('> ' is shown when stdin is a "
      "terminal), and an empty line or end of input ends it. Ctrl-C cancels the current reply.");
  AddConnectionFlags(flags, &connection);
  flags.AddString("prompt", &prompt, "The user's message; without it, an interactive loop.");
  flags.AddString("system", &system, "A system message before the conversation.");
  flags.AddString("chat-template", &chat_template,
                  "A template of the model's by name, or a Jinja template text, instead of the "
                  "model's default.");
  AddGenerationFlags(flags, &g);
  if (auto exit = ParseCommandFlags("chat", flags, &connection, argc, argv, first)) return *exit;
  v1::ChatRequest request;
  if (absl::Status s = ApplyGenerationFlags(flags, g, &request); !s.ok()) {
    return UsageError("chat", s.message());
  }
  if (flags.IsSet("chat-template")) request.set_chat_template(chat_template);
  auto add = [&request](const char* role, const std::string& content) {
    v1::ChatMessage* m = request.add_messages();
    m->set_role(role);
    m->set_content(content);
  };
  if (flags.IsSet("system")) add("system", system);
  if (flags.IsSet("prompt")) {
    add("user", prompt);
    return RunStream(connection, flags, g, request);
  }
  const bool terminal = isatty(STDIN_FILENO);
  for (std::string line;;) {
    if (terminal) std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line.empty()) return kExitOk;
    add("user", line);
    std::string reply;
    const int exit = RunStream(connection, flags, g, request, &reply);
    if (exit != kExitOk) return exit;
    add("assistant", reply);
  }
}

// "1,2, 3" -> {1, 2, 3}; errors name --token-ids.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(absl::string_view text) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value '", part, "' in --token-ids: must be integers, e.g. 1,2,3"));
    }
    ids.push_back(id);
  }
  return ids;
}

// A float for JSON: enough digits to round-trip; null when not finite (JSON has no infinity).
std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  std::ostringstream out;
  out << std::setprecision(9) << value;
  return out.str();
}

int Score(Connection connection, int argc, char** argv, int first) {
  std::string prompt;
  std::string prompt_file;
  std::string token_ids;
  std::string model;
  bool add_special_tokens = true;
  base::FlagSet flags(
      "kvserve-cli score",
      "Scores a text under the model (KvServe.Generate with prompt_logprobs = 0 and max_tokens = "
      "0, nothing generated) and prints one JSON object on stdout: num_tokens (N), num_scored "
      "(N - 1: the first token has no context to be predicted from), sum_logprob (natural log, "
      "over tokens 1..N-1), perplexity = exp(-sum_logprob / num_scored) (null when nothing is "
      "scored), token_ids, and token_logprobs (N entries, the first null). A non-finite logprob "
      "prints as null.");
  AddConnectionFlags(flags, &connection);
  flags.AddString("prompt", &prompt, "Text to score.");
  flags.AddString("prompt-file", &prompt_file, "File whose whole content is the text to score.");
  flags.AddString("token-ids", &token_ids, "Token ids to score as they are, e.g. 1,2,3.");
  flags.AddString("model", &model, "Model name, see 'kvserve-cli models'.");
  flags.SetDefaultText("model", "server default");
  flags.AddBool("add-special-tokens", &add_special_tokens,
                "Let the tokenizer add its special tokens (e.g. BOS) to the text.");
  if (auto exit = ParseCommandFlags("score", flags, &connection, argc, argv, first)) return *exit;
  const int num_inputs =
      flags.IsSet("prompt") + flags.IsSet("prompt-file") + flags.IsSet("token-ids");
  if (num_inputs != 1) {
    return UsageError("score", "give exactly one of --prompt, --prompt-file and --token-ids");
  }
  v1::GenerateRequest request;
  if (flags.IsSet("model")) request.set_model(model);
  if (flags.IsSet("token-ids")) {
    absl::StatusOr<std::vector<int32_t>> ids = ParseTokenIds(token_ids);
    if (!ids.ok()) return UsageError("score", ids.status().message());
    request.mutable_prompt_token_ids()->mutable_ids()->Add(ids->begin(), ids->end());
  } else if (flags.IsSet("prompt-file")) {
    std::ifstream in(prompt_file, std::ios::binary);
    if (!in) return UsageError("score", absl::StrCat("--prompt-file: cannot read ", prompt_file));
    std::ostringstream text;
    text << in.rdbuf();
    request.set_prompt(text.str());
  } else {
    request.set_prompt(prompt);
  }
  if (flags.IsSet("add-special-tokens")) request.set_add_special_tokens(add_special_tokens);
  request.set_prompt_logprobs(0);
  request.set_max_tokens(0);
  request.set_return_prompt_token_ids(true);

  auto stub = v1::KvServe::NewStub(Connect(connection));
  grpc::ClientContext context;
  SetDeadline(connection, std::nullopt, &context);
  InterruptWatcher watcher(&context);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  std::vector<int32_t> ids;
  std::vector<v1::TokenLogprobs> logprobs;
  for (v1::GenerateResponse response; reader->Read(&response);) {
    ids.insert(ids.end(), response.prompt_token_ids().begin(), response.prompt_token_ids().end());
    logprobs.insert(logprobs.end(), response.prompt_logprobs().begin(),
                    response.prompt_logprobs().end());
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok() && watcher.interrupted()) return kExitInterrupted;
  if (!status.ok()) return RpcError(status);
  if (logprobs.size() != ids.size()) {
    std::cerr << "error: the server sent " << logprobs.size() << " prompt logprobs for "
              << ids.size() << " prompt tokens\n";
    return kExitError;
  }
  double sum = 0;
  std::vector<std::string> values;
  for (const v1::TokenLogprobs& lp : logprobs) {
    values.push_back(lp.has_logprob() ? JsonNumber(lp.logprob()) : "null");
    if (lp.has_logprob()) sum += lp.logprob();
  }
  const int64_t num_scored = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - 1);
  std::cout << "{\"num_tokens\": " << ids.size() << ", \"num_scored\": " << num_scored
            << ", \"sum_logprob\": " << JsonNumber(sum) << ", \"perplexity\": "
            << (num_scored > 0 ? JsonNumber(std::exp(-sum / num_scored)) : "null")
            << ", \"token_ids\": [" << absl::StrJoin(ids, ", ") << "], \"token_logprobs\": ["
            << absl::StrJoin(values, ", ") << "]}\n";
  return kExitOk;
}

int Health(Connection connection, int argc, char** argv, int first) {
  std::string service;
  base::FlagSet flags(
      "kvserve-cli health",
      "Calls grpc.health.v1.Health/Check and prints the serving status (SERVING, NOT_SERVING, "
      "UNKNOWN, or SERVICE_UNKNOWN when the server does not know --service). Exit status: 0 only "
      "for SERVING, 1 for any other status, 2 when the call fails. Meant for container health "
      "checks, so the deadline defaults to 5 s.");
  AddConnectionFlags(flags, &connection);
  flags.AddString("service", &service,
                  "Service to check: empty = the whole server, kvserve.v1.KvServe = ready to "
                  "generate.");
  if (auto exit = ParseCommandFlags("health", flags, &connection, argc, argv, first)) return *exit;

  auto stub = health::Health::NewStub(Connect(connection));
  grpc::ClientContext context;
  SetDeadline(connection, kHealthDefaultTimeoutSeconds, &context);
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  // Check answers NOT_FOUND for a service it does not know: the server is up and said so, which is
  // an unhealthy answer rather than a failed call.
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    std::cout << health::HealthCheckResponse::ServingStatus_Name(
                     health::HealthCheckResponse::SERVICE_UNKNOWN)
              << "\n";
    return kExitUnhealthy;
  }
  if (!status.ok()) return RpcError(status);
  std::cout << health::HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  return response.status() == health::HealthCheckResponse::SERVING ? kExitOk : kExitUnhealthy;
}

// Prints rows[0] as the header and aligns every column; numeric columns are right-aligned.
void PrintTable(const std::vector<std::vector<std::string>>& rows,
                const std::vector<bool>& right_align) {
  std::vector<size_t> width(right_align.size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string padding(width[c] - row[c].size(), ' ');
      const bool last = c + 1 == row.size();
      if (right_align[c])
        absl::StrAppend(&line, padding, row[c]);
      else
        absl::StrAppend(&line, row[c], last ? "" : padding);
      if (!last) line += "  ";
    }
    std::cout << line << "\n";
  }
}

int Models(Connection connection, int argc, char** argv, int first) {
  base::FlagSet flags("kvserve-cli models",
                      "Lists the models the server serves (KvServe.ListModels) with their shapes "
                      "and KV-cache cost. RANDOM is yes when the weights are seeded random "
                      "numbers rather than a trained model.");
  AddConnectionFlags(flags, &connection);
  if (auto exit = ParseCommandFlags("models", flags, &connection, argc, argv, first)) return *exit;

  auto stub = v1::KvServe::NewStub(Connect(connection));
  grpc::ClientContext context;
  SetDeadline(connection, std::nullopt, &context);
  v1::ListModelsResponse response;
  const grpc::Status status = stub->ListModels(&context, v1::ListModelsRequest(), &response);
  if (!status.ok()) return RpcError(status);
  if (response.models().empty()) {
    std::cout << "no models\n";
    return kExitOk;
  }

  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ARCHITECTURE", "ATTENTION", "LAYERS", "HEADS/KV", "HEAD_DIM", "CONTEXT",
       "KV_BYTES/TOKEN", "ROPE_THETA", "MIN_THETA", "RANDOM", "SOURCE"}};
  for (const v1::ModelInfo& m : response.models()) {
    // MIN_THETA: the RoPE base lower bound for this head size and context (docs/math.md §3.1).
    rows.push_back({m.name(), m.architecture(), m.attention(), absl::StrCat(m.num_layers()),
                    absl::StrCat(m.num_attention_heads(), "/", m.num_key_value_heads()),
                    absl::StrCat(m.head_dim()), absl::StrCat(m.max_context_length()),
                    absl::StrCat(m.kv_cache_bytes_per_token()), absl::StrCat(m.rope_theta()),
                    m.min_rope_theta() > 0 ? absl::StrCat(m.min_rope_theta()) : "-",
                    m.random_weights() ? "yes" : "no", m.source()});
  }
  PrintTable(rows, {false, false, false, true, true, true, true, true, true, true, false, false});
  return kExitOk;
}

int Tokenize(Connection connection, int argc, char** argv, int first) {
  std::string text;
  std::string model;
  base::FlagSet flags("kvserve-cli tokenize",
                      "Prints the token ids of --text, space-separated, exactly as Generate "
                      "would tokenize it as a prompt (KvServe.Tokenize).");
  AddConnectionFlags(flags, &connection);
  flags.AddString("text", &text, "Text to tokenize (required).");
  flags.AddString("model", &model, "Model whose tokenizer to use, see 'kvserve-cli models'.");
  flags.SetDefaultText("model", "server default");
  if (auto exit = ParseCommandFlags("tokenize", flags, &connection, argc, argv, first))
    return *exit;
  if (!flags.IsSet("text")) return UsageError("tokenize", "--text is required");

  auto stub = v1::KvServe::NewStub(Connect(connection));
  grpc::ClientContext context;
  SetDeadline(connection, std::nullopt, &context);
  v1::TokenizeRequest request;
  request.set_model(model);
  request.set_text(text);
  v1::TokenizeResponse response;
  const grpc::Status status = stub->Tokenize(&context, request, &response);
  if (!status.ok()) return RpcError(status);
  std::cout << absl::StrJoin(response.token_ids(), " ") << "\n";
  return kExitOk;
}

struct Command {
  const char* name;
  const char* summary;
  int (*run)(Connection connection, int argc, char** argv, int first);
};

constexpr Command kCommands[] = {
    {"generate", "Stream a completion of --prompt to stdout.", &Generate},
    {"chat", "Talk to an instruct model through its chat template.", &Chat},
    {"score", "Print a text's token logprobs and perplexity as JSON.", &Score},
    {"health", "Check grpc.health.v1 status; exit 0 only when SERVING.", &Health},
    {"models", "List the served models with their shapes and KV-cache cost.", &Models},
    {"tokenize", "Print the token ids of --text.", &Tokenize},
};

std::string ToolUsage() {
  std::string usage =
      "command-line client for a kvserve server.\n\n"
      "Usage: kvserve-cli [--target=HOST:PORT] [--timeout=SECONDS] <command> [command flags]\n\n"
      "Commands:\n";
  for (const Command& command : kCommands) {
    absl::StrAppend(&usage, "  ", command.name, std::string(10 - std::strlen(command.name), ' '),
                    command.summary, "\n");
  }
  absl::StrAppend(&usage,
                  "\nRun 'kvserve-cli <command> --help' for its flags; --target and --timeout may "
                  "also follow <command>.\n\n"
                  "Exit status:\n"
                  "  0    success\n"
                  "  1    health: the server answered, but not SERVING\n"
                  "  2    usage error, or the call failed ('error: <CODE_NAME>: <message>' on "
                  "stderr)\n"
                  "  130  generate was interrupted by Ctrl-C");
  return usage;
}

int Main(int argc, char** argv) {
  Connection connection;
  base::FlagSet flags("kvserve-cli", ToolUsage());
  AddConnectionFlags(flags, &connection);
  flags.set_stop_at_first_positional(true);
  std::vector<std::string> rest;
  if (const absl::Status status = flags.Parse(argc, argv, 1, &rest); !status.ok()) {
    return UsageError("", status.message());
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return kExitOk;
  }
  connection.timeout_given = flags.IsSet("timeout");
  if (rest.empty()) {
    std::cerr << flags.Usage();
    return kExitError;
  }
  // With stop_at_first_positional, `rest` is exactly argv's tail starting at the command name.
  const int command_index = argc - static_cast<int>(rest.size());
  for (const Command& command : kCommands) {
    if (rest[0] == command.name) return command.run(connection, argc, argv, command_index + 1);
  }
  return UsageError("", absl::StrCat("unknown command '", rest[0], "'"));
}

}  // namespace
}  // namespace kvserve::cli

int main(int argc, char** argv) { return kvserve::cli::Main(argc, argv); }
