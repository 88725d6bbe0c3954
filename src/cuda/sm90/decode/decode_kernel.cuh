// The split-KV MLA decode kernel, dense and token-sparse.
//
// One CTA = one (worker, KV head, query-row tile). The worker's contiguous range of
// (plan sequence, token) work comes from the split schedule (common/split_plan.h); a plan sequence
// is a batch entry (dense) or one query token (sparse), see decode_args.h. For each piece of a
// plan sequence the CTA:
//   1. loads its Q tile (kRows query rows x d) into shared memory,
//   2. streams the piece's KV rows (kv_tile_loader.cuh) through a kStages-deep cp.async pipeline
//      of kTileN tokens (FP8 caches: bulk copies into staging buffers, completion on mbarriers,
//      then converted to a bf16 tile),
//   3. per tile computes S = Q K^T, an online softmax in registers (row maxima exchanged through
//      shared memory), writes P to shared memory and accumulates O += P V in registers,
//   4. writes O / l and lse either to the final output (the sequence has one split) or to the
//      fp32 split workspace that the combine kernel merges.
// The tensor work runs on mma.sync (16- and 32-row tiles: 8 warps on a kSWarpsM x kSWarpsN grid
// for S, every warp owning 64 of the 512 value columns for P V) or on Hopper wgmma (64-row
// tiles; see DecodeConfig::kWgmma).
//
// Shared-memory operand tiles use the canonical 128-byte-swizzle layout of wgmma (see
// tile_chunk_offset): ldmatrix over 8 consecutive rows is free of bank conflicts, and wgmma reads
// the same buffers through descriptors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "common/split_plan.h"
#include "cuda/sm90/decode/decode_args.h"
#include "cuda/sm90/decode/kv_tile_loader.cuh"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmla::detail::cuda::sm90 {

template <typename Elem_, int kD_, int kRows_, int kTileN_, int kStages_, bool kWgmma_ = false,
          bool kQInRegs_ = false, bool kFP8_ = false, bool kSparse_ = false,
          bool kPingPong_ = false, bool kWarpSpecialized_ = false>
struct DecodeConfig {
  using Elem = Elem_;
  // KV rows in the FP8-with-scale format (Elem is then bf16), and rows addressed by index lists
  // (token-sparse decode) instead of a block table.
  static constexpr bool kFP8 = kFP8_;
  static constexpr bool kSparse = kSparse_;
  // mma.sync path: keep each S warp's Q fragments (16 rows x d) in registers for the whole
  // piece instead of re-reading them from shared memory every tile. With few rows the S warps
  // would otherwise read Q 8 times per tile, and shared-memory bandwidth, not DRAM, would bound
  // the memory-bound (h_q = 16) case.
  static constexpr bool kQInRegs = kQInRegs_;
  // Tensor-core path: mma.sync (m16n8k16 fragments via ldmatrix) for every tile size, or, for
  // 64-row tiles, Hopper wgmma: each warpgroup computes S for 32 of the 64 tokens
  // (m64n32k16 x d/16) and O += P V for 256 of the 512 value columns (m64n256k16 x 4), both
  // straight from the swizzled shared-memory tiles. The warp-to-row mapping of the S
  // accumulators is the same in both paths, so the softmax code is shared.
  static constexpr bool kWgmma = kWgmma_;
  // 64-row wgmma tiles, native rows only: the two warpgroups take alternate KV tiles and overlap
  // one's softmax with the other's tensor work (decode_piece_pingpong.cuh) instead of the serial
  // loop of decode_piece. Shared memory: Q, one KV tile per warpgroup, each warpgroup's P (for
  // d = 576 the last Q column block lives in registers and warpgroup 1's P takes its place).
  static constexpr bool kPingPong = kPingPong_;
  // 64-row FP8 tiles, warp-specialized in a 2-CTA cluster (decode_piece_fp8_ws.cuh): the two
  // CTAs are the two row tiles that read the same KV tiles; in each, a third (producer)
  // warpgroup loads half the rows of every tile into registers, converts them and stores the bf16
  // rows into both CTAs' KV buffers, while the two math warpgroups run the serial loop's wgmmas
  // (or, with kSplitConsumer, FlashMLA's split of that work).
  static constexpr bool kWarpSpecialized = kWarpSpecialized_;
  static constexpr int kProducerThreads = kWarpSpecialized ? 128 : 0;
  static constexpr int kD = kD_;          // head dim of q and k: 576 or 512
  static constexpr int kRows = kRows_;    // query rows per CTA: 16, 32 or 64
  static constexpr int kTileN = kTileN_;  // KV tokens per pipeline stage: 32 or 64
  // Pipeline depth: operand tiles in flight (bf16/fp16 rows), or FP8 staging buffers, each
  // converted in turn into a single operand tile.
  static constexpr int kStages = kStages_;
  // FP8 staging buffers (not with the producer warpgroup, which converts from registers).
  static constexpr bool kStaging = kFP8 && !kWarpSpecialized;
  static constexpr int kOperandTiles = kStaging ? 1 : kStages;
  static constexpr int kThreads = 256;  // the math warps; the layouts below are theirs
  static constexpr int kBlockThreads = kThreads + kProducerThreads;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kDvMax = kWarps * 64;  // value columns computed: 512
  static constexpr int kColBlocks = kD / 64;  // 64-element (128-byte) column blocks

  // S = Q K^T: warps on a kSWarpsM x kSWarpsN grid of 16-row x (kSNTiles*8)-column tiles. With
  // 16 rows and 32-token tiles only 4 warps have S work; the rest wait (that case is bound by
  // memory, not math).
  static constexpr int kSWarpsM = kRows / 16;
  static constexpr int kSWarpsNMax = kWarps / kSWarpsM;
  static constexpr int kSWarpsN = kSWarpsNMax < kTileN / 8 ? kSWarpsNMax : kTileN / 8;
  static constexpr int kSWarps = kSWarpsM * kSWarpsN;
  static constexpr int kSNTiles = kTileN / 8 / kSWarpsN;
  static_assert(kSNTiles == 1 || kSNTiles % 2 == 0, "K fragments are loaded in pairs");

  // O += P V: every warp owns 64 value columns for all kRows rows.
  static constexpr int kMTiles = kRows / 16;

