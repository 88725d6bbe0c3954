// The inputs of one token-sparse case (mla_sparse_decode), built as the sparse anchor describes
// FlashMLA's (DeepSeek-V3.2 decode: FP8 cache, page 64, attn_sink, indices drawn from caches of
// varying length):
//
//  - cache lengths: as the case lists them, or drawn per sequence (cases with only a mean s_kv)
//    as FlashMLA's varlen tests do, len = max(s_q, round(N(s_kv, (s_kv / 2)^2)));
//  - the cache: every sequence owns ceil(len / page) pages, mapped through a random permutation
//    of all pages (a block table, as the dense inputs); contents N(0,1)/10 clamped to [-1, 1] in
//    bf16, quantized to the FP8 cache by quantize_kv_cache_fp8 on the run's device;
//  - indices [b, s_q, topk]: each query takes min(topk, len) distinct token positions of its
//    sequence, uniform over [0, len), in random order, as cache rows page * page_size + offset;
//    the remaining slots (sequences shorter than topk) are -1;
//  - q as the dense inputs; attn_sink [h_q] fp32 uniform in [-1, 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench_cases.h"
#include "buffer.h"
#include "flashmla/decode.h"

namespace flashmla::cli {

// The host-side shape of a sparse case's work: lengths and token positions.
struct SparseLayout {
  std::vector<int32_t> cache_seqlens;  // [b]
  std::vector<int32_t> positions;      // [b, s_q, topk]: token position in its sequence, or -1
  int64_t attended_tokens = 0;         // slots that are not -1 (what the FLOPs count)
  int64_t distinct_rows = 0;           // distinct cache rows of all queries (what the bytes count)
};

// Deterministic in (bench_case, seed); uses bench_case.cache_seqlens unless they are drawn.
SparseLayout make_sparse_layout(const BenchCase& bench_case, uint64_t seed);

// How the case's cache lengths and indices were made, for the JSON record.
std::string sparse_inputs_description(const BenchCase& bench_case);

// FLOPs = 2 * h_q * attended_tokens * (d + dv); bytes = distinct_rows * row bytes (656 for
// FP8) + q + out (each read or written once).
double sparse_flops(const BenchCase& bench_case, const SparseLayout& layout);
double sparse_bytes(const BenchCase& bench_case, const SparseLayout& layout, DType q_dtype,
                    bool fp8_cache);

// One complete set of sparse decode arguments with the memory behind it.
struct SparseInputSet {
  Buffer q;          // [b, s_q, h_q, d]
  Buffer kv_cache;   // [num_blocks, page_block_size, 1, 656] FP8, or [.., d] in q's dtype
  Buffer indices;    // [b, s_q, topk] int32
  Buffer attn_sink;  // [h_q] fp32 (when the case has one)
  Buffer out;        // [b, s_q, h_q, dv]
  Buffer lse;        // [b, h_q, s_q] fp32
  SparseDecodeArgs args;
};

struct SparseCaseInputs {
  // As the dense sets: same contents at different addresses, each set with its own page
  // permutation (so its own indices for the same token positions).
  std::vector<SparseInputSet> sets;
  int64_t num_blocks = 0;
};

// Cache bytes of one set, and of the bf16 cache the FP8 sets are quantized from (built once).
struct SparseCacheBytes {
  double per_set = 0;
  double shared = 0;
};
SparseCacheBytes sparse_cache_bytes(const BenchCase& bench_case, const SparseLayout& layout,
                                    DType q_dtype, bool fp8_cache);

// Builds `num_sets` (>= 1) input sets on `device`. With an FP8 cache, q must be bf16 and d 576;
// the quantization runs on the legacy stream (synchronize the device before timing).
SparseCaseInputs build_sparse_inputs(const BenchCase& bench_case, const SparseLayout& layout,
                                     DType q_dtype, bool fp8_cache, Device device, uint64_t seed,
                                     int num_sets);

}  // namespace flashmla::cli
