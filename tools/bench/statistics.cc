#include "tools/bench/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/logging.h"

namespace kvserve::bench {

std::optional<double> RequestRecord::tpot_s() const {
  if (!ok() || output_tokens < 2 || !first_token_s) return std::nullopt;
  return (end_s - *first_token_s) / (output_tokens - 1);
}

double Percentile(std::vector<double> values, double p) {
  KV_CHECK(!values.empty()) << "Percentile of nothing";
  KV_CHECK(p >= 0 && p <= 100) << "percentile " << p;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + fraction * (values[above] - values[below]);
}

Distribution Summarize(const std::vector<double>& values) {
  Distribution d;
  if (values.empty()) return d;
  d.count = static_cast<int64_t>(values.size());
  const double n = static_cast<double>(values.size());
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / n;
  double squares = 0;
  for (double v : values) squares += (v - d.mean) * (v - d.mean);
  d.stddev = std::sqrt(squares / n);
  std::vector<double> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  d.min = sorted.front();
  d.max = sorted.back();
  d.p50 = Percentile(sorted, 50);
  d.p90 = Percentile(sorted, 90);
  d.p99 = Percentile(sorted, 99);
  return d;
}

namespace {

// "500" / "500ms" -> 0.5; "0.5s" -> 0.5.
absl::StatusOr<double> ParseMillisOrSeconds(absl::string_view key, absl::string_view text) {
  double scale = 1e-3;
  absl::string_view number = text;
  if (absl::ConsumeSuffix(&number, "ms")) {
    scale = 1e-3;
  } else if (absl::ConsumeSuffix(&number, "s")) {
    scale = 1;
  }
  double value = 0;
  if (!absl::SimpleAtod(number, &value) || !std::isfinite(value) || value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slo: ", key,
                     " must be a positive time in ms (or with an ms/s suffix), got '", text, "'"));
  }
  return value * scale;
}

}  // namespace

absl::StatusOr<Slo> ParseSlo(absl::string_view text) {
  Slo slo;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: expected KEY=VALUE (keys ttft, tpot, e2e), got '", item, "'"));
    }
    const std::string key = absl::AsciiStrToLower(absl::StripAsciiWhitespace(item.substr(0, eq)));
    const absl::string_view value = absl::StripAsciiWhitespace(item.substr(eq + 1));
    std::optional<double>* slot = nullptr;
    if (key == "ttft") {
      slot = &slo.ttft_s;
    } else if (key == "tpot") {
      slot = &slo.tpot_s;
    } else if (key == "e2e" || key == "e2el") {
      slot = &slo.e2e_s;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: unknown key '", key, "' (keys: ttft, tpot, e2e)"));
    }
    absl::StatusOr<double> seconds = ParseMillisOrSeconds(key, value);
    if (!seconds.ok()) return seconds.status();
    *slot = *seconds;
  }
  if (slo.empty()) return absl::InvalidArgumentError("--slo: no objective given");
  return slo;
}

std::string FormatSlo(const Slo& slo) {
  std::vector<std::string> parts;
  auto add = [&](const char* name, const std::optional<double>& s) {
    if (s) parts.push_back(absl::StrCat(name, " <= ", *s * 1e3, " ms"));
  };
  add("ttft", slo.ttft_s);
  add("tpot", slo.tpot_s);
  add("e2e", slo.e2e_s);
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

bool MeetsSlo(const RequestRecord& record, const Slo& slo) {
  if (!record.ok()) return false;
  if (slo.ttft_s) {
    const std::optional<double> ttft = record.ttft_s();
    if (!ttft || *ttft > *slo.ttft_s) return false;
  }
  if (slo.tpot_s) {
    const std::optional<double> tpot = record.tpot_s();
    if (tpot && *tpot > *slo.tpot_s) return false;
  }
  if (slo.e2e_s && record.e2e_s() > *slo.e2e_s) return false;
  return true;
}

RunStats ComputeStats(const std::vector<RequestRecord>& records, double duration_s,
                      const Slo& slo) {
  RunStats s;
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  // (time, +1 start / -1 end); ends sort before starts at equal times.
  std::vector<std::pair<double, int>> events;
  for (const RequestRecord& r : records) {
    ++s.num_sent;
    events.emplace_back(r.start_s, +1);
    events.emplace_back(r.end_s, -1);
    s.total_output_tokens_all += r.output_tokens;
    if (r.cut_off) ++s.num_cut_off;
    if (!r.ok()) {
      ++s.num_failed;
      ++s.errors[absl::StatusCodeToString(static_cast<absl::StatusCode>(r.status_code))];
      if (r.cancel_planned && !r.cut_off &&
          r.status_code == static_cast<int>(absl::StatusCode::kCancelled)) {
        ++s.num_cancelled_by_client;
      }
      continue;
    }
    ++s.num_succeeded;
    if (r.cancel_planned && r.cancel_sent) ++s.num_cancel_too_late;
    if (r.usage_output_tokens != r.output_tokens) ++s.num_usage_mismatches;
    s.total_input_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    s.total_token_messages += r.num_token_messages;
    if (const std::optional<double> t = r.ttft_s()) ttft.push_back(*t);
    if (const std::optional<double> t = r.tpot_s()) tpot.push_back(*t);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    e2e.push_back(r.e2e_s());
    if (MeetsSlo(r, slo)) ++s.num_good;
  }
  std::sort(events.begin(), events.end());
  int32_t in_flight = 0;
  for (const auto& [time, delta] : events) {
    in_flight += delta;
    s.max_concurrency_seen = std::max(s.max_concurrency_seen, in_flight);
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.num_succeeded) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
    s.request_goodput = static_cast<double>(s.num_good) / duration_s;
  }
  s.ttft = Summarize(ttft);
  s.tpot = Summarize(tpot);
  s.itl = Summarize(itl);
  s.e2e = Summarize(e2e);
  return s;
}

}  // namespace kvserve::bench