  // Shared memory plan (bytes).
  static constexpr int kQBytes = kRows * kD * 2;
  static constexpr int kKVBytes = kTileN * kD * 2;
  static constexpr int kPRowBytes = kTileN * 2;
  static constexpr int kPTileBytes = kRows * kPRowBytes;
  static constexpr bool kQRegBlock =
      kPingPong && kRows * kD * 2 + 2 * kTileN * kD * 2 + 2 * kPTileBytes + 2048 > 227 * 1024;
  static constexpr int kPBytes = kPingPong && !kQRegBlock ? 2 * kPTileBytes : kPTileBytes;
  static constexpr int kStagingBytes = kStaging ? kTileN * 656 : 0;
  // FP8 conversion with one bf16x2 multiply per pair where the scale is exact in bf16
  // (dequant_16). Measured on the H200: 1% faster on the 64-row and Q-in-shared-memory tiles,
  // 3-4% slower on the 16-row tile that holds Q in registers (254 registers), which keeps the
  // fp32 path.
  static constexpr bool kBf16ScaleMultiply = kFP8 && !kQInRegs;
  // Sparse: which rows of a tile take part in the softmax, per tile in flight (FP8 resolves the
  // rows of a staging buffer's next tile before the current tile's scores are masked, hence one
  // more).
  // (The warp-specialized kernel keeps 32-bit validity words instead: kOffValid32.)
  static constexpr int kValidSlots =
      kSparse && !kWarpSpecialized ? (kStaging ? kStages + 1 : kStages) : 0;
  static constexpr int kOffQ = 0;
  static constexpr int kOffKV = kOffQ + kQBytes;
  static constexpr int kOffP = kOffKV + kOperandTiles * kKVBytes;
  static constexpr int kOffStaging = kOffP + kPBytes;
  static constexpr int kOffRed = kOffStaging + kStages * kStagingBytes;  // float [kSWarpsN][kRows]
  static constexpr int kOffRow = kOffRed + kSWarpsN * kRows * 4;         // float [kRows]
  static constexpr int kOffMax = kOffRow + kRows * 4;  // ping-pong: float [2][kRows] maxima
  static constexpr int kOffValid =
      kOffMax + (kPingPong ? 2 * kRows * 4 : 0);  // uint8 [slots][kTileN]
  // FP8: one mbarrier per staging buffer (its bulk copies' completion).
  static constexpr int kOffBar = (kOffValid + kValidSlots * kTileN + 7) / 8 * 8;
  // Warp-specialized: per KV buffer, the 32-bit validity word of each row and each producer
  // warp's `bad` word (written by both CTAs' producers), then three mbarriers per buffer (local
  // ready, remote ready, available).
  static constexpr int kOffValid32 = (kOffValid + 15) / 16 * 16;      // u32 [2][kTileN]
  static constexpr int kOffPairFlags = kOffValid32 + 2 * kTileN * 4;  // u32 [2][2 ranks][4 warps]
  static constexpr int kOffPairBars = kOffPairFlags + 64;             // u64 [3][2]
  // Split consumer: the softmax warpgroup's per-row rescale factors for the other one.
  static constexpr int kOffScale = kOffPairBars + 6 * 8;  // float [kRows]
  static constexpr int kSmemBytes =
      kWarpSpecialized ? kOffScale + kRows * 4 : kOffBar + (kStaging ? kStages * 8 : 0);
  // The split consumer of decode_piece_fp8_ws.cuh (set by decode_launch.cuh's SplitConsumer where
  // decode_fp8_split_consumer picks it).
  static constexpr bool kSplitConsumer = false;
  // The cluster producer's half of each tile reaches the peer by bulk copy (true, the default)
  // or by per-thread st.async stores (decode_launch.cuh's PeerStores, for small plans).
  static constexpr bool kPeerBulk = true;
  static_assert(kSmemBytes <= 227 * 1024, "exceeds the 227 KB a Hopper CTA may use");
  // Two CTAs share an SM when both fit its 228 KB (1 KB of it reserved per CTA); the launch
  // bounds then cap registers at 128 per thread.
  static constexpr int kMinBlocks = kSmemBytes <= 113 * 1024 ? 2 : 1;
  static_assert(kTileN == 32 || kTileN == 64, "P tile swizzle handles 64- and 128-byte rows");
  static_assert(!(kWgmma && kQInRegs), "wgmma reads Q from shared memory");
  static_assert(!kPingPong || (kWgmma && !kFP8 && kStages == 2),
                "the ping-pong loop serves native 64-row tiles with one KV tile per warpgroup");
  // Ping-pong P tiles: warpgroup w's P at p_tile_offset(w); with kQRegBlock warpgroup 1's P
  // overlays the last Q column block (read into registers at the start of every piece).
  static constexpr int kOffP1 =
      kQRegBlock ? kOffQ + (kColBlocks - 1) * kRows * 128 : kOffP + kPTileBytes;
  static_assert(!kPingPong || (kOffP1 % 1024 == 0 && kPTileBytes == 8192),
                "P tiles are 1024-byte aligned 64 x 64 swizzled tiles");
  static_assert(!kFP8 || kD == 576, "FP8 rows hold d = 576 values");
  static_assert(!kFP8 || kOffStaging % 16 == 0, "bulk copies land on 16-byte boundaries");
  static_assert(!kWarpSpecialized || (kWgmma && kFP8 && kStages == 2 && !kPingPong),
                "the producer warpgroup feeds the serial 64-row FP8 loop, double-buffered");
  static_assert(!kWgmma || (kRows == 64 && kTileN == 64 && kSWarpsM == 4 && kSWarpsN == 2 &&
                            kSNTiles == 4 && kD / 64 >= 8),
                "the wgmma path is written for 64 x 64 tiles and 512 value columns");
  static_assert(!kWgmma || (kOffKV % 1024 == 0 && kKVBytes % 1024 == 0 && kOffP % 1024 == 0),
                "wgmma operand tiles must start on 1024-byte swizzle atoms");
};

// Byte offset of 16-byte chunk `chunk` of row `r` in the P tile (kTileN*2 bytes per row).
template <int kPRowBytes>
__device__ __forceinline__ uint32_t p_chunk_offset(int r, int chunk) {
  if constexpr (kPRowBytes == 128) {
    return static_cast<uint32_t>((r << 7) + ((chunk ^ (r & 7)) << 4));
  } else {  // 64-byte rows: two rows share a 128-byte line, so swizzle with bits 1-2 of r
    return static_cast<uint32_t>((r << 6) + ((chunk ^ ((r >> 1) & 3)) << 4));
  }
}

