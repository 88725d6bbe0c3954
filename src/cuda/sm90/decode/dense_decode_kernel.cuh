// The split-KV dense MLA decode kernel (tensor-core mma.sync version).
//
// One CTA = one (worker, KV head, query-row tile). The worker's contiguous range of
// (sequence, token) work comes from the split schedule (common/split_plan.h); for each piece of a
// sequence the CTA:
//   1. loads its Q tile (kRows query rows x d) into shared memory,
//   2. streams the piece's KV rows through a kStages-deep cp.async pipeline of kTileN tokens,
//   3. per tile computes S = Q K^T (8 warps on a kSWarpsM x kSWarpsN grid), an online softmax
//      in registers (row maxima exchanged through shared memory), writes P to shared memory and
//      accumulates O += P V with every warp owning 64 of the 512 value columns for all rows,
//   4. writes O / l and lse either to the final output (the sequence has one split) or to the
//      fp32 split workspace that the combine kernel merges.
//
// Shared-memory tiles use the canonical 128-byte-swizzle layout of Hopper's wgmma: the tile is cut
// into column blocks of 64 elements (128 bytes), each stored row after row, and the 16-byte chunk
// c of row r sits at chunk position c ^ (r % 8). ldmatrix over 8 consecutive rows is then free of
// bank conflicts, and a later wgmma version can read the same buffers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "common/decode_params.h"
#include "common/split_plan.h"
#include "cuda/sm90/decode/ptx.cuh"

namespace flashmla::detail::cuda::sm90 {

// Everything the kernel needs besides the API's params: derived once on the host.
struct DenseDecodeArgs {
  DenseDecodeParams p;
  int rows;          // s_q * q_per_kv: query rows per KV head
  int row_tiles;     // ceil(rows / kRows)
  float scale_log2;  // softmax_scale * log2(e): scores are kept in the exp2 domain
  bool q_aligned;    // q rows start on 16 bytes: cp.async may be used
  bool kv_aligned;   // likewise for KV rows
};

template <typename Elem_, int kD_, int kRows_, int kTileN_, int kStages_>
struct DecodeConfig {
  using Elem = Elem_;
  static constexpr int kD = kD_;            // head dim of q and k: 576 or 512
  static constexpr int kRows = kRows_;      // query rows per CTA: 16, 32 or 64
  static constexpr int kTileN = kTileN_;    // KV tokens per pipeline stage: 32 or 64
  static constexpr int kStages = kStages_;  // pipeline depth
  static constexpr int kThreads = 256;
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
  static constexpr int kPBytes = kRows * kPRowBytes;
  static constexpr int kOffQ = 0;
  static constexpr int kOffKV = kOffQ + kQBytes;
  static constexpr int kOffP = kOffKV + kStages * kKVBytes;
  static constexpr int kOffRed = kOffP + kPBytes;               // float [kSWarpsN][kRows]
  static constexpr int kOffRow = kOffRed + kSWarpsN * kRows * 4;  // float [kRows]
  static constexpr int kSmemBytes = kOffRow + kRows * 4;
  static_assert(kSmemBytes <= 227 * 1024, "exceeds the 227 KB a Hopper CTA may use");
  static_assert(kTileN == 32 || kTileN == 64, "P tile swizzle handles 64- and 128-byte rows");
};

// Byte offset of 16-byte chunk `chunk` (0 .. d/8-1) of row `r` in a swizzled tile of `R` rows.
template <int R>
__device__ __forceinline__ uint32_t tile_chunk_offset(int r, int chunk) {
  return static_cast<uint32_t>((((chunk >> 3) * R + r) << 7) + (((chunk & 7) ^ (r & 7)) << 4));
}

// Byte offset of 16-byte chunk `chunk` of row `r` in the P tile (kTileN*2 bytes per row).
template <int kPRowBytes>
__device__ __forceinline__ uint32_t p_chunk_offset(int r, int chunk) {
  if constexpr (kPRowBytes == 128) {
    return static_cast<uint32_t>((r << 7) + ((chunk ^ (r & 7)) << 4));
  } else {  // 64-byte rows: two rows share a 128-byte line, so swizzle with bits 1-2 of r
    return static_cast<uint32_t>((r << 6) + ((chunk ^ ((r >> 1) & 3)) << 4));
  }
}

// Copies 16 bytes (8 elements) from global to shared memory without cp.async, for rows that are
// not 16-byte aligned. Slow, but only strided views that no framework produces take this path.
template <typename Elem>
__device__ __forceinline__ void copy_16_unaligned(uint8_t* smem_base, uint32_t offset,
                                                  const Elem* src, bool valid) {
  uint16_t v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    v[i] = valid ? reinterpret_cast<const uint16_t*>(src)[i] : uint16_t{0};
  }
  uint4 packed;
  packed.x = v[0] | (uint32_t{v[1]} << 16);
  packed.y = v[2] | (uint32_t{v[3]} << 16);
  packed.z = v[4] | (uint32_t{v[5]} << 16);
  packed.w = v[6] | (uint32_t{v[7]} << 16);
  *reinterpret_cast<uint4*>(smem_base + offset) = packed;
}

