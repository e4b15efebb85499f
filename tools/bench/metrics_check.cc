#include "tools/bench/metrics_check.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/bench/openai_client.h"
#include "tools/bench/runner.h"

namespace kvserve::bench {
namespace {

constexpr char kSuccess[] = "kvserve_request_success_total";
constexpr char kFailure[] = "kvserve_request_failure_total";
constexpr char kGenerationTokens[] = "kvserve_generation_tokens_total";
constexpr char kPromptTokens[] = "kvserve_prompt_tokens_total";
constexpr char kRunning[] = "kvserve_requests_running";
constexpr char kWaiting[] = "kvserve_requests_waiting";

// Parses one sample line: name, optional {labels}, value, optional timestamp.
bool ParseSampleLine(absl::string_view line, MetricsSnapshot::Sample* sample) {
  size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ' && line[i] != '\t') ++i;
  sample->name = std::string(line.substr(0, i));
  if (sample->name.empty()) return false;
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (true) {
      while (i < line.size() && (line[i] == ' ' || line[i] == ',')) ++i;
      if (i >= line.size()) return false;
      if (line[i] == '}') {
        ++i;
        break;
      }
      const size_t eq = line.find('=', i);
      if (eq == absl::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
        return false;
      }
      std::string key(absl::StripAsciiWhitespace(line.substr(i, eq - i)));
      std::string value;
      i = eq + 2;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value += line[i] == 'n' ? '\n' : line[i];
        } else {
          value += line[i];
        }
        ++i;
      }
      if (i >= line.size()) return false;
      ++i;  // closing quote
      sample->labels[std::move(key)] = std::move(value);
    }
  }
  const std::vector<absl::string_view> rest =
      absl::StrSplit(line.substr(i), absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (rest.empty()) return false;
  if (rest[0] == "+Inf") {
    sample->value = std::numeric_limits<double>::infinity();
  } else if (rest[0] == "-Inf") {
    sample->value = -std::numeric_limits<double>::infinity();
  } else if (rest[0] == "NaN") {
    sample->value = std::numeric_limits<double>::quiet_NaN();
  } else if (!absl::SimpleAtod(rest[0], &sample->value)) {
    return false;
  }
  return true;
}

bool Matches(const Labels& labels, const Labels& match) {
  for (const auto& [k, v] : match) {
    const auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<MetricsSnapshot> MetricsSnapshot::Parse(absl::string_view text) {
  MetricsSnapshot snapshot;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    if (!ParseSampleLine(line, &sample)) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics line ", line_number, " is not a sample: '", line, "'"));
    }
    snapshot.samples_.push_back(std::move(sample));
  }
  return snapshot;
}

double MetricsSnapshot::Sum(absl::string_view name, const Labels& match) const {
  double sum = 0;
  for (const Sample& s : samples_) {
    if (s.name == name && Matches(s.labels, match)) sum += s.value;
  }
  return sum;
}

bool MetricsSnapshot::Has(absl::string_view name) const {
  for (const Sample& s : samples_) {
    if (s.name == name) return true;
  }
  return false;
}

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view url) {
  absl::string_view rest = url;
  HttpUrl parsed;
  if (absl::ConsumePrefix(&rest, "https://")) {
    parsed.tls = true;
    parsed.port = 443;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--metrics-url '", url, "': only http:// or https://HOST:PORT/PATH is supported"));
  }
  const size_t slash = rest.find('/');
  absl::string_view host_port = rest.substr(0, slash);
  if (slash != absl::string_view::npos) parsed.path = std::string(rest.substr(slash));
  absl::string_view port_text;
  if (absl::StartsWith(host_port, "[")) {
    const size_t close = host_port.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics-url '", url, "': bad host"));
    }
    parsed.host = std::string(host_port.substr(1, close - 1));
    absl::string_view after = host_port.substr(close + 1);
    if (absl::ConsumePrefix(&after, ":")) port_text = after;
  } else {
    const size_t colon = host_port.rfind(':');
    parsed.host = std::string(host_port.substr(0, colon));
    if (colon != absl::string_view::npos) port_text = host_port.substr(colon + 1);
  }
  if (parsed.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-url '", url, "': no host"));
  }
  if (!port_text.empty() &&
      (!absl::SimpleAtoi(port_text, &parsed.port) || parsed.port < 1 || parsed.port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-url '", url, "': bad port"));
  }
  return parsed;
}

