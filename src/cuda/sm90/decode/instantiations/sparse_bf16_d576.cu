// Token-sparse decode kernels for bf16 q/KV with head dim 576.
#include "cuda/sm90/decode/decode_launch.cuh"

namespace flashmla::detail::cuda::sm90 {
FLASHMLA_INSTANTIATE_DECODE(__nv_bfloat16, 576, false, true)
}  // namespace flashmla::detail::cuda::sm90