// Stores output columns col and col + 1 of one row (those below dv), as one 4- or 8-byte store
// where alignment allows.
template <typename Elem>
__device__ __forceinline__ void store_pair(Elem* out, int col, int dv, float x0, float x1) {
  if (col + 1 < dv && (reinterpret_cast<uintptr_t>(out + col) & 3) == 0) {
    *reinterpret_cast<uint32_t*>(out + col) = ptx::pack2<Elem>(x0, x1);
  } else {
    if (col < dv) out[col] = ptx::from_float<Elem>(x0);
    if (col + 1 < dv) out[col + 1] = ptx::from_float<Elem>(x1);
  }
}
__device__ __forceinline__ void store_pair(float* out, int col, int dv, float x0, float x1) {
  if (col + 1 < dv && (dv & 1) == 0) {  // rows of even length start 8-byte aligned
    *reinterpret_cast<float2*>(out + col) = make_float2(x0, x1);
  } else {
    if (col < dv) out[col] = x0;
    if (col + 1 < dv) out[col + 1] = x1;
  }
}

// The softmax steps of a 64 x 64 S tile held whole by one warpgroup (m64n64 accumulator layout:
// sc[4 j + e] row srow0, sc[4 j + 2 + e] row srow1, key column 8 j + 2 t4 + e), shared by the
// ping-pong loop and the split consumer of the FP8 cluster loop.
// Scores to the log2 domain, -inf past a row's limit or where valid(col) rejects the slot; returns
// the quad's row maxima.
template <bool kCheckValid, class Valid>
__device__ __forceinline__ float2 scale_mask_row_max(float (&sc)[32], int t4, int tile_start,
                                                     int2 limits, float scale_log2,
                                                     const Valid& valid) {
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = 8 * j + 2 * t4;
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool keep = !kCheckValid || valid(col + e);
      const int tok = tile_start + col + e;
      sc[4 * j + e] = keep && tok < limits.x ? sc[4 * j + e] * scale_log2 : -INFINITY;
      sc[4 * j + 2 + e] = keep && tok < limits.y ? sc[4 * j + 2 + e] * scale_log2 : -INFINITY;
      mx0 = fmaxf(mx0, sc[4 * j + e]);
      mx1 = fmaxf(mx1, sc[4 * j + 2 + e]);
    }
  }
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  return make_float2(mx0, mx1);
}
// P = exp2(S - use) into registers (rp: the A fragments of the P V wgmma) and into the P tile at
// sp (128-byte swizzled rows, for the other warpgroup); returns this thread's share of the rows'
// sums.
template <class Elem>
__device__ __forceinline__ float2 p_to_regs_and_smem(const float (&sc)[32], float use0, float use1,
                                                     uint32_t (&rp)[4][4], uint8_t* sp, int srow0,
                                                     int srow1, int t4) {
  float sum0 = 0.f, sum1 = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float p0 = ptx::exp2_approx(sc[4 * j] - use0);
    const float p1 = ptx::exp2_approx(sc[4 * j + 1] - use0);
    const float p2 = ptx::exp2_approx(sc[4 * j + 2] - use1);
    const float p3 = ptx::exp2_approx(sc[4 * j + 3] - use1);
    sum0 += p0 + p1;
    sum1 += p2 + p3;
    const uint32_t lo = ptx::pack2<Elem>(p0, p1), hi = ptx::pack2<Elem>(p2, p3);
    rp[j >> 1][2 * (j & 1)] = lo;
    rp[j >> 1][2 * (j & 1) + 1] = hi;
    *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<128>(srow0, j) + 4 * t4) = lo;
    *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<128>(srow1, j) + 4 * t4) = hi;
  }
  return make_float2(sum0, sum1);
}

// Exclusive key limits of a thread's two query rows (tile rows srow0 and srow1): the piece's
// end, and with causal masking query token j of s_q sees keys 0 .. s_k - s_q + j.
template <class Cfg>
__device__ __forceinline__ int2 key_limits(const DecodeKernelArgs& a, int s_base, int seq_len,
                                           int row0, int srow0, int srow1, int token_end) {
  int limit0 = token_end, limit1 = token_end;
  if (!Cfg::kSparse && a.causal) {
    const int s0 = s_base + (row0 + srow0) / a.q_per_kv;
    const int s1 = s_base + (row0 + srow1) / a.q_per_kv;
    limit0 = min(limit0, seq_len - a.s_q + s0 + 1);
    limit1 = min(limit1, seq_len - a.s_q + s1 + 1);
  }
  return make_int2(limit0, limit1);
}

// Named barrier ids of the warp-specialized FP8 loop (decode_piece_fp8_ws.cuh). That kernel never
// uses barrier 0: its two roles would reach it at different instructions, which the aligned
// bar.sync / bar.red do not allow (ptxas duplicated the epilogue's bar.red into one branch of the
// math warps, and the kernel hung on the H200).
namespace fp8ws {
inline constexpr int kBarMath = 11;   // the two math warpgroups only
inline constexpr int kBarPReady = 9;  // split consumer: P(t) and its rescale factors stored
inline constexpr int kBarPFree = 10;  // split consumer: warpgroup 1 is done with P(t)
}  // namespace fp8ws

// The epilogue's barriers among the threads that hold the output. The warp-specialized kernel's
// math warps sync among themselves; the threads that write lse and 1/l (warpgroup 0) have
// gathered `bad` from every tile's flags themselves.
template <class Cfg>
__device__ __forceinline__ bool epilogue_sync_or(bool bad) {
  if constexpr (Cfg::kWarpSpecialized) {
    ptx::bar_sync(fp8ws::kBarMath, Cfg::kThreads);
    return bad;
  } else {
    return __syncthreads_or(bad) != 0;
  }
}
template <class Cfg>
__device__ __forceinline__ void epilogue_sync() {
  if constexpr (Cfg::kWarpSpecialized) {
    ptx::bar_sync(fp8ws::kBarMath, Cfg::kThreads);
  } else {
    __syncthreads();
  }
}