absl::Status ValidateMetricsUrl(absl::string_view url, bool allow_remote) {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  if (!allow_remote && !IsLoopbackHost(parsed->host)) {
    return absl::PermissionDeniedError(
        absl::StrCat("--metrics-url '", url, "': '", parsed->host,
                     "' is not a loopback address; pass --allow-remote to scrape another machine"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HttpGet(absl::string_view url, absl::Duration timeout,
                                    std::shared_ptr<const tools::TlsClientContext> tls) {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  if (parsed->tls && tls == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-url '", url, "': https:// needs --tls-ca"));
  }
  const std::string host_port = parsed->host.find(':') == std::string::npos
                                    ? absl::StrCat(parsed->host, ":", parsed->port)
                                    : absl::StrCat("[", parsed->host, "]:", parsed->port);
  OpenAiConnection connection(host_port, parsed->tls ? std::move(tls) : nullptr);
  absl::StatusOr<HttpReply> reply =
      connection.Exchange(parsed->path, "", absl::ToDoubleSeconds(timeout));
  if (!reply.ok()) {
    return absl::Status(reply.status().code(),
                        absl::StrCat("GET ", url, ": ", reply.status().message()));
  }
  if (reply->status != 200) {
    return absl::InternalError(absl::StrCat("GET ", url, ": HTTP ", reply->status));
  }
  return std::move(reply->body);
}

absl::StatusOr<MetricsSnapshot> ScrapeMetrics(absl::string_view url, absl::Duration timeout,
                                              std::shared_ptr<const tools::TlsClientContext> tls) {
  absl::StatusOr<std::string> body = HttpGet(url, timeout, std::move(tls));
  if (!body.ok()) return body.status();
  return MetricsSnapshot::Parse(*body);
}

ClientCounts CountClient(const std::vector<RequestRecord>& records,
                         const std::vector<int32_t>& target_indices) {
  ClientCounts c;
  for (const RequestRecord& r : records) {
    if (std::find(target_indices.begin(), target_indices.end(), r.target_index) ==
        target_indices.end()) {
      continue;
    }
    if (r.ok()) {
      ++c.succeeded;
      c.output_tokens_succeeded += r.output_tokens;
      c.prompt_tokens_succeeded += r.prompt_tokens;
      continue;
    }
    if (r.status_code == static_cast<int>(absl::StatusCode::kCancelled)) {
      ++c.cancelled;
    } else if (r.status_code == static_cast<int>(absl::StatusCode::kDeadlineExceeded)) {
      ++c.deadline_exceeded;
    } else {
      ++c.other_failures;
    }
    c.output_tokens_failed += r.output_tokens;
    c.output_tokens_failed_limit += r.max_tokens;
    c.prompt_tokens_failed += r.prompt_tokens;
    if (r.output_tokens > 0) c.prompt_tokens_failed_started += r.prompt_tokens;
  }
  return c;
}

bool MetricsCheck::ok() const {
  for (const MetricsComparison& c : comparisons) {
    if (!c.ok()) return false;
  }
  return true;
}

MetricsCheck CompareMetrics(const MetricsSnapshot& before, const MetricsSnapshot& after,
                            const ClientCounts& client) {
  auto delta = [&](absl::string_view name, const Labels& match = {}) {
    return after.Sum(name, match) - before.Sum(name, match);
  };
  auto d = [](int64_t v) { return static_cast<double>(v); };
  MetricsCheck check;
  auto exact = [&](std::string what, double server, int64_t expected) {
    check.comparisons.push_back({std::move(what), server, d(expected), d(expected)});
  };
  // A client's cancel can cross the server's final OK on the wire (gRPC allows both orders; an
  // HTTP client can hang up after the last byte was sent): the server counted a success where the
  // client saw CANCELLED. So each cancelled call is a server success or a server cancel, and the
  // two together are exact.
  check.comparisons.push_back(
      {kSuccess, delta(kSuccess), d(client.succeeded), d(client.succeeded + client.cancelled)});
  check.comparisons.push_back({absl::StrCat(kFailure, "{reason=\"cancelled\"}"),
                               delta(kFailure, {{"reason", "cancelled"}}), 0, d(client.cancelled)});
  exact(absl::StrCat(kSuccess, " + ", kFailure, "{reason=\"cancelled\"}"),
        delta(kSuccess) + delta(kFailure, {{"reason", "cancelled"}}),
        client.succeeded + client.cancelled);
  exact(absl::StrCat(kFailure, "{reason=\"deadline\"}"), delta(kFailure, {{"reason", "deadline"}}),
        client.deadline_exceeded);
  const int64_t received = client.output_tokens_succeeded + client.output_tokens_failed;
  check.comparisons.push_back(
      {kGenerationTokens, delta(kGenerationTokens), d(received),
       d(client.output_tokens_succeeded + client.output_tokens_failed_limit)});
  check.comparisons.push_back(
      {kPromptTokens, delta(kPromptTokens),
       d(client.prompt_tokens_succeeded + client.prompt_tokens_failed_started),
       d(client.prompt_tokens_succeeded + client.prompt_tokens_failed)});
  for (const char* reason : {"invalid", "rejected", "aborted", "internal"}) {
    check.info[absl::StrCat("failures_", reason)] = delta(kFailure, {{"reason", reason}});
  }
  check.info["preemptions"] = delta("kvserve_preemptions_total");
  const double queries = delta("kvserve_prefix_cache_queries_total");
  check.info["prefix_cache_queries"] = queries;
  check.info["prefix_cache_hits"] = delta("kvserve_prefix_cache_hits_total");
  if (queries > 0) check.info["prefix_cache_hit_ratio"] = check.info["prefix_cache_hits"] / queries;
  return check;
}

absl::StatusOr<MetricsSnapshot> ScrapeSettled(absl::string_view url, const MetricsSnapshot& before,
                                              const ClientCounts& client, absl::Duration timeout,
                                              std::shared_ptr<const tools::TlsClientContext> tls) {
  const absl::Time deadline = absl::Now() + timeout;
  const absl::Duration scrape_timeout = absl::Seconds(5);
  auto settled = [&](const MetricsSnapshot& s) {
    auto delta = [&](absl::string_view name, const Labels& match = {}) {
      return s.Sum(name, match) - before.Sum(name, match);
    };
    return delta(kSuccess) + delta(kFailure, {{"reason", "cancelled"}}) >=
               client.succeeded + client.cancelled &&
           delta(kFailure, {{"reason", "deadline"}}) >= client.deadline_exceeded &&
           delta(kGenerationTokens) >=
               client.output_tokens_succeeded + client.output_tokens_failed &&
           s.Sum(kRunning) == 0 && s.Sum(kWaiting) == 0;
  };
  while (true) {
    absl::StatusOr<MetricsSnapshot> s = ScrapeMetrics(url, scrape_timeout, tls);
    if (!s.ok()) return s.status();
    if (settled(*s) || absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ScrapeMetrics(url, scrape_timeout, tls);
}

}  // namespace kvserve::bench
