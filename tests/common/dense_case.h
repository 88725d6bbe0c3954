// One randomized dense-decode case run through the public API (flashmla::DecodePlan and
// flashmla::mla_decode on CPU tensors) and checked against the float64 reference.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/inputs.h"
#include "common/reference.h"
#include "flashmla/decode.h"

namespace flashmla::test {

struct DenseCase {
  std::vector<int32_t> seqlens;  // one entry per sequence (b = size)
  int s_q = 1, h_q = 16, h_kv = 1, d = 576, dv = 512, page_block_size = 64;
  DType dtype = DType::kBF16;
  bool fp8 = false;  // FP8-with-scale cache (quantized from bf16), d = 576, h_kv = 1
  bool causal = false;
  float softmax_scale = 0;  // 0: 1/sqrt(d)
  int num_workers = 0;      // 0: the backend's choice
  uint64_t seed = 1;

  std::string describe() const;
};

// The inputs of a case, built once so that several plans can run on them.
struct DenseInputs {
  HalfTensor q;  // [b, s_q, h_q, d]
  PagedKV kv;
};
DenseInputs make_dense_inputs(const DenseCase& c);

struct DenseOutputs {
  HalfTensor out;          // [b, s_q, h_q, dv]
  std::vector<float> lse;  // [b, h_q, s_q]
};
// Runs the library with `num_workers` (0: the backend's choice) on poisoned outputs.
// The plan shape of a case.
DecodeShape decode_shape(const DenseCase& c);

DenseOutputs run_dense_library(const DenseCase& c, DenseInputs& in, int num_workers);

// make_dense_inputs + run_dense_library + reference + matches_reference.
::testing::AssertionResult check_dense_case(const DenseCase& c);

}  // namespace flashmla::test
