#include "common/numeric.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace flashmla::test {

namespace {

// A binary format with `mantissa_bits` fraction bits, exponent bias `bias` and
// `exponent_bits` exponent bits (all-ones exponent = inf/NaN when `has_inf`).
double decode(uint32_t bits, int exponent_bits, int mantissa_bits, int bias) {
  const uint32_t mantissa = bits & ((1u << mantissa_bits) - 1);
  const uint32_t exponent = (bits >> mantissa_bits) & ((1u << exponent_bits) - 1);
  const bool negative = (bits >> (mantissa_bits + exponent_bits)) & 1u;
  double magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), 1 - bias - mantissa_bits);
  } else {
    magnitude = std::ldexp(1.0 + std::ldexp(static_cast<double>(mantissa), -mantissa_bits),
                           static_cast<int>(exponent) - bias);
  }
  return negative ? -magnitude : magnitude;
}

// Nearest code among the sorted non-negative finite codes 0..max_code of a format (codes are
// ordered like their values), ties to the even code.
template <typename Decode>
uint32_t nearest_code(double magnitude, uint32_t max_code, Decode value_of) {
  uint32_t lo = 0, hi = max_code;  // find the largest code with value <= magnitude
  while (lo < hi) {
    const uint32_t mid = (lo + hi + 1) / 2;
    if (value_of(mid) <= magnitude) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  if (lo == max_code) return lo;
  const double below = magnitude - value_of(lo), above = value_of(lo + 1) - magnitude;
  if (below < above) return lo;
  if (above < below) return lo + 1;
  return (lo % 2 == 0) ? lo : lo + 1;
}

}  // namespace

double bf16_value(uint16_t bits) {
  if ((bits & 0x7f80) == 0x7f80) {
    if (bits & 0x7f) return std::numeric_limits<double>::quiet_NaN();
    return (bits & 0x8000) ? -INFINITY : INFINITY;
  }
  return decode(bits, 8, 7, 127);
}

double fp16_value(uint16_t bits) {
  if ((bits & 0x7c00) == 0x7c00) {
    if (bits & 0x3ff) return std::numeric_limits<double>::quiet_NaN();
    return (bits & 0x8000) ? -INFINITY : INFINITY;
  }
  return decode(bits, 5, 10, 15);
}

double e4m3_value(uint8_t bits) {
  if ((bits & 0x7f) == 0x7f) return std::numeric_limits<double>::quiet_NaN();
  return decode(bits, 4, 3, 7);
}

uint16_t to_bf16(double value) {
  if (std::isnan(value)) return kBF16NaN;
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const double magnitude = std::fabs(value);
  constexpr uint32_t kMaxFinite = 0x7f7f;
  // Values at or beyond max + half an ulp round to infinity.
  const double max_value = bf16_value(kMaxFinite);
  if (magnitude >= max_value + std::ldexp(1.0, 127 - 8)) return sign | 0x7f80;
  return sign | static_cast<uint16_t>(nearest_code(magnitude, kMaxFinite, [](uint32_t c) {
           return bf16_value(static_cast<uint16_t>(c));
         }));
}

uint16_t to_fp16(double value) {
  if (std::isnan(value)) return kFP16NaN;
  const uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const double magnitude = std::fabs(value);
  constexpr uint32_t kMaxFinite = 0x7bff;  // 65504
  if (magnitude >= 65520.0) return sign | 0x7c00;
  return sign | static_cast<uint16_t>(nearest_code(magnitude, kMaxFinite, [](uint32_t c) {
           return fp16_value(static_cast<uint16_t>(c));
         }));
}

uint8_t to_e4m3(double value) {
  if (std::isnan(value)) return 0x7f;
  const uint8_t sign = std::signbit(value) ? 0x80 : 0;
  const double magnitude = std::min(std::fabs(value), 448.0);
  return sign | static_cast<uint8_t>(nearest_code(magnitude, 0x7e, [](uint32_t c) {
           return e4m3_value(static_cast<uint8_t>(c));
         }));
}

double half_value(DType dtype, uint16_t bits) {
  return dtype == DType::kBF16 ? bf16_value(bits) : fp16_value(bits);
}

uint16_t to_half(DType dtype, double value) {
  return dtype == DType::kBF16 ? to_bf16(value) : to_fp16(value);
}

uint16_t half_nan(DType dtype) {
  return dtype == DType::kBF16 ? kBF16NaN : kFP16NaN;
}

}  // namespace flashmla::test
