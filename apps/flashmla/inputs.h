// The inputs of one benchmark case, built as the anchor's method describes: q and the KV cache
// drawn from N(0,1)/10 clamped to [-1, 1] and rounded to the dtype; each sequence gets
// ceil(s_k / page_block_size) pages, and the block table maps them to a random permutation of
// all pages; cache_seqlens exactly as the case lists them. An FP8 cache is that bf16 cache
// quantized by flashmla::quantize_kv_cache_fp8 on the run's device.
//
// The pieces shared with the token-sparse inputs (sparse_inputs.h) are declared here too.
#pragma once

#include <cstdint>
#include <vector>

#include "bench_cases.h"
#include "buffer.h"
#include "flashmla/decode.h"

namespace flashmla::cli {

// Streams of a case's seed (derive_seed), so that every random input is independent.
namespace seed_stream {
inline constexpr uint64_t kQ = 1;
inline constexpr uint64_t kCache = 2;
inline constexpr uint64_t kSeqlens = 3;       // drawn cache lengths (sparse anchor cases)
inline constexpr uint64_t kIndices = 4;       // sparse token positions
inline constexpr uint64_t kAttnSink = 5;      // sparse attn_sink
inline constexpr uint64_t kBlockTable = 100;  // + input set index
}  // namespace seed_stream

// One complete set of dense decode arguments with the memory behind it.
struct DecodeInputSet {
  Buffer q;            // [b, s_q, h_q, d]
  Buffer kv_cache;     // [num_blocks, page_block_size, h_kv, d], or the FP8 rows (656 bytes)
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

// Replaces every set's bf16 cache by its FP8 quantization ("FP8 with scale", 656 bytes per
// token), made by quantize_kv_cache_fp8 on the sets' device (legacy stream on CUDA: synchronize
// the device before timing). Block tables, q and outputs stay.
void convert_caches_to_fp8(CaseInputs& inputs, const BenchCase& bench_case);

// --- Shared with the sparse inputs -------------------------------------------------------------

// Pages of each sequence (ceil(length / page)) and of the whole cache (at least one).
struct PagedLayout {
  std::vector<int64_t> pages_per_sequence;
  int64_t max_pages = 1;
  int64_t num_blocks = 1;
};
PagedLayout paged_layout(const std::vector<int32_t>& cache_seqlens, int page_block_size);

// Host block table [b, max_pages] int32: sequence i's pages are a slice of a random permutation
// of all num_blocks pages; entries past a sequence's last page are 0.
Buffer make_block_table(const PagedLayout& layout, uint64_t seed);

// `count` host values of the anchor's distribution, N(0,1)/10 clamped to [-1, 1], in `dtype`.
Buffer random_activations(int64_t count, DType dtype, uint64_t seed);

// Moves a host buffer into place when it is used once on the CPU; copies it otherwise.
Buffer place(Buffer& host, Device device, bool last_use);

// The FP8 quantization of `cache` (bf16 [num_blocks, page, 1, 576] on any device), as a new
// buffer on the same device; quantize_kv_cache_fp8 runs on the legacy stream.
Buffer quantize_cache_fp8(const TensorView& cache);
TensorView fp8_cache_view(const Buffer& buffer, int64_t num_blocks, int64_t page_block_size);

}  // namespace flashmla::cli
