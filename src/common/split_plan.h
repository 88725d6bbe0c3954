// The split-KV planner, shared by the CPU backend and the CUDA planning kernel.
//
// All sequences' KV tokens, cut into units of `block_n` tokens, are laid end to end and cut
// into `num_workers` contiguous pieces of (nearly) equal cost. A worker thus processes the tail
// of one sequence, some whole sequences, and the head of another; every piece of a sequence is
// a "split" whose partial output and lse go to the workspace and are merged by the combine step,
// unless the sequence has a single split, in which case the worker writes the final output.
//
// Cost of a piece = its units + `fixed_cost` (the per-piece prologue/epilogue and combine work),
// so that many short sequences are not all given to one worker.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FLASHMLA_HOST_DEVICE __host__ __device__
#else
#define FLASHMLA_HOST_DEVICE
#endif

namespace flashmla::detail {

// One row of the worker schedule.
enum ScheduleField : int {
  kBeginSeq = 0,    // first sequence of the worker
  kBeginToken = 1,  // first token in kBeginSeq
  kEndSeq = 2,      // last sequence of the worker (inclusive); < kBeginSeq when idle
  kEndToken = 3,    // one past the last token in kEndSeq
  kBeginSplit = 4,  // index of the worker's piece of kBeginSeq among that sequence's splits
  kScheduleStride = 8,
};

// Writes worker_schedule [num_workers, kScheduleStride] and split_offsets [batch_size + 1].
// Serial and O(batch_size + num_workers): it runs on the host or in one GPU thread.
FLASHMLA_HOST_DEVICE inline void plan_splits(const int32_t* cache_seqlens, int batch_size,
                                             int block_n, int num_workers, int fixed_cost,
                                             int32_t* worker_schedule, int32_t* split_offsets) {
  auto units_of = [&](int seq) {
    const int len = cache_seqlens[seq] > 0 ? cache_seqlens[seq] : 0;
    return (len + block_n - 1) / block_n;
  };
  int64_t total = 0;
  for (int i = 0; i < batch_size; ++i) total += units_of(i) + fixed_cost;
  // Each cut adds one piece, hence one more fixed_cost: give every worker that much slack so the
  // cuts do not pile the remainder onto the last worker.
  int64_t per_worker = (total + num_workers - 1) / num_workers + fixed_cost;
  // Pieces of a single unit cost more in prologue and combine than they save (measured on the
  // H200, b = 1, h_q = 128: 2 units per piece 25 us, 1 unit 29 us; bench/NOTES.md).
  constexpr int kMinUnitsPerPiece = 2;
  if (per_worker < fixed_cost + kMinUnitsPerPiece) per_worker = fixed_cost + kMinUnitsPerPiece;

  split_offsets[0] = 0;
  int seq = 0, unit = 0, split = 0;  // cursor: next unit to hand out
  for (int w = 0; w < num_workers; ++w) {
    int32_t* row = worker_schedule + w * kScheduleStride;
    for (int f = 0; f < kScheduleStride; ++f) row[f] = 0;
    row[kBeginSeq] = seq;
    row[kBeginToken] = unit * block_n;
    row[kBeginSplit] = split;
    int end_seq = seq - 1, end_unit = 0;  // idle until something is taken
    int64_t budget = per_worker;
    const bool last_worker = w == num_workers - 1;
    while (seq < batch_size) {
      const int units = units_of(seq);
      const int64_t need = units - unit + fixed_cost;
      if (need <= budget || last_worker) {  // the rest of this sequence fits: finish it here
        budget -= need;
        end_seq = seq;
        end_unit = units;
        split_offsets[seq + 1] = split_offsets[seq] + split + 1;
        ++seq;
        unit = 0;
        split = 0;
        if (budget <= fixed_cost && !last_worker) break;
      } else {  // take what the budget allows and leave the rest to the next worker
        const int64_t take = budget - fixed_cost;
        if (take > 0) {
          unit += static_cast<int>(take);
          end_seq = seq;
          end_unit = unit;
          ++split;
        }
        break;
      }
    }
    row[kEndSeq] = end_seq;
    if (end_seq >= 0) {
      const int len = cache_seqlens[end_seq] > 0 ? cache_seqlens[end_seq] : 0;
      const int end_token = end_unit * block_n;
      row[kEndToken] = end_token < len ? end_token : len;
    }
  }
}

// Number of splits of sequence `seq`.
FLASHMLA_HOST_DEVICE inline int num_splits_of(const int32_t* split_offsets, int seq) {
  return split_offsets[seq + 1] - split_offsets[seq];
}

}  // namespace flashmla::detail
