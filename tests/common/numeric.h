// Test-side number formats, written independently of src/common/float_convert.h: decoding
// by the formulas of the formats (sign * 2^e * 1.m), encoding by searching the nearest
// representable value in double precision (ties to the even code).
#pragma once

#include <cstdint>

#include "flashmla/tensor.h"

namespace flashmla::test {

double bf16_value(uint16_t bits);
double fp16_value(uint16_t bits);
double e4m3_value(uint8_t bits);  // NaN for 0x7f / 0xff

// Nearest representable value, ties to even. bf16/fp16 overflow to +-inf; e4m3 saturates
// to +-448. NaN stays NaN.
uint16_t to_bf16(double value);
uint16_t to_fp16(double value);
uint8_t to_e4m3(double value);

// 16-bit storage types (bf16 or fp16).
double half_value(DType dtype, uint16_t bits);
uint16_t to_half(DType dtype, double value);

inline constexpr uint16_t kBF16NaN = 0x7fc0;
inline constexpr uint16_t kFP16NaN = 0x7e00;
uint16_t half_nan(DType dtype);

}  // namespace flashmla::test
