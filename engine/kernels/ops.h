// Element-wise and normalisation kernels of the Llama block, f32.
//
// Layout contracts are written per function, llm.c style. All functions are pure (no state) and
// thread-safe. `n` is always the number of rows (tokens). RmsNorm and SiluMul share a large call
// (a prefill chunk) among the calling thread's kernel threads (thread_pool.h); every element is
// computed by the same operations on any thread, so the results do not depend on it.
#ifndef KVSERVE_ENGINE_KERNELS_OPS_H_
#define KVSERVE_ENGINE_KERNELS_OPS_H_

#include <cstdint>

namespace kvserve::engine {

// RMSNorm: y[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight.
// x, y: [n, dim]; weight: [dim]. x may equal y.
void RmsNorm(const float* x, const float* weight, int64_t n, int64_t dim, float eps, float* y);

// SwiGLU gate: gate[i] = silu(gate[i]) * up[i] for i < count, silu(z) = z / (1 + e^-z), with e^-z
// from a vectorizable polynomial (ops.cc): relative error < 1e-6 for |z| < 10 and < 2e-5 up to
// z = -87; below that |silu(z)| < 1e-36 and may come out as -0, as in f32 where e^-z overflows.
void SiluMul(float* gate, const float* up, int64_t count);

// a · b over n elements in 8 interleaved partial sums combined in a fixed order: the compiler turns
// the lanes into one SIMD register, and the result depends on nothing but the inputs (the same on
// every call, batch and block layout).
inline float Dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += a[x + l] * b[x + l];
  }
  float tail = 0.0f;
  for (; x < n; ++x) tail += a[x] * b[x];
  return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) +
         ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7])) + tail;
}

// y[i] += a * x[i] for i < count.
inline void Axpy(float a, const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] += a * x[i];
}

// GELU, exact (erf) form: x · ½(1 + erf(x/√2)), in place over count elements.
void Gelu(float* x, int64_t count);

// y[i] += x[i] for i < count.
void AddInPlace(float* y, const float* x, int64_t count);

// Bias of a linear layer: y[i, :] += bias for every row i < n. y: [n, dim]; bias: [dim].
void AddBias(float* y, const float* bias, int64_t n, int64_t dim);

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_OPS_H_