// Loads query rows [row0, row0 + kRows) of (seq, kv_head) into sQ; rows past `rows` are zeros.
template <class Cfg>
__device__ __forceinline__ void load_q_tile(uint8_t* smem, const DenseDecodeArgs& a, int seq,
                                            int kv_head, int row0) {
  using Elem = typename Cfg::Elem;
  const DenseDecodeParams& p = a.p;
  const int c_lo = threadIdx.x & 7;  // 8 threads per row, each a 16-byte chunk of every block
  constexpr int kRowsPerPass = Cfg::kThreads / 8;
#pragma unroll
  for (int pass = 0; pass < (Cfg::kRows + kRowsPerPass - 1) / kRowsPerPass; ++pass) {
    const int r = (threadIdx.x >> 3) + pass * kRowsPerPass;
    if (r < Cfg::kRows) {
      const int gr = row0 + r;
      const bool valid = gr < a.rows;
      const Elem* src = static_cast<const Elem*>(p.q);
      if (valid) {
        const int s = gr / p.q_per_kv;
        const int h = kv_head * p.q_per_kv + (gr - s * p.q_per_kv);
        src += seq * p.q_batch_stride + s * p.q_seq_stride + h * p.q_head_stride;
      }
#pragma unroll
      for (int blk = 0; blk < Cfg::kColBlocks; ++blk) {
        const int chunk = blk * 8 + c_lo;
        const uint32_t off = Cfg::kOffQ + tile_chunk_offset<Cfg::kRows>(r, chunk);
        if (a.q_aligned) {
          ptx::cp_async_16(ptx::smem_addr(smem) + off, src + chunk * 8, valid);
        } else {
          copy_16_unaligned(smem, off, src + chunk * 8, valid);
        }
      }
    }
  }
}

// Loads KV tokens [tile_start, tile_start + kTileN) of (seq, kv_head) into one pipeline stage.
// Tokens at or past `token_end` are zero-filled and never read: their pages may not exist, and a
// NaN there would poison P V even under a zero weight. A block id outside the cache marks the
// piece bad instead of being dereferenced.
template <class Cfg>
__device__ __forceinline__ void load_kv_tile(uint8_t* smem, uint32_t stage_offset,
                                             const DenseDecodeArgs& a, const int32_t* block_row,
                                             int kv_head, int tile_start, int token_end,
                                             bool& bad) {
  using Elem = typename Cfg::Elem;
  const DenseDecodeParams& p = a.p;
  const KVCacheView& kv = p.kv;
  const int c_lo = threadIdx.x & 7;
  constexpr int kRowsPerPass = Cfg::kThreads / 8;
  static_assert(Cfg::kTileN % kRowsPerPass == 0, "whole passes");
#pragma unroll
  for (int pass = 0; pass < Cfg::kTileN / kRowsPerPass; ++pass) {
    const int r = (threadIdx.x >> 3) + pass * kRowsPerPass;
    const int t = tile_start + r;
    bool valid = t < token_end;
    const Elem* src = static_cast<const Elem*>(kv.data);
    if (valid) {
      const int page = t / kv.page_block_size;
      const int block = page < p.max_blocks_per_seq ? block_row[page] : -1;
      if (block < 0 || block >= kv.num_blocks) {
        bad = true;
        valid = false;
      } else {
        src += block * kv.block_stride + (t - page * kv.page_block_size) * kv.row_stride +
               kv_head * kv.head_stride;
      }
    }
#pragma unroll
    for (int blk = 0; blk < Cfg::kColBlocks; ++blk) {
      const int chunk = blk * 8 + c_lo;
      const uint32_t off = stage_offset + tile_chunk_offset<Cfg::kTileN>(r, chunk);
      if (a.kv_aligned) {
        ptx::cp_async_16(ptx::smem_addr(smem) + off, src + chunk * 8, valid);
      } else {
        copy_16_unaligned(smem, off, src + chunk * 8, valid);
      }
    }
  }
}