// Epilogue of a piece, shared by both loops (every tensor op and copy of the piece issued; the
// wgmma path has waited for its last P V): total row sums, lse, and the normalized output. Thread
// layout as in the loops: warp `warp` = (row block wm, column warp wn), rows srow0 / srow1; the
// wgmma paths keep m0 / m1 of warpgroup 0 and one partial row sum per warpgroup.
template <class Cfg>
__device__ __forceinline__ void finish_piece(uint8_t* smem, const DecodeKernelArgs& a,
                                             const PieceSource& src, int s_base, int kv_head,
                                             int row0, int split_index, bool write_final, bool bad,
                                             float m0, float m1, float l0, float l1,
                                             const float (&o)[Cfg::kMTiles][8][4]) {
  using Elem = typename Cfg::Elem;
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const bool s_warp = warp < Cfg::kSWarps;
  const int wm = warp % Cfg::kSWarpsM;
  const int wn = warp / Cfg::kSWarpsM;
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;
  const bool pv_warp = Cfg::kWgmma || warp * 64 < a.dv;
  float* red = reinterpret_cast<float*>(smem + Cfg::kOffRed);      // [kSWarpsN][kRows]
  float* row_val = reinterpret_cast<float*>(smem + Cfg::kOffRow);  // [kRows]

  // ---- Epilogue: total row sums, lse, and the normalized output.
  ptx::cp_async_wait<0>();  // a piece without tiles still has its Q copy in flight
  if (s_warp) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    if (t4 == 0) {
      red[wn * Cfg::kRows + srow0] = l0;
      red[wn * Cfg::kRows + srow1] = l1;
    }
  }
  // Also: is any lane's piece bad (a block id outside the cache)? Then the whole piece is NaN.
  const bool any_bad = epilogue_sync_or<Cfg>(bad);

  // Row gr holds query token s_base + gr / q_per_kv, head kv_head * q_per_kv + gr % q_per_kv of
  // batch entry src.batch; a split's partial rows are [(s - s_base) * h_q + h].
  auto head_of = [&](int gr) { return kv_head * a.q_per_kv + gr % a.q_per_kv; };
  auto token_of = [&](int gr) { return s_base + gr / a.q_per_kv; };
  const int64_t partial_rows = static_cast<int64_t>(a.s_q / a.fold) * a.h_q;
  auto partial_row = [&](int gr) {
    return split_index * partial_rows + static_cast<int64_t>(gr / a.q_per_kv) * a.h_q + head_of(gr);
  };

  if (s_warp && wn == 0 && t4 == 0) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half ? srow1 : srow0;
      const float m = half ? m1 : m0;
      float l = 0.f;
#pragma unroll
      for (int w = 0; w < Cfg::kSWarpsN; ++w) l += red[w * Cfg::kRows + r];
      float inv, lse;
      if (any_bad) {
        inv = NAN;
        lse = NAN;
      } else if (l > 0.f) {
        inv = 1.f / l;
        lse = (m + log2f(l)) * 0.69314718055994531f;  // back to natural log
      } else {  // no key visible: out 0; lse +inf finally, -inf (weight 0) for a split
        inv = 0.f;
        lse = write_final ? INFINITY : -INFINITY;
      }
      const int gr = row0 + r;
      if (gr < a.rows) {
        const int s = token_of(gr);
        const int h = head_of(gr);
        if (write_final) {
          // Attention sink: out * exp(lse) / (exp(lse) + exp(sink)); lse itself is unchanged.
          if (a.attn_sink != nullptr && isfinite(lse)) {
            inv *= 1.f / (1.f + __expf(a.attn_sink[h] - lse));
          }
          a.lse[src.batch * a.lse_batch_stride + h * a.lse_head_stride + s * a.lse_seq_stride] =
              lse;
        } else {
          a.schedule.partial_lse[partial_row(gr)] = lse;
        }
      }
      row_val[r] = inv;
    }
  }
  epilogue_sync<Cfg>();  // 1/l per row is visible

  if (!pv_warp) return;
  if constexpr (Cfg::kWgmma) {
    // This thread: rows srow0 / srow1, columns 256*wn + 8*j + 2*t4 (+1), j = 0 .. 31.
    const float* acc = &o[0][0][0];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = half ? srow1 : srow0;
      const int gr = row0 + r;
      if (gr >= a.rows) continue;
      const float inv = row_val[r];
      auto store_row = [&](auto* out) {
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          const int col = wn * 256 + j * 8 + 2 * t4;
          const float x0 = acc[4 * j + 2 * half] * inv, x1 = acc[4 * j + 2 * half + 1] * inv;
          store_pair(out, col, a.dv, x0, x1);
        }
      };
      if (write_final) {
        Elem* out = static_cast<Elem*>(a.out) + src.batch * a.out_batch_stride +
                    token_of(gr) * a.out_seq_stride + head_of(gr) * a.out_head_stride;
        store_row(out);
      } else {
        float* out = a.schedule.partial_out + partial_row(gr) * a.dv;
        store_row(out);
      }
    }
  } else {
#pragma unroll
    for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = mt * 16 + g + half * 8;
        const int gr = row0 + r;
        if (gr >= a.rows) continue;
        const float inv = row_val[r];
        auto store_row = [&](auto* out) {
#pragma unroll
          for (int nt = 0; nt < 8; ++nt) {
            const int col = warp * 64 + nt * 8 + 2 * t4;
            const float x0 = o[mt][nt][2 * half] * inv, x1 = o[mt][nt][2 * half + 1] * inv;
            store_pair(out, col, a.dv, x0, x1);
          }
        };
        if (write_final) {
          store_row(static_cast<Elem*>(a.out) + src.batch * a.out_batch_stride +
                    token_of(gr) * a.out_seq_stride + head_of(gr) * a.out_head_stride);
        } else {
          store_row(a.schedule.partial_out + partial_row(gr) * a.dv);
        }
      }
    }
  }  // mma.sync layout
}

