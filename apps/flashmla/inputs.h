// The inputs of one benchmark case, built as the anchor's method describes: q and the KV cache
// drawn from N(0,1)/10 clamped to [-1, 1] and rounded to the dtype; each sequence gets
// ceil(s_k / page_block_size) pages, and the block table maps them to a random permutation of
// all pages; cache_seqlens exactly as the case lists them.
#pragma once

#include <cstdint>
#include <vector>

#include "bench_cases.h"
#include "buffer.h"
#include "flashmla/decode.h"

namespace flashmla::cli {

// One complete set of decode arguments with the memory behind it.
struct DecodeInputSet {
  Buffer q;            // [b, s_q, h_q, d]
  Buffer kv_cache;     // [num_blocks, page_block_size, h_kv, d]
  Buffer block_table;  // [b, max_pages_per_sequence] int32
  Buffer out;          // [b, s_q, h_q, dv]
  Buffer lse;          // [b, h_q, s_q] fp32
  DenseDecodeArgs args;
};

struct CaseInputs {
  Buffer cache_seqlens;  // [b] int32, shared by every set (the plan is made for these values)
  TensorView cache_seqlens_view;
  // Several sets live at different addresses so that rotating among them keeps one replay from
  // finding the previous replay's data in the GPU's L2. They share q and the cache *contents*
  // (generating them is the slow part); each set has its own block-table permutation.
  std::vector<DecodeInputSet> sets;
  int64_t num_blocks = 0;
  int64_t kv_cache_bytes = 0;  // of one set
};

// Builds `num_sets` (>= 1) input sets for `bench_case` on `device`. Data is generated on the
// host (deterministically from `seed`) and copied to the device.
CaseInputs build_case_inputs(const BenchCase& bench_case, DType dtype, Device device, uint64_t seed,
                             int num_sets);

}  // namespace flashmla::cli
