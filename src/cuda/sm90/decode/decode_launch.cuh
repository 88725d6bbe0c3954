// Launching one configuration of the decode kernel. Included by the instantiation files (one
// per element type, head dim, cache format and dense/sparse, so that they compile in parallel).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "cuda/common/check.h"
#include "cuda/common/device_info.h"
#include "cuda/common/env.h"
#include "cuda/sm90/decode/decode_kernel.cuh"
#include "cuda/sm90/decode/decode_piece_fp8_ws.cuh"
#include "cuda/sm90/decode/decode_piece_pingpong.cuh"
#include "cuda/sm90/decode/tile_shape.h"

namespace flashmla::detail::cuda::sm90 {

template <class Cfg>
void launch_decode(const DecodeKernelArgs& a, cudaStream_t stream) {
  const auto kernel = decode_kernel<Cfg>;
  set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), Cfg::kSmemBytes);
  const long long grid = static_cast<long long>(a.schedule.num_workers) * a.h_kv * a.row_tiles;
  if (grid < 1 || grid > 0x7fffffffLL) {
    throw Error(
        ErrorKind::kNotSupported, "",
        "decode grid of " + std::to_string(grid) + " CTAs is outside what one launch can take");
  }
  kernel<<<static_cast<unsigned>(grid), Cfg::kBlockThreads, Cfg::kSmemBytes, stream>>>(a);
  FLASHMLA_CUDA_CHECK_LAUNCH("decode_kernel");
}

// The configurations used for each query-row tile size (see tile_shape.h); all but the sparse
// two-CTA-per-SM ones (Rows*TwoPerSM, 32 tokens) stream the KV rows in 64-token tiles:
//   16 rows (memory-bound, e.g. h_q / h_kv = 16, s_q = 1): Q fragments held in registers;
//   32 rows: Q from shared memory (in registers it spills, and measured slower);
//   64 rows (compute-bound): tensor work on wgmma (the 72 KB Q tile leaves room for two stages).
// bf16/fp16 rows are double-buffered. FP8 rows go through 41 KB staging buffers, as many as fit
// beside the Q tile and the single converted operand tile: 3, 2 and 1. Tried and measured slower
// (h_q = 16, 468 vs 440 us): one staging buffer converted into two alternating operand tiles
// during the previous tile's S, which leaves only one tile of loads in flight.
// Measured on the H200 and rejected: 32-token stages 5 deep (16/32 rows: 12% / 27% slower),
// two 16-row tiles for 32 rows (35% slower), mma.sync for 64 rows (about 1.4x slower).
//   64 rows, bf16/fp16 rows: the ping-pong loop (decode_piece_pingpong.cuh) unless the
//   environment sets FLASHMLA_DECODE_64ROW=serial, which selects the serial loop (Rows64) for
//   A/B comparison; FP8 rows with 16-byte aligned strides in pairs of row tiles (128, 256, ...
//   query rows per KV head) take the warp-specialized 2-CTA cluster loop (decode_piece_fp8_ws.cuh)
//   unless FLASHMLA_FP8_64ROW=serial, others the serial one (a single 64-row tile has no partner to
//   share its conversion, and the one-CTA warp-specialized loop measured slower than the serial
//   one: session 7 in bench/NOTES.md).
// The warp-specialized FP8 64-row configuration runs in 2-CTA clusters: CTAs 2k and 2k + 1 are
// the two row tiles of one worker and KV head (row tile fastest, an even count).
template <class Base>
struct SplitConsumer : Base {
  static constexpr bool kSplitConsumer = true;
};
template <class Base>
struct PeerStores : Base {
  static constexpr bool kPeerBulk = false;
};

template <class Cfg>
void launch_decode_cluster(const DecodeKernelArgs& a, cudaStream_t stream) {
  static_assert(Cfg::kWarpSpecialized);
  const auto kernel = decode_kernel<Cfg>;
  set_max_dynamic_smem(reinterpret_cast<const void*>(kernel), Cfg::kSmemBytes);
  const long long grid = static_cast<long long>(a.schedule.num_workers) * a.h_kv * a.row_tiles;
  if (grid < 2 || grid % 2 != 0 || grid > 0x7fffffffLL) {
    throw Error(ErrorKind::kNotSupported, "",
                "decode grid of " + std::to_string(grid) + " CTAs does not pair into clusters");
  }
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(grid));
  config.blockDim = dim3(Cfg::kBlockThreads);
  config.dynamicSmemBytes = Cfg::kSmemBytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = 2;
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  FLASHMLA_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, a));
  FLASHMLA_CUDA_CHECK_LAUNCH("decode_kernel (cluster)");
}