// Processes one piece (a token or slot range of one plan sequence) for this CTA's KV head and
// row tile. `s_base`: the plan sequence's first query token (sparse: its only one).
// FP8: `load_phase` bit s is the parity of the next phase of staging buffer s's mbarrier
// (carried from piece to piece).
template <class Cfg>
__device__ __forceinline__ void decode_piece(uint8_t* smem, const DecodeKernelArgs& a,
                                             const PieceSource& src, int s_base, int seq_len,
                                             int kv_head, int row0, int token_begin, int token_end,
                                             int split_index, bool write_final,
                                             uint32_t& load_phase) {
  using Elem = typename Cfg::Elem;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;  // accumulator row within an 8-row group
  const int t4 = lane & 3;  // accumulator column pair

  const int num_tiles =
      token_end > token_begin ? (token_end - token_begin + Cfg::kTileN - 1) / Cfg::kTileN : 0;

  float* red = reinterpret_cast<float*>(smem + Cfg::kOffRed);      // [kSWarpsN][kRows]
  float* row_val = reinterpret_cast<float*>(smem + Cfg::kOffRow);  // [kRows]
  uint8_t* valid = smem + Cfg::kOffValid;                          // [kValidSlots][kTileN]

  __syncthreads();  // the previous piece is done with every shared buffer

  // Tiles in flight: native rows fill kStages - 1 operand tiles ahead; FP8 rows fill all
  // kStages staging buffers ahead (each is converted into the operand tile when its turn comes).
  constexpr int kAhead = Cfg::kFP8 ? Cfg::kStages : Cfg::kStages - 1;
  auto buffer_of = [](int slot) {
    return Cfg::kFP8 ? Cfg::kOffStaging + slot * Cfg::kStagingBytes
                     : Cfg::kOffKV + slot * Cfg::kKVBytes;
  };
  auto valid_of = [&](int tile) {
    return Cfg::kSparse
               ? valid + (tile % (Cfg::kValidSlots > 0 ? Cfg::kValidSlots : 1)) * Cfg::kTileN
               : valid;
  };
  const uint32_t bar_base = ptx::smem_addr(smem) + Cfg::kOffBar;
  // Copies of tile `tile` (row ids `ids`) into buffer `slot`.
  auto load_tile = [&](int slot, int tile, const KVRowIds<Cfg>& ids, bool& bad) {
    const int start = token_begin + tile * Cfg::kTileN;
    if constexpr (Cfg::kFP8) {
      issue_fp8_tile<Cfg>(smem, buffer_of(slot), bar_base + 8 * slot, a,
                          resolve_fp8_tile<Cfg>(valid_of(tile), a, ids, kv_head, start, bad));
    } else {
      load_kv_tile<Cfg>(smem, buffer_of(slot), valid_of(tile), a, ids, kv_head, start, bad);
    }
  };
  bool bad = false;
  load_q_tile<Cfg>(smem, a, src.batch, s_base, kv_head, row0);
  ptx::cp_async_commit();
#pragma unroll
  for (int s = 0; s < kAhead; ++s) {
    if (s < num_tiles) {
      load_tile(s, s, fetch_row_ids<Cfg>(a, src, token_begin + s * Cfg::kTileN, token_end), bad);
    }
    ptx::cp_async_commit();  // empty groups keep the wait counts uniform
  }
  // Row ids of the next tile to load (tile kAhead), fetched a whole tile early.
  KVRowIds<Cfg> next_ids =
      fetch_row_ids<Cfg>(a, src, token_begin + kAhead * Cfg::kTileN, token_end);

  // ---- S-warp state: this thread's two rows (g and g + 8 of the warp's 16-row block).
  const bool s_warp = warp < Cfg::kSWarps;
  const int wm = warp % Cfg::kSWarpsM;
  const int wn = warp / Cfg::kSWarpsM;
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;
  const int2 limits = key_limits<Cfg>(a, s_base, seq_len, row0, srow0, srow1, token_end);
  const int limit0 = limits.x, limit1 = limits.y;
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 domain)
  float l0 = 0.f, l1 = 0.f;              // this thread's share of the running sums

  // ---- PV state. mma.sync: all kRows rows x this warp's 64 value columns. wgmma: the 16 rows
  // of this warp (srow0 / srow1 per thread) x its warpgroup's 256 value columns; element
  // [mt][nt][e] is then index 32*mt + 4*nt + e of the wgmma accumulator (8-column group
  // 8*mt + nt).
  float o[Cfg::kMTiles][8][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nt][e] = 0.f;
  // mma.sync warps whose 64 value columns all lie past dv skip P V. (wgmma warpgroups never
  // skip it: a branch around wgmma makes ptxas serialize them.)
  const bool pv_warp = Cfg::kWgmma || warp * 64 < a.dv;
  float alpha0 = 1.f, alpha1 = 1.f;  // wgmma path: this thread's rows' rescale factors

  const uint32_t smem_base = ptx::smem_addr(smem);
  // Per-lane ldmatrix addressing (see tile_chunk_offset): the row of every lane is fixed, and
  // the chunk of k-step kk is 2*(kk%4) + hi, whose swizzled position is (2*(kk%4)) ^ (hi ^ r%8).
  const int q_row = wm * 16 + (lane & 15);
  const uint32_t q_lane = smem_base + Cfg::kOffQ + (q_row << 7);
  const int q_x = (lane >> 4) ^ (lane & 7);
  const int k_row =
      wn * Cfg::kSNTiles * 8 + (lane & 7) + (Cfg::kSNTiles >= 2 ? ((lane >> 4) << 3) : 0);
  const int k_x = ((lane >> 3) & 1) ^ (lane & 7);
  const int v_row = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int v_x = (lane >> 4) ^ (lane & 7);

  // Q fragments in registers (kQInRegs): filled once the Q tile has landed (first tile).
  uint32_t qf[Cfg::kQInRegs ? Cfg::kD / 16 : 1][4];

  int read_stage = 0;
  int write_stage = Cfg::kFP8 ? 0 : Cfg::kStages - 1;
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int tile_start = token_begin + tile * Cfg::kTileN;
    // Issues the copies of tile `tile + kAhead` into buffer `write_stage`: the operand tile the
    // previous tile used (native rows; the wgmma path does this once both warpgroups' P V of the
    // previous tile has retired, after the row-maximum barrier). FP8 rows: see below.
    auto refill = [&] {
      if (tile + kAhead < num_tiles) {
        load_tile(write_stage, tile + kAhead, next_ids, bad);
        if (tile + kAhead + 1 < num_tiles) {
          next_ids = fetch_row_ids<Cfg>(a, src, tile_start + (kAhead + 1) * Cfg::kTileN, token_end);
        }
      }
      ptx::cp_async_commit();
      write_stage = write_stage + 1 == Cfg::kStages ? 0 : write_stage + 1;
    };
    uint32_t kv_stage;
    if constexpr (Cfg::kFP8) {
      // Every warp is done with the operand tile (wgmma: its P V has retired) before the
      // conversion overwrites it.
      if constexpr (Cfg::kWgmma) wgmma::wait<0>();
      ptx::cp_async_wait<0>();  // Q (the only cp.async copies of the FP8 path)
      ptx::mbarrier_wait(bar_base + 8 * read_stage, (load_phase >> read_stage) & 1u);
      load_phase ^= 1u << read_stage;
      __syncthreads();  // Q visible; every thread has seen staging buffer `tile` land
      // Tile `tile + kAhead` goes into the staging buffer being converted. Its rows are resolved
      // before the conversion, so that their address arithmetic fills the conversion's stall
      // cycles instead of sitting between two barriers (ncu: 29% of the 16-row kernel's stall
      // samples when it did); the copies are issued once the buffer is free. Past the last tile
      // every row is skipped (sparse: its `valid` slot is not in use).
      const bool refill_due = tile + kAhead < num_tiles;
      KVRowIds<Cfg> due_ids = next_ids;
      if (!refill_due) due_ids.skipped = ~0u;
      const FP8TileRows<Cfg> due_rows = resolve_fp8_tile<Cfg>(
          valid_of(tile + kAhead), a, due_ids, kv_head, tile_start + kAhead * Cfg::kTileN, bad);
      convert_fp8_tile<Cfg>(smem, buffer_of(read_stage), Cfg::kOffKV);
      if constexpr (Cfg::kWgmma) wgmma::fence_proxy_async();  // converted tile -> wgmma reads
      __syncthreads();  // operand tile visible; staging buffer `tile` free
      if (refill_due) {
        issue_fp8_tile<Cfg>(smem, buffer_of(write_stage), bar_base + 8 * write_stage, a, due_rows);
        if (tile + kAhead + 1 < num_tiles) {
          next_ids = fetch_row_ids<Cfg>(a, src, tile_start + (kAhead + 1) * Cfg::kTileN, token_end);
        }
      }
      write_stage = write_stage + 1 == Cfg::kStages ? 0 : write_stage + 1;
      kv_stage = smem_base + Cfg::kOffKV;
    } else {
      ptx::cp_async_wait<Cfg::kStages - 2>();
      if constexpr (Cfg::kWgmma) wgmma::fence_proxy_async();  // cp.async data -> wgmma reads
      __syncthreads();  // tile `tile` (and Q) visible; everyone is done with the previous tile
      if constexpr (!Cfg::kWgmma) refill();
      kv_stage = smem_base + Cfg::kOffKV + read_stage * Cfg::kKVBytes;
    }
    read_stage = read_stage + 1 == Cfg::kStages ? 0 : read_stage + 1;
    const uint8_t* tile_valid = valid_of(tile);
    if constexpr (Cfg::kQInRegs) {
      if (tile == 0 && s_warp) {
#pragma unroll
        for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
          ptx::ldmatrix_x4(q_lane + (kk >> 2) * (Cfg::kRows << 7) + ((((kk & 3) << 1) ^ q_x) << 4),
                           qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
        }
      }
    }

    float sc[Cfg::kSNTiles][4];
    if constexpr (Cfg::kWgmma) {
      // ---- S = Q K^T: this warpgroup's 64 x 32 block (tokens 32*wn ..), d/16 wgmmas.
      float* acc = &sc[0][0];
#pragma unroll
      for (int i = 0; i < 16; ++i) acc[i] = 0.f;
      wgmma::fence();
      const uint32_t q_tile = smem_base + Cfg::kOffQ;
      const uint32_t k_tile = kv_stage + wn * 32 * 128;
#pragma unroll
      for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
        const int blk = kk >> 2;
        const uint32_t kbyte = (kk & 3) * 32;  // 16 elements along K inside the 128-byte atom
        const uint64_t da = wgmma::make_desc(q_tile + blk * (Cfg::kRows << 7) + kbyte, 16, 1024);
        const uint64_t db = wgmma::make_desc(k_tile + blk * (Cfg::kTileN << 7) + kbyte, 16, 1024);
        wgmma::Ops<Elem>::template m64n32<0>(reinterpret_cast<float(&)[16]>(sc), da, db);
      }
      wgmma::commit();
      wgmma::wait<0>();  // also retires this warpgroup's P V of the previous tile
    }
    if (s_warp) {
      // ---- S = Q K^T for this warp's 16 x (kSNTiles*8) block.
      if constexpr (!Cfg::kWgmma) {
        // With one 8-token column block per warp, the d/16 MMAs would form one dependent chain;
        // kSAcc independent accumulators (summed afterwards) keep several in flight.
        constexpr int kSAcc = Cfg::kSNTiles == 1 ? 4 : 1;
        float part[kSAcc][Cfg::kSNTiles][4];
#pragma unroll
        for (int c = 0; c < kSAcc; ++c)
#pragma unroll
          for (int nt = 0; nt < Cfg::kSNTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) part[c][nt][e] = 0.f;
        const uint32_t k_lane = kv_stage + (k_row << 7);
#pragma unroll
        for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
          auto& acc = part[kk % kSAcc];
          const int blk = kk >> 2;
          const int j2 = (kk & 3) << 1;
          uint32_t qa[4];
          if constexpr (Cfg::kQInRegs) {
#pragma unroll
            for (int i = 0; i < 4; ++i) qa[i] = qf[kk][i];
          } else {
            ptx::ldmatrix_x4(q_lane + blk * (Cfg::kRows << 7) + ((j2 ^ q_x) << 4), qa[0], qa[1],
                             qa[2], qa[3]);
          }
          const uint32_t k_addr = k_lane + blk * (Cfg::kTileN << 7) + ((j2 ^ k_x) << 4);
          if constexpr (Cfg::kSNTiles == 1) {
            uint32_t b0, b1;
            ptx::ldmatrix_x2(k_addr, b0, b1);
            ptx::mma_16816<Elem>(acc[0], qa, b0, b1);
          } else {
#pragma unroll
            for (int nt = 0; nt < Cfg::kSNTiles; nt += 2) {
              uint32_t b0, b1, b2, b3;
              ptx::ldmatrix_x4(k_addr + ((nt * 8) << 7), b0, b1, b2, b3);
              ptx::mma_16816<Elem>(acc[nt], qa, b0, b1);
              ptx::mma_16816<Elem>(acc[nt + 1], qa, b2, b3);
            }
          }
        }
#pragma unroll
        for (int nt = 0; nt < Cfg::kSNTiles; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float v = part[0][nt][e];
#pragma unroll
            for (int c = 1; c < kSAcc; ++c) v += part[c][nt][e];
            sc[nt][e] = v;
          }
      }  // !kWgmma
      // ---- Scale to the log2 domain, mask, and take this warp's row maxima.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < Cfg::kSNTiles; ++nt) {
        const int col = wn * Cfg::kSNTiles * 8 + nt * 8 + 2 * t4;
        const int tok = tile_start + col;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          // Sparse: -1 slots and slots past the lists' lengths take no part either.
          const bool keep = !Cfg::kSparse || tile_valid[col + e];
          sc[nt][e] = keep && tok + e < limit0 ? sc[nt][e] * a.scale_log2 : -INFINITY;
          sc[nt][2 + e] = keep && tok + e < limit1 ? sc[nt][2 + e] * a.scale_log2 : -INFINITY;
          mx0 = fmaxf(mx0, sc[nt][e]);
          mx1 = fmaxf(mx1, sc[nt][2 + e]);
        }
      }
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      if (t4 == 0) {
        red[wn * Cfg::kRows + srow0] = mx0;
        red[wn * Cfg::kRows + srow1] = mx1;
      }
    }
    __syncthreads();  // row maxima of all column warps are in `red`
    // wgmma: both warpgroups have retired their P V of the previous tile (each waited before the
    // barrier), so its stage and the P buffer may be overwritten now, not earlier.
    if constexpr (Cfg::kWgmma && !Cfg::kFP8) refill();

    if (s_warp) {
      // ---- Online softmax: new maxima, rescale factor, P = exp2(S - m) to shared memory.
      float tmax0 = -INFINITY, tmax1 = -INFINITY;
#pragma unroll
      for (int w = 0; w < Cfg::kSWarpsN; ++w) {
        tmax0 = fmaxf(tmax0, red[w * Cfg::kRows + srow0]);
        tmax1 = fmaxf(tmax1, red[w * Cfg::kRows + srow1]);
      }
      const float new0 = fmaxf(m0, tmax0), new1 = fmaxf(m1, tmax1);
      // A row that has seen no key yet keeps max -inf; subtract 0 then so exp2 gives 0, not NaN.
      const float use0 = new0 == -INFINITY ? 0.f : new0;
      const float use1 = new1 == -INFINITY ? 0.f : new1;
      alpha0 = ptx::exp2_approx(m0 - use0);
      alpha1 = ptx::exp2_approx(m1 - use1);
      m0 = new0;
      m1 = new1;
      float sum0 = 0.f, sum1 = 0.f;
      uint8_t* sp = smem + Cfg::kOffP;
#pragma unroll
      for (int nt = 0; nt < Cfg::kSNTiles; ++nt) {
        const float p0 = ptx::exp2_approx(sc[nt][0] - use0);
        const float p1 = ptx::exp2_approx(sc[nt][1] - use0);
        const float p2 = ptx::exp2_approx(sc[nt][2] - use1);
        const float p3 = ptx::exp2_approx(sc[nt][3] - use1);
        sum0 += p0 + p1;
        sum1 += p2 + p3;
        const int col = wn * Cfg::kSNTiles * 8 + nt * 8 + 2 * t4;
        const int chunk = col >> 3;
        const uint32_t in_chunk = (col & 7) * 2;
        *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<Cfg::kPRowBytes>(srow0, chunk) +
                                     in_chunk) = ptx::pack2<Elem>(p0, p1);
        *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<Cfg::kPRowBytes>(srow1, chunk) +
                                     in_chunk) = ptx::pack2<Elem>(p2, p3);
      }
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
      if constexpr (Cfg::kWgmma) wgmma::fence_proxy_async();  // P -> wgmma reads
      if (!Cfg::kWgmma && wn == 0 && t4 == 0) {
        row_val[srow0] = alpha0;
        row_val[srow1] = alpha1;
      }
    }
    __syncthreads();  // P and the rescale factors are visible

    if constexpr (Cfg::kWgmma) {
      {  // both warpgroups, whatever dv: a branch around wgmma makes ptxas serialize them
        // ---- O = O * alpha + P V over this warpgroup's 256 value columns: 4 wgmmas (16 tokens
        // each), P K-major from sP, V N-major straight from the KV tile (column blocks 4*wn ..).
        float* acc = &o[0][0][0];
#pragma unroll
        for (int i = 0; i < 128; ++i) acc[i] *= (i & 2) ? alpha1 : alpha0;
        wgmma::fence();
        const uint32_t p_tile = smem_base + Cfg::kOffP;
        const uint32_t v_tile = kv_stage + wn * 4 * (Cfg::kTileN << 7);
#pragma unroll
        for (int kk = 0; kk < Cfg::kTileN / 16; ++kk) {
          const uint64_t da = wgmma::make_desc(p_tile + kk * 32, 16, 1024);
          // N-major V: 64-column blocks kTileN * 128 bytes apart, 8-token groups 1024 bytes.
          const uint64_t db = wgmma::make_desc(v_tile + kk * 16 * 128, Cfg::kTileN * 128, 1024);
          wgmma::Ops<Elem>::template m64n256<1>(reinterpret_cast<float(&)[128]>(o), da, db);
        }
        wgmma::commit();
        // Not waited for here: P V runs on while the next tile's barrier and S wgmmas are
        // issued; the next S wait (or the epilogue's) retires it.
      }
    } else if (pv_warp) {
      // ---- O = O * alpha + P V over this warp's 64 value columns (column block `warp`).
#pragma unroll
      for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
        const float alpha0 = row_val[mt * 16 + g];
        const float alpha1 = row_val[mt * 16 + g + 8];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          o[mt][nt][0] *= alpha0;
          o[mt][nt][1] *= alpha0;
          o[mt][nt][2] *= alpha1;
          o[mt][nt][3] *= alpha1;
        }
      }
      const uint32_t v_lane = kv_stage + ((warp * Cfg::kTileN + v_row) << 7);
      const uint32_t p_base = smem_base + Cfg::kOffP;
