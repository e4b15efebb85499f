// The shipped binaries as a user runs them: `kvserve` and `kvserve-cli` as child processes.
//
// The server starts on 127.0.0.1:0 and the test reads the bound port from its log line; every CLI
// command then runs against it. Every wait is bounded (poll() with timeouts, waitpid(WNOHANG)), and
// a child still running when its test ends is killed, so no test can hang or leak processes.
//
// The binaries come from the same build as this test (KVSERVE_BINARY_DIR); a missing one fails the
// test with instructions rather than skipping it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/model/model_loader.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvserve/v1/kvserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/reference_logprobs.h"

namespace kvserve {
namespace {

using ::testing::ContainsRegex;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kServerBinary[] = KVSERVE_BINARY_DIR "/server/kvserve";
constexpr char kCliBinary[] = KVSERVE_BINARY_DIR "/tools/cli/kvserve-cli";
constexpr char kDefaultModel[] = "tiny-llama-gqa-random-weights";

// Generous bounds: each step takes well under a second on an idle machine.
constexpr milliseconds kStartTimeout(30'000);
constexpr milliseconds kCommandTimeout(60'000);
constexpr milliseconds kExitTimeout(10'000);

// Fails the current test unless `path` is an executable file.
void RequireBinary(const char* path) {
  const int result = access(path, X_OK);
  const int error = errno;
  ASSERT_EQ(result, 0) << path << " is missing or not executable (" << std::strerror(error)
                       << "); build it first: ninja -C " << KVSERVE_BINARY_DIR
                       << " kvserve kvserve-cli";
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

// A child process whose stdout and stderr are collected by a background thread.
//
// Thread-safety: the output accessors may be called from any thread; the rest from the thread that
// created the object.
class ChildProcess {
 public:
  // Starts argv[0] with arguments argv[1...]. Check started() afterwards.
  explicit ChildProcess(const std::vector<std::string>& argv) {
    int out_pipe[2];
    int err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0) return;
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
      close(out_pipe[0]);
      close(out_pipe[1]);
      return;
    }
    // Everything the child needs is prepared before fork(): after it, the child may only make
    // async-signal-safe calls (other threads may hold the allocator's locks).
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    const pid_t parent = getpid();

    pid_ = fork();
    if (pid_ == 0) {
      // Die with the test: a crashed test must not leave a server behind.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      const int null_fd = open("/dev/null", O_RDONLY);
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      dup2(out_pipe[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy
      dup2(err_pipe[1], STDERR_FILENO);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (pid_ < 0) {
      close(out_pipe[0]);
      close(err_pipe[0]);
      return;
    }
    collector_ = std::thread([this, out = out_pipe[0], err = err_pipe[0]] { Collect(out, err); });
  }

  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);  // SIGKILL cannot be ignored: this returns promptly
    }
    if (collector_.joinable()) collector_.join();
  }

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  std::string out() const {
    std::lock_guard<std::mutex> lock(mu_);
    return out_;
  }
  std::string err() const {
    std::lock_guard<std::mutex> lock(mu_);
    return err_;
  }

  // Waits until `done(stdout, stderr)` holds or both streams have closed; returns whether it holds.
  bool WaitForOutput(const std::function<bool(const std::string&, const std::string&)>& done,
                     milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return done(out_, err_) || streams_closed_; }) &&
           done(out_, err_);
  }

  // Waits up to `timeout` for the child to exit and returns its wait status; nullopt if it is
  // still running. After it exited, also waits (bounded) for its output to be collected.
  std::optional<int> WaitForExit(milliseconds timeout) {
    if (exited_) return status_;
    const Clock::time_point deadline = Clock::now() + timeout;
    for (;;) {
      const pid_t r = waitpid(pid_, &status_, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(milliseconds(5));
    }
    exited_ = true;
    // The pipes close when the child exits; the collector then drains them and stops.
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, kExitTimeout, [&] { return streams_closed_; });
    return status_;
  }

  void Signal(int signal_number) {
    if (pid_ > 0 && !exited_) kill(pid_, signal_number);
  }

 private:
  void Collect(int out_fd, int err_fd) {
    pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_fds = 2;
    char buffer[4096];
    while (open_fds > 0) {
      const int n = poll(fds, 2, /*timeout_ms=*/200);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        const ssize_t got = read(fds[i].fd, buffer, sizeof(buffer));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          close(fds[i].fd);
          fds[i].fd = -1;  // poll() ignores negative fds
          --open_fds;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu_);
        (i == 0 ? out_ : err_).append(buffer, static_cast<size_t>(got));
        changed_.notify_all();
      }
    }
    for (const pollfd& fd : fds) {
      if (fd.fd >= 0) close(fd.fd);
    }
    std::lock_guard<std::mutex> lock(mu_);
    streams_closed_ = true;
    changed_.notify_all();
  }

  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::thread collector_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::string out_;              // guarded by mu_
  std::string err_;              // guarded by mu_
  bool streams_closed_ = false;  // guarded by mu_
};

