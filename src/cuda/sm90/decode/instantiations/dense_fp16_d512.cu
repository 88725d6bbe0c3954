// Dense decode kernels for fp16 q/KV with head dim 512.
#include "cuda/sm90/decode/decode_launch.cuh"

namespace flashmla::detail::cuda::sm90 {
FLASHMLA_INSTANTIATE_DECODE(__half, 512, false, false)
}  // namespace flashmla::detail::cuda::sm90
