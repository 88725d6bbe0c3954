// Conversions between a bf16 KV cache [.., 576] and the "FP8 with scale" layout (MLA.md
// section 3, byte-compatible with FlashMLA): one warp per token row.
//
// Row layout: bytes 0-511 the latent as e4m3, 512-527 four fp32 scales (one per 128 values),
// 528-655 the 64 RoPE values as bf16. Quantization: scale = 2^ceil(log2(max(amax / 448, 1e-4)))
// computed exactly (no log2 rounding), fp8 = round-to-nearest-even(x / scale), saturating.
// The results are bit-identical to the CPU backend's.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "api/backends.h"
#include "cuda/common/check.h"

namespace flashmla::detail::cuda {

namespace {

constexpr int kLatent = 512, kGroup = 128, kGroups = 4, kScaleOffset = 512, kRopeOffset = 528;
constexpr int kRope = 64;
constexpr int kWarpsPerCTA = 8;

// The smallest power of two >= x (x > 0), exactly: frexp gives x = m * 2^e with m in [0.5, 1).
__device__ __forceinline__ float ceil_pow2(float x) {
  int e = 0;
  const float m = frexpf(x, &e);
  return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

__device__ __forceinline__ uint8_t to_e4m3(float x) {
  // Round to nearest even; finite overflow saturates to +-448, NaN gives 0x7f/0xff.
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

__device__ __forceinline__ float from_e4m3(uint8_t b) {
  if ((b & 0x7f) == 0x7f) return __uint_as_float(0x7fc00000u | (uint32_t{b & 0x80u} << 24));
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));
}

// fp32 -> bf16 bits, round to nearest even; NaN keeps its sign and high payload, made quiet
// (the CPU backend's rule, so that NaN rows convert to the same bits).
__device__ __forceinline__ uint16_t to_bf16_bits(float x) {
  const uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// src: bf16 rows of 576 values; dst: 656-byte rows.
__global__ void __launch_bounds__(kWarpsPerCTA * 32)
    quantize_kernel(const __grid_constant__ FP8CacheConvertParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerCTA + (threadIdx.x >> 5);
  const int64_t num_rows = static_cast<int64_t>(p.num_blocks) * p.page_block_size;
  if (row >= num_rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t block = row / p.page_block_size, token = row % p.page_block_size;
  const uint16_t* src =
      static_cast<const uint16_t*>(p.src) + block * p.src_block_stride + token * p.src_row_stride;
  uint8_t* dst =
      static_cast<uint8_t*>(p.dst) + block * p.dst_block_stride + token * p.dst_row_stride;

  for (int g = 0; g < kGroups; ++g) {
    float v[4];
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      v[i] = __uint_as_float(uint32_t{src[g * kGroup + lane * 4 + i]} << 16);
      amax = fmaxf(amax, fabsf(v[i]));  // fmaxf drops NaN, as std::max(amax, NaN) does
    }
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, d));
    const float scale = ceil_pow2(fmaxf(amax / 448.0f, 1e-4f));
#pragma unroll
    for (int i = 0; i < 4; ++i) dst[g * kGroup + lane * 4 + i] = to_e4m3(v[i] / scale);
    if (lane == 0) {
      const uint32_t bits = __float_as_uint(scale);
#pragma unroll
      for (int b = 0; b < 4; ++b)
        dst[kScaleOffset + g * 4 + b] = static_cast<uint8_t>(bits >> (8 * b));
    }
  }
  // RoPE: 64 bf16 values copied as bytes (the row is only 8-byte aligned in general).
  for (int i = lane; i < kRope * 2; i += 32) {
    dst[kRopeOffset + i] = reinterpret_cast<const uint8_t*>(src + kLatent)[i];
  }
}

// src: 656-byte rows; dst: bf16 rows of 576 values. fp8 * power-of-two scale is exact in bf16.
__global__ void __launch_bounds__(kWarpsPerCTA * 32)
    dequantize_kernel(const __grid_constant__ FP8CacheConvertParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerCTA + (threadIdx.x >> 5);
  const int64_t num_rows = static_cast<int64_t>(p.num_blocks) * p.page_block_size;
  if (row >= num_rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t block = row / p.page_block_size, token = row % p.page_block_size;
  const uint8_t* src =
      static_cast<const uint8_t*>(p.src) + block * p.src_block_stride + token * p.src_row_stride;
  uint16_t* dst =
      static_cast<uint16_t*>(p.dst) + block * p.dst_block_stride + token * p.dst_row_stride;
  for (int g = 0; g < kGroups; ++g) {
    uint32_t sbits = 0;
#pragma unroll
    for (int b = 0; b < 4; ++b) sbits |= uint32_t{src[kScaleOffset + g * 4 + b]} << (8 * b);
    const float scale = __uint_as_float(sbits);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int c = g * kGroup + lane * 4 + i;
      const float x = from_e4m3(src[c]);
      float y = x * scale;
      // x86 keeps the first NaN operand's payload where the GPU makes a canonical NaN; follow
      // the CPU backend so both give the same bits.
      if (isnan(y)) y = isnan(x) ? x : scale;
      dst[c] = to_bf16_bits(y);
    }
  }
  for (int i = lane; i < kRope; i += 32) {
    const uint8_t* r = src + kRopeOffset + 2 * i;
    dst[kLatent + i] = static_cast<uint16_t>(r[0] | (uint16_t{r[1]} << 8));
  }
}

void launch(bool quantize, const FP8CacheConvertParams& p, void* stream) {
  const int64_t rows = static_cast<int64_t>(p.num_blocks) * p.page_block_size;
  if (rows == 0) return;
  const int64_t grid = (rows + kWarpsPerCTA - 1) / kWarpsPerCTA;
  if (grid > 0x7fffffffLL) {
    throw Error(ErrorKind::kNotSupported, "src", "cache too large for one conversion launch");
  }
  const auto s = static_cast<cudaStream_t>(stream);
  if (quantize) {
    quantize_kernel<<<static_cast<unsigned>(grid), kWarpsPerCTA * 32, 0, s>>>(p);
    FLASHMLA_CUDA_CHECK_LAUNCH("quantize_kernel");
  } else {
    dequantize_kernel<<<static_cast<unsigned>(grid), kWarpsPerCTA * 32, 0, s>>>(p);
    FLASHMLA_CUDA_CHECK_LAUNCH("dequantize_kernel");
  }
}

}  // namespace

void quantize_fp8(const FP8CacheConvertParams& params, void* stream) {
  launch(true, params, stream);
}

void dequantize_fp8(const FP8CacheConvertParams& params, void* stream) {
  launch(false, params, stream);
}

}  // namespace flashmla::detail::cuda
