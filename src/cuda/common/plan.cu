// Split-KV planning on the GPU: schedule_config picks the parallelism, plan_splits runs the
// shared serial planner (common/split_plan.h) in one GPU thread so no host sync is needed.
#include <cuda_runtime.h>

#include <algorithm>

#include "api/backends.h"
#include "common/split_plan.h"
#include "cuda/common/check.h"
#include "cuda/common/device_info.h"
#include "cuda/sm90/decode/tile_shape.h"

namespace flashmla::detail::cuda {

namespace {

__global__ void plan_splits_kernel(const int32_t* cache_seqlens, int batch_size, int block_n,
                                   int num_workers, int fixed_cost, int32_t* worker_schedule,
                                   int32_t* split_offsets) {
  // O(batch + workers) serial work: a few microseconds, once per decoding step.
  detail::plan_splits(cache_seqlens, batch_size, block_n, num_workers, fixed_cost, worker_schedule,
                      split_offsets);
}

}  // namespace

ScheduleConfig schedule_config(const DecodeShape& shape, int device, int num_workers) {
  const int q_per_kv = shape.h_q / std::max(shape.h_kv, 1);
  const int rows = decode_rows(shape.s_q, q_per_kv);
  const int tile_rows = decode_tile_rows(rows);
  const int ctas_per_worker = std::max(shape.h_kv, 1) * decode_row_tiles(rows);
  const int sms = sm_count(device);
  // Sparse 16- and 32-row tiles also have a configuration for two CTAs per SM
  // (decode_launch.cuh, Rows*TwoPerSM): one CTA's barrier-bound phases overlap the other's,
  // which pays once every SM has plenty of work (H200, FP8: h_q = 16 b = 128 224 -> 196 us,
  // h_q = 32 b = 128 292 -> 278 us), but its 32-token tiles cost more per token when the work
  // is thin (b = 2: 20.5 -> 21.8 us at h_q = 16, 23.6 -> 26.7 us at h_q = 32). A sparse plan's
  // work is known from its shape: `batch_size` queries of ceil(topk / 64) units each.
  const bool two_per_sm_possible = shape.topk > 0 && tile_rows <= 32;
  const int64_t units =
      static_cast<int64_t>(shape.batch_size) * ((shape.topk + kDecodeBlockN - 1) / kDecodeBlockN);
  const int one_wave = std::max(1, sms / ctas_per_worker);
  int ctas_per_sm = 1;
  if (two_per_sm_possible) {
    // An explicit worker count past one wave asks for the two-per-SM configuration.
    ctas_per_sm = (num_workers > 0 ? num_workers > one_wave : units >= 8LL * sms) ? 2 : 1;
  }
  // One wave: every worker's CTAs (one per KV head and row tile) together fill the SMs once
  // at the chosen occupancy.
  const int workers = std::max(1, sms * ctas_per_sm / ctas_per_worker);
  // A piece costs its KV units plus a fixed part: loading Q (kRows x d), writing the fp32
  // partial output and the combine pass reading it back. For 64-row tiles that is about two
  // 64-token KV tiles' worth of traffic, for smaller tiles about one. Sparse queries all have
  // the same number of slots, so the fixed part only shifts where cuts fall; measured on the
  // H200 (FLASHMLA_FIXED_COST experiment, b = 2): 0 is best there (h_q = 128 30.8 -> 29.4 us,
  // h_q = 16/32 within 1%), while dense b = 8 h_q = 128 wants 2 (63.6 us; 0: 67.8).
  const int fixed_cost = shape.topk > 0 ? 0 : tile_rows == 64 ? 2 : 1;
  return {workers, kDecodeBlockN, fixed_cost, ctas_per_sm};
}

void plan_splits(const int32_t* cache_seqlens, int batch_size, const ScheduleConfig& config,
                 int32_t* worker_schedule, int32_t* split_offsets, void* stream) {
  plan_splits_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(
      cache_seqlens, batch_size, config.block_n, config.num_workers, config.fixed_cost,
      worker_schedule, split_offsets);
  FLASHMLA_CUDA_CHECK_LAUNCH("plan_splits_kernel");
}

}  // namespace flashmla::detail::cuda
