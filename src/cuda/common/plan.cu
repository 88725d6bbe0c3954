// Split-KV planning on the GPU: schedule_config picks the parallelism, plan_splits runs the
// shared serial planner (common/split_plan.h) in one GPU thread so no host sync is needed.
#include <cuda_runtime.h>

#include <algorithm>

#include "api/backends.h"
#include "common/split_plan.h"
#include "cuda/common/check.h"
#include "cuda/common/device_info.h"
#include "cuda/common/env.h"
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
  const bool sparse = shape.topk > 0;
  // A sparse plan's work: batch_size (b * s_q) queries of ceil(topk / 64) units each.
  const long long units =
      static_cast<long long>(shape.batch_size) * ((shape.topk + kDecodeBlockN - 1) / kDecodeBlockN);
  const int one_wave = std::max(1, sms / ctas_per_worker);
  const int ctas_per_sm = decode_ctas_per_sm(sparse, tile_rows, units, sms, num_workers, one_wave);
  // One wave: every worker's CTAs (one per KV head and row tile) together fill the SMs once at
  // the chosen occupancy.
  const int workers = std::max(1, sms * ctas_per_sm / ctas_per_worker);
  const int fixed_cost = decode_fixed_cost(sparse, tile_rows);
  // FLASHMLA_COMBINE_GROUPS=1|2|4 overrides the combine's split groups (A/B; read once).
  static const int forced_groups = [] {
    for (const char* g : {"1", "2", "4"}) {
      if (env_equals("FLASHMLA_COMBINE_GROUPS", g)) return g[0] - '0';
    }
    return 0;
  }();
  const long long combine_ctas = static_cast<long long>(shape.batch_size) * shape.s_q * shape.h_q;
  const int combine_groups =
      forced_groups != 0 ? forced_groups : decode_combine_groups(combine_ctas, sms);
  return {workers, kDecodeBlockN, fixed_cost, ctas_per_sm, combine_groups};
}

void plan_splits(const int32_t* cache_seqlens, int batch_size, const ScheduleConfig& config,
                 int32_t* worker_schedule, int32_t* split_offsets, void* stream) {
  plan_splits_kernel<<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(
      cache_seqlens, batch_size, config.block_n, config.num_workers, config.fixed_cost,
      worker_schedule, split_offsets);
  FLASHMLA_CUDA_CHECK_LAUNCH("plan_splits_kernel");
}

}  // namespace flashmla::detail::cuda
