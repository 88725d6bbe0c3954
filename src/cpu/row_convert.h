// Conversions of whole rows (a query head, a KV cache token, an output head) between the
// storage types and fp32. One call per row: the inner loops are branch-free and vectorize.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/decode_params.h"
#include "common/float_convert.h"

namespace flashmla::detail::cpu {

// FP8 with scale (MLA.md section 3): byte offsets within a 656-byte token row.
inline constexpr int kFP8LatentDim = 512;
inline constexpr int kFP8GroupSize = 128;
inline constexpr int kFP8NumGroups = kFP8LatentDim / kFP8GroupSize;
inline constexpr int kFP8ScaleOffset = kFP8LatentDim;                       // 4 fp32 scales
inline constexpr int kFP8RopeOffset = kFP8ScaleOffset + 4 * kFP8NumGroups;  // 64 bf16 values
inline constexpr int kFP8RopeDim = 64;

// dst[i] = bf16/fp16 src[i] * multiplier, i < n.
inline void half_row_to_float(const uint16_t* src, bool is_bf16, int n, float multiplier,
                              float* dst) {
  if (is_bf16) {
#pragma omp simd
    for (int i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]) * multiplier;
  } else {
#pragma omp simd
    for (int i = 0; i < n; ++i) dst[i] = fp16_to_float(src[i]) * multiplier;
  }
}

// One FP8-with-scale token row (656 bytes) -> 576 floats: fp8 * scale, then the bf16 rope.
inline void fp8_row_to_float(const uint8_t* row, float* dst) {
  float scales[kFP8NumGroups];
  std::memcpy(scales, row + kFP8ScaleOffset, sizeof(scales));
  for (int g = 0; g < kFP8NumGroups; ++g) {
    const uint8_t* src = row + g * kFP8GroupSize;
    float* out = dst + g * kFP8GroupSize;
    const float scale = scales[g];
#pragma omp simd
    for (int i = 0; i < kFP8GroupSize; ++i) out[i] = e4m3_to_float(src[i]) * scale;
  }
  uint16_t rope[kFP8RopeDim];
  std::memcpy(rope, row + kFP8RopeOffset, sizeof(rope));
  half_row_to_float(rope, /*is_bf16=*/true, kFP8RopeDim, 1.0f, dst + kFP8LatentDim);
}

// Bytes per stride unit of a cache: strides of FP8 caches count bytes, others elements.
inline int64_t cache_stride_bytes(KVFormat format) {
  return format == KVFormat::kFP8WithScale ? 1 : 2;
}

// Bytes of one cache row of `d` values.
inline int cache_row_bytes(const KVCacheView& kv, int d) {
  return kv.format == KVFormat::kFP8WithScale ? kFP8RopeOffset + kFP8RopeDim * 2
                                              : d * static_cast<int>(sizeof(uint16_t));
}

// Address of token `row` of page `page`, KV head `head`.
inline const uint8_t* cache_row(const KVCacheView& kv, int64_t page, int64_t row, int64_t head) {
  const int64_t offset = page * kv.block_stride + row * kv.row_stride + head * kv.head_stride;
  return static_cast<const uint8_t*>(kv.data) + offset * cache_stride_bytes(kv.format);
}

// One cache row of `d` values (576 for FP8) -> fp32.
inline void cache_row_to_float(const KVCacheView& kv, const uint8_t* row, int d, float* dst) {
  if (kv.format == KVFormat::kFP8WithScale) {
    fp8_row_to_float(row, dst);
  } else {
    half_row_to_float(reinterpret_cast<const uint16_t*>(row), kv.format == KVFormat::kBF16, d, 1.0f,
                      dst);
  }
}

// fp32 -> bf16/fp16 row, round to nearest even.
inline void float_row_to_half(const float* src, bool is_bf16, int n, uint16_t* dst) {
  if (is_bf16) {
#pragma omp simd
    for (int i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
  } else {
#pragma omp simd
    for (int i = 0; i < n; ++i) dst[i] = float_to_fp16(src[i]);
  }
}

}  // namespace flashmla::detail::cpu