struct CommandResult {
  std::optional<int> wait_status;  // nullopt: killed after the timeout
  std::string out;
  std::string err;

  // The exit status, or -1 when the command did not exit normally.
  int exit_code() const {
    return wait_status && WIFEXITED(*wait_status) ? WEXITSTATUS(*wait_status) : -1;
  }
  std::string Describe() const {
    return absl::StrCat(wait_status ? DescribeWaitStatus(*wait_status) : "timed out",
                        "\n--- stdout:\n", out, "\n--- stderr:\n", err);
  }
};

// Runs a command to completion, killing it after `timeout`.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         milliseconds timeout = kCommandTimeout) {
  ChildProcess child(argv);
  CommandResult result;
  if (!child.started()) {
    ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(errno);
    return result;
  }
  result.wait_status = child.WaitForExit(timeout);
  result.out = child.out();
  result.err = child.err();
  return result;  // ~ChildProcess kills a command that timed out
}

TEST(KvserveBinaryHelpTest, HelpListsEveryFlagAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const CommandResult help = RunCommand({kServerBinary, "--help"});
  ASSERT_EQ(help.exit_code(), 0) << help.Describe();
  for (const char* flag : {"listen",
                           "model",
                           "max-num-seqs",
                           "max-running-requests",
                           "max-num-batched-tokens",
                           "max-queued-requests",
                           "prefill-chunk-tokens",
                           "batch-invariant",
                           "seed",
                           "threads",
                           "reflection",
                           "shutdown-timeout",
                           "max-connection-age",
                           "log-level",
                           "metrics-address",
                           "log-requests",
                           "weight-dtype",
                           "api-keys-file",
                           "share-prefix-cache-across-tenants",
                           "tls-cert",
                           "tls-key",
                           "tls-client-ca",
                           "tls-refresh-interval",
                           "show-model-paths",
                           "kv-cache-dtype",
                           "max-stream-buffer-bytes",
                           "max-buffered-bytes",
                           "stream-idle-timeout"}) {
    // Booleans are listed as --[no]flag.
    EXPECT_THAT(help.out, ContainsRegex(absl::StrCat("--(\\[no\\])?", flag, "[= ]")))
        << "--" << flag << " is not in:\n"
        << help.out;
  }
}

TEST(KvserveBinaryHelpTest, SecurityFlagsWithBadFilesExitTwoNamingTheFlag) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--api-keys-file=/nonexistent/keys"}, "--api-keys-file /nonexistent/keys: cannot open"},
      {{"--api-keys-file=/dev/null"}, "--api-keys-file /dev/null: not a regular file"},
      {{"--share-prefix-cache-across-tenants"}, "--share-prefix-cache-across-tenants needs"},
      {{"--tls-cert=/nonexistent/c"}, "--tls-cert and --tls-key: give both or neither"},
      {{"--tls-cert=/nonexistent/c", "--tls-key=/nonexistent/k"}, "--tls-cert /nonexistent/c"},
      {{"--tls-client-ca=/nonexistent/ca"}, "--tls-client-ca needs --tls-cert and --tls-key"},
      {{"--tls-refresh-interval=0"}, "--tls-refresh-interval must be in [1, 86400]"},
  };
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> argv = {kServerBinary};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code(), 2) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr(message)) << r.Describe();
  }
}

TEST(KvserveBinaryHelpTest, StreamIdleTimeoutOutOfRangeExitsTwoNamingTheFlag) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  for (const char* value : {"-1", "31536001"}) {
    const CommandResult r =
        RunCommand({kServerBinary, absl::StrCat("--stream-idle-timeout=", value)});
    EXPECT_EQ(r.exit_code(), 2) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat("--stream-idle-timeout: must be in [0, 31536000] "
                                              "seconds (0 = off), got ",
                                              value)))
        << r.Describe();
  }
}

