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

constexpr int kGroupThreads = 128;  // one group: 4 of a row's 512 columns per thread
constexpr int combine_threads(int groups) {
  return groups * kGroupThreads;
}

// grid: (plan sequences, rows per plan sequence), one CTA per (sequence, query token, head) row.
// The split count is per plan sequence, so the CTAs of single-split ones leave at once; the
// others spread one row's 512 columns over the 128 threads of a group, and its splits over
// kGroups groups. A small grid (b = 1: one row per CTA, dozens of splits) is bound by the latency
// of its workspace reads, so it takes two groups; a large one (b >= 8, a few splits each) takes
// one (bench/NOTES.md, session 4).
template <typename Elem, int kGroups>
__global__ void __launch_bounds__(combine_threads(kGroups))
    combine_kernel(const __grid_constant__ CombineParams p) {
  constexpr int kThreads = combine_threads(kGroups);
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
  auto weight = [&](int i) {
    return nan ? NAN : __expf(lse_in[i * row_stride] - lse) * sink_factor;
  };
  if ((p.dv & 3) == 0) {
    // Group k takes splits k, k + kGroups, ...; groups 1.. hand their sums to group 0.
    __shared__ float4 group_sums[kGroups > 1 ? kGroups - 1 : 1][kGroupThreads];
    const int group = threadIdx.x / kGroupThreads;
    const int gtid = threadIdx.x % kGroupThreads;
    constexpr int kColsPerPass = kGroupThreads * 4;
    for (int c0 = 0; c0 < p.dv; c0 += kColsPerPass) {  // uniform trip count: barriers inside
      const int c = c0 + gtid * 4;
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
      if (!empty && c < p.dv) {
#pragma unroll(kGroups > 1 ? 8 : 4)
        for (int i = group; i < splits; i += kGroups) {
          const float w = weight(i);
          const float4 v = *reinterpret_cast<const float4*>(out_in + i * row_stride * p.dv + c);
          acc.x += w * v.x;
          acc.y += w * v.y;
          acc.z += w * v.z;
          acc.w += w * v.w;
        }
      }
      if constexpr (kGroups > 1) {
        if (group > 0) group_sums[group - 1][gtid] = acc;
        __syncthreads();
        if (group == 0) {
#pragma unroll
          for (int k = 0; k < kGroups - 1; ++k) {
            const float4 u = group_sums[k][gtid];
            acc.x += u.x;
            acc.y += u.y;
            acc.z += u.z;
            acc.w += u.w;
          }
        }
      }
      if (group == 0 && c < p.dv) {
        out[c] = ptx::from_float<Elem>(acc.x);
        out[c + 1] = ptx::from_float<Elem>(acc.y);
        out[c + 2] = ptx::from_float<Elem>(acc.z);
        out[c + 3] = ptx::from_float<Elem>(acc.w);
      }
      if constexpr (kGroups > 1) __syncthreads();  // group_sums is reused by the next pass
    }
  } else {
    for (int c = threadIdx.x; c < p.dv; c += kThreads) {
      float acc = 0.f;
      if (!empty) {
#pragma unroll 4
        for (int i = 0; i < splits; ++i) acc += weight(i) * out_in[i * row_stride * p.dv + c];
      }
      out[c] = ptx::from_float<Elem>(acc);
    }
  }
}

template <typename Elem>
void launch_combine_as(const CombineParams& p, cudaLaunchConfig_t config) {
  const int groups = p.schedule.combine_groups;  // chosen by the planner (schedule_config)
  config.blockDim = dim3(groups * kGroupThreads);
  if (groups == 4) {
    FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, combine_kernel<Elem, 4>, p));
  } else if (groups == 2) {
    FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, combine_kernel<Elem, 2>, p));
  } else {
    FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, combine_kernel<Elem, 1>, p));
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
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  // FLASHMLA_COMBINE_PDL=0 launches it as a plain kernel (A/B comparison; read once).
  static const bool pdl = !env_equals("FLASHMLA_COMBINE_PDL", "0");
  config.numAttrs = pdl ? 1 : 0;
  if (p.act_type == ActType::kBF16) {
    launch_combine_as<__nv_bfloat16>(p, config);
  } else {
    launch_combine_as<__half>(p, config);
  }
  FLASHMLA_CUDA_CHECK_LAUNCH("combine_kernel");
}

}  // namespace flashmla::detail::cuda
