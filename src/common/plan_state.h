// What a DecodePlan holds: the schedule's parameters and its buffers on the plan's device.
#pragma once

#include <cstdint>
#include <vector>

#include "common/decode_params.h"
#include "flashmla/decode.h"

namespace flashmla::detail {

struct PlanState {
  DecodeShape shape;
  Device device;
  int head_dim_v = 512;
  int num_workers = 0;
  int block_n = 64;
  int fixed_cost = 0;   // in schedule units, see split_plan.h
  int ctas_per_sm = 1;  // CUDA: see ScheduleConfig
  int combine_groups = 1;
  // The planner's view: dense plans split each sequence's s_q x h_q rows together; sparse plans
  // (shape.topk > 0) split each query token's h_q rows, since every token has its own indices.
  int plan_sequences = 0;     // dense: batch_size; sparse: batch_size * s_q
  int rows_per_sequence = 0;  // dense: s_q * h_q; sparse: h_q
  int max_splits = 0;         // plan_sequences + num_workers
  bool planned = false;
  std::vector<int32_t> planned_seqlens;  // host plans only: the cache_seqlens planned for

  // Storage: host vectors for CPU plans, one device allocation for CUDA plans.
  std::vector<int32_t> host_ints;
  std::vector<float> host_floats;
  void* device_buffer = nullptr;

  int32_t* worker_schedule = nullptr;  // [num_workers, kScheduleStride]
  int32_t* split_offsets = nullptr;    // [plan_sequences + 1]
  float* partial_out = nullptr;        // [max_splits, rows_per_sequence, dv]
  float* partial_lse = nullptr;        // [max_splits, rows_per_sequence]

  ScheduleView view() const {
    return {num_workers, block_n,    worker_schedule, split_offsets, partial_out,
            partial_lse, max_splits, ctas_per_sm,     combine_groups};
  }
};

}  // namespace flashmla::detail
