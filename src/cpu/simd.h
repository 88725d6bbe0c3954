// Portable SIMD building blocks of the CPU kernels: 16 floats as one GCC/Clang vector.
//
// With -march=native on an AVX-512 machine one Vec16 is one zmm register; elsewhere the
// compiler splits it into narrower registers, so the code stays correct (and vectorized) on
// any x86-64 or ARM host.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

// Without AVX-512, GCC warns that passing a 64-byte vector by value has a different ABI than
// with it. These vectors never cross a library boundary (all users are inline or internal), so
// the warning does not apply; it stays off for the rest of every file that includes this one.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace flashmla::detail::cpu {

inline constexpr int kLanes = 16;
using Vec16 = float __attribute__((vector_size(kLanes * sizeof(float))));
using Vec16i = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec16 load16(const float* p) {
  Vec16 v;
  std::memcpy(&v, p, sizeof(v));  // an unaligned vector load
  return v;
}

inline void store16(float* p, Vec16 v) {
  std::memcpy(p, &v, sizeof(v));
}

// Loads a vector that will be used several times and pins it to a register. Without this, GCC
// folds the load into every FMA that uses it (as a memory operand), which makes the kernels
// load-bound: two 512-bit loads per cycle against two FMAs.
inline Vec16 load16_reg(const float* p) {
  Vec16 v = load16(p);
#if defined(__GNUC__) && defined(__AVX512F__)  // one Vec16 is one zmm register
  asm("" : "+v"(v));
#endif
  return v;
}

inline Vec16 broadcast16(float x) {
  return Vec16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}

// Adds pairs of vectors lane-wise after splitting them in halves: the result holds, in its
// first half, the sums of a's two halves and, in its second half, those of b's. Used as one
// step of a transposing reduction.
inline Vec16 fold_halves(Vec16 a, Vec16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
         __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                 31);
}
inline Vec16 fold_quarters(Vec16 a, Vec16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
         __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}
inline Vec16 fold_pairs(Vec16 a, Vec16 b) {
  return __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
         __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
}
inline Vec16 fold_lanes(Vec16 a, Vec16 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// Horizontal sums of 16 vectors at once: lane j of the result is the sum of the lanes of v[j].
// 30 shuffles and 15 adds, against about 160 operations for 16 separate reductions.
inline Vec16 reduce16(const Vec16 (&v)[16]) {
  Vec16 halves[8], quarters[4], pairs[2];
  for (int i = 0; i < 8; ++i) halves[i] = fold_halves(v[2 * i], v[2 * i + 1]);
  for (int i = 0; i < 4; ++i) quarters[i] = fold_quarters(halves[2 * i], halves[2 * i + 1]);
  for (int i = 0; i < 2; ++i) pairs[i] = fold_pairs(quarters[2 * i], quarters[2 * i + 1]);
  return fold_lanes(pairs[0], pairs[1]);
}

// 2^x for x <= 0 (and x = -inf), relative error ~2e-7; 0 below 2^-126 (no subnormals).
// Written as plain scalar code without branches so that `omp simd` loops vectorize it.
inline float exp2_nonpositive(float x) {
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float clamped = x < -127.0f ? -127.0f : x;
  const float whole = (clamped + kRoundMagic) - kRoundMagic;
  const float f = clamped - whole;  // in [-0.5, 0.5]
  // Taylor series of e^(f ln 2) to degree 6: truncation error < 1.3e-7 on [-0.5, 0.5].
  constexpr float c1 = 0.6931471806f, c2 = 0.2402265070f, c3 = 0.0555041087f, c4 = 0.0096181291f,
                  c5 = 0.0013333558f, c6 = 0.0001540353f;
  const float poly = 1.0f + f * (c1 + f * (c2 + f * (c3 + f * (c4 + f * (c5 + f * c6)))));
  const int32_t exponent = static_cast<int32_t>(whole);
  const float result = std::bit_cast<float>(std::bit_cast<int32_t>(poly) + (exponent << 23));
  return x < -126.0f ? 0.0f : result;
}

}  // namespace flashmla::detail::cpu