// Processes one piece (a token range of one sequence) for this CTA's KV head and row tile.
template <class Cfg>
__device__ __forceinline__ void decode_piece(uint8_t* smem, const DenseDecodeArgs& a, int seq,
                                             int kv_head, int row0, int token_begin,
                                             int token_end, int split_index, bool write_final) {
  using Elem = typename Cfg::Elem;
  const DenseDecodeParams& p = a.p;
  const int tid = threadIdx.x;
  const int warp = tid >> 5;
  const int lane = tid & 31;
  const int g = lane >> 2;  // accumulator row within an 8-row group
  const int t4 = lane & 3;  // accumulator column pair

  const int seq_len = max(p.cache_seqlens[seq], 0);
  const int32_t* block_row = p.block_table + static_cast<int64_t>(seq) * p.block_table_batch_stride;
  const int num_tiles = token_end > token_begin ? (token_end - token_begin + Cfg::kTileN - 1) / Cfg::kTileN : 0;

  float* red = reinterpret_cast<float*>(smem + Cfg::kOffRed);      // [kSWarpsN][kRows]
  float* row_val = reinterpret_cast<float*>(smem + Cfg::kOffRow);  // [kRows]

  __syncthreads();  // the previous piece is done with every shared buffer

  bool bad = false;
  load_q_tile<Cfg>(smem, a, seq, kv_head, row0);
  ptx::cp_async_commit();
#pragma unroll
  for (int s = 0; s < Cfg::kStages - 1; ++s) {
    if (s < num_tiles) {
      load_kv_tile<Cfg>(smem, Cfg::kOffKV + s * Cfg::kKVBytes, a, block_row, kv_head,
                        token_begin + s * Cfg::kTileN, token_end, bad);
    }
    ptx::cp_async_commit();  // empty groups keep the wait counts uniform
  }

  // ---- S-warp state: this thread's two rows (g and g + 8 of the warp's 16-row block).
  const bool s_warp = warp < Cfg::kSWarps;
  const int wm = warp % Cfg::kSWarpsM;
  const int wn = warp / Cfg::kSWarpsM;
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;
  // Exclusive key limits of the two rows: the piece's end, and with causal masking query j of
  // s_q sees keys 0 .. s_k - s_q + j.
  int limit0 = token_end, limit1 = token_end;
  if (p.causal) {
    const int s0 = (row0 + srow0) / p.q_per_kv;
    const int s1 = (row0 + srow1) / p.q_per_kv;
    limit0 = min(limit0, seq_len - p.s_q + s0 + 1);
    limit1 = min(limit1, seq_len - p.s_q + s1 + 1);
  }
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 domain)
  float l0 = 0.f, l1 = 0.f;              // this thread's share of the running sums

  // ---- PV state: all kRows rows x this warp's 64 value columns.
  float o[Cfg::kMTiles][8][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nt][e] = 0.f;
  const bool pv_warp = warp * 64 < p.dv;  // columns past dv need no work

  const uint32_t smem_base = ptx::smem_addr(smem);
  // Per-lane ldmatrix addressing (see tile_chunk_offset): the row of every lane is fixed, and
  // the chunk of k-step kk is 2*(kk%4) + hi, whose swizzled position is (2*(kk%4)) ^ (hi ^ r%8).
  const int q_row = wm * 16 + (lane & 15);
  const uint32_t q_lane = smem_base + Cfg::kOffQ + (q_row << 7);
  const int q_x = (lane >> 4) ^ (lane & 7);
  const int k_row = wn * Cfg::kSNTiles * 8 + (lane & 7) + (Cfg::kSNTiles >= 2 ? ((lane >> 4) << 3) : 0);
  const int k_x = ((lane >> 3) & 1) ^ (lane & 7);
  const int v_row = (lane & 7) + (((lane >> 3) & 1) << 3);
  const int v_x = (lane >> 4) ^ (lane & 7);

  int read_stage = 0;
  int write_stage = Cfg::kStages - 1;
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int tile_start = token_begin + tile * Cfg::kTileN;
    ptx::cp_async_wait<Cfg::kStages - 2>();
    __syncthreads();  // tile `tile` (and Q) visible; everyone is done with the previous tile

    // Refill the stage the previous tile used.
    if (tile + Cfg::kStages - 1 < num_tiles) {
      load_kv_tile<Cfg>(smem, Cfg::kOffKV + write_stage * Cfg::kKVBytes, a, block_row, kv_head,
                        tile_start + (Cfg::kStages - 1) * Cfg::kTileN, token_end, bad);
    }
    ptx::cp_async_commit();
    write_stage = write_stage + 1 == Cfg::kStages ? 0 : write_stage + 1;

    const uint32_t kv_stage = smem_base + Cfg::kOffKV + read_stage * Cfg::kKVBytes;
    read_stage = read_stage + 1 == Cfg::kStages ? 0 : read_stage + 1;

    float sc[Cfg::kSNTiles][4];
    if (s_warp) {
      // ---- S = Q K^T for this warp's 16 x (kSNTiles*8) block.
#pragma unroll
      for (int nt = 0; nt < Cfg::kSNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) sc[nt][e] = 0.f;
      const uint32_t k_lane = kv_stage + (k_row << 7);
#pragma unroll
      for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
        const int blk = kk >> 2;
        const int j2 = (kk & 3) << 1;
        uint32_t qa[4];
        ptx::ldmatrix_x4(q_lane + blk * (Cfg::kRows << 7) + ((j2 ^ q_x) << 4), qa[0], qa[1], qa[2],
                         qa[3]);
        const uint32_t k_addr = k_lane + blk * (Cfg::kTileN << 7) + ((j2 ^ k_x) << 4);
        if constexpr (Cfg::kSNTiles == 1) {
          uint32_t b0, b1;
          ptx::ldmatrix_x2(k_addr, b0, b1);
          ptx::mma_16816<Elem>(sc[0], qa, b0, b1);
        } else {
#pragma unroll
          for (int nt = 0; nt < Cfg::kSNTiles; nt += 2) {
            uint32_t b0, b1, b2, b3;
            ptx::ldmatrix_x4(k_addr + ((nt * 8) << 7), b0, b1, b2, b3);
            ptx::mma_16816<Elem>(sc[nt], qa, b0, b1);
            ptx::mma_16816<Elem>(sc[nt + 1], qa, b2, b3);
          }
        }
      }
      // ---- Scale to the log2 domain, mask, and take this warp's row maxima.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < Cfg::kSNTiles; ++nt) {
        const int tok = tile_start + wn * Cfg::kSNTiles * 8 + nt * 8 + 2 * t4;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          sc[nt][e] = tok + e < limit0 ? sc[nt][e] * a.scale_log2 : -INFINITY;
          sc[nt][2 + e] = tok + e < limit1 ? sc[nt][2 + e] * a.scale_log2 : -INFINITY;
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
      const float alpha0 = ptx::exp2_approx(m0 - use0);
      const float alpha1 = ptx::exp2_approx(m1 - use1);
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
        *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<Cfg::kPRowBytes>(srow0, chunk) + in_chunk) =
            ptx::pack2<Elem>(p0, p1);
        *reinterpret_cast<uint32_t*>(sp + p_chunk_offset<Cfg::kPRowBytes>(srow1, chunk) + in_chunk) =
            ptx::pack2<Elem>(p2, p3);
      }
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
      if (wn == 0 && t4 == 0) {
        row_val[srow0] = alpha0;
        row_val[srow1] = alpha1;
      }
    }
    __syncthreads();  // P and the rescale factors are visible

    if (pv_warp) {
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
  const bool any_bad = __syncthreads_or(bad) != 0;

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
      row_val[r] = inv;
      const int gr = row0 + r;
      if (gr < a.rows) {
        const int s = gr / p.q_per_kv;
        const int h = kv_head * p.q_per_kv + (gr - s * p.q_per_kv);
        if (write_final) {
          p.lse[seq * p.lse_batch_stride + h * p.lse_head_stride + s * p.lse_seq_stride] = lse;
        } else {
          p.schedule.partial_lse[(static_cast<int64_t>(split_index) * p.s_q + s) * p.h_q + h] = lse;
        }
      }
    }
  }
  __syncthreads();  // 1/l per row is visible

  if (!pv_warp) return;
