// Conversions between a bf16 KV cache [.., 576] and the "FP8 with scale" layout (MLA.md
// section 3), with FlashMLA's quantization recipe.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "api/backends.h"
#include "common/float_convert.h"
#include "cpu/row_convert.h"

namespace flashmla::detail::cpu {

namespace {

// The smallest power of two >= x, for x > 0: 2^ceil(log2(x)), computed exactly.
float ceil_pow2(float x) {
  int exponent = 0;
  const float mantissa = std::frexp(x, &exponent);  // x = mantissa * 2^exponent, in [0.5, 1)
  return std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
}

// 576 bf16 values -> one 656-byte row.
void quantize_row(const uint16_t* src, uint8_t* dst) {
  float scales[kFP8NumGroups];
  for (int g = 0; g < kFP8NumGroups; ++g) {
    const uint16_t* group = src + g * kFP8GroupSize;
    float amax = 0.0f;
    for (int i = 0; i < kFP8GroupSize; ++i)
      amax = std::max(amax, std::fabs(bf16_to_float(group[i])));
    const float scale = ceil_pow2(std::max(amax / kE4M3Max, 1e-4f));
    for (int i = 0; i < kFP8GroupSize; ++i) {
      dst[g * kFP8GroupSize + i] = float_to_e4m3(bf16_to_float(group[i]) / scale);
    }
    scales[g] = scale;
  }
  std::memcpy(dst + kFP8ScaleOffset, scales, sizeof(scales));
  std::memcpy(dst + kFP8RopeOffset, src + kFP8LatentDim, kFP8RopeDim * sizeof(uint16_t));
}

// One 656-byte row -> 576 bf16 values (exact: fp8 * power-of-two scale fits in bf16).
void dequantize_row(const uint8_t* src, uint16_t* dst) {
  float values[kFP8LatentDim + kFP8RopeDim];
  fp8_row_to_float(src, values);
  float_row_to_half(values, /*is_bf16=*/true, kFP8LatentDim, dst);
  std::memcpy(dst + kFP8LatentDim, src + kFP8RopeOffset, kFP8RopeDim * sizeof(uint16_t));
}

template <typename Src, typename Dst, typename RowFn>
void for_each_row(const FP8CacheConvertParams& p, RowFn convert) {
  const int64_t num_rows = static_cast<int64_t>(p.num_blocks) * p.page_block_size;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < num_rows; ++i) {
    const int64_t block = i / p.page_block_size, row = i % p.page_block_size;
    convert(static_cast<const Src*>(p.src) + block * p.src_block_stride + row * p.src_row_stride,
            static_cast<Dst*>(p.dst) + block * p.dst_block_stride + row * p.dst_row_stride);
  }
}

}  // namespace

void quantize_fp8(const FP8CacheConvertParams& params) {
  for_each_row<uint16_t, uint8_t>(params, quantize_row);
}

void dequantize_fp8(const FP8CacheConvertParams& params) {
  for_each_row<uint8_t, uint16_t>(params, dequantize_row);
}

}  // namespace flashmla::detail::cpu