template <typename Elem, int kD, bool kFP8, bool kSparse>
struct DecodeConfigs {
  using Rows16 =
      DecodeConfig<Elem, kD, 16, 64, kFP8 ? 3 : 2, false, /*kQInRegs=*/true, kFP8, kSparse>;
  // FP8 rows, A/B only (FLASHMLA_FP8_ROWS16_Q=smem): Q read from shared memory every tile, which
  // frees the 144 registers Q fragments take for the conversion's loads in flight. Measured on
  // the H200 at f0baf9b: slower (h_q = 16 sparse b128 251 vs 226 us, dense FP8 b128 456 vs 385).
  using Rows16QInSmem = DecodeConfig<Elem, kD, 16, 64, 3, false, false, kFP8, kSparse>;
  // Sparse 16-row tiles in plans made for two CTAs per SM (ScheduleView::ctas_per_sm, chosen by
  // schedule_config for plans with plenty of work): 32-token tiles, Q from shared memory and two
  // stages (FP8: staging buffers), at most 113 KB, so that two CTAs share an SM (128 registers
  // per thread) and one CTA's barrier-separated phases overlap the other's. Measured on the H200
  // (FP8) against Rows16 at one CTA per SM: sparse h_q = 16 b128 196 vs 224 us; dense FP8 h_q = 16
  // 386 vs 385 us (b128) and 106 vs 104 (b64), so dense plans keep Rows16.
  using Rows16TwoPerSM = DecodeConfig<Elem, kD, 16, 32, 2, false, false, kFP8, kSparse>;
  using Rows32 = DecodeConfig<Elem, kD, 32, 64, 2, false, false, kFP8, kSparse>;
  // Sparse 32-row tiles, two CTAs per SM: 32-token tiles; FP8 has room for one staging buffer.
  using Rows32TwoPerSM = DecodeConfig<Elem, kD, 32, 32, kFP8 ? 1 : 2, false, false, kFP8, kSparse>;
  using Rows64 =
      DecodeConfig<Elem, kD, 64, 64, kFP8 ? 1 : 2, /*kWgmma=*/true, false, kFP8, kSparse>;
  // FP8 rows in 2-CTA clusters: each CTA's producer warpgroup loads and converts half of every
  // KV tile into both CTAs' two KV buffers while the math warpgroups compute
  // (decode_piece_fp8_ws.cuh); it reads rows with 16-byte loads, so it needs 16-byte aligned
  // rows.
  using Rows64WarpSpecialized =
      DecodeConfig<Elem, kD, 64, 64, 2, /*kWgmma=*/true, false, kFP8, kSparse, false, true>;
  using Rows64PingPong =
      DecodeConfig<Elem, kD, 64, 64, 2, /*kWgmma=*/true, false, /*kFP8=*/false, kSparse,
                   /*kPingPong=*/true>;
};

// FLASHMLA_DECODE_64ROW=serial: the serial 64-row loop instead of the ping-pong one (read once).
inline bool decode_64row_serial() {
  static const bool serial = env_equals("FLASHMLA_DECODE_64ROW", "serial");
  return serial;
}

// FLASHMLA_FP8_ROWS16_Q=smem: the FP8 16-row tiles read Q from shared memory (read once).
inline bool fp8_rows16_q_in_smem() {
  static const bool smem = env_equals("FLASHMLA_FP8_ROWS16_Q", "smem");
  return smem;
}

// FLASHMLA_FP8_64ROW=serial: the FP8 64-row tiles take the serial staging loop instead of the
// warp-specialized one (A/B; read once).
inline bool fp8_64row_serial() {
  static const bool serial = env_equals("FLASHMLA_FP8_64ROW", "serial");
  return serial;
}

// An A/B switch: the environment variable `name` set to `yes` or `no` forces a rule's choice.
struct ForcedChoice {
  bool forced, value;
  ForcedChoice(const char* name, const char* yes, const char* no)
      : forced(env_equals(name, yes) || env_equals(name, no)), value(env_equals(name, yes)) {}
};

