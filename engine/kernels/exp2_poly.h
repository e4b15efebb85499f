// The pieces of the project's 2^x (and so e^x) approximations, one source for the kernels that
// build one (engine/layers/gqa_attention_kernel.inc, engine/kernels/ops.cc): t is split as
// r + f with r the nearest integer — (t + kExp2RoundMagic) - kExp2RoundMagic rounds to nearest
// even, exact for |t| < 2^22 — and f in [-1/2, 1/2]; 2^f is the degree-7 Taylor polynomial below
// (truncation error < 6e-9), and 2^r goes into the exponent bits.
#ifndef KVSERVE_ENGINE_KERNELS_EXP2_POLY_H_
#define KVSERVE_ENGINE_KERNELS_EXP2_POLY_H_

namespace kvserve::engine {

inline constexpr float kExp2RoundMagic = 12582912.0f;  // 1.5 · 2^23

// ln(2)^k / k!, k = 0..7: 2^f = e^(f ln 2) for |f| <= 1/2, by Horner from the highest term.
inline constexpr float kExp2Poly[8] = {1.0f,
                                       0.693147180559945309f,
                                       0.240226506959100712f,
                                       0.0555041086648215800f,
                                       0.00961812910762847717f,
                                       0.00133335581464284434f,
                                       0.000154035303933816100f,
                                       0.0000152527338040598403f};

}  // namespace kvserve::engine

#endif  // KVSERVE_ENGINE_KERNELS_EXP2_POLY_H_
