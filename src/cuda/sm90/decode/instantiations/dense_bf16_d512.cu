// Dense decode kernels for bf16 q/KV with head dim 512.
#include "cuda/sm90/decode/decode_launch.cuh"

namespace flashmla::detail::cuda::sm90 {
FLASHMLA_INSTANTIATE_DECODE(__nv_bfloat16, 512, false, false)
}  // namespace flashmla::detail::cuda::sm90