TEST(KvserveBinaryHelpTest, HelpListsTheHttpApiFlags) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const CommandResult help = RunCommand({kServerBinary, "--help"});
  ASSERT_EQ(help.exit_code(), 0) << help.Describe();
  for (const char* flag : {"http-address", "http-max-body-bytes", "http-max-connections",
                           "http-read-timeout", "http-write-timeout"}) {
    EXPECT_THAT(help.out, ContainsRegex(absl::StrCat("--", flag, "[= ]"))) << help.out;
  }
}

TEST(KvserveBinaryHelpTest, UnknownWeightDtypeExitsTwoNamingTheFlag) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const CommandResult r = RunCommand({kServerBinary, "--weight-dtype=fp8"});
  EXPECT_EQ(r.exit_code(), 2) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("--weight-dtype: unknown precision 'fp8'"));
}

TEST(KvserveBinaryHelpTest, UnknownKvCacheDtypeExitsTwoNamingTheFlag) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const CommandResult r = RunCommand({kServerBinary, "--kv-cache-dtype=fp16"});
  EXPECT_EQ(r.exit_code(), 2) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("--kv-cache-dtype: unknown type 'fp16' (f32 or bf16)"));
}

TEST(KvserveBinaryHelpTest, UnknownFlagExitsTwoAndPointsAtHelp) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  const CommandResult r = RunCommand({kServerBinary, "--no-such-flag=1"});
  EXPECT_EQ(r.exit_code(), 2) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("Run kvserve --help for the flags."));
}

TEST(KvserveBinaryHelpTest, ListenAddressInUseExitsOneWithAMessage) {
  ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
  // Hold a listening socket (without SO_REUSEPORT, so gRPC cannot share the port).
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string listen = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));

  // Metrics and HTTP off: their fixed default ports could be taken by another test's server.
  const CommandResult r =
      RunCommand({kServerBinary, "--listen=" + listen, "--metrics-address=", "--http-address="},
                 kStartTimeout);
  close(fd);
  EXPECT_EQ(r.exit_code(), 1) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("--listen: cannot listen on ", listen)));
}

// A kvserve process on 127.0.0.1:<free port> for each test.
class KvserveBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
    ASSERT_NO_FATAL_FAILURE(RequireBinary(kCliBinary));
    ASSERT_NO_FATAL_FAILURE(StartServer(ServerFlags()));
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    server_->Signal(SIGTERM);
    server_->WaitForExit(kExitTimeout);
    server_.reset();  // kills the server if it did not exit
  }

  virtual std::vector<std::string> ServerFlags() const { return {}; }

  // `command` is what precedes the flags: the binary, or e.g. {"/usr/bin/env", "VAR=x", binary}.
  void StartServer(const std::vector<std::string>& flags,
                   std::vector<std::string> command = {kServerBinary},
                   bool pin_embedded_model = true) {
    // Metrics and HTTP on free ports too: the defaults, :9464 and 127.0.0.1:8000, would collide
    // between test servers.
    std::vector<std::string> argv = std::move(command);
    argv.insert(argv.end(), {"--listen=127.0.0.1:0", "--metrics-address=127.0.0.1:0",
                             "--http-address=127.0.0.1:0"});
    // The embedded model unless a test names one: a default model directory in the build tree
    // (models/default) must not change what these tests serve.
    if (pin_embedded_model && std::none_of(flags.begin(), flags.end(), [](const std::string& f) {
          return absl::StartsWith(f, "--model");
        })) {
      argv.push_back("--model=");
    }
    argv.insert(argv.end(), flags.begin(), flags.end());
    server_ = std::make_unique<ChildProcess>(argv);
    ASSERT_TRUE(server_->started()) << "cannot start " << kServerBinary;
    const std::regex listening(R"(kvserve listening on 127\.0\.0\.1:0 \(port (\d+)\))");
    const bool up = server_->WaitForOutput(
        [&](const std::string&, const std::string& err) {
          return std::regex_search(err, listening);
        },
        kStartTimeout);
    ASSERT_TRUE(up) << "no 'listening' line from kvserve; stderr:\n" << server_->err();
    const std::string log = server_->err();
    std::smatch match;
    ASSERT_TRUE(std::regex_search(log, match, listening));
    port_ = std::stoi(match[1].str());
    ASSERT_GT(port_, 0);
  }

  std::string Target() const { return absl::StrCat("--target=127.0.0.1:", port_); }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {kCliBinary, Target()});
    return RunCommand(args);
  }

  std::unique_ptr<ChildProcess> server_;
  int port_ = 0;
};