#pragma unroll
      for (int kk = 0; kk < Cfg::kTileN / 16; ++kk) {
        uint32_t pa[Cfg::kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
          const int r = mt * 16 + (lane & 15);
          ptx::ldmatrix_x4(p_base + p_chunk_offset<Cfg::kPRowBytes>(r, 2 * kk + (lane >> 4)),
                           pa[mt][0], pa[mt][1], pa[mt][2], pa[mt][3]);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t b0, b1, b2, b3;
          ptx::ldmatrix_x4_trans(v_lane + ((kk * 16) << 7) + (((2 * j) ^ v_x) << 4), b0, b1, b2,
                                 b3);
#pragma unroll
          for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
            ptx::mma_16816<Elem>(o[mt][2 * j], pa[mt], b0, b1);
            ptx::mma_16816<Elem>(o[mt][2 * j + 1], pa[mt], b2, b3);
          }
        }
      }
    }
  }

  if constexpr (Cfg::kWgmma) wgmma::wait<0>();  // the last tile's P V

  finish_piece<Cfg>(smem, a, src, s_base, kv_head, row0, split_index, write_final, bad, m0, m1, l0,
                    l1, o);
}

// One piece of a worker's range (see the kernel): plan sequence `seq`, clipped to the range.
struct Piece {
  PieceSource src;
  int s_base;       // the plan sequence's first query token
  int seq_len;      // its KV length (sparse: index slots)
  int token_begin;  // the piece's tokens or slots
  int token_end;
  int split_index;   // its split among the sequence's pieces
  bool write_final;  // the sequence has one split: write the output, not the workspace
};

