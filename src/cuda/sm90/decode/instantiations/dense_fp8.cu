// Dense decode kernels for bf16 q over an FP8-with-scale KV cache (d = 576).
#include "cuda/sm90/decode/decode_launch.cuh"

namespace flashmla::detail::cuda::sm90 {
FLASHMLA_INSTANTIATE_DECODE(__nv_bfloat16, 576, true, false)
}  // namespace flashmla::detail::cuda::sm90
