// Merging split-KV partial results into the final output (MLA.md section 2, "combine").
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"

namespace flashmla::detail::cuda {

// What the combine step reads and writes. A plan sequence (see decode_args.h) is a batch entry
// whose s_q tokens share the splits (dense, fold = 1) or one query token (sparse, fold = s_q):
// plan sequence `seq` is batch entry seq / fold, tokens from seq % fold, and its partial rows
// are [(s - seq % fold) * h_q + h].
struct CombineParams {
  int plan_sequences, fold, s_q, h_q, dv;
  ActType act_type;
  void* out;  // [b, s_q, h_q, dv]
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;  // [b, h_q, s_q]
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;
  const float* attn_sink;  // [h_q] or nullptr: out *= exp(lse) / (exp(lse) + exp(sink))
  ScheduleView schedule;
};

// For every plan sequence with more than one split: lse = log sum_s exp(lse_s) and
// out = sum_s exp(lse_s - lse) * out_s, read from the schedule's workspace. Sequences with one
// split were written by the decode kernel itself and are skipped. No host sync.
void launch_combine(const CombineParams& params, cudaStream_t stream);

}  // namespace flashmla::detail::cuda
