// One randomized token-sparse decode case (MLA.md section 4) run through the public API
// (flashmla::mla_sparse_decode on CPU tensors) and checked against the float64 reference.
//
// Some cache rows are NaN; only -1 slots' positions and entries past topk_length point at
// them, so reading any of them shows in the output.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/inputs.h"
#include "common/reference.h"

namespace flashmla::test {

struct SparseCase {
  int batch = 2, s_q = 1, h_q = 16, d = 576, dv = 512;
  int num_blocks = 8, page_block_size = 64;
  int topk = 128;
  DType dtype = DType::kBF16;
  bool fp8 = false;                 // FP8-with-scale caches (d = 576)
  double invalid_fraction = 0.2;    // share of -1 slots
  double duplicate_fraction = 0.1;  // share of slots repeating an earlier index
  bool with_topk_length = false;    // random lengths in [0, topk], sequence 0 gets 0 when b > 1
  bool all_invalid_query = false;   // query (0, 0) gets only -1 slots
  bool with_extra = false;          // a second cache with its own page size
  int extra_num_blocks = 3, extra_page_block_size = 32, extra_topk = 48;
  bool with_extra_topk_length = false;
  bool with_sink = false;  // heads cycle through +inf, -inf and finite sinks
  float softmax_scale = 0;
  uint64_t seed = 1;

  std::string describe() const;
};

struct SparseCaseData {
  HalfTensor q;
  KVCache cache, extra_cache;
  std::vector<int32_t> indices, topk_length, extra_indices, extra_topk_length;
  std::vector<float> attn_sink;
};
SparseCaseData make_sparse_data(const SparseCase& c);

// out [b, s_q, h_q, dv], lse [b, h_q, s_q], from poisoned buffers.
void run_sparse_library(const SparseCase& c, SparseCaseData& data, HalfTensor& out,
                        std::vector<float>& lse);
ReferenceResult reference_sparse_case(const SparseCase& c, const SparseCaseData& data);

::testing::AssertionResult check_sparse_case(const SparseCase& c);

}  // namespace flashmla::test