TEST_F(KvserveBinaryTest, CliHealthPrintsServing) {
  const CommandResult r = Cli({"health"});
  EXPECT_EQ(r.exit_code(), 0) << r.Describe();
  EXPECT_EQ(r.out, "SERVING\n");

  const CommandResult service = Cli({"health", "--service=kvserve.v1.KvServe"});
  EXPECT_EQ(service.exit_code(), 0) << service.Describe();
  EXPECT_EQ(service.out, "SERVING\n");
}

TEST_F(KvserveBinaryTest, SecondServerOnTheSamePortExitsOneWithAddressInUse) {
  // Without SO_REUSEPORT off, gRPC would let the second process share the port and take some of
  // the new connections.
  const std::string listen = absl::StrCat("127.0.0.1:", port_);
  const CommandResult r = RunCommand(
      {kServerBinary, "--listen=" + listen, "--metrics-address=127.0.0.1:0", "--http-address="},
      kStartTimeout);
  EXPECT_EQ(r.exit_code(), 1) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("--listen: cannot listen on ", listen,
                                            " (address in use or invalid)")));
  // The first server still answers.
  const CommandResult health = Cli({"health"});
  EXPECT_EQ(health.exit_code(), 0) << health.Describe();
  EXPECT_EQ(health.out, "SERVING\n");
}

TEST_F(KvserveBinaryTest, CliHealthOfAnUnknownServiceExitsOne) {
  const CommandResult r = Cli({"health", "--service=kvserve.v1.NoSuchService"});
  EXPECT_EQ(r.exit_code(), 1) << r.Describe();
  EXPECT_EQ(r.out, "SERVICE_UNKNOWN\n");
}

TEST_F(KvserveBinaryTest, CliModelsListsTheDefaultModel) {
  const CommandResult r = Cli({"models"});
  ASSERT_EQ(r.exit_code(), 0) << r.Describe();
  EXPECT_THAT(r.out, StartsWith("NAME "));
  // ROPE_THETA 10000 and MIN_THETA 204360: the RoPE-base bound for 32 dims at 2048 tokens
  // (docs/math.md §3.1), printed with six significant digits.
  EXPECT_THAT(r.out, ContainsRegex(absl::StrCat("\n", kDefaultModel,
                                                " +LlamaForCausalLM +GQA +4 +8/2 +32 +2048 +2048 "
                                                "+10000 +204360 +yes +embedded")));
}

TEST_F(KvserveBinaryTest, CliGenerateStreamsTheRequestedNumberOfTokens) {
  const CommandResult r =
      Cli({"generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0"});
  ASSERT_EQ(r.exit_code(), 0) << r.Describe();
  EXPECT_THAT(r.out, EndsWith("\n"));
  EXPECT_THAT(r.err, HasSubstr("prompt tokens: 17 | completion tokens: 8 |"));

  // Greedy decoding: a second run prints the same text.
  const CommandResult again =
      Cli({"generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--temperature", "0"});
  ASSERT_EQ(again.exit_code(), 0) << again.Describe();
  EXPECT_EQ(again.out, r.out);
}

// Prints user turns in brackets and each assistant turn as "A", so prompt lengths are exact.
constexpr char kCliChatTemplate[] =
    "{% for m in messages %}{% if m.role == 'user' %}[{{ m.content }}]{% else %}A{% endif %}"
    "{% endfor %}";

TEST_F(KvserveBinaryTest, CliChatSendsOneTurnThroughTheTemplate) {
  const CommandResult r = Cli({"chat", "--chat-template", kCliChatTemplate, "--system", "sys",
                               "--prompt", "hello", "--max-tokens", "3", "--temperature", "0"});
  ASSERT_EQ(r.exit_code(), 0) << r.Describe();
  // "A[hello]": the system turn prints as "A", and no BOS is added to the template's text.
  EXPECT_THAT(r.err, HasSubstr("prompt tokens: 8 | completion tokens: 3 |"));
}

TEST_F(KvserveBinaryTest, CliChatLoopKeepsTheConversationsHistory) {
  const CommandResult r =
      RunCommand({"/bin/sh", "-c",
                  absl::StrCat("printf 'hello\\nagain\\n\\n' | '", kCliBinary, "' ", Target(),
                               " chat --max-tokens 2 --temperature 0 --chat-template \"",
                               kCliChatTemplate, "\"")});
  ASSERT_EQ(r.exit_code(), 0) << r.Describe();
  // Turn 1: "[hello]"; turn 2: "[hello]A[again]" (the first reply is now an assistant turn).
  EXPECT_THAT(r.err, ContainsRegex("prompt tokens: 7 \\| completion tokens: 2 \\|(.|\n)*"
                                   "prompt tokens: 15 \\| completion tokens: 2 \\|"));
}

