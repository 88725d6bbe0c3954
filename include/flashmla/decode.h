// MLA decode over a paged KV cache: plan once per decoding step, run once per layer.
//
// Semantics are those of shared docs MLA.md sections 2-4 (FlashMLA-compatible). Every entry
// point validates its arguments and throws flashmla::Error naming the offending argument;
// it then dispatches to the CPU or CUDA backend by the tensors' device.
#pragma once

#include <cstdint>
#include <memory>

#include "flashmla/tensor.h"

namespace flashmla {

// Everything a split-KV schedule depends on, apart from the values of cache_seqlens.
struct DecodeShape {
  int batch_size = 0;        // b
  int s_q = 1;               // new (query) tokens per sequence
  int h_q = 0;               // query heads
  int h_kv = 1;              // KV heads; divides h_q
  int page_block_size = 64;  // tokens per KV page
  // Token-sparse plans (mla_sparse_decode): index slots per query, i.e. the indices' topk plus
  // extra_indices' extra_topk. 0 makes a dense plan. Sparse plans need h_kv = 1 and do not use
  // page_block_size (indices address cache rows directly).
  int topk = 0;
};

namespace detail {
struct PlanState;
}

// Scheduling metadata for one decoding step (FlashMLA's `tile_scheduler_metadata` and
// `num_splits`, plus the split workspace). Construct it once per shape (this allocates, on
// the plan's device), call update() once per step with that step's cache_seqlens, then pass
// it to every layer's decode call: per-layer calls neither allocate nor synchronize. The split
// workspace belongs to the plan: calls that may run concurrently need plans of their own.
// `num_workers` overrides the backend's parallelism (0: the backend's choice; on CUDA one worker
// is one CTA per KV head and query-row tile; a sparse plan of 16 or 32 rows per KV head given
// more workers than one wave of the SMs runs two CTAs per SM), for tuning and tests.
// A sparse plan (shape.topk > 0) splits every query's index slots; its schedule depends on the
// shape alone, so it is planned when constructed and needs no update().
class DecodePlan {
 public:
  DecodePlan(const DecodeShape& shape, Device device, int head_dim_v = 512, int num_workers = 0);
  ~DecodePlan();
  DecodePlan(DecodePlan&&) noexcept;
  DecodePlan& operator=(DecodePlan&&) noexcept;
  DecodePlan(const DecodePlan&) = delete;
  DecodePlan& operator=(const DecodePlan&) = delete;

  // Dense plans: plans the split-KV work from cache_seqlens [batch_size] int32 on the plan's
  // device. On CUDA this is one small kernel on `stream` (a cudaStream_t; nullptr is the legacy
  // default stream): no host synchronization, so it can be captured in a CUDA graph.
  void update(const TensorView& cache_seqlens, void* stream = nullptr);

  const DecodeShape& shape() const;
  Device device() const;
  int head_dim_v() const;
  bool planned() const;
  int num_workers() const;  // parallel work units the schedule was made for
  int block_n() const;      // tokens per schedule unit

  const detail::PlanState& state() const;  // for backends

 private:
  std::unique_ptr<detail::PlanState> state_;
};

// Dense decode (MLA.md section 2, and the FP8 cache of section 3).
struct DenseDecodeArgs {
  TensorView q;              // [b, s_q, h_q, d] bf16/fp16, d = 576 or 512
  TensorView kv_cache;       // [num_blocks, page_block_size, h_kv, d] dtype of q, or
                             // [num_blocks, page_block_size, 1, 656] fp8/uint8 (FP8 with scale)
  TensorView block_table;    // [b, max_blocks_per_seq] int32
  TensorView cache_seqlens;  // [b] int32, the same values the plan was updated with
  TensorView out;            // [b, s_q, h_q, dv] dtype of q (written)
  TensorView lse;            // [b, h_q, s_q] fp32 (written)
  int head_dim_v = 512;      // dv <= d
  float softmax_scale = 0;   // 0 means 1/sqrt(d)
  bool causal = false;
};

void mla_decode(const DenseDecodeArgs& args, const DecodePlan& plan, void* stream = nullptr);

// Token-sparse decode (MLA.md section 4). No block table: indices address cache rows as
// page_id * page_block_size + offset; -1 marks an unused slot.
struct SparseDecodeArgs {
  TensorView q;                      // [b, s_q, h_q, d] bf16, d = 576 (the CPU also: fp16, 512)
  TensorView kv_cache;               // as in DenseDecodeArgs, h_kv = 1
  TensorView indices;                // [b, s_q, topk] int32
  OptionalTensor topk_length;        // [b] int32: only the first topk_length[i] indices count
  OptionalTensor attn_sink;          // [h_q] fp32
  OptionalTensor extra_kv_cache;     // a second cache attended in the same softmax
  OptionalTensor extra_indices;      // [b, s_q, extra_topk] int32 into extra_kv_cache
  OptionalTensor extra_topk_length;  // [b] int32
  TensorView out;                    // [b, s_q, h_q, dv] dtype of q (written)
  TensorView lse;                    // [b, h_q, s_q] fp32 (written)
  int head_dim_v = 512;
  float softmax_scale = 0;  // 0 means 1/sqrt(d)
};

// `plan` is a sparse plan (DecodeShape::topk = topk + extra_topk, h_kv = 1) for this shape; the
// same plan serves every layer. The CPU backend accepts it and schedules on its own.
void mla_sparse_decode(const SparseDecodeArgs& args, const DecodePlan& plan,
                       void* stream = nullptr);
// Convenience form: makes a sparse plan for this call. On CUDA that allocates (and frees) device
// memory per call, so it cannot be captured in a CUDA graph; keep a plan for production use.
void mla_sparse_decode(const SparseDecodeArgs& args, void* stream = nullptr);

// FP8 KV cache, "FP8 with scale" (MLA.md section 3): 656 bytes per token.
inline constexpr int kFP8RowBytes = 656;
// src [num_blocks, page_block_size, 1, 576] bf16 -> dst [num_blocks, page_block_size, 1, 656]
// fp8/uint8. Strides of the first two dims are taken from the views.
void quantize_kv_cache_fp8(const TensorView& src, const TensorView& dst, void* stream = nullptr);
// The inverse: dst bf16 [num_blocks, page_block_size, 1, 576].
void dequantize_kv_cache_fp8(const TensorView& src, const TensorView& dst, void* stream = nullptr);

// True when this build has the CUDA backend and a usable GPU is present.
bool cuda_available();

}  // namespace flashmla
