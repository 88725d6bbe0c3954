// Launching one configuration of the dense decode kernel. Included by the instantiation files
// (one per element type and head dim, so that they compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/check.h"
#include "cuda/common/device_info.h"
#include "cuda/sm90/decode/dense_decode_kernel.cuh"

namespace flashmla::detail::cuda::sm90 {

template <class Cfg>
void launch_dense_decode(const DenseDecodeArgs& a, cudaStream_t stream) {
  const auto kernel = dense_decode_kernel<Cfg>;
  set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), Cfg::kSmemBytes);
  const long long grid = static_cast<long long>(a.p.schedule.num_workers) * a.p.h_kv * a.row_tiles;
  if (grid < 1 || grid > 0x7fffffffLL) {
    throw Error(ErrorKind::kNotSupported, "",
                "dense decode grid of " + std::to_string(grid) +
                    " CTAs is outside what one launch can take");
  }
  kernel<<<static_cast<unsigned>(grid), Cfg::kThreads, Cfg::kSmemBytes, stream>>>(a);
  FLASHMLA_CUDA_CHECK_LAUNCH("dense_decode_kernel");
}

// The configurations used for each query-row tile size (see tile_shape.h); all stream the KV
// rows in 64-token stages, double-buffered:
//   16 rows (memory-bound, e.g. h_q / h_kv = 16, s_q = 1): Q fragments held in registers;
//   32 rows: Q from shared memory (in registers it spills, and measured slower);
//   64 rows (compute-bound): tensor work on wgmma (the 72 KB Q tile leaves room for two stages).
// Measured on the H200 and rejected: 32-token stages 5 deep (16/32 rows: 12% / 27% slower),
// two 16-row tiles for 32 rows (35% slower), mma.sync for 64 rows (about 1.4x slower).
template <typename Elem, int kD>
using DecodeConfig16 = DecodeConfig<Elem, kD, 16, 64, 2, false, /*kQInRegs=*/true>;
template <typename Elem, int kD>
using DecodeConfig32 = DecodeConfig<Elem, kD, 32, 64, 2>;
template <typename Elem, int kD>
using DecodeConfig64 = DecodeConfig<Elem, kD, 64, 64, 2, /*kWgmma=*/true>;

// Runs the configuration for `tile_rows` (16, 32 or 64 rows per tile).
template <typename Elem, int kD>
void launch_dense_decode_for_rows(const DenseDecodeArgs& a, int tile_rows, cudaStream_t stream);

#define FLASHMLA_DEFINE_DENSE_DECODE_LAUNCH(ELEM, D)                                  \
  template <>                                                                         \
  void launch_dense_decode_for_rows<ELEM, D>(const DenseDecodeArgs& a, int tile_rows, \
                                             cudaStream_t stream) {                   \
    if (tile_rows == 16) {                                                            \
      launch_dense_decode<DecodeConfig16<ELEM, D>>(a, stream);                        \
    } else if (tile_rows == 32) {                                                     \
      launch_dense_decode<DecodeConfig32<ELEM, D>>(a, stream);                        \
    } else {                                                                          \
      launch_dense_decode<DecodeConfig64<ELEM, D>>(a, stream);                        \
    }                                                                                 \
  }

}  // namespace flashmla::detail::cuda::sm90