template <class Cfg>
__device__ __forceinline__ Piece piece_of(const DecodeKernelArgs& a, int seq, int begin_seq,
                                          int begin_token, int end_seq, int end_token,
                                          int begin_split) {
  Piece p;
  p.src = PieceSource{};
  p.src.batch = seq / a.fold;
  p.s_base = seq - p.src.batch * a.fold;
  int len;
  if constexpr (Cfg::kSparse) {
    len = a.sparse_slots;
#pragma unroll
    for (int l = 0; l < 2; ++l) {
      const IndexListView& list = a.lists[l];
      p.src.list[l] = list.indices + p.src.batch * list.batch_stride + p.s_base * list.seq_stride;
      p.src.count[l] = list.topk_length != nullptr
                           ? max(0, min(list.topk, __ldg(list.topk_length + p.src.batch)))
                           : list.topk;
    }
  } else {
    len = max(a.cache_seqlens[p.src.batch], 0);
    p.src.table = a.block_table + p.src.batch * a.block_table_batch_stride;
  }
  p.seq_len = len;
  p.token_begin = seq == begin_seq ? min(begin_token, len) : 0;
  const int token_end = seq == end_seq ? min(end_token, len) : len;
  p.token_end = max(token_end, p.token_begin);
  const int32_t* offsets = a.schedule.split_offsets;
  const int splits = offsets[seq + 1] - offsets[seq];
  p.split_index = offsets[seq] + (seq == begin_seq ? begin_split : 0);
  p.write_final = splits <= 1;
  return p;
}

