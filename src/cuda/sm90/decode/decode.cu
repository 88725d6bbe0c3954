// Entry points of the CUDA decode: check what this backend supports, derive the kernel
// arguments from the API's params, launch the split-KV kernel and the combine kernel on the
// caller's stream. No allocation and no host synchronization, so the calls can be captured in
// a CUDA graph.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "api/backends.h"
#include "cuda/common/check.h"
#include "cuda/common/combine.h"
#include "cuda/sm90/decode/decode_args.h"
#include "cuda/sm90/decode/tile_shape.h"

namespace flashmla::detail::cuda {

namespace sm90 {
// Defined in instantiations/*.cu.
template <typename Elem, int kD, bool kFP8, bool kSparse>
void launch_decode_for_rows(const DecodeKernelArgs& a, int tile_rows, cudaStream_t stream);
#define FLASHMLA_DECLARE_DECODE(ELEM, D, FP8, SPARSE)                                             \
  extern template void launch_decode_for_rows<ELEM, D, FP8, SPARSE>(const DecodeKernelArgs&, int, \
                                                                    cudaStream_t);
FLASHMLA_DECLARE_DECODE(__nv_bfloat16, 576, false, false)
FLASHMLA_DECLARE_DECODE(__nv_bfloat16, 512, false, false)
FLASHMLA_DECLARE_DECODE(__half, 576, false, false)
FLASHMLA_DECLARE_DECODE(__half, 512, false, false)
FLASHMLA_DECLARE_DECODE(__nv_bfloat16, 576, true, false)
FLASHMLA_DECLARE_DECODE(__nv_bfloat16, 576, false, true)
FLASHMLA_DECLARE_DECODE(__nv_bfloat16, 576, true, true)
#undef FLASHMLA_DECLARE_DECODE
}  // namespace sm90

namespace {

// cp.async needs 16-byte aligned rows: the base and every stride (in elements of `bytes`).
bool aligned16(const void* ptr, int element_bytes, std::initializer_list<int64_t> strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (int64_t s : strides) {
    if ((s * element_bytes) % 16 != 0) return false;
  }
  return true;
}

int kv_element_bytes(const KVCacheView& kv) {
  return kv.format == KVFormat::kFP8WithScale ? 1 : 2;
}

bool kv_aligned(const KVCacheView& kv) {
  return kv.data == nullptr ||
         aligned16(kv.data, kv_element_bytes(kv), {kv.block_stride, kv.row_stride, kv.head_stride});
}

// The fields both families fill alike: q, outputs, scale, schedule.
template <typename Params>
sm90::DecodeKernelArgs common_args(const Params& p) {
  if (p.dv > 512) {
    throw Error(ErrorKind::kNotSupported, "head_dim_v",
                "the CUDA backend supports head_dim_v <= 512, got " + std::to_string(p.dv));
  }
  if (p.schedule.num_workers < 1 || p.schedule.worker_schedule == nullptr ||
      p.schedule.split_offsets == nullptr) {
    throw Error(ErrorKind::kValue, "plan", "has no CUDA schedule");
  }
  sm90::DecodeKernelArgs a{};
  a.s_q = p.s_q;
  a.h_q = p.h_q;
  a.dv = p.dv;
  a.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  a.q = p.q;
  a.q_batch_stride = p.q_batch_stride;
  a.q_seq_stride = p.q_seq_stride;
  a.q_head_stride = p.q_head_stride;
  a.q_aligned = aligned16(p.q, 2, {p.q_batch_stride, p.q_seq_stride, p.q_head_stride});
  a.out = p.out;
  a.out_batch_stride = p.out_batch_stride;
  a.out_seq_stride = p.out_seq_stride;
  a.out_head_stride = p.out_head_stride;
  a.lse = p.lse;
  a.lse_batch_stride = p.lse_batch_stride;
  a.lse_head_stride = p.lse_head_stride;
  a.lse_seq_stride = p.lse_seq_stride;
  a.schedule = p.schedule;
  return a;
}

CombineParams combine_params(const sm90::DecodeKernelArgs& a, int plan_sequences,
                             ActType act_type) {
  CombineParams c{};
  c.plan_sequences = plan_sequences;
  c.fold = a.fold;
  c.s_q = a.s_q;
  c.h_q = a.h_q;
  c.dv = a.dv;
  c.act_type = act_type;
  c.out = a.out;
  c.out_batch_stride = a.out_batch_stride;
  c.out_seq_stride = a.out_seq_stride;
  c.out_head_stride = a.out_head_stride;
  c.lse = a.lse;
  c.lse_batch_stride = a.lse_batch_stride;
  c.lse_head_stride = a.lse_head_stride;
  c.lse_seq_stride = a.lse_seq_stride;
  c.attn_sink = a.attn_sink;
  c.schedule = a.schedule;
  return c;
}

}  // namespace

void dense_decode(const DenseDecodeParams& p, void* stream_ptr) {
  const bool fp8 = p.kv.format == KVFormat::kFP8WithScale;
  if (p.d != 576 && p.d != 512) {
    throw Error(ErrorKind::kNotSupported, "q",
                "the CUDA backend supports head dim 576 or 512, got " + std::to_string(p.d));
  }
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  sm90::DecodeKernelArgs a = common_args(p);
  a.h_kv = p.h_kv;
  a.q_per_kv = p.q_per_kv;
  a.fold = 1;
  a.plan_seqs = p.batch_size;
  a.rows = decode_rows(p.s_q, p.q_per_kv);
  a.row_tiles = decode_row_tiles(a.rows);
  a.causal = p.causal;
  a.kv = p.kv;
  a.kv_aligned = kv_aligned(p.kv);
  a.block_table = p.block_table;
  a.block_table_batch_stride = p.block_table_batch_stride;
  a.max_blocks_per_seq = p.max_blocks_per_seq;
  a.cache_seqlens = p.cache_seqlens;
  const int tile_rows = decode_tile_rows(a.rows);
  const bool bf16 = p.act_type == ActType::kBF16;
  if (fp8) {  // the API checked: bf16 q, d = 576
    sm90::launch_decode_for_rows<__nv_bfloat16, 576, true, false>(a, tile_rows, stream);
  } else if (bf16 && p.d == 576) {
    sm90::launch_decode_for_rows<__nv_bfloat16, 576, false, false>(a, tile_rows, stream);
  } else if (bf16) {
    sm90::launch_decode_for_rows<__nv_bfloat16, 512, false, false>(a, tile_rows, stream);
  } else if (p.d == 576) {
    sm90::launch_decode_for_rows<__half, 576, false, false>(a, tile_rows, stream);
  } else {
    sm90::launch_decode_for_rows<__half, 512, false, false>(a, tile_rows, stream);
  }
  launch_combine(combine_params(a, p.batch_size, p.act_type), stream);
}

void sparse_decode(const SparseDecodeParams& p, void* stream_ptr) {
  const bool fp8 = p.kv.format == KVFormat::kFP8WithScale;
  if (p.act_type != ActType::kBF16 || p.d != 576) {
    throw Error(ErrorKind::kNotSupported, "q",
                "the CUDA sparse decode supports bf16 q with head dim 576, got d = " +
                    std::to_string(p.d) + (p.act_type == ActType::kBF16 ? "" : " (fp16)"));
  }
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  sm90::DecodeKernelArgs a = common_args(p);
  // Every query token is a plan sequence of h_q rows, all attending its own index lists.
  a.h_kv = 1;
  a.q_per_kv = p.h_q;
  a.fold = p.s_q;
  a.plan_seqs = p.batch_size * p.s_q;
  a.rows = p.h_q;
  a.row_tiles = decode_row_tiles(a.rows);
  a.causal = false;
  a.attn_sink = p.attn_sink;
  a.kv_aligned = kv_aligned(p.kv) && kv_aligned(p.extra_kv);
  a.lists[0] = {p.kv,   p.indices,    p.indices_batch_stride, p.indices_seq_stride,
                p.topk, p.topk_length};
  // An absent second list is never addressed, but the FP8 loader's branch-free address arithmetic
  // (fp8_row_address) still divides by its page size for slots past the first list.
  a.lists[1].kv.page_block_size = 1;
  if (p.extra_indices != nullptr) {
    a.lists[1] = {
        p.extra_kv,   p.extra_indices,    p.extra_indices_batch_stride, p.extra_indices_seq_stride,
        p.extra_topk, p.extra_topk_length};
  }
  a.sparse_slots = a.lists[0].topk + a.lists[1].topk;
  const int tile_rows = decode_tile_rows(a.rows);
  if (fp8) {
    sm90::launch_decode_for_rows<__nv_bfloat16, 576, true, true>(a, tile_rows, stream);
  } else {
    sm90::launch_decode_for_rows<__nv_bfloat16, 576, false, true>(a, tile_rows, stream);
  }
  launch_combine(combine_params(a, p.batch_size * p.s_q, p.act_type), stream);
}

}  // namespace flashmla::detail::cuda
