// src/common/float_convert.h against the test's own number formats (tests/common/numeric.h):
// every decode exhaustively, encodes on all rounding boundaries and on random bit patterns.
#include "common/float_convert.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>

#include "common/numeric.h"

namespace flashmla::test {
namespace {

using detail::bf16_to_float;
using detail::e4m3_to_float;
using detail::float_to_bf16;
using detail::float_to_e4m3;
using detail::float_to_fp16;
using detail::fp16_to_float;

// Same value, or both NaN.
bool same_value(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

TEST(FloatConvert, DecodesEveryBF16AndFP16Value) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const auto b = static_cast<uint16_t>(bits);
    ASSERT_TRUE(same_value(bf16_to_float(b), bf16_value(b))) << std::hex << bits;
    ASSERT_TRUE(same_value(fp16_to_float(b), fp16_value(b))) << std::hex << bits;
  }
}

TEST(FloatConvert, DecodesEveryE4M3Value) {
  for (uint32_t bits = 0; bits <= 0xff; ++bits) {
    const auto b = static_cast<uint8_t>(bits);
    ASSERT_TRUE(same_value(e4m3_to_float(b), e4m3_value(b))) << std::hex << bits;
  }
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
}

// Checks encode(x) against the nearest-even search of the test for x and its float
// neighbours: each representable value, the midpoint to the next one (a tie), and one float
// ulp on either side of the midpoint.
template <typename Encode, typename Reference, typename Decode>
void check_boundaries(uint32_t max_code, Encode encode, Reference reference, Decode decode) {
  for (uint32_t code = 0; code < max_code; ++code) {
    const double lo = decode(code), hi = decode(code + 1);
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2) << "midpoint not representable";
    for (float x :
         {static_cast<float>(lo), mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      for (float signed_x : {x, -x}) {
        ASSERT_EQ(static_cast<uint32_t>(encode(signed_x)),
                  static_cast<uint32_t>(reference(static_cast<double>(signed_x))))
            << "x = " << signed_x << " (code " << code << ")";
      }
    }
  }
}

TEST(FloatConvert, EncodesBF16RoundingBoundaries) {
  check_boundaries(0x7f7f, float_to_bf16, to_bf16,
                   [](uint32_t c) { return bf16_value(static_cast<uint16_t>(c)); });
}

TEST(FloatConvert, EncodesFP16RoundingBoundaries) {
  check_boundaries(0x7bff, float_to_fp16, to_fp16,
                   [](uint32_t c) { return fp16_value(static_cast<uint16_t>(c)); });
  EXPECT_EQ(float_to_fp16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(float_to_fp16(-INFINITY), 0xfc00);
}

TEST(FloatConvert, EncodesE4M3RoundingBoundariesAndSaturates) {
  check_boundaries(0x7e, float_to_e4m3, to_e4m3,
                   [](uint32_t c) { return e4m3_value(static_cast<uint8_t>(c)); });
  EXPECT_EQ(float_to_e4m3(448.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(460.0f), 0x7e);
  EXPECT_EQ(float_to_e4m3(1e6f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(float_to_e4m3(NAN) & 0x7f, 0x7f);
}

TEST(FloatConvert, EncodesRandomBitPatterns) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    const double xd = x;
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(bf16_value(float_to_bf16(x))));
      EXPECT_TRUE(std::isnan(fp16_value(float_to_fp16(x))));
      EXPECT_TRUE(std::isnan(e4m3_value(float_to_e4m3(x))));
      continue;
    }
    ASSERT_EQ(float_to_bf16(x), to_bf16(xd)) << x;
    ASSERT_EQ(float_to_fp16(x), to_fp16(xd)) << x;
    ASSERT_EQ(float_to_e4m3(x), to_e4m3(xd)) << x;
  }
  // Values in the ranges that matter: near one, and small enough for subnormals.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = normal(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 40) - 30);
    ASSERT_EQ(float_to_bf16(x), to_bf16(x)) << x;
    ASSERT_EQ(float_to_fp16(x), to_fp16(x)) << x;
    ASSERT_EQ(float_to_e4m3(x), to_e4m3(x)) << x;
  }
}

}  // namespace
}  // namespace flashmla::test
