// The combine kernel: one CTA per (sequence, query token, head) row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "cuda/common/check.h"
#include "cuda/common/combine.h"
#include "cuda/common/element.cuh"
#include "cuda/common/env.h"

namespace flashmla::detail::cuda {

namespace {

constexpr int kCombineThreads = 256;  // one CTA per (sequence, query token, head) row
constexpr int kSplitGroups = 2;       // the CTA's halves take alternate splits

// grid: (plan sequences, rows per plan sequence). The split count is per plan sequence, so the
// CTAs of single-split ones leave at once; the others spread one row's 512 columns over 128
// threads and its splits over two such halves, so that even b = 1 (one sequence, dozens of
// splits) keeps enough of its workspace reads in flight.
template <typename Elem>
__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const __grid_constant__ CombineParams p) {
  // Launched as a programmatic dependent of the decode kernel: it may start while the decode
  // grid drains, and waits here until all of the decode grid's writes are visible.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const int seq = blockIdx.x;
  const int32_t* offsets = p.schedule.split_offsets;
  const int first = offsets[seq];
  const int splits = offsets[seq + 1] - first;
  if (splits <= 1) return;
  const int row = blockIdx.y;  // (s - s_base) * h_q + h
  const int batch = seq / p.fold;
  const int s = seq - batch * p.fold + row / p.h_q;
  const int h = row % p.h_q;
  const int64_t row_stride = static_cast<int64_t>(p.s_q / p.fold) * p.h_q;  // between splits
  const float* lse_in = p.schedule.partial_lse + static_cast<int64_t>(first) * row_stride + row;
  const float* out_in =
      p.schedule.partial_out + (static_cast<int64_t>(first) * row_stride + row) * p.dv;

  // Max and sum of exp over the splits' lse (each warp computes them; a split that saw no key
  // has lse -inf, weight 0).
  const int lane = threadIdx.x & 31;
  float m = -INFINITY;
  bool nan = false;
  for (int i = lane; i < splits; i += 32) {
    const float v = lse_in[i * row_stride];
    nan |= isnan(v);
    m = fmaxf(m, v);
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, d));
  nan = __any_sync(0xffffffffu, nan);
  float total = 0.f;
  if (m != -INFINITY) {
    for (int i = lane; i < splits; i += 32) total += __expf(lse_in[i * row_stride] - m);
  }
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) total += __shfl_xor_sync(0xffffffffu, total, d);

  float lse;
  if (nan) {
    lse = NAN;  // a split read an invalid page: poison the row rather than hide it
  } else if (m == -INFINITY) {
    lse = INFINITY;  // no split saw any key: out 0, lse +inf
  } else {
    lse = m + logf(total);
  }
  if (threadIdx.x == 0) {
    p.lse[batch * p.lse_batch_stride + h * p.lse_head_stride + s * p.lse_seq_stride] = lse;
  }
  // Attention sink: scales the output, not lse (a sink of +inf gives 0).
  const float sink_factor =
      p.attn_sink != nullptr && isfinite(lse) ? 1.f / (1.f + __expf(p.attn_sink[h] - lse)) : 1.f;

  Elem* out = static_cast<Elem*>(p.out) + batch * p.out_batch_stride + s * p.out_seq_stride +
              h * p.out_head_stride;
  const bool empty = !nan && m == -INFINITY;
  auto weight = [&](int i) { return nan ? NAN : __expf(lse_in[i * row_stride] - lse) * sink_factor; };
  if ((p.dv & 3) == 0) {
    // 4 columns per thread, 128 threads per row, and the splits dealt out to the two halves of
    // the CTA: with 128 threads and 4 loads in flight each, b = 1 (one row per CTA, dozens of
    // splits) was bound by load latency (ncu: 57% long-scoreboard stalls on the sums).
    __shared__ float4 upper_sums[kCombineThreads / kSplitGroups];
    const int group = threadIdx.x / (kCombineThreads / kSplitGroups);
    const int gtid = threadIdx.x % (kCombineThreads / kSplitGroups);
    constexpr int kColsPerPass = kCombineThreads / kSplitGroups * 4;
    for (int c0 = 0; c0 < p.dv; c0 += kColsPerPass) {  // uniform trip count: barriers inside
      const int c = c0 + gtid * 4;
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
      if (!empty && c < p.dv) {
#pragma unroll 8
        for (int i = group; i < splits; i += kSplitGroups) {
          const float w = weight(i);
          const float4 v = *reinterpret_cast<const float4*>(out_in + i * row_stride * p.dv + c);
          acc.x += w * v.x;
          acc.y += w * v.y;
          acc.z += w * v.z;
          acc.w += w * v.w;
        }
      }
      if (group == 1) upper_sums[gtid] = acc;
      __syncthreads();
      if (group == 0 && c < p.dv) {
        const float4 u = upper_sums[gtid];
        out[c] = ptx::from_float<Elem>(acc.x + u.x);
        out[c + 1] = ptx::from_float<Elem>(acc.y + u.y);
        out[c + 2] = ptx::from_float<Elem>(acc.z + u.z);
        out[c + 3] = ptx::from_float<Elem>(acc.w + u.w);
      }
      __syncthreads();  // upper_sums is reused by the next pass
    }
  } else {
    for (int c = threadIdx.x; c < p.dv; c += kCombineThreads) {
      float acc = 0.f;
      if (!empty) {
#pragma unroll 4
        for (int i = 0; i < splits; ++i) acc += weight(i) * out_in[i * row_stride * p.dv + c];
      }
      out[c] = ptx::from_float<Elem>(acc);
    }
  }
}

}  // namespace

void launch_combine(const CombineParams& p, cudaStream_t stream) {
  const dim3 grid(p.plan_sequences, (p.s_q / p.fold) * p.h_q);
  // Programmatic dependent launch: the combine grid is scheduled while the decode grid's last
  // CTAs run (they signal griddepcontrol.launch_dependents when they start), which hides the
  // launch gap between the two kernels; small batches are dominated by such fixed costs.
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(kCombineThreads);
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  // FLASHMLA_COMBINE_PDL=0 launches it as a plain kernel (A/B comparison; read once).
  static const bool pdl = !env_equals("FLASHMLA_COMBINE_PDL", "0");
  config.numAttrs = pdl ? 1 : 0;
  if (p.act_type == ActType::kBF16) {
    FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, combine_kernel<__nv_bfloat16>, p));
  } else {
    FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, combine_kernel<__half>, p));
  }
  FLASHMLA_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace flashmla::detail::cuda
