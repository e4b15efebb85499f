// How much memory this process may still use: the smaller of the kernel's MemAvailable and, inside
// a container, the cgroup limit minus current usage. Used to size the KV cache when no budget is
// given.
#ifndef KVSERVE_BASE_SYSTEM_MEMORY_H_
#define KVSERVE_BASE_SYSTEM_MEMORY_H_

#include <cstdint>
#include <optional>
#include <string>

namespace kvserve::base {

// Bytes available to this process now, or nullopt if /proc/meminfo cannot be read.
std::optional<int64_t> AvailableMemoryBytes();

// Parses "MemAvailable:   123 kB" out of /proc/meminfo text (exposed for tests).
std::optional<int64_t> ParseMemAvailable(const std::string& meminfo);

}  // namespace kvserve::base

#endif  // KVSERVE_BASE_SYSTEM_MEMORY_H_
