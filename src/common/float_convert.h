// Host-side conversions between float and the storage types of the library: bf16, fp16 and
// fp8 e4m3 (the "fn" variant: no infinities, NaN = S.1111.111, max 448).
//
// Float -> narrow conversions round to nearest, ties to even, like torch's casts. The e4m3
// conversion saturates finite values (and infinities) to +-448 instead of producing NaN; torch
// returns NaN above 464, but the FP8 cache quantizer never gets there (|x / scale| <= 448).
// All functions are branch-light and inline so that loops over them vectorize.
#pragma once

#include <bit>
#include <cstdint>

namespace flashmla::detail {

// --- bf16 ---------------------------------------------------------------------------------

inline float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

inline uint16_t float_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep the sign, force a quiet NaN
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

// --- fp16 ---------------------------------------------------------------------------------

inline float fp16_to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t magnitude = bits & 0x7fffu;
  // Put exponent and mantissa in place; multiplying by 2^112 rebiases the exponent (15 -> 127)
  // and turns fp16 subnormals into the right fp32 normals in one step.
  float value = std::bit_cast<float>(magnitude << 13) * 0x1p112f;
  if (magnitude >= 0x7c00u) {  // inf or NaN: exponent all ones
    value = std::bit_cast<float>(0x7f800000u | (magnitude << 13));
  }
  return std::bit_cast<float>(std::bit_cast<uint32_t>(value) | sign);
}

inline uint16_t float_to_fp16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (magnitude < 0x38800000u) {                        // below 2^-14: fp16 subnormal or zero
    // Adding 0.5 makes the fp32 adder round (ties to even) to its ulp 2^-24, the fp16 subnormal
    // step; the low bits of the sum are then the fp16 encoding.
    const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
    return sign | static_cast<uint16_t>(std::bit_cast<uint32_t>(shifted) - 0x3f000000u);
  }
  const uint32_t mantissa_odd = (magnitude >> 13) & 1u;
  const uint32_t rebiased = magnitude + ((15u - 127u) << 23) + 0xfffu + mantissa_odd;
  return sign | static_cast<uint16_t>(rebiased >> 13);
}

// --- fp8 e4m3 (fn) ------------------------------------------------------------------------

inline constexpr float kE4M3Max = 448.0f;

inline float e4m3_to_float(uint8_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x80u) << 24;
  const uint32_t magnitude = bits & 0x7fu;
  // Exponent and mantissa in place; 2^120 rebiases (7 -> 127) and handles subnormals.
  float value = std::bit_cast<float>(magnitude << 20) * 0x1p120f;
  if (magnitude == 0x7fu) value = std::bit_cast<float>(0x7fc00000u);  // the only NaN
  return std::bit_cast<float>(std::bit_cast<uint32_t>(value) | sign);
}

inline uint8_t float_to_e4m3(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7fu;   // NaN
  if (magnitude >= 0x43e00000u) return sign | 0x7eu;  // >= 448 (or inf): saturate
  if (magnitude < 0x3c800000u) {                      // below 2^-6: e4m3 subnormal or zero
    // As for fp16: adding 2^14 makes the adder round to its ulp 2^-9, the e4m3 subnormal step.
    const float shifted = std::bit_cast<float>(magnitude) + 16384.0f;
    return sign | static_cast<uint8_t>(std::bit_cast<uint32_t>(shifted) - 0x46800000u);
  }
  const uint32_t mantissa_odd = (magnitude >> 20) & 1u;
  const uint32_t rebiased = magnitude + ((7u - 127u) << 23) + 0x7ffffu + mantissa_odd;
  return sign | static_cast<uint8_t>(rebiased >> 20);
}

}  // namespace flashmla::detail
