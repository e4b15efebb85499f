// KernelIsa: which instruction set the low-precision matmul kernels (bf16_matmul.h,
// int8_matmul.h) and the attention kernel (layers/gqa_attention.h) run on, chosen at run time.
//
// Every kernel has a portable scalar implementation that reproduces the AVX-512 one bit for bit
// (each kernel header states its summation order and what holds across ISAs), so the choice
// changes speed, never results. Detection uses cpuid through __builtin_cpu_supports:
//   - bf16 kernels need AVX512F + AVX512BW + AVX512-BF16 (vdpbf16ps),
//   - int8 kernels need AVX512F + AVX512BW + AVX512-VNNI (vpdpbusd),
//   - the attention kernel needs AVX512F + AVX512BW + AVX512VL.
// The environment variable KVSERVE_KERNEL_ISA=portable, read once at the first query, forces the
// portable code (for machines where a result must be compared with a build without AVX-512).
//
// Thread-safety: the queries are safe from any thread; SetKernelIsaForTesting is a relaxed atomic
// store meant for tests, called while no kernel runs.
#ifndef KVSERVE_ENGINE_KERNELS_KERNEL_ISA_H_
#define KVSERVE_ENGINE_KERNELS_KERNEL_ISA_H_

#include <optional>

namespace kvserve::engine {

enum class KernelIsa {
  kPortable,  // plain C++, any CPU
  kAvx512,    // AVX-512 with the extension each kernel needs (see above)
};

// True when the bf16 (resp. int8, attention) kernels take their AVX-512 path.
bool UseAvx512Bf16Kernels();
bool UseAvx512Int8Kernels();
bool UseAvx512AttentionKernels();

// Forces `isa` for every kernel family (std::nullopt: back to detection). Forcing kAvx512 on a
// CPU that lacks an extension leaves that family on the portable path.
void SetKernelIsaForTesting(std::optional<KernelIsa> isa);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_KERNEL_ISA_H_