TEST_F(KvserveBinaryTest, CliChatWithoutATemplateExitsTwoWithTheServerError) {
  const CommandResult r = Cli({"chat", "--prompt", "hello"});
  EXPECT_EQ(r.exit_code(), 2) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION: chat_template: this model has no chat"));
}

TEST_F(KvserveBinaryTest, CliGenerateOfAnEmptyPromptExitsTwoWithTheServerError) {
  const CommandResult r = Cli({"generate", "--prompt", ""});
  EXPECT_EQ(r.exit_code(), 2) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT: prompt: must not be empty"));
}

// kvserve-cli score: the same text given three ways scores the same, and the JSON's numbers agree
// with each other (perplexity = exp(-sum / (N - 1)), token 0 unscored).
TEST_F(KvserveBinaryTest, CliScorePrintsConsistentJsonForPromptPromptFileAndTokenIds) {
  const std::string text = "Once upon a time";
  const CommandResult by_prompt = Cli({"score", "--prompt", text});
  ASSERT_EQ(by_prompt.exit_code(), 0) << by_prompt.Describe();
  const nlohmann::json j = nlohmann::json::parse(by_prompt.out);
  const CommandResult tokens = Cli({"tokenize", "--text", text});
  ASSERT_EQ(tokens.exit_code(), 0) << tokens.Describe();
  const std::vector<std::string> ids = absl::StrSplit(absl::StripAsciiWhitespace(tokens.out), ' ');
  ASSERT_EQ(j["num_tokens"], ids.size());
  ASSERT_EQ(j["num_scored"], ids.size() - 1);
  ASSERT_EQ(j["token_logprobs"].size(), ids.size());
  EXPECT_TRUE(j["token_logprobs"][0].is_null());
  double sum = 0;
  for (size_t i = 1; i < ids.size(); ++i) {
    EXPECT_EQ(j["token_ids"][i], std::stoi(ids[i]));
    EXPECT_LT(j["token_logprobs"][i].get<double>(), 0.0);
    sum += j["token_logprobs"][i].get<double>();
  }
  EXPECT_NEAR(j["sum_logprob"].get<double>(), sum, 1e-5);
  // Printed with 9 significant digits.
  const double perplexity = std::exp(-j["sum_logprob"].get<double>() / (ids.size() - 1));
  EXPECT_NEAR(j["perplexity"].get<double>(), perplexity, 1e-7 * perplexity);

  const std::string file = ::testing::TempDir() + "/score_prompt.txt";
  {
    std::ofstream out(file, std::ios::binary);
    out << text;
  }
  const CommandResult by_file = Cli({"score", "--prompt-file", file});
  ASSERT_EQ(by_file.exit_code(), 0) << by_file.Describe();
  EXPECT_EQ(by_file.out, by_prompt.out);
  const CommandResult by_ids = Cli({"score", "--token-ids", absl::StrJoin(ids, ",")});
  ASSERT_EQ(by_ids.exit_code(), 0) << by_ids.Describe();
  EXPECT_EQ(by_ids.out, by_prompt.out);
}

TEST_F(KvserveBinaryTest, CliScoreNeedsExactlyOneInput) {
  const CommandResult none = Cli({"score"});
  EXPECT_EQ(none.exit_code(), 2) << none.Describe();
  EXPECT_THAT(none.err, HasSubstr("give exactly one of --prompt, --prompt-file and --token-ids"));
  const CommandResult two = Cli({"score", "--prompt", "a", "--token-ids", "1,2"});
  EXPECT_EQ(two.exit_code(), 2) << two.Describe();
  const CommandResult bad = Cli({"score", "--token-ids", "1,x"});
  EXPECT_EQ(bad.exit_code(), 2) << bad.Describe();
  EXPECT_THAT(bad.err, HasSubstr("invalid value 'x' in --token-ids"));
  const CommandResult out_of_vocab = Cli({"score", "--token-ids", "1,999"});
  EXPECT_EQ(out_of_vocab.exit_code(), 2) << out_of_vocab.Describe();
  EXPECT_THAT(out_of_vocab.err, HasSubstr("INVALID_ARGUMENT: prompt_token_ids[1]: 999"));
}

// The whole scoring path through the real binaries against the independent PyTorch reference:
// tiny_llama_gqa at --weight-dtype=f32, its reference input scored by kvserve-cli.
class KvserveBinaryScoreReferenceTest : public KvserveBinaryTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {absl::StrCat("--model=", KVSERVE_TEST_DATA_DIR, "/tiny_llama_gqa"),
            "--weight-dtype=f32"};
  }
};

