// The ping-pong main loop of the 64-row decode kernel (native bf16/fp16 rows, d = 576 or 512;
// DecodeConfig::kPingPong). Design, measurements and next steps: bench/PINGPONG.md.
//
// Why: the serial loop (decode_piece) splits every 64-token tile by tokens between the two
// warpgroups (S at m64n32k16: shared-memory bound at ~2/3 of the tensor peak) and runs S, the
// softmax and P V in lockstep, so the tensor cores idle through every softmax and barrier. Here
// warpgroup w owns the tiles t = w, w + 2, ...: it computes S(t) = Q K(t)^T alone at N = 64
// (m64n64k16, 36 or 32 k-steps), the online softmax of its tile, and both warpgroups add
// P(t) V(t) into their own 256 value columns (m64n256k16; the owner with P in registers, the
// other with P from shared memory). While one warpgroup runs its softmax the other's wgmmas
// keep the tensor cores busy.
//
// Shapes (per warpgroup, 128 threads; thread = warp wm of the warpgroup, lane g = lane/4,
// t4 = lane%4; rows srow0 = 16 wm + g and srow1 = srow0 + 8; columns 8 j + 2 t4 (+1)):
//   sc[32]       S(t), the m64n64 accumulator: sc[4j + e] = (row srow0 | srow1 for e < 2 | >= 2,
//                column 8 j + 2 t4 + e % 2).
//   rp[4][4]     P(t) as bf16/fp16 pairs: rp[kk] is the m64k16 A fragment of k-step kk
//                (tokens 16 kk ..), i.e. rp[kk][i] = pack(P[8 kk + 2 i], P[8 kk + 2 i + 1]).
//   o[4][8][4]   O, the m64n256 accumulator for value columns 256 w .. 256 w + 255.
//   qr[4][4]     (d = 576) the A fragments of Q's last column block (rope, 64 columns).
//
// Shared memory (d = 576, bytes): Q 73728 (its last column block, 8192, is read into qr at the
// start of a piece and then holds warpgroup 1's P) + KV tiles 2 x 73728 + warpgroup 0's P 8192
// + red 512 + row 256 + maxima 512 (+ sparse validity 128) = 230656 (230784) of 232448.
// d = 512: Q 65536 + KV 2 x 65536 + P 2 x 8192 + 1280 (+128): Q stays whole in shared memory.
//
// Running maxima: m(t) = max(m(t - 1), rowmax S(t)) is one chain through both warpgroups. A
// warpgroup's O and row sum l are always relative to its register m_run; the owner of t computes
// m(t) from m_run = m(t - 1) (it rescaled to m(t - 1) when it added the other's P(t - 1)),
// publishes m(t) with P(t), and the other warpgroup rescales its O and l to m(t) before adding
// P(t) V(t). Both end at m(n - 1); the epilogue adds the two warpgroups' l.
//
// Per own tile t, warpgroup w (v = 1 - w; "retired" = its wgmma group waited for):
//   B  mask + scale S(t), row maxima (quad shuffles only: a row's 64 columns sit in one quad)
//   C  m(t), alpha = exp2(m_run - m(t))
//   D  P(t) -> rp and sP[w], m(t) -> sM[w]; fence.proxy.async; arrive P_READY[w]
//   E  O *= alpha; issue O += rp V(t)[:, half w]                      (RS, buffer w)
//   G  wait<0>; if t + 2 < n: sync FREE[w]; cp.async tile t + 2 into buffer w
//   F  if t + 1 < n: sync P_READY[v]; O, l *= exp2(m_run - m(t + 1)); issue
//      O += sP[v] V(t + 1)[:, half w] (SS, buffer v); wait<0>; if t + 3 < n: arrive FREE[v]
//   H  if t + 2 < n: cp.async.wait 0; fence.proxy.async; sync KV_READY[w] (128); issue S(t + 2);
//      wait<0>
// Warpgroup 1 first runs F for tile 0 (its O is zero, m_run = -inf).
//
// Hazards and how each is handled:
//   * Q, K(t) cp.async (generic proxy) -> wgmma reads (async proxy): every copying thread does
//     cp.async.wait_group + fence.proxy.async before the barrier that publishes the data
//     (__syncthreads in the prologue, KV_READY[w] for its own refills). V(t + 1) read by the
//     other warpgroup is published transitively: its loaders fenced and passed KV_READY before
//     S(t + 1), and P_READY[v] (arrived after that) is what the reader syncs on.
//   * P(t) st.shared -> the other warpgroup's wgmma: fence.proxy.async, then arrive P_READY[w].
//   * Buffer w (tile t) overwritten by the refill with t + 2: read by S(t) (retired before B), by
//     own P V(t) (retired by the wait<0> in G) and by v's P V(t) (v arrives FREE[w] only after
//     its wait<0>; w syncs FREE[w] before the copies). FREE[w] has all 128 threads of w in it,
//     so no thread of w can still be reading the sparse validity bytes of tile t (B) either.
//   * sP[w] / sM[w] overwritten by P(t + 2): v read them for P V(t) and rescaling; that P V is
//     retired before v arrives FREE[w], which w synced in G of tile t (t + 2 < n holds whenever
//     P(t + 2) exists).
//   * rp (A of the in-flight own P V) is rewritten only in D of the next own tile, after the
//     wait<0> in G; qr is never rewritten within a piece.
//   * sP[1] overlays Q's last column block (d = 576): both warpgroups load that block into qr and
//     then pass a __syncthreads before any P is stored; the next piece's Q load comes after the
//     __syncthreads that starts the piece (every wgmma of the piece retired by then).
//   * Barrier phases: every bar.arrive on an id is followed by the matching bar.sync before the
//     next arrive on it. P_READY[w]: w's next arrive (D of t + 2) comes after its sync of FREE[w]
//     in G of t, which v arrives after its sync of P_READY[w] for P(t). FREE[w]: v's next arrive
//     (after P V(t + 2)) follows its sync of P_READY[w] for P(t + 2), which w arrives after its
//     FREE[w] sync. Arrive and sync conditions are the same expressions of (t, n) on both sides
//     (FREE for tile t only if t + 2 < n; every P(t) is consumed), so all phases are complete when
//     the epilogue's __syncthreads runs.
//   * Accumulators are never touched between a wgmma's issue and its wait: S is waited for right
//     after its issue (the other warpgroup fills the tensor pipe meanwhile), own P V is waited
//     for in G before F rescales O, and F's P V is waited for before H. Every wait is in the same
//     branch as its issue, so ptxas needs no warpgroup.arrive injection (C7519 / C7517).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "cuda/sm90/decode/decode_kernel.cuh"

