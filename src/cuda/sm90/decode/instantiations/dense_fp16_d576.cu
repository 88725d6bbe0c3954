// Dense decode kernels for fp16 q/KV with head dim 576.
#include "cuda/sm90/decode/dense_decode_launch.cuh"

namespace flashmla::detail::cuda::sm90 {
FLASHMLA_DEFINE_DENSE_DECODE_LAUNCH(__half, 576)
}  // namespace flashmla::detail::cuda::sm90