TEST_F(KvserveBinaryScoreReferenceTest, CliScoreMatchesTheReferenceLogSoftmax) {
  const testing::ReferenceLogprobs ref =
      testing::LoadReferenceLogprobs(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa");
  const CommandResult r = Cli({"score", "--token-ids", absl::StrJoin(ref.input_ids, ",")});
  ASSERT_EQ(r.exit_code(), 0) << r.Describe();
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const size_t n = ref.input_ids.size();
  ASSERT_EQ(j["num_tokens"], n);
  ASSERT_EQ(j["num_scored"], n - 1);
  double sum = 0;
  for (size_t i = 1; i < n; ++i) {
    EXPECT_NEAR(j["token_logprobs"][i].get<double>(), ref.TokenLogprob(i), 1e-4) << "token " << i;
    sum += ref.TokenLogprob(i);
  }
  EXPECT_NEAR(j["sum_logprob"].get<double>(), sum, 1e-3);
  const double perplexity = std::exp(-sum / static_cast<double>(n - 1));
  EXPECT_NEAR(j["perplexity"].get<double>(), perplexity, 1e-4 * perplexity);
}

// The default-model lookup (server/default_model.h) on a copy of the binary in a temporary tree:
//   <root>/a/bin/kvserve, <root>/a/share/kvserve/models/default, <root>/models/default.
class KvserveDefaultModelTest : public KvserveBinaryTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(RequireBinary(kServerBinary));
    ASSERT_NO_FATAL_FAILURE(RequireBinary(kCliBinary));
    root_ = std::filesystem::path(::testing::TempDir()) /
            absl::StrCat("kvserve_default_model_", getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "a" / "bin");
    binary_ = root_ / "a" / "bin" / "kvserve";
    std::filesystem::copy_file(kServerBinary, binary_);
  }
  void TearDown() override {
    KvserveBinaryTest::TearDown();
    std::filesystem::remove_all(root_);
  }
  // Copies the tiny_llama_gqa fixture to `dir`.
  static void CopyFixture(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir.parent_path());
    std::filesystem::copy(std::string(KVSERVE_TEST_DATA_DIR) + "/tiny_llama_gqa", dir,
                          std::filesystem::copy_options::recursive);
  }
  void Start(const std::string& env = "KVSERVE_DEFAULT_MODEL=") {
    StartServer({}, {"/usr/bin/env", env, binary_.string()}, /*pin_embedded_model=*/false);
  }
  std::string ModelsTable() {
    const CommandResult r = Cli({"models"});
    EXPECT_EQ(r.exit_code(), 0) << r.Describe();
    return r.out;
  }

  std::filesystem::path root_;
  std::filesystem::path binary_;
};

TEST_F(KvserveDefaultModelTest, WithNoDefaultDirectoryServesTheEmbeddedModelAndSaysWhereItLooked) {
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_THAT(server_->err(),
              HasSubstr(absl::StrCat("no --model and no default model directory (searched ",
                                     (root_ / "a/share/kvserve/models/default").string(), ", ",
                                     (root_ / "models/default").string(), "): serving the ",
                                     "embedded model '", kDefaultModel, "'")));
  EXPECT_THAT(ModelsTable(), HasSubstr(kDefaultModel));
}

TEST_F(KvserveDefaultModelTest, FindsTheInstalledDefaultBesideTheBinary) {
  CopyFixture(root_ / "a/share/kvserve/models/default");
  CopyFixture(root_ / "models/default");  // later in the order: not used
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_THAT(server_->err(),
              HasSubstr(absl::StrCat("no --model: serving the default model "
                                     "'default' from ",
                                     (root_ / "a/share/kvserve/models/default").string())));
  // ListModels names the directory, not its absolute path (--show-model-paths would show it).
  EXPECT_THAT(ModelsTable(), ContainsRegex("\ndefault +LlamaForCausalLM +GQA .* +no +default\n"));
}

TEST_F(KvserveDefaultModelTest, FindsTheBuildTreeDefaultThroughASymlinkAndNamesItsTarget) {
  CopyFixture(root_ / "models/tiny-trained");
  std::filesystem::create_directory_symlink("tiny-trained", root_ / "models/default");
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_THAT(ModelsTable(), ContainsRegex("\ntiny-trained +LlamaForCausalLM +GQA "));
}

