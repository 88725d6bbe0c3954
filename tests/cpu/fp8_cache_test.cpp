// FP8-with-scale cache conversions (MLA.md section 3) through the public API: quantization
// bit-exact against the test's own implementation of FlashMLA's recipe, dequantization exact,
// round trip within e4m3 precision, and strides respected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/inputs.h"
#include "common/numeric.h"
#include "common/reference.h"
#include "flashmla/decode.h"

namespace flashmla::test {
namespace {

constexpr int kD = 576, kRow = kFP8RowBytes;

// bf16 rows with group magnitudes spread over many binades, including all-zero groups, tiny
// groups (amax / 448 < 1e-4: the scale floor), exact powers of two and amax = 224 * 2^k
// (amax / 448 exactly a power of two).
std::vector<uint16_t> varied_rows(Rng& rng, int num_rows) {
  std::vector<uint16_t> rows(static_cast<size_t>(num_rows) * kD);
  for (int r = 0; r < num_rows; ++r) {
    for (int g = 0; g < 5; ++g) {  // 4 latent groups of 128, then the 64 rope values
      const int begin = g * 128, end = g < 4 ? begin + 128 : kD;
      const int kind = rng.uniform_int(0, 5);
      const double magnitude = std::ldexp(1.0, rng.uniform_int(-20, 12));
      for (int i = begin; i < end; ++i) {
        double x = 0;
        if (kind == 1) x = rng.normal() * magnitude;
        if (kind == 2) x = rng.normal() * 1e-5;
        if (kind >= 3) x = random_activation(rng) * (kind == 5 ? 1000 : 1);
        rows[static_cast<size_t>(r) * kD + i] = to_bf16(x);
      }
      if (kind == 4 && g < 4) {  // amax exactly 224 * 2^k
        rows[static_cast<size_t>(r) * kD + begin + rng.uniform_int(0, 127)] =
            to_bf16(224.0 * std::ldexp(1.0, rng.uniform_int(-12, 4)));
      }
    }
  }
  return rows;
}

TEST(FP8Cache, QuantizeMatchesRecipeBitExact) {
  Rng rng(1);
  const int num_blocks = 5, page = 33;
  std::vector<uint16_t> src = varied_rows(rng, num_blocks * page);
  // dst with FlashMLA's layout: one padding row per page, which must stay untouched.
  const int64_t page_stride = static_cast<int64_t>(page + 1) * kRow;
  std::vector<uint8_t> dst(num_blocks * page_stride, 0xab);
  quantize_kv_cache_fp8(
      TensorView::contiguous(src.data(), DType::kBF16, {num_blocks, page, 1, kD}),
      TensorView::strided(dst.data(), DType::kFP8E4M3, {num_blocks, page, 1, kRow},
                          {page_stride, kRow, kRow, 1}));
  for (int b = 0; b < num_blocks; ++b) {
    for (int r = 0; r < page; ++r) {
      const std::vector<uint8_t> expected =
          reference_quantize_fp8_row(&src[(static_cast<size_t>(b) * page + r) * kD]);
      const uint8_t* got = &dst[b * page_stride + r * kRow];
      for (int i = 0; i < kRow; ++i) {
        ASSERT_EQ(got[i], expected[i]) << "page " << b << " row " << r << " byte " << i;
      }
    }
    for (int i = 0; i < kRow; ++i) {
      ASSERT_EQ(dst[b * page_stride + page * kRow + i], 0xab) << "padding row written";
    }
  }
}

TEST(FP8Cache, ScalesArePowersOfTwoAndCoverTheGroup) {
  Rng rng(2);
  std::vector<uint16_t> src = varied_rows(rng, 64);
  std::vector<uint8_t> dst(64 * kRow);
  quantize_kv_cache_fp8(TensorView::contiguous(src.data(), DType::kBF16, {1, 64, 1, kD}),
                        TensorView::contiguous(dst.data(), DType::kUInt8, {1, 64, 1, kRow}));
  for (int r = 0; r < 64; ++r) {
    for (int g = 0; g < 4; ++g) {
      float scale;
      std::memcpy(&scale, &dst[r * kRow + 512 + 4 * g], sizeof(scale));
      int exponent;
      ASSERT_EQ(std::frexp(scale, &exponent), 0.5f) << "not a power of two: " << scale;
      double amax = 0;
      for (int i = 0; i < 128; ++i)
        amax = std::max(amax, std::fabs(bf16_value(src[r * kD + g * 128 + i])));
      EXPECT_GE(scale, std::max(amax / 448.0, 1e-4));
      EXPECT_LT(scale, 2 * std::max(amax / 448.0, 1e-4));
    }
  }
}

TEST(FP8Cache, RoundTripWithinE4M3Precision) {
  Rng rng(3);
  const int num_blocks = 3, page = 64;
  std::vector<uint16_t> src = varied_rows(rng, num_blocks * page);
  std::vector<uint8_t> fp8(num_blocks * page * kRow);
  // dst of the dequantization with a padded page stride, in elements.
  const int64_t page_stride = static_cast<int64_t>(page) * kD + 100;
  std::vector<uint16_t> back(num_blocks * page_stride, 0x1234);
  quantize_kv_cache_fp8(
      TensorView::contiguous(src.data(), DType::kBF16, {num_blocks, page, 1, kD}),
      TensorView::contiguous(fp8.data(), DType::kUInt8, {num_blocks, page, 1, kRow}));
  dequantize_kv_cache_fp8(
      TensorView::contiguous(fp8.data(), DType::kUInt8, {num_blocks, page, 1, kRow}),
      TensorView::strided(back.data(), DType::kBF16, {num_blocks, page, 1, kD},
                          {page_stride, kD, kD, 1}));
  for (int b = 0; b < num_blocks; ++b) {
    for (int r = 0; r < page; ++r) {
      const uint8_t* q = &fp8[(static_cast<size_t>(b) * page + r) * kRow];
      const uint16_t* original = &src[(static_cast<size_t>(b) * page + r) * kD];
      const uint16_t* restored = &back[b * page_stride + r * kD];
      for (int i = 0; i < 512; ++i) {
        float scale;
        std::memcpy(&scale, q + 512 + 4 * (i / 128), sizeof(scale));
        // Dequantization is exact: fp8 * power-of-two scale fits in bf16.
        ASSERT_EQ(bf16_value(restored[i]), e4m3_value(q[i]) * scale);
        // e4m3 keeps 3 mantissa bits (relative error <= 2^-4), subnormals step 2^-9 * scale.
        const double x = bf16_value(original[i]), y = bf16_value(restored[i]);
        ASSERT_LE(std::fabs(x - y),
                  std::max(std::fabs(x) / 16, std::ldexp(static_cast<double>(scale), -10)))
            << "row " << r << " value " << i;
      }
      for (int i = 512; i < kD; ++i) ASSERT_EQ(restored[i], original[i]) << "rope " << i;
    }
    for (int i = page * kD; i < page_stride; ++i) ASSERT_EQ(back[b * page_stride + i], 0x1234);
  }
}

}  // namespace
}  // namespace flashmla::test
