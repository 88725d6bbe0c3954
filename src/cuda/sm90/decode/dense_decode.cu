// Entry point of the CUDA dense decode: checks what this backend supports, derives the kernel
// arguments, launches the split-KV kernel and the combine kernel on the caller's stream.
// No allocation and no host synchronization, so the call can be captured in a CUDA graph.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "api/backends.h"
#include "cuda/common/check.h"
#include "cuda/common/combine.h"
#include "cuda/sm90/decode/dense_decode_kernel.cuh"
#include "cuda/sm90/decode/tile_shape.h"

namespace flashmla::detail::cuda {

namespace sm90 {
// Defined in instantiations/dense_*.cu, one file per element type and head dim.
template <typename Elem, int kD>
void launch_dense_decode_for_rows(const DenseDecodeArgs& a, int tile_rows, cudaStream_t stream);
template <>
void launch_dense_decode_for_rows<__nv_bfloat16, 576>(const DenseDecodeArgs&, int, cudaStream_t);
template <>
void launch_dense_decode_for_rows<__nv_bfloat16, 512>(const DenseDecodeArgs&, int, cudaStream_t);
template <>
void launch_dense_decode_for_rows<__half, 576>(const DenseDecodeArgs&, int, cudaStream_t);
template <>
void launch_dense_decode_for_rows<__half, 512>(const DenseDecodeArgs&, int, cudaStream_t);
}  // namespace sm90

namespace {

bool aligned16(const void* ptr, std::initializer_list<int64_t> element_strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (int64_t s : element_strides) {
    if (s % 8 != 0) return false;  // 8 elements of 2 bytes
  }
  return true;
}

}  // namespace

void dense_decode(const DenseDecodeParams& p, void* stream_ptr) {
  if (p.kv.format == KVFormat::kFP8WithScale) {
    throw Error(ErrorKind::kNotSupported, "kv_cache",
                "the CUDA backend does not decode from an FP8 KV cache yet; dequantize it "
                "(dequantize_kv_cache_fp8) or use the CPU backend");
  }
  if (p.d != 576 && p.d != 512) {
    throw Error(ErrorKind::kNotSupported, "q",
                "the CUDA backend supports head dim 576 or 512, got " + std::to_string(p.d));
  }
  if (p.dv > 512) {
    throw Error(ErrorKind::kNotSupported, "head_dim_v",
                "the CUDA backend supports head_dim_v <= 512, got " + std::to_string(p.dv));
  }
  if (p.schedule.num_workers < 1 || p.schedule.worker_schedule == nullptr ||
      p.schedule.split_offsets == nullptr) {
    throw Error(ErrorKind::kValue, "plan", "has no CUDA schedule");
  }
  const auto stream = static_cast<cudaStream_t>(stream_ptr);

  sm90::DenseDecodeArgs a{};
  a.p = p;
  a.rows = decode_rows(p.s_q, p.q_per_kv);
  const int tile_rows = decode_tile_rows(a.rows);
  a.row_tiles = decode_row_tiles(a.rows);
  a.scale_log2 = p.softmax_scale * 1.4426950408889634f;
  a.q_aligned = aligned16(p.q, {p.q_batch_stride, p.q_seq_stride, p.q_head_stride});
  a.kv_aligned = aligned16(p.kv.data, {p.kv.block_stride, p.kv.row_stride, p.kv.head_stride});
  const bool bf16 = p.act_type == ActType::kBF16;
  if (bf16 && p.d == 576) {
    sm90::launch_dense_decode_for_rows<__nv_bfloat16, 576>(a, tile_rows, stream);
  } else if (bf16) {
    sm90::launch_dense_decode_for_rows<__nv_bfloat16, 512>(a, tile_rows, stream);
  } else if (p.d == 576) {
    sm90::launch_dense_decode_for_rows<__half, 576>(a, tile_rows, stream);
  } else {
    sm90::launch_dense_decode_for_rows<__half, 512>(a, tile_rows, stream);
  }
  launch_combine(p, stream);
}

void sparse_decode(const SparseDecodeParams& /*params*/, void* /*stream*/) {
  throw Error(ErrorKind::kNotSupported, "q",
              "token-sparse decode is not implemented in the CUDA backend yet; use CPU tensors");
}

}  // namespace flashmla::detail::cuda