namespace flashmla::detail::cuda::sm90 {

namespace pingpong {
// Named barrier ids (0 is __syncthreads); add the warpgroup index.
inline constexpr int kBarPReady = 1;   // P(t), m(t) of warpgroup w published: w arrives, 1-w syncs
inline constexpr int kBarFree = 3;     // 1-w's P V on w's KV tile and sP[w] retired: 1-w arrives
inline constexpr int kBarKVReady = 5;  // w's own copies of its next tile landed (128 threads)
inline constexpr int kBoth = 256;
inline constexpr int kOne = 128;
}  // namespace pingpong

template <class Cfg>
__device__ __forceinline__ void decode_piece_pingpong(uint8_t* smem, const DecodeKernelArgs& a,
                                                      const PieceSource& src, int s_base,
                                                      int seq_len, int kv_head, int row0,
                                                      int token_begin, int token_end,
                                                      int split_index, bool write_final) {
  static_assert(Cfg::kPingPong && Cfg::kRows == 64 && Cfg::kTileN == 64 && Cfg::kThreads == 256);
  using Elem = typename Cfg::Elem;
  using Ops = wgmma::Ops<Elem>;
  using pingpong::kBoth;
  using pingpong::kOne;
  constexpr int kTileN = Cfg::kTileN;
  constexpr int kLoaders = 128;  // each warpgroup copies its own tiles
  const int tid = threadIdx.x;
  // This warpgroup owns tiles wg, wg + 2, ... (through a shuffle, so that ptxas knows it is
  // warp-uniform and keeps the wgmma descriptors built from it in uniform registers).
  const int wg = __shfl_sync(0xffffffffu, tid >> 7, 0);
  const int other = wg ^ 1;
  const int ltid = tid & 127;
  const int lane = tid & 31;
  const int wm = (tid >> 5) & 3;  // 16-row block within the warpgroup
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;

  const int num_tiles =
      token_end > token_begin ? (token_end - token_begin + kTileN - 1) / kTileN : 0;
  const uint32_t smem_base = ptx::smem_addr(smem);
  const uint32_t kv_own = Cfg::kOffKV + wg * Cfg::kKVBytes;
  const uint32_t kv_other = Cfg::kOffKV + other * Cfg::kKVBytes;
  const uint32_t p_own = wg == 0 ? Cfg::kOffP : Cfg::kOffP1;
  const uint32_t p_other = wg == 0 ? Cfg::kOffP1 : Cfg::kOffP;
  float* s_max = reinterpret_cast<float*>(smem + Cfg::kOffMax);  // [2][kRows]
  // Sparse: the validity bytes of this warpgroup's tile in flight (slot = buffer = wg).
  uint8_t* valid = smem + Cfg::kOffValid + (Cfg::kSparse ? wg * kTileN : 0);

  __syncthreads();  // the previous piece is done with every shared buffer

  // ---- Prologue: Q (all threads) and this warpgroup's first tile.
  bool bad = false;
  load_q_tile<Cfg>(smem, a, src.batch, s_base, kv_head, row0);
  if (wg < num_tiles) {
    const int start = token_begin + wg * kTileN;
    load_kv_tile_by<Cfg, kLoaders>(smem, kv_own, valid, a,
                                   fetch_row_ids_by<Cfg, kLoaders>(a, src, start, token_end, ltid),
                                   kv_head, start, bad, ltid);
  }
  ptx::cp_async_commit();
  // Row ids of this warpgroup's next tile (wg + 2), fetched a tile pair ahead of its copy.
  KVRowIds<Cfg, kLoaders> next_ids =
      fetch_row_ids_by<Cfg, kLoaders>(a, src, token_begin + (wg + 2) * kTileN, token_end, ltid);
  ptx::cp_async_wait<0>();
  wgmma::fence_proxy_async();  // Q and the first tiles -> wgmma reads
  __syncthreads();             // Q visible to both warpgroups, each first tile to its owner

  // d = 576: Q's last column block as A fragments (ldmatrix rows of this warp's 16-row block).
  uint32_t qr[Cfg::kQRegBlock ? 4 : 1][4];
  if constexpr (Cfg::kQRegBlock) {
    const int q_row = wm * 16 + (lane & 15);
    const uint32_t q_lane =
        smem_base + Cfg::kOffQ + (Cfg::kColBlocks - 1) * (Cfg::kRows << 7) + (q_row << 7);
    const int q_x = (lane >> 4) ^ (lane & 7);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      ptx::ldmatrix_x4(q_lane + (((2 * kk) ^ q_x) << 4), qr[kk][0], qr[kk][1], qr[kk][2],
                       qr[kk][3]);
    }
    __syncthreads();  // both warpgroups hold the block: warpgroup 1's P may overwrite it
  }

