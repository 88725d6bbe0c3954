// A float64 reference of the decode ops, written from MLA.md with naive loops and no
// knowledge of the library's tiling, splitting or online softmax.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/inputs.h"
#include "common/tensors.h"

namespace flashmla::test {

// out [b, s_q, h_q, dv] and lse [b, h_q, s_q]; lse = +inf (out = 0) for a query with no key.
struct ReferenceResult {
  int batch = 0, s_q = 0, h_q = 0, dv = 0;
  std::vector<double> out;
  std::vector<double> lse;
};

// Dense decode: q [b, s_q, h_q, d] against the first seqlens[i] tokens of each sequence of
// `kv` (the values as stored, after dequantization for FP8).
ReferenceResult reference_dense_decode(const HalfTensor& q, const PagedKV& kv, int dv,
                                       double softmax_scale, bool causal);

// Token-sparse decode. Index lists are [b, s_q, topk] row-major; empty optionals are absent.
struct SparseInputs {
  const HalfTensor* q = nullptr;  // [b, s_q, h_q, d]
  const KVCache* cache = nullptr;
  const std::vector<int32_t>* indices = nullptr;
  int topk = 0;
  const std::vector<int32_t>* topk_length = nullptr;  // [b] or nullptr
  const KVCache* extra_cache = nullptr;               // or nullptr
  const std::vector<int32_t>* extra_indices = nullptr;
  int extra_topk = 0;
  const std::vector<int32_t>* extra_topk_length = nullptr;
  const std::vector<float>* attn_sink = nullptr;  // [h_q] or nullptr
  int dv = 512;
  double softmax_scale = 0;
};
ReferenceResult reference_sparse_decode(const SparseInputs& in);

// FlashMLA's FP8 quantization of one row of 576 bf16 values into 656 bytes.
std::vector<uint8_t> reference_quantize_fp8_row(const uint16_t* bf16_row);

}  // namespace flashmla::test
