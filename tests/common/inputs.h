// Random inputs for the decode tests: seeded generators, query tensors and KV caches in
// every storage format, paged with a random page permutation.
//
// Every cache row that no sequence uses (unused pages, the tail of a sequence's last page,
// FlashMLA's padding row) is filled with NaN, so that reading it anywhere shows in the output.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "common/tensors.h"
#include "flashmla/tensor.h"

namespace flashmla::test {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double normal() { return normal_(engine_); }
  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(engine_); }
  int uniform_int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(engine_); }
  bool coin(double p_true = 0.5) { return uniform() < p_true; }
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
  std::normal_distribution<double> normal_{0.0, 1.0};
};

// N(0,1)/10 clamped to [-1, 1]: the activations of the tests (before rounding to a dtype).
double random_activation(Rng& rng);

// q [shape] of random activations rounded to `dtype`.
HalfTensor random_half_tensor(Rng& rng, DType dtype, const std::vector<int64_t>& shape);

// A KV cache [num_blocks, page_block_size, h_kv, width] with the values the kernels must use.
struct KVCache {
  DType dtype = DType::kBF16;  // kBF16, kFP16, or kUInt8 for "FP8 with scale" (656-byte rows)
  int num_blocks = 0, page_block_size = 0, h_kv = 0;
  int d = 0;                                                  // values per row (576 for FP8)
  int64_t block_stride = 0, row_stride = 0, head_stride = 0;  // in storage elements
  std::vector<uint16_t> halves;                               // storage of 16-bit caches
  std::vector<uint8_t> bytes;                                 // storage of FP8 caches
  std::vector<float> values;  // [num_blocks * page_block_size, h_kv, d]; NaN when unused

  int64_t num_rows() const { return static_cast<int64_t>(num_blocks) * page_block_size; }
  const float* row_values(int64_t row, int head) const {
    return values.data() + (row * h_kv + head) * d;
  }
  TensorView view();
};

// A 16-bit cache, every row NaN. `padding_rows` extra rows per page make the page stride
// larger than page_block_size rows.
KVCache make_nan_cache(DType dtype, int num_blocks, int page_block_size, int h_kv, int d,
                       int padding_rows = 0);
// Fills one row (all heads) with random activations.
void fill_random_row(Rng& rng, KVCache& cache, int64_t row);
// The FP8-with-scale version of a bf16 cache (h_kv = 1, d = 576), quantized by the library
// (flashmla::quantize_kv_cache_fp8) with one padding row per page like FlashMLA. `values`
// are re-derived from the bytes by the test's own decoder; rows that were NaN in `bf16`
// get all-0xff bytes (NaN fp8, NaN scales, NaN rope).
KVCache quantize_cache_fp8(KVCache& bf16);

// A paged cache for dense decode: each sequence's pages are taken from a random permutation of
// all pages; `extra_pages` stay unused. Block table columns past a sequence's last page hold
// garbage ids (negative or >= num_blocks), which the library must never read.
struct PagedKV {
  KVCache cache;
  std::vector<int32_t> seqlens;
  std::vector<int32_t> block_table;  // [b, max_blocks]
  int max_blocks = 0;

  int64_t row_of(int seq, int token) const {
    const int page =
        block_table[static_cast<size_t>(seq) * max_blocks + token / cache.page_block_size];
    return static_cast<int64_t>(page) * cache.page_block_size + token % cache.page_block_size;
  }
  TensorView seqlens_view() {
    return contiguous_view(seqlens.data(), DType::kInt32, {static_cast<int64_t>(seqlens.size())});
  }
  TensorView block_table_view() {
    return contiguous_view(block_table.data(), DType::kInt32,
                           {static_cast<int64_t>(seqlens.size()), max_blocks});
  }
};

PagedKV make_paged_kv(Rng& rng, const std::vector<int32_t>& seqlens, int page_block_size, int h_kv,
                      int d, DType dtype, int extra_pages = 2);

}  // namespace flashmla::test