#pragma unroll
  for (int mt = 0; mt < Cfg::kMTiles; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = mt * 16 + g + half * 8;
      const int gr = row0 + r;
      if (gr >= a.rows) continue;
      const float inv = row_val[r];
      const int s = gr / p.q_per_kv;
      const int h = kv_head * p.q_per_kv + (gr - s * p.q_per_kv);
      if (write_final) {
        Elem* out = static_cast<Elem*>(p.out) + seq * p.out_batch_stride + s * p.out_seq_stride +
                    h * p.out_head_stride;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const int col = warp * 64 + nt * 8 + 2 * t4;
          const float x0 = o[mt][nt][2 * half] * inv, x1 = o[mt][nt][2 * half + 1] * inv;
          if (col + 1 < p.dv && (reinterpret_cast<uintptr_t>(out + col) & 3) == 0) {
            *reinterpret_cast<uint32_t*>(out + col) = ptx::pack2<Elem>(x0, x1);
          } else {
            if (col < p.dv) out[col] = ptx::from_float<Elem>(x0);
            if (col + 1 < p.dv) out[col + 1] = ptx::from_float<Elem>(x1);
          }
        }
      } else {
        float* out = p.schedule.partial_out +
                     ((static_cast<int64_t>(split_index) * p.s_q + s) * p.h_q + h) * p.dv;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const int col = warp * 64 + nt * 8 + 2 * t4;
          const float x0 = o[mt][nt][2 * half] * inv, x1 = o[mt][nt][2 * half + 1] * inv;
          if (col + 1 < p.dv && (p.dv & 1) == 0) {
            *reinterpret_cast<float2*>(out + col) = make_float2(x0, x1);
          } else {
            if (col < p.dv) out[col] = x0;
            if (col + 1 < p.dv) out[col + 1] = x1;
          }
        }
      }
    }
  }
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1)
    dense_decode_kernel(const __grid_constant__ DenseDecodeArgs a) {
  extern __shared__ __align__(1024) uint8_t smem[];
  const DenseDecodeParams& p = a.p;
  // CTAs of one worker are adjacent (row tile fastest, then KV head) so that the ones reading
  // the same KV rows run at the same time and share them through L2.
  const int row_tile = blockIdx.x % a.row_tiles;
  const int kv_head = (blockIdx.x / a.row_tiles) % p.h_kv;
  const int worker = blockIdx.x / (a.row_tiles * p.h_kv);
  const int32_t* sched = p.schedule.worker_schedule + worker * kScheduleStride;
  const int begin_seq = sched[kBeginSeq];
  const int begin_token = sched[kBeginToken];
  const int end_seq = sched[kEndSeq];
  const int end_token = sched[kEndToken];
  const int begin_split = sched[kBeginSplit];
  const int32_t* offsets = p.schedule.split_offsets;

  for (int seq = begin_seq; seq <= end_seq; ++seq) {
    const int len = max(p.cache_seqlens[seq], 0);
    const int token_begin = seq == begin_seq ? min(begin_token, len) : 0;
    const int token_end = seq == end_seq ? min(end_token, len) : len;
    const int splits = offsets[seq + 1] - offsets[seq];
    const int split_index = offsets[seq] + (seq == begin_seq ? begin_split : 0);
    decode_piece<Cfg>(smem, a, seq, kv_head, row_tile * Cfg::kRows, token_begin,
                      max(token_end, token_begin), split_index, splits <= 1);
  }
}

}  // namespace flashmla::detail::cuda::sm90
