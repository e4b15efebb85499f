#include "server/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

namespace kvserve::server {

namespace {

std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// /proc/stat's "btime" line: the boot time in seconds since the epoch.
std::optional<int64_t> BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  int64_t value = 0;
  while (in >> key) {
    if (key == "btime" && (in >> value)) return value;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::optional<int64_t> NumOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  int64_t n = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the directory stream's own descriptor, open while counting
}

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  family.metric.emplace_back();
  if (type == prometheus::MetricType::Counter) {
    family.metric.back().counter.value = value;
  } else {
    family.metric.back().gauge.value = value;
  }
  return family;
}

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view text) {
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  // Fields 3.. follow "pid (comm) ": split on single spaces.
  std::vector<std::string_view> fields;
  size_t pos = close + 1;
  while (pos < text.size()) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n')) ++pos;
    const size_t end = text.find_first_of(" \n", pos);
    if (pos >= text.size()) break;
    fields.push_back(text.substr(pos, end == std::string_view::npos ? end : end - pos));
    pos = end == std::string_view::npos ? text.size() : end;
  }
  // fields[0] is field 3 (state); field k is fields[k - 3].
  if (fields.size() < 22) return std::nullopt;
  auto parse = [&fields](int field, auto* out) {
    const std::string_view f = fields[field - 3];
    const auto [end, error] = std::from_chars(f.data(), f.data() + f.size(), *out);
    return error == std::errc() && end == f.data() + f.size();
  };
  ProcStat stat;
  if (!parse(14, &stat.utime_ticks) || !parse(15, &stat.stime_ticks) ||
      !parse(22, &stat.starttime_ticks) || !parse(23, &stat.vsize_bytes) ||
      !parse(24, &stat.rss_pages)) {
    return std::nullopt;
  }
  return stat;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  const std::optional<std::string> text = ReadFile("/proc/self/stat");
  const std::optional<ProcStat> stat =
      text.has_value() ? ParseProcStat(*text) : std::optional<ProcStat>();
  if (stat.has_value()) {
    const double ticks_per_second = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double rss_bytes = static_cast<double>(stat->rss_pages) * sysconf(_SC_PAGESIZE);
    out.push_back(
        Family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               MetricType::Counter,
               static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks_per_second));
    out.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                         MetricType::Gauge, rss_bytes));
    out.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                         MetricType::Gauge, static_cast<double>(stat->vsize_bytes)));
    if (const std::optional<int64_t> boot = BootTimeSeconds()) {
      out.push_back(Family("process_start_time_seconds",
                           "Start time of the process since unix epoch in seconds.",
                           MetricType::Gauge,
                           static_cast<double>(*boot) +
                               static_cast<double>(stat->starttime_ticks) / ticks_per_second));
    }
    out.push_back(Family("kvserve_process_resident_memory_bytes",
                         "Resident set size of the kvserve process (all models); the same value "
                         "as process_resident_memory_bytes.",
                         MetricType::Gauge, rss_bytes));
  }
  if (const std::optional<int64_t> fds = NumOpenFds()) {
    out.push_back(Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                         static_cast<double>(*fds)));
  }
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                         MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return out;
}

}  // namespace kvserve::server