TEST_F(KvserveDefaultModelTest, TheEnvironmentVariableComesFirstAndAnExplicitEmptyModelWins) {
  CopyFixture(root_ / "elsewhere/picked");
  CopyFixture(root_ / "models/default");
  ASSERT_NO_FATAL_FAILURE(Start("KVSERVE_DEFAULT_MODEL=" + (root_ / "elsewhere/picked").string()));
  EXPECT_THAT(ModelsTable(), ContainsRegex("\npicked +LlamaForCausalLM"));
  KvserveBinaryTest::TearDown();
  // --model= (empty) asks for the embedded model and looks nowhere.
  ASSERT_NO_FATAL_FAILURE(StartServer({"--model="}, {binary_.string()}));
  EXPECT_THAT(server_->err(), Not(HasSubstr("default model")));
  EXPECT_THAT(ModelsTable(), HasSubstr(kDefaultModel));
}

TEST_F(KvserveBinaryTest, ServerExitsZeroOnSigterm) {
  server_->Signal(SIGTERM);
  const std::optional<int> status = server_->WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "kvserve still running " << kExitTimeout.count()
                                  << " ms after SIGTERM; stderr:\n"
                                  << server_->err();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeWaitStatus(*status) << "; stderr:\n"
      << server_->err();
  EXPECT_THAT(server_->err(), HasSubstr("received SIGTERM"));
  EXPECT_THAT(server_->err(), HasSubstr("shutdown complete"));
}

class KvserveBinaryShortGraceTest : public KvserveBinaryTest {
 protected:
  std::vector<std::string> ServerFlags() const override { return {"--shutdown-timeout=0.5"}; }
};

TEST_F(KvserveBinaryShortGraceTest, SigtermCutsAnInFlightStreamAfterTheGraceAndExitsZero) {
  // Seconds of work: only the shutdown can end it early.
  ChildProcess cli({kCliBinary, Target(), "generate", "--prompt", "Once upon a time",
                    "--max-tokens", "2000", "--ignore-eos", "--temperature", "0"});
  ASSERT_TRUE(cli.started());
  // Generated text reaches the CLI's stdout as it streams.
  ASSERT_TRUE(cli.WaitForOutput(
      [](const std::string& out, const std::string&) { return !out.empty(); }, kCommandTimeout))
      << "the stream never started; cli stderr:\n"
      << cli.err();

  server_->Signal(SIGTERM);
  const std::optional<int> server_status = server_->WaitForExit(kExitTimeout);
  ASSERT_TRUE(server_status.has_value()) << "kvserve did not exit; stderr:\n" << server_->err();
  EXPECT_TRUE(WIFEXITED(*server_status) && WEXITSTATUS(*server_status) == 0)
      << DescribeWaitStatus(*server_status) << "; stderr:\n"
      << server_->err();
  EXPECT_THAT(server_->err(), HasSubstr("draining for up to 0.5 s"));

  const std::optional<int> cli_status = cli.WaitForExit(kExitTimeout);
  ASSERT_TRUE(cli_status.has_value()) << "kvserve-cli did not exit; stderr:\n" << cli.err();
  ASSERT_TRUE(WIFEXITED(*cli_status)) << DescribeWaitStatus(*cli_status);
  if (WEXITSTATUS(*cli_status) == 0) {
    // Only possible if all 2000 tokens streamed within the grace period.
    EXPECT_THAT(cli.err(), HasSubstr("completion tokens: 2000 |"));
  } else {
    // Ended by the server, with the code clients may retry elsewhere.
    EXPECT_EQ(WEXITSTATUS(*cli_status), 2) << cli.err();
    EXPECT_THAT(cli.err(), HasSubstr("error: UNAVAILABLE: the server is shutting down"));
    EXPECT_THAT(server_->err(), HasSubstr("drain deadline reached: ending 1 unfinished request"));
  }
}

// The drain as a client holding a channel open across it sees it (docs/deployment.md has the
// timeline): readiness flips at once, new calls are refused, the streams in flight run to the end,
// and the process exits 0 as soon as they are done, long before --shutdown-timeout.
class KvserveBinaryDrainTest : public KvserveBinaryTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {"--shutdown-timeout=60", "--threads=1"};
  }
};