// What the FP8 cluster rules (tile_shape.h) count a plan sequence's tiles from: a sparse plan's
// slots, or for dense the block table's width in tokens (the host does not know the lengths).
inline long long fp8_rule_slots(const DecodeKernelArgs& a, bool sparse) {
  return sparse ? a.sparse_slots
                : static_cast<long long>(a.max_blocks_per_seq) * a.kv.page_block_size;
}

// Which consumer the FP8 cluster loop runs (decode_fp8_split_consumer);
// FLASHMLA_FP8_CONSUMER=split|single forces one (read once).
inline bool fp8_split_consumer(const DecodeKernelArgs& a, bool sparse) {
  static const ForcedChoice force("FLASHMLA_FP8_CONSUMER", "split", "single");
  return force.forced ? force.value
                      : decode_fp8_split_consumer(a.plan_seqs, fp8_rule_slots(a, sparse),
                                                  a.schedule.num_workers);
}

// How the FP8 cluster producer reaches the peer (decode_fp8_peer_bulk);
// FLASHMLA_FP8_PEER=bulk|stores forces one (read once).
inline bool fp8_peer_bulk(const DecodeKernelArgs& a, bool sparse) {
  static const ForcedChoice force("FLASHMLA_FP8_PEER", "bulk", "stores");
  return force.forced
             ? force.value
             : decode_fp8_peer_bulk(a.plan_seqs, fp8_rule_slots(a, sparse), a.schedule.num_workers);
}

// Runs the configuration for `tile_rows` (16, 32 or 64 rows per tile).
template <typename Elem, int kD, bool kFP8, bool kSparse>
void launch_decode_for_rows(const DecodeKernelArgs& a, int tile_rows, cudaStream_t stream) {
  using Configs = DecodeConfigs<Elem, kD, kFP8, kSparse>;
  if (tile_rows == 16) {
    if constexpr (kFP8 && !kSparse) {
      if (fp8_rows16_q_in_smem()) {
        launch_decode<typename Configs::Rows16QInSmem>(a, stream);
        return;
      }
    }
    if constexpr (kSparse) {
      if (a.schedule.ctas_per_sm == 2) {
        static_assert(Configs::Rows16TwoPerSM::kMinBlocks == 2, "two CTAs per SM");
        launch_decode<typename Configs::Rows16TwoPerSM>(a, stream);
        return;
      }
    }
    launch_decode<typename Configs::Rows16>(a, stream);
  } else if (tile_rows == 32) {
    if constexpr (kSparse) {
      if (a.schedule.ctas_per_sm == 2) {
        static_assert(Configs::Rows32TwoPerSM::kMinBlocks == 2, "two CTAs per SM");
        launch_decode<typename Configs::Rows32TwoPerSM>(a, stream);
        return;
      }
    }
    launch_decode<typename Configs::Rows32>(a, stream);
  } else if constexpr (kFP8) {
    if (a.kv_aligned && a.row_tiles % 2 == 0 && !fp8_64row_serial()) {
      // The split consumer only serves plans large enough for the bulk copies.
      if (fp8_split_consumer(a, kSparse)) {
        launch_decode_cluster<SplitConsumer<typename Configs::Rows64WarpSpecialized>>(a, stream);
      } else if (fp8_peer_bulk(a, kSparse)) {
        launch_decode_cluster<typename Configs::Rows64WarpSpecialized>(a, stream);
      } else {
        launch_decode_cluster<PeerStores<typename Configs::Rows64WarpSpecialized>>(a, stream);
      }
      return;
    }
    launch_decode<typename Configs::Rows64>(a, stream);
  } else {
    if (decode_64row_serial()) {
      launch_decode<typename Configs::Rows64>(a, stream);
    } else {
      launch_decode<typename Configs::Rows64PingPong>(a, stream);
    }
  }
}

// Explicit instantiation, one per instantiations/*.cu file.
#define FLASHMLA_INSTANTIATE_DECODE(ELEM, D, FP8, SPARSE)                                  \
  template void launch_decode_for_rows<ELEM, D, FP8, SPARSE>(const DecodeKernelArgs&, int, \
                                                             cudaStream_t);

}  // namespace flashmla::detail::cuda::sm90