  const int2 limits = key_limits<Cfg>(a, s_base, seq_len, row0, srow0, srow1, token_end);
  const int limit0 = limits.x, limit1 = limits.y;
  float m_run0 = -INFINITY, m_run1 = -INFINITY;  // the maxima O and l are relative to (log2)
  float l0 = 0.f, l1 = 0.f;                      // this thread's share of the row sums
  float o[Cfg::kMTiles][8][4];
  float(&acc)[128] = reinterpret_cast<float(&)[128]>(o);
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  float sc[32];
  uint32_t rp[4][4];

  // S = Q K^T for the tile in this warpgroup's buffer: 64 x 64, k-steps over d.
  auto issue_s = [&] {
#pragma unroll
    for (int i = 0; i < 32; ++i) sc[i] = 0.f;
    wgmma::fence();
    const wgmma::SmemDesc q_desc(smem_base + Cfg::kOffQ, 16, 1024);
    const wgmma::SmemDesc k_desc(smem_base + kv_own, 16, 1024);
    constexpr int kSmemSteps = (Cfg::kColBlocks - (Cfg::kQRegBlock ? 1 : 0)) * 4;
#pragma unroll
    for (int kk = 0; kk < kSmemSteps; ++kk) {
      const int blk = kk >> 2;
      const uint32_t kbyte = (kk & 3) * 32;  // 16 elements along d inside the 128-byte atom
      Ops::template m64n64<0>(sc, q_desc.at(blk * (Cfg::kRows << 7) + kbyte),
                              k_desc.at(blk * (kTileN << 7) + kbyte));
    }
    if constexpr (Cfg::kQRegBlock) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        Ops::template m64n64_rs<0>(sc, qr[kk],
                                   k_desc.at((Cfg::kColBlocks - 1) * (kTileN << 7) + kk * 32));
      }
    }
    wgmma::commit();
  };
  // O *= alpha per row; skipped when no row of the warp changed its maximum (the common case
  // once a sequence's maxima have settled). Only called with no P V in flight.
  auto rescale_o = [&](float al0, float al1) {
    if (__any_sync(0xffffffffu, al0 != 1.f || al1 != 1.f)) {
#pragma unroll
      for (int i = 0; i < 128; ++i) acc[i] *= (i & 2) ? al1 : al0;
    }
  };
  // Step F for the other warpgroup's tile t: rescale to m(t), O += P(t) V(t) over this
  // warpgroup's value columns (P from shared memory), then free the other's buffers.
  auto add_other_tile = [&](int t) {
    ptx::bar_sync(pingpong::kBarPReady + other, kBoth);
    const float n0 = s_max[other * Cfg::kRows + srow0];
    const float n1 = s_max[other * Cfg::kRows + srow1];
    // A row that has seen no key keeps max -inf; subtract 0 then (exp2(-inf) = 0, not NaN).
    const float al0 = ptx::exp2_approx(m_run0 - (n0 == -INFINITY ? 0.f : n0));
    const float al1 = ptx::exp2_approx(m_run1 - (n1 == -INFINITY ? 0.f : n1));
    m_run0 = n0;
    m_run1 = n1;
    l0 *= al0;
    l1 *= al1;
    rescale_o(al0, al1);
    wgmma::fence();
    const wgmma::SmemDesc p_desc(smem_base + p_other, 16, 1024);
    // V N-major from the other's KV tile: column blocks 4 wg .. 4 wg + 3 (kTileN * 128 bytes
    // apart), 8-token groups 1024 bytes apart.
    const wgmma::SmemDesc v_desc(smem_base + kv_other + wg * 4 * (kTileN << 7), kTileN * 128, 1024);
#pragma unroll
    for (int kk = 0; kk < kTileN / 16; ++kk) {
      Ops::template m64n256<1>(acc, p_desc.at(kk * 32), v_desc.at(kk * 16 * 128));
    }
    wgmma::commit();
    wgmma::wait<0>();
    if (t + 2 < num_tiles) ptx::bar_arrive(pingpong::kBarFree + other, kBoth);
  };

  if (wg < num_tiles) {
    issue_s();
    wgmma::wait<0>();
  }
  if (wg == 1 && num_tiles > 0) add_other_tile(0);

  for (int t = wg; t < num_tiles; t += 2) {
    const int tile_start = token_begin + t * kTileN;
    // ---- B: log2-domain scores, masked (past the piece / causal limit / invalid sparse slot).
    const float2 mx =
        scale_mask_row_max<Cfg::kSparse>(sc, t4, tile_start, make_int2(limit0, limit1),
                                         a.scale_log2, [&](int col) { return valid[col] != 0; });
    const float mx0 = mx.x, mx1 = mx.y;
    // ---- C: m(t) and the rescale factor of this warpgroup's O and l.
    const float new0 = fmaxf(m_run0, mx0), new1 = fmaxf(m_run1, mx1);
    const float use0 = new0 == -INFINITY ? 0.f : new0;
    const float use1 = new1 == -INFINITY ? 0.f : new1;
    const float al0 = ptx::exp2_approx(m_run0 - use0);
    const float al1 = ptx::exp2_approx(m_run1 - use1);
    m_run0 = new0;
    m_run1 = new1;
    // ---- D: P(t) into registers and into sP[wg] (128-byte swizzled rows) for the other
    // warpgroup, m(t) into sM[wg].
    const float2 sums =
        p_to_regs_and_smem<Elem>(sc, use0, use1, rp, smem + p_own, srow0, srow1, t4);
    const float sum0 = sums.x, sum1 = sums.y;
    if (t4 == 0) {
      s_max[wg * Cfg::kRows + srow0] = new0;
      s_max[wg * Cfg::kRows + srow1] = new1;
    }
    l0 = l0 * al0 + sum0;
    l1 = l1 * al1 + sum1;
    wgmma::fence_proxy_async();  // sP[wg] -> the other warpgroup's wgmma
    ptx::bar_arrive(pingpong::kBarPReady + wg, kBoth);
    // ---- E: O = O * alpha + P(t) V(t) over this warpgroup's value columns, P from registers.
    rescale_o(al0, al1);
    wgmma::fence();
    {
      const wgmma::SmemDesc v_desc(smem_base + kv_own + wg * 4 * (kTileN << 7), kTileN * 128, 1024);
#pragma unroll
      for (int kk = 0; kk < kTileN / 16; ++kk) {
        Ops::template m64n256_rs<1>(acc, rp[kk], v_desc.at(kk * 16 * 128));
      }
    }
    wgmma::commit();
    // ---- G: once both P V(t) have retired, refill this warpgroup's buffer with tile t + 2.
    wgmma::wait<0>();
    if (t + 2 < num_tiles) {
      ptx::bar_sync(pingpong::kBarFree + wg, kBoth);
      const int start = tile_start + 2 * kTileN;
      load_kv_tile_by<Cfg, kLoaders>(smem, kv_own, valid, a, next_ids, kv_head, start, bad, ltid);
      ptx::cp_async_commit();
      if (t + 4 < num_tiles) {
        next_ids = fetch_row_ids_by<Cfg, kLoaders>(a, src, start + 2 * kTileN, token_end, ltid);
      }
    }
    // ---- F: the other warpgroup's next tile.
    if (t + 1 < num_tiles) add_other_tile(t + 1);
    // ---- H: S(t + 2) once its copies have landed.
    if (t + 2 < num_tiles) {
      ptx::cp_async_wait<0>();
      wgmma::fence_proxy_async();  // cp.async data -> wgmma reads
      ptx::bar_sync(pingpong::kBarKVReady + wg, kOne);
      issue_s();
      wgmma::wait<0>();
    }
  }

  finish_piece<Cfg>(smem, a, src, s_base, kv_head, row0, split_index, write_final, bad, m_run0,
                    m_run1, l0, l1, o);
}

}  // namespace flashmla::detail::cuda::sm90