TEST_F(KvserveBinaryDrainTest, SigtermRefusesNewCallsFinishesInFlightStreamsAndExitsZero) {
  namespace pb = ::kvserve::v1;
  namespace health = ::grpc::health::v1;
  const auto deadline = [] {
    return std::chrono::system_clock::now() + std::chrono::milliseconds(kCommandTimeout);
  };
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
  auto stub = pb::KvServe::NewStub(channel);

  // Readiness of kvserve.v1.KvServe, watched over the channel the streams use.
  grpc::ClientContext watch_context;
  watch_context.set_deadline(deadline());
  health::HealthCheckRequest watch_request;
  watch_request.set_service("kvserve.v1.KvServe");
  auto watch = health::Health::NewStub(channel)->Watch(&watch_context, watch_request);
  health::HealthCheckResponse readiness;
  ASSERT_TRUE(watch->Read(&readiness));
  ASSERT_EQ(readiness.status(), health::HealthCheckResponse::SERVING);

  // Streams of hundreds of engine steps each, all past their first token.
  constexpr int kNumStreams = 3;
  constexpr int kTokens = 1000;  // seconds of work in all, next to milliseconds of checks
  struct InFlight {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>> reader;
    int num_tokens = 0;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<InFlight>> streams;
  for (int i = 0; i < kNumStreams; ++i) {
    auto stream = std::make_unique<InFlight>();
    stream->context.set_deadline(deadline());
    pb::GenerateRequest request;
    request.set_prompt(absl::StrCat("stream ", i));
    request.set_max_tokens(kTokens);
    request.set_ignore_eos(true);
    request.mutable_sampling()->set_temperature(0);
    stream->reader = stub->Generate(&stream->context, request);
    pb::GenerateResponse message;
    ASSERT_TRUE(stream->reader->Read(&message)) << stream->reader->Finish().error_message();
    stream->num_tokens += message.token_ids_size();
    streams.push_back(std::move(stream));
  }
  std::atomic<int> num_finished{0};
  std::vector<std::thread> readers;
  const auto join_readers = [&readers] {
    for (std::thread& t : readers) {
      if (t.joinable()) t.join();
    }
  };
  // A failed ASSERT below must not leave reader threads behind.
  absl::Cleanup cancel_and_join = [&] {
    for (auto& stream : streams) stream->context.TryCancel();
    join_readers();
  };
  for (auto& stream : streams) {
    readers.emplace_back([&num_finished, s = stream.get()] {
      pb::GenerateResponse message;
      while (s->reader->Read(&message)) s->num_tokens += message.token_ids_size();
      s->status = s->reader->Finish();
      ++num_finished;
    });
  }

  server_->Signal(SIGTERM);
  ASSERT_TRUE(server_->WaitForOutput(
      [](const std::string&, const std::string& err) {
        return err.find("received SIGTERM") != std::string::npos;
      },
      kCommandTimeout))
      << server_->err();

  // Readiness went NOT_SERVING (the watch is then ended by the server's shutdown).
  ASSERT_TRUE(watch->Read(&readiness));
  EXPECT_EQ(readiness.status(), health::HealthCheckResponse::NOT_SERVING);
  watch_context.TryCancel();
  watch->Finish();

  // A new call on the existing channel is refused with the retryable code: the server keeps its
  // connections and listener open during the drain, and answers it draining.
  {
    grpc::ClientContext context;
    context.set_deadline(deadline());
    pb::GenerateRequest request;
    request.set_prompt("Hi");
    request.set_max_tokens(1);
    auto reader = stub->Generate(&context, request);
    pb::GenerateResponse message;
    EXPECT_FALSE(reader->Read(&message));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
  // A new connection, such as a kubelet probe's, connects and reads NOT_SERVING (not "connection
  // refused", which reads as a crash).
  const CommandResult probe = Cli({"health", "--service=kvserve.v1.KvServe"});
  EXPECT_EQ(probe.exit_code(), 1) << probe.Describe();
  EXPECT_EQ(probe.out, "NOT_SERVING\n");
  EXPECT_EQ(num_finished.load(), 0)
      << "the streams ended before the checks above; make them longer";

  join_readers();
  for (int i = 0; i < kNumStreams; ++i) {
    EXPECT_TRUE(streams[i]->status.ok())
        << "stream " << i << ": " << streams[i]->status.error_message();
    EXPECT_EQ(streams[i]->num_tokens, kTokens) << "stream " << i;
  }

  const std::optional<int> status = server_->WaitForExit(kExitTimeout);
  ASSERT_TRUE(status.has_value()) << "kvserve still running after its streams ended; stderr:\n"
                                  << server_->err();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeWaitStatus(*status) << "; stderr:\n"
      << server_->err();
  EXPECT_THAT(server_->err(), HasSubstr("shutdown complete"));
  EXPECT_THAT(server_->err(), Not(HasSubstr("drain deadline reached")));
}

}  // namespace
}  // namespace kvserve
