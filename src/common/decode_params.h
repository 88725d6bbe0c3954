// Plain-data parameters of the decode kernel families, filled by the API layer after
// validation and read by every backend. Kernels never validate and never allocate.
#pragma once

#include <cstdint>

namespace flashmla::detail {

// How a KV cache row is stored.
enum class KVFormat : int { kBF16, kFP16, kFP8WithScale };

// Element type of q and out.
enum class ActType : int { kBF16, kFP16 };

// The split-KV schedule (see split_plan.h) and its workspace, as raw pointers on the
// plan's device.
struct ScheduleView {
  int num_workers = 0;
  int block_n = 0;
  const int32_t* worker_schedule = nullptr;  // [num_workers, kScheduleStride]
  const int32_t* split_offsets = nullptr;    // [plan sequences + 1] prefix sums of splits
  float* partial_out = nullptr;              // [max_splits, rows per sequence, dv]
  float* partial_lse = nullptr;              // [max_splits, rows per sequence]
  int max_splits = 0;                        // plan sequences + num_workers
  int ctas_per_sm = 1;                       // CUDA: occupancy the plan is made for
  int combine_groups = 1;                    // CUDA: split groups per combine CTA
};

// A cache as the kernels see it. Strides are in elements of the stored type (bytes for FP8).
struct KVCacheView {
  const void* data = nullptr;
  KVFormat format = KVFormat::kBF16;
  int num_blocks = 0;
  int page_block_size = 0;
  int64_t block_stride = 0;  // between pages
  int64_t row_stride = 0;    // between tokens of a page
  int64_t head_stride = 0;   // between KV heads of a token
};

struct DenseDecodeParams {
  int batch_size, s_q, h_q, h_kv, d, dv;
  int q_per_kv;  // h_q / h_kv: query heads sharing one KV head
  float softmax_scale;
  bool causal;
  ActType act_type;

  const void* q;  // [b, s_q, h_q, d]
  int64_t q_batch_stride, q_seq_stride, q_head_stride;

  KVCacheView kv;

  const int32_t* block_table;  // [b, max_blocks_per_seq]
  int64_t block_table_batch_stride;
  int max_blocks_per_seq;
  const int32_t* cache_seqlens;  // [b]

  void* out;  // [b, s_q, h_q, dv]
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;  // [b, h_q, s_q]
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;

  ScheduleView schedule;
};

struct SparseDecodeParams {
  int batch_size, s_q, h_q, d, dv;
  float softmax_scale;
  ActType act_type;

  const void* q;  // [b, s_q, h_q, d]
  int64_t q_batch_stride, q_seq_stride, q_head_stride;

  KVCacheView kv;
  const int32_t* indices;  // [b, s_q, topk]
  int64_t indices_batch_stride, indices_seq_stride;
  int topk;
  const int32_t* topk_length;  // [b] or nullptr

  KVCacheView extra_kv;          // data == nullptr when absent
  const int32_t* extra_indices;  // [b, s_q, extra_topk] or nullptr
  int64_t extra_indices_batch_stride, extra_indices_seq_stride;
  int extra_topk;
  const int32_t* extra_topk_length;  // [b] or nullptr

  const float* attn_sink;  // [h_q] or nullptr

  void* out;  // [b, s_q, h_q, dv]
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;  // [b, h_q, s_q]
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;

  // Split schedule over b * s_q queries of topk + extra_topk slots each (plan sequence
  // b * s_q + s is query token s of sequence b). Unused by the CPU backend.
  ScheduleView schedule;
};

struct FP8CacheConvertParams {
  int num_blocks, page_block_size;
  const void* src;                           // bf16 rows (quantize) or 656-byte rows (dequantize)
  int64_t src_block_stride, src_row_stride;  // in elements of src
  void* dst;
  int64_t dst_block_stride, dst_row_stride;  // in elements of dst
};

}  // namespace flashmla::detail