// The ping-pong 64-row loop and the warp-specialized FP8 one; defined in
// decode_piece_pingpong.cuh and decode_piece_fp8_ws.cuh, which decode_launch.cuh includes (they
// build on the helpers above).
template <class Cfg>
__device__ __forceinline__ void decode_piece_pingpong(uint8_t* smem, const DecodeKernelArgs& a,
                                                      const PieceSource& src, int s_base,
                                                      int seq_len, int kv_head, int row0,
                                                      int token_begin, int token_end,
                                                      int split_index, bool write_final);
namespace fp8ws {
template <class Cfg>
__device__ __forceinline__ void run_roles(uint8_t* smem, const DecodeKernelArgs& a, int kv_head,
                                          int row0, int begin_seq, int begin_token, int end_seq,
                                          int end_token, int begin_split);
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kBlockThreads, Cfg::kMinBlocks)
    decode_kernel(const __grid_constant__ DecodeKernelArgs a) {
  extern __shared__ __align__(1024) uint8_t smem[];
  // Let the combine kernel (a programmatic dependent launch) be scheduled early; it still waits
  // for this whole grid to finish before reading the partial results.
  asm volatile("griddepcontrol.launch_dependents;");
  // CTAs of one worker are adjacent (row tile fastest, then KV head) so that the ones reading
  // the same KV rows run at the same time and share them through L2.
  const int row_tile = blockIdx.x % a.row_tiles;
  const int kv_head = (blockIdx.x / a.row_tiles) % a.h_kv;
  const int worker = blockIdx.x / (a.row_tiles * a.h_kv);
  const int32_t* sched = a.schedule.worker_schedule + worker * kScheduleStride;
  const int begin_seq = sched[kBeginSeq];
  const int begin_token = sched[kBeginToken];
  const int end_seq = sched[kEndSeq];
  const int end_token = sched[kEndToken];
  const int begin_split = sched[kBeginSplit];
  const int32_t* offsets = a.schedule.split_offsets;
  uint32_t load_phase = 0;  // FP8 staging buffers: see decode_piece
  if constexpr (Cfg::kStaging) {
    if (threadIdx.x == 0) {
      for (int s = 0; s < Cfg::kStages; ++s) {
        ptx::mbarrier_init(ptx::smem_addr(smem) + Cfg::kOffBar + 8 * s, kFP8LoadArrivals<Cfg>);
      }
      ptx::fence_mbarrier_init();
    }
    // decode_piece starts with a barrier, before any arrival.
  }

  if constexpr (Cfg::kWarpSpecialized) {
    fp8ws::run_roles<Cfg>(smem, a, kv_head, row_tile * Cfg::kRows, begin_seq, begin_token, end_seq,
                          end_token, begin_split);
  } else {
    for (int seq = begin_seq; seq <= end_seq; ++seq) {
      PieceSource src{};
      src.batch = seq / a.fold;
      const int s_base = seq - src.batch * a.fold;
      int len;
      if constexpr (Cfg::kSparse) {
        len = a.sparse_slots;
#pragma unroll
        for (int l = 0; l < 2; ++l) {
          const IndexListView& list = a.lists[l];
          src.list[l] = list.indices + src.batch * list.batch_stride + s_base * list.seq_stride;
          src.count[l] = list.topk_length != nullptr
                             ? max(0, min(list.topk, __ldg(list.topk_length + src.batch)))
                             : list.topk;
        }
      } else {
        len = max(a.cache_seqlens[src.batch], 0);
        src.table = a.block_table + src.batch * a.block_table_batch_stride;
      }
      const int token_begin = seq == begin_seq ? min(begin_token, len) : 0;
      const int token_end = seq == end_seq ? min(end_token, len) : len;
      const int splits = offsets[seq + 1] - offsets[seq];
      const int split_index = offsets[seq] + (seq == begin_seq ? begin_split : 0);
      if constexpr (Cfg::kPingPong) {
        decode_piece_pingpong<Cfg>(smem, a, src, s_base, len, kv_head, row_tile * Cfg::kRows,
                                   token_begin, max(token_end, token_begin), split_index,
                                   splits <= 1);
      } else {
        decode_piece<Cfg>(smem, a, src, s_base, len, kv_head, row_tile * Cfg::kRows, token_begin,
                          max(token_end, token_begin), split_index, splits <= 1, load_phase);
      }
    }
  }
}

}  // namespace flashmla::detail::cuda::sm90
