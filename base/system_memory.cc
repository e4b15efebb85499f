#include "base/system_memory.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace kvserve::base {
namespace {

std::optional<std::string> ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<int64_t> ReadInt(const char* path) {
  std::optional<std::string> text = ReadSmallFile(path);
  if (!text.has_value()) return std::nullopt;
  try {
    size_t used = 0;
    const long long v = std::stoll(*text, &used);
    if (used == 0) return std::nullopt;
    return static_cast<int64_t>(v);
  } catch (...) {
    return std::nullopt;  // "max" (no limit) or garbage
  }
}

}  // namespace

std::optional<int64_t> ParseMemAvailable(const std::string& meminfo) {
  std::istringstream lines(meminfo);
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (lines >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

std::optional<int64_t> AvailableMemoryBytes() {
  std::optional<std::string> meminfo = ReadSmallFile("/proc/meminfo");
  if (!meminfo.has_value()) return std::nullopt;
  std::optional<int64_t> available = ParseMemAvailable(*meminfo);
  if (!available.has_value()) return std::nullopt;
  // cgroup v2 (Kubernetes memory limits): what is left below the limit.
  std::optional<int64_t> limit = ReadInt("/sys/fs/cgroup/memory.max");
  std::optional<int64_t> current = ReadInt("/sys/fs/cgroup/memory.current");
  if (limit.has_value() && current.has_value()) {
    available = std::min(*available, std::max<int64_t>(0, *limit - *current));
  }
  return available;
}

}  // namespace kvserve::base
