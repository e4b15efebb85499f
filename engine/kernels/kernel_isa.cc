#include "engine/kernels/kernel_isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace kvserve::engine {
namespace {

// -1: detect; otherwise a KernelIsa value.
std::atomic<int> forced_isa{-1};

bool PortableRequestedByEnv() {
  static const bool portable = [] {
    const char* value = std::getenv("KVSERVE_KERNEL_ISA");
    return value != nullptr && std::strcmp(value, "portable") == 0;
  }();
  return portable;
}

bool Allowed(bool cpu_has_it) {
  const int forced = forced_isa.load(std::memory_order_relaxed);
  if (forced == static_cast<int>(KernelIsa::kPortable)) return false;
  if (forced < 0 && PortableRequestedByEnv()) return false;
  return cpu_has_it;
}

}  // namespace

bool UseAvx512Bf16Kernels() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  return Allowed(cpu);
}

bool UseAvx512Int8Kernels() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni");
  return Allowed(cpu);
}

bool UseAvx512AttentionKernels() {
  static const bool cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  return Allowed(cpu);
}

void SetKernelIsaForTesting(std::optional<KernelIsa> isa) {
  forced_isa.store(isa ? static_cast<int>(*isa) : -1, std::memory_order_relaxed);
}

}  // namespace kvserve::engine
