// The warp-specialized main loop of the 64-row FP8 decode kernel, in 2-CTA clusters
// (DecodeConfig::kWarpSpecialized; the default for aligned FP8 rows in pairs of 64-row tiles;
// FLASHMLA_FP8_64ROW=serial selects decode_piece for A/B).
//
// Why: the serial FP8 loop (decode_piece) converts each staging buffer into its single operand
// tile between two barriers, so per tile the loads' latency, the conversion and the tensor work
// add up. Here a third warpgroup per CTA, the producer, owns the KV stream, and the two CTAs of a
// cluster are the two row tiles of one (worker, KV head): they read the same KV tiles, so each
// producer (rank r) loads and converts only passes 2r and 2r + 1 (32 of the 64 rows) of every
// tile, stores them into its own buffer t % 2 (st.shared), and each producer warp copies its rows
// into the peer's buffer with the bulk-copy engine (cp.async.bulk shared::cta -> shared::cluster).
// (One CTA's producer alone, converting all 64 rows, could not keep up: 645 against the serial
// loop's 578 us on sparse b = 128, h_q = 128; session 7 in bench/NOTES.md.)
//
// Roles (384 threads): warpgroups 0 and 1 (threads 0-255) are the math warps. Two consumers
// (the launcher picks one, decode_launch.cuh): the split one (consume_tiles_split, below) where
// the workers have many tiles; elsewhere decode_piece's wgmma path, unchanged in layout: warpgroup
// wn computes S for tokens 32 wn .. 32 wn + 31 of the tile (m64n32k16), the row maxima are
// exchanged through `red`, both write P to shared memory, and each adds P V into its 256 value
// columns (m64n256k16). Warpgroup 2 (threads 256-383) is the producer: 8 threads per row, 16 rows
// per pass; per pass a thread loads 16-byte chunks c_lo + 8 j (j = 0..3, one per scale group) of
// the row's 512 FP8 values, the row's scales and rope chunk c_lo, converts and stores them swizzled
// (tile_chunk_offset); a warp's 4 rows of a pass are then 512 contiguous bytes per 64-column
// block, which its lane 0 copies into the peer (9 bulk copies per warp and pass). Its two passes
// live in registers as a ring: once pass q of tile t is stored, its slot loads pass q of t + 1.
//
// Shared memory: Q 73728 + KV 2 x 73728 + P 8192 + red 512 + row 256 bytes, then per buffer the
// rows' 32-bit validity words and the producer warps' `bad` words, the mbarriers and the split
// consumer's per-row rescale factors (kOffValid32, kOffPairFlags, kOffPairBars, kOffScale); no
// staging buffers.
//
// Synchronization, per buffer b (mbarriers; their phases run on across pieces, since both CTAs
// walk the same pieces, so no barrier separates pieces):
//   LOCAL_READY[b] (128 arrivals): this CTA's producer threads, after their stores and a proxy
//     fence (st.shared is a generic-proxy write; wgmma and the bulk copies read through the async
//     proxy).
//   REMOTE_READY[b] (1 arrival + bytes): this CTA's producer announces the bytes the peer's bulk
//     copies and st.async stores (validity and `bad` words) will bring (kRemoteBytes), whose
//     completion ends the phase.
//   AVAILABLE[b] (4 arrivals): each math warpgroup of both CTAs, once its P V of the buffer
//     retired; the producers wait for it before refilling buffer b.
// Named barriers (never barrier 0: the roles would reach it at different instructions, which the
// aligned bar.sync / bar.red do not allow): MATH (11, the 256 math threads) in place of
// decode_piece's __syncthreads, P_READY (9) and P_FREE (10) between the split consumer's two
// warpgroups. A cluster barrier starts the kernel (after the mbarrier init) and ends it, so that
// no CTA exits while its peer may still copy into it, read its copies' sources or arrive on its
// barriers (a CTA reaches the end only after its last REMOTE_READY, so the peer's copies are
// done by then).
//
// `bad` (a row id outside the cache) and the sparse validity travel with each tile: every math
// thread ORs the tile's eight `bad` words (two ranks, four producer warps), and the epilogue
// turns the piece into NaN.
//
// Registers: ptxas compiles for 168 per thread (384 threads, one CTA per SM); setmaxnreg then
// gives the math warpgroups 184 each (split consumer: 208 and 160) and the producer 136 (no
// spills, CUDA 13.0).
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/sm90/decode/decode_kernel.cuh"

namespace flashmla::detail::cuda::sm90 {

namespace fp8ws {
inline constexpr int kAll = 384;
inline constexpr int kMath = 256;
inline constexpr int kMathRegs = 184;
inline constexpr int kProducerRegs = 136;
// setmaxnreg.inc only takes registers that this CTA's own setmaxnreg.dec gave back: the three
// warpgroups must fit in what the launch gave them (168 each at 384 threads), or the math warps
// wait forever (a draft that asked for 184 + 184 + 144 = 512 > 504 hung).
inline constexpr int kLaunchRegs = 65536 / kAll / 8 * 8;
static_assert(2 * kMathRegs + kProducerRegs <= 3 * kLaunchRegs, "registers the launch gave");
// Split consumer: the softmax warpgroup, the accumulating one, the producer.
inline constexpr int kSoftmaxRegs = 208;
inline constexpr int kAccumulateRegs = 160;
static_assert(kSoftmaxRegs + kAccumulateRegs + kProducerRegs <= 3 * kLaunchRegs,
              "registers the launch gave");

// One producer thread's share of one FP8 row (pass) in registers: 24 of them.
struct FP8RowPart {
  uint4 latent[4], scales, rope;
};

// Loads this thread's part of `row` (nullptr: a skipped row, which becomes zeros and converts to
// zeros; its page may not exist, and a NaN would poison P V).
__device__ __forceinline__ void load_row_part(const uint8_t* row, int c_lo, FP8RowPart& d) {
  if (row != nullptr) {
#pragma unroll
    for (int j = 0; j < 4; ++j) d.latent[j] = ptx::ld_global_nc_16(row + (c_lo + 8 * j) * 16);
    d.scales = ptx::ld_global_nc_16(row + kFP8ScaleOffset);
    d.rope = ptx::ld_global_nc_16(row + kFP8RopeOffset + c_lo * 16);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) d.latent[j] = make_uint4(0u, 0u, 0u, 0u);
    d.scales = make_uint4(0u, 0u, 0u, 0u);
    d.rope = make_uint4(0u, 0u, 0u, 0u);
  }
}

// Bytes the peer's producer brings into this CTA per tile: 32 bf16 rows (bulk copies), their
// validity words and its four warps' `bad` words (st.async).
template <class Cfg>
inline constexpr uint32_t kRemoteBytes = 32 * Cfg::kD * 2 + 32 * 4 + 4 * 4;

// The mbarriers of buffer b (see the file comment).
inline constexpr int kLocalReady = 0;
inline constexpr int kRemoteReady = 1;
inline constexpr int kAvailable = 2;
template <class Cfg>
__device__ __forceinline__ uint32_t bar_addr(uint32_t smem_base, int kind, int b) {
  return smem_base + Cfg::kOffPairBars + 8 * (2 * kind + b);
}

// Did any producer warp of either CTA find a row id outside the cache in buffer b's tile? (Read
// after the buffer's ready barriers.)
template <class Cfg>
__device__ __forceinline__ bool tile_bad(uint32_t smem_base, int b) {
  uint32_t w[8];
  const uint32_t addr = smem_base + Cfg::kOffPairFlags + 32 * b;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
               : "r"(addr)
               : "memory");
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(w[4]), "=r"(w[5]), "=r"(w[6]), "=r"(w[7])
               : "r"(addr + 16)
               : "memory");
  return ((w[0] | w[1] | w[2] | w[3]) | (w[4] | w[5] | w[6] | w[7])) != 0;
}

// The math warps' wait for both halves of the tile in buffer b (this CTA's producer's and the
// peer's); `ready_phase` bit b is the parity of the buffer's next phase. Returns the tile's
// `bad`. The peer's bulk-copy and st.async bytes complete this CTA's own barrier: the CTA-scope
// wait suffices (as for TMA multicast); the cluster-scope acquire added an L1 invalidation
// (CCTL.IVALL).
template <class Cfg>
__device__ __forceinline__ bool wait_tile(uint32_t smem_base, int b, uint32_t& ready_phase) {
  const uint32_t parity = (ready_phase >> b) & 1u;
  ptx::mbarrier_wait(bar_addr<Cfg>(smem_base, kLocalReady, b), parity);
  ptx::mbarrier_wait(bar_addr<Cfg>(smem_base, kRemoteReady, b), parity);
  ready_phase ^= 1u << b;
  return tile_bad<Cfg>(smem_base, b);
}

// One producer thread's share of one row into this CTA's tile, and with Cfg::kPeerBulk off also
// into the peer's (st.async; otherwise the warp copies its rows over afterwards).
template <class Cfg, bool kBf16Scale>
__device__ __forceinline__ void store_row_part(uint32_t local_tile, uint32_t remote_tile,
                                               uint32_t remote_bar, int r, int c_lo,
                                               const FP8RowPart& d) {
  const uint32_t scale_bits[4] = {d.scales.x, d.scales.y, d.scales.z, d.scales.w};
  auto put = [&](int chunk, const uint4& v) {
    const uint32_t off = tile_chunk_offset<Cfg::kTileN>(r, chunk);
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(local_tile + off), "r"(v.x),
                 "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
    if constexpr (!Cfg::kPeerBulk) ptx::st_async_16(remote_tile + off, v, remote_bar);
  };
  // A 16-byte store is served a quarter-warp (one row's 8 threads) at a time, and chunks 2 c_lo
  // and 2 (c_lo + 4) fall into the same 16-byte slot of the swizzle (tile_chunk_offset): ncu
  // counted 8 wavefronts instead of 4 for every latent store. So threads c_lo >= 4 convert their
  // input halves swapped and store the odd chunk first (4 SEL per 16 values). Regrouping the
  // threads instead (two rows per quarter-warp) removed the conflicts too, but split each
  // quarter-warp's 128-byte row load in two and was slower (bench/NOTES.md, session 9).
  const bool odd_first = (c_lo & 4) != 0;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float scale = __uint_as_float(scale_bits[j]);
    const uint4& in = d.latent[j];
    const uint4 v = odd_first ? make_uint4(in.z, in.w, in.x, in.y) : in;
    uint4 first, second;
    dequant_16<kBf16Scale>(v, scale, __float2bfloat162_rn(scale), first, second);
    const int chunk = 2 * (c_lo + 8 * j) + (odd_first ? 1 : 0);
    put(chunk, first);
    put(chunk ^ 1, second);
  }
  put(64 + c_lo, d.rope);
}

// The producer of CTA `rank`: every tile of the piece, its two passes, into buffer t % 2 of both
// CTAs. `avail_phase` (bit b) runs on across pieces. One register slot per pass, refilled with
// the next tile's pass as soon as it is stored (a ring).
template <class Cfg>
__device__ __forceinline__ void produce_tiles(uint8_t* smem, const DecodeKernelArgs& a,
                                              const PieceSource& src, int kv_head, int token_begin,
                                              int token_end, int num_tiles, uint32_t rank,
                                              uint32_t& avail_phase) {
  constexpr int kLoaders = Cfg::kProducerThreads;
  constexpr int kRowsPerPass = kLoaders / 8;
  using Ids = KVRowIds<Cfg, kLoaders>;
  const int ptid = threadIdx.x - Cfg::kThreads;
  const int c_lo = ptid & 7;
  const int r0 = ptid >> 3;
  const int pass0 = 2 * static_cast<int>(rank);
  if (num_tiles == 0) return;
  const uint32_t smem_base = ptx::smem_addr(smem);
  const uint32_t peer = rank ^ 1u;
  bool bad = false;
  // Rows of this producer's two passes of the tile at `tile_start`; bit q of `valid`: row exists.
  auto rows_of = [&](const Ids& ids, int tile_start, const uint8_t*(&rows)[2], uint32_t& valid) {
    valid = 0;
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int pass = pass0 + q;
      const int id = rank ? ids.id[2 + q] : ids.id[q];
      rows[q] = fp8_row_address<Cfg>(a, id, (ids.skipped >> pass) & 1u,
                                     tile_start + r0 + pass * kRowsPerPass, kv_head, bad);
      valid |= static_cast<uint32_t>(rows[q] != nullptr) << q;
    }
  };
  auto fill = [&](int t, FP8RowPart(&slot)[2], uint32_t& valid, const Ids& ids_ahead) {
    const int b = t & 1;
    const int tile_start = token_begin + t * Cfg::kTileN;
    ptx::mbarrier_wait(bar_addr<Cfg>(smem_base, kAvailable, b), ((avail_phase >> b) & 1u) ^ 1u);
    avail_phase ^= 1u << b;
    const uint32_t remote_bar =
        ptx::cluster_peer_addr(bar_addr<Cfg>(smem_base, kRemoteReady, b), peer);
    if (ptid == 0) {  // the bytes the peer's producer will store into this CTA
      ptx::mbarrier_arrive_expect_tx(bar_addr<Cfg>(smem_base, kRemoteReady, b), kRemoteBytes<Cfg>);
    }
    const uint32_t local_tile = smem_base + Cfg::kOffKV + b * Cfg::kKVBytes;
    const uint32_t remote_tile = ptx::cluster_peer_addr(local_tile, peer);
    const uint32_t valid_local = smem_base + Cfg::kOffValid32 + b * Cfg::kTileN * 4;
    const uint32_t valid_remote = ptx::cluster_peer_addr(valid_local, peer);
    const uint8_t* next_rows[2] = {nullptr, nullptr};
    uint32_t next_valid = 0;
    const bool has_next = t + 1 < num_tiles;
    if (has_next) rows_of(ids_ahead, tile_start + Cfg::kTileN, next_rows, next_valid);
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int r = r0 + (pass0 + q) * kRowsPerPass;
      if (c_lo == 0) {
        const uint32_t word = (valid >> q) & 1u;
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(valid_local + 4 * r), "r"(word) : "memory");
        ptx::st_async_4(valid_remote + 4 * r, word, remote_bar);
      }
      const FP8RowPart& d = slot[q];
      const uint32_t any_bits = d.scales.x | d.scales.y | d.scales.z | d.scales.w;
      if ((any_bits & 0xffffu) == 0) {  // every scale exact in bf16 (FlashMLA's recipe)
        store_row_part<Cfg, true>(local_tile, remote_tile, remote_bar, r, c_lo, d);
      } else {
        store_row_part<Cfg, false>(local_tile, remote_tile, remote_bar, r, c_lo, d);
      }
      if (has_next) load_row_part(next_rows[q], c_lo, slot[q]);
      // The warp's 4 rows of this pass are 512 contiguous bytes in each of the tile's 9 column
      // blocks: lane 0 copies them into the peer with the bulk-copy engine, whose completion
      // counts on the peer's REMOTE_READY, instead of each thread repeating its 9 stores as
      // st.async (the producer's stores were its bottleneck: bench/NOTES.md, session 9). Small
      // plans keep the stores (kPeerBulk off): with one or two tiles per worker nothing hides
      // the copy's extra step.
      if constexpr (Cfg::kPeerBulk) {
        wgmma::fence_proxy_async();  // this thread's st.shared -> the copy engine and the wgmma
        __syncwarp();
        if ((ptid & 31) == 0) {
          const int row_base = (r0 & ~3) + (pass0 + q) * kRowsPerPass;
#pragma unroll
          for (int block = 0; block < Cfg::kD / 64; ++block) {
            const uint32_t off = static_cast<uint32_t>((block * Cfg::kTileN + row_base) << 7);
            ptx::bulk_copy_shared_to_peer(remote_tile + off, local_tile + off, 4 * 128, remote_bar);
          }
        }
      }
    }
    valid = next_valid;
    // This warp's `bad` (row ids outside the cache) for both CTAs' epilogues: one word per warp
    // and rank, so the four producer warps never wait for each other (a warpgroup-wide OR per
    // tile cost 5% of the producer's time).
    const bool any_bad = __any_sync(0xffffffffu, bad);
    bad = false;
    if ((ptid & 31) == 0) {
      const uint32_t flag_local =
          smem_base + Cfg::kOffPairFlags + 4 * (8 * b + 4 * static_cast<int>(rank) + (ptid >> 5));
      const uint32_t word = any_bad ? 1u : 0u;
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(flag_local), "r"(word) : "memory");
      ptx::st_async_4(ptx::cluster_peer_addr(flag_local, peer), word, remote_bar);
    }
    // Local st.shared (generic proxy) -> the math warps' wgmma reads (the bulk variant fenced per
    // pass already).
    if constexpr (!Cfg::kPeerBulk) wgmma::fence_proxy_async();
    ptx::mbarrier_arrive(bar_addr<Cfg>(smem_base, kLocalReady, b));
  };
  FP8RowPart slot[2];
  uint32_t valid = 0;
  const uint8_t* rows[2];
  Ids ids_next = fetch_row_ids_by<Cfg, kLoaders>(a, src, token_begin, token_end, ptid);
  rows_of(ids_next, token_begin, rows, valid);
#pragma unroll
  for (int q = 0; q < 2; ++q) load_row_part(rows[q], c_lo, slot[q]);
  ids_next = fetch_row_ids_by<Cfg, kLoaders>(a, src, token_begin + Cfg::kTileN, token_end, ptid);
  Ids ids_after =
      fetch_row_ids_by<Cfg, kLoaders>(a, src, token_begin + 2 * Cfg::kTileN, token_end, ptid);
  for (int t = 0; t < num_tiles; ++t) {
    fill(t, slot, valid, ids_next);
    ids_next = ids_after;
    ids_after = fetch_row_ids_by<Cfg, kLoaders>(a, src, token_begin + (t + 3) * Cfg::kTileN,
                                                token_end, ptid);
  }
}
// The math warpgroups: decode_piece's wgmma path with the KV tiles from the producer.
template <class Cfg>
__device__ __forceinline__ void consume_tiles(uint8_t* smem, const DecodeKernelArgs& a,
                                              const PieceSource& src, int s_base, int seq_len,
                                              int kv_head, int row0, int token_begin, int token_end,
                                              int num_tiles, int split_index, bool write_final,
                                              uint32_t& ready_phase) {
  using Elem = typename Cfg::Elem;
  static_assert(Cfg::kSWarps == 8 && Cfg::kSNTiles == 4 && Cfg::kMTiles == 4, "wgmma layout");
  const int tid = threadIdx.x;
  const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0);  // warp-uniform for ptxas
  const int lane = tid & 31;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int wm = warp % Cfg::kSWarpsM;
  const int wn = warp / Cfg::kSWarpsM;  // warpgroup: S tokens 32 wn .., value columns 256 wn ..
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;
  float* red = reinterpret_cast<float*>(smem + Cfg::kOffRed);  // [kSWarpsN][kRows]
  const uint32_t smem_base = ptx::smem_addr(smem);

  load_q_tile<Cfg>(smem, a, src.batch, s_base, kv_head, row0);
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
  wgmma::fence_proxy_async();  // Q (cp.async) -> wgmma reads
  ptx::bar_sync(kBarMath, kMath);

  const int2 limits = key_limits<Cfg>(a, s_base, seq_len, row0, srow0, srow1, token_end);
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 domain)
  float l0 = 0.f, l1 = 0.f;              // this thread's share of the running sums
  float o[Cfg::kMTiles][8][4];
  float(&acc_o)[128] = reinterpret_cast<float(&)[128]>(o);
#pragma unroll
  for (int i = 0; i < 128; ++i) acc_o[i] = 0.f;

  bool piece_bad = false;  // a row id outside the cache in one of the tiles
  for (int t = 0; t < num_tiles; ++t) {
    const int b = t & 1;
    const int tile_start = token_begin + t * Cfg::kTileN;
    const uint32_t kv_stage = smem_base + Cfg::kOffKV + b * Cfg::kKVBytes;
    piece_bad |= wait_tile<Cfg>(smem_base, b, ready_phase);

    // ---- S = Q K^T: this warpgroup's 64 x 32 block, d/16 wgmmas.
    float sc[Cfg::kSNTiles][4];
    float(&acc_s)[16] = reinterpret_cast<float(&)[16]>(sc);
#pragma unroll
    for (int i = 0; i < 16; ++i) acc_s[i] = 0.f;
    wgmma::fence();
    {
      const wgmma::SmemDesc q_desc(smem_base + Cfg::kOffQ, 16, 1024);
      const wgmma::SmemDesc k_desc(kv_stage + wn * 32 * 128, 16, 1024);
#pragma unroll
      for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
        const int blk = kk >> 2;
        const uint32_t kbyte = (kk & 3) * 32;
        const uint64_t da = q_desc.at(blk * (Cfg::kRows << 7) + kbyte);
        const uint64_t db = k_desc.at(blk * (Cfg::kTileN << 7) + kbyte);
        wgmma::Ops<Elem>::template m64n32<0>(acc_s, da, db);
      }
    }
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_operands(acc_s);
    wgmma::fence_operands(acc_o);

    // ---- Scale to the log2 domain, mask, and take this warp's row maxima.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < Cfg::kSNTiles; ++nt) {
      const int col = wn * Cfg::kSNTiles * 8 + nt * 8 + 2 * t4;
      const int tok = tile_start + col;
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        bool keep = true;
        if constexpr (Cfg::kSparse) {
          keep = reinterpret_cast<const uint32_t*>(
                     smem + Cfg::kOffValid32)[b * Cfg::kTileN + col + e] != 0;
        }
        sc[nt][e] = keep && tok + e < limits.x ? sc[nt][e] * a.scale_log2 : -INFINITY;
        sc[nt][2 + e] = keep && tok + e < limits.y ? sc[nt][2 + e] * a.scale_log2 : -INFINITY;
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
    ptx::bar_sync(kBarMath, kMath);  // both warpgroups' row maxima in `red`

    // ---- Online softmax: new maxima, rescale factors, P = exp2(S - m) to shared memory.
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
    wgmma::fence_proxy_async();      // P -> wgmma reads
    ptx::bar_sync(kBarMath, kMath);  // P visible to both warpgroups

    // ---- O = O * alpha + P V over this warpgroup's 256 value columns; not waited for here
    // (the next S wait, or the epilogue's, retires it).
#pragma unroll
    for (int i = 0; i < 128; ++i) acc_o[i] *= (i & 2) ? alpha1 : alpha0;
    wgmma::fence_operands(acc_o);
    wgmma::fence();
    {
      const wgmma::SmemDesc p_desc(smem_base + Cfg::kOffP, 16, 1024);
      const wgmma::SmemDesc v_desc(kv_stage + wn * 4 * (Cfg::kTileN << 7), Cfg::kTileN * 128, 1024);
#pragma unroll
      for (int kk = 0; kk < Cfg::kTileN / 16; ++kk) {
        const uint64_t da = p_desc.at(kk * 32);
        const uint64_t db = v_desc.at(kk * 16 * 128);
        wgmma::Ops<Elem>::template m64n256<1>(acc_o, da, db);
      }
    }
    wgmma::commit();
    // Buffer b is free once both warpgroups' P V(t) retire: released here, not at the next S
    // wait, the producers have this whole tile's successor (S, softmax, P V) to refill it with
    // tile t + 2. (Released at the next S wait, a one-CTA producer's refill ran beside the
    // softmax alone: ncu showed it waiting for the buffer 60% of its time.) P V(t) and S(t + 1)
    // share the tensor pipe anyway, so waiting here costs little.
    wgmma::wait<0>();
    wgmma::fence_operands(acc_o);
    // One arrival per math warpgroup on both CTAs' AVAILABLE[b] (the pipeline runs on across
    // pieces, so every use is released).
    if ((tid & 127) == 0) {
      const uint32_t avail = bar_addr<Cfg>(smem_base, kAvailable, b);
      ptx::mbarrier_arrive(avail);
      ptx::mbarrier_arrive_cluster(ptx::cluster_peer_addr(avail, ptx::cluster_ctarank() ^ 1u));
    }
  }
  wgmma::wait<0>();  // the last tile's P V
  wgmma::fence_operands(acc_o);

  finish_piece<Cfg>(smem, a, src, s_base, kv_head, row0, split_index, write_final, piece_bad, m0,
                    m1, l0, l1, o);
}

// ---- The split consumer (Cfg::kSplitConsumer; FlashMLA's division of the math work).
// Warpgroup 0 computes the whole 64 x 64 S tile (m64n64: Q is read once per tile, and a row's
// 64 columns sit in one quad, so the row maxima need no shared memory), the online softmax, and
// P V over value columns 0-255 with P in registers (RS). Warpgroup 1 only adds P V over columns
// 256-511 with P from shared memory, so warpgroup 0's S(t + 1) overlaps its P V(t).
//   P_READY (9, 256): warpgroup 0 arrives once P(t) and the rows' rescale factors are stored
//     (and fenced for the async proxy); warpgroup 1 syncs before rescaling and P V(t).
//   P_FREE (10, 256): warpgroup 1 arrives once its P V(t) retired, if tile t + 1 exists;
//     warpgroup 0 syncs before it stores P(t + 1).
// Warpgroup 1 does not wait for the KV buffers itself: warpgroup 0 waited for tile t's
// mbarriers before it arrived at P_READY for that tile. Both arrive at AVAILABLE[b] after their
// own P V. Warpgroup 0 holds the row sums; warpgroup 1 passes zero sums to the epilogue.
template <class Cfg, int kRole>
__device__ __forceinline__ void consume_tiles_split(uint8_t* smem, const DecodeKernelArgs& a,
                                                    const PieceSource& src, int s_base, int seq_len,
                                                    int kv_head, int row0, int token_begin,
                                                    int token_end, int num_tiles, int split_index,
                                                    bool write_final, uint32_t& ready_phase) {
  using Elem = typename Cfg::Elem;
  using Ops = wgmma::Ops<Elem>;
  constexpr int kTileN = Cfg::kTileN;
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int wm = (tid >> 5) & 3;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int srow0 = wm * 16 + g;
  const int srow1 = srow0 + 8;
  const uint32_t smem_base = ptx::smem_addr(smem);
  float* row_scale = reinterpret_cast<float*>(smem + Cfg::kOffScale);  // [kRows]

  load_q_tile<Cfg>(smem, a, src.batch, s_base, kv_head, row0);
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
  wgmma::fence_proxy_async();  // Q (cp.async) -> wgmma reads
  ptx::bar_sync(kBarMath, kMath);

  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 domain; warpgroup 0)
  float l0 = 0.f, l1 = 0.f;              // this thread's share of the row sums (warpgroup 0)
  float o[Cfg::kMTiles][8][4];           // O over value columns 256 wg ..
  float(&acc)[128] = reinterpret_cast<float(&)[128]>(o);
#pragma unroll
  for (int i = 0; i < 128; ++i) acc[i] = 0.f;
  bool piece_bad = false;

  if constexpr (kRole == 0) {
    const int2 limits = key_limits<Cfg>(a, s_base, seq_len, row0, srow0, srow1, token_end);
    for (int t = 0; t < num_tiles; ++t) {
      const int b = t & 1;
      const int tile_start = token_begin + t * kTileN;
      const uint32_t kv_stage = smem_base + Cfg::kOffKV + b * Cfg::kKVBytes;
      piece_bad |= wait_tile<Cfg>(smem_base, b, ready_phase);
      // ---- S = Q K^T, the whole 64 x 64 tile.
      float sc[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) sc[i] = 0.f;
      wgmma::fence();
      {
        const wgmma::SmemDesc q_desc(smem_base + Cfg::kOffQ, 16, 1024);
        const wgmma::SmemDesc k_desc(kv_stage, 16, 1024);
#pragma unroll
        for (int kk = 0; kk < Cfg::kD / 16; ++kk) {
          const int blk = kk >> 2;
          const uint32_t kbyte = (kk & 3) * 32;
          Ops::template m64n64<0>(sc, q_desc.at(blk * (Cfg::kRows << 7) + kbyte),
                                  k_desc.at(blk * (kTileN << 7) + kbyte));
        }
      }
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(sc);
      wgmma::fence_operands(acc);
      // ---- Mask, scale to the log2 domain, row maxima (quad shuffles).
      const uint32_t* valid =
          reinterpret_cast<const uint32_t*>(smem + Cfg::kOffValid32) + b * kTileN;
      const float2 mx = scale_mask_row_max<Cfg::kSparse>(sc, t4, tile_start, limits, a.scale_log2,
                                                         [&](int col) { return valid[col] != 0; });
      const float mx0 = mx.x, mx1 = mx.y;
      const float new0 = fmaxf(m0, mx0), new1 = fmaxf(m1, mx1);
      // A row that has seen no key yet keeps max -inf; subtract 0 then so exp2 gives 0, not NaN.
      const float use0 = new0 == -INFINITY ? 0.f : new0;
      const float use1 = new1 == -INFINITY ? 0.f : new1;
      const float al0 = ptx::exp2_approx(m0 - use0);
      const float al1 = ptx::exp2_approx(m1 - use1);
      m0 = new0;
      m1 = new1;
      // ---- P(t) into registers and shared memory, the rescale factors for warpgroup 1.
      if (t > 0) ptx::bar_sync(kBarPFree, kMath);  // warpgroup 1 is done with P(t - 1)
      uint32_t rp[4][4];
      const float2 sums =
          p_to_regs_and_smem<Elem>(sc, use0, use1, rp, smem + Cfg::kOffP, srow0, srow1, t4);
      const float sum0 = sums.x, sum1 = sums.y;
      if (t4 == 0) {
        row_scale[srow0] = al0;
        row_scale[srow1] = al1;
      }
      l0 = l0 * al0 + sum0;
      l1 = l1 * al1 + sum1;
      wgmma::fence_proxy_async();  // P -> warpgroup 1's wgmma
      ptx::bar_arrive(kBarPReady, kMath);
      // ---- O = O * alpha + P V over value columns 0-255, P from registers.
#pragma unroll
      for (int i = 0; i < 128; ++i) acc[i] *= (i & 2) ? al1 : al0;
      wgmma::fence_operands(acc);
      wgmma::fence();
      {
        const wgmma::SmemDesc v_desc(kv_stage, kTileN * 128, 1024);
#pragma unroll
        for (int kk = 0; kk < kTileN / 16; ++kk) {
          Ops::template m64n256_rs<1>(acc, rp[kk], v_desc.at(kk * 16 * 128));
        }
      }
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(acc);
      if (tid == 0) {
        const uint32_t avail = bar_addr<Cfg>(smem_base, kAvailable, b);
        ptx::mbarrier_arrive(avail);
        ptx::mbarrier_arrive_cluster(ptx::cluster_peer_addr(avail, ptx::cluster_ctarank() ^ 1u));
      }
    }
  } else {
    for (int t = 0; t < num_tiles; ++t) {
      const int b = t & 1;
      const uint32_t kv_stage = smem_base + Cfg::kOffKV + b * Cfg::kKVBytes;
      ptx::bar_sync(kBarPReady, kMath);  // P(t) and its rescale factors stored
      const float al0 = row_scale[srow0], al1 = row_scale[srow1];
#pragma unroll
      for (int i = 0; i < 128; ++i) acc[i] *= (i & 2) ? al1 : al0;
      wgmma::fence_operands(acc);
      wgmma::fence();
      {
        const wgmma::SmemDesc p_desc(smem_base + Cfg::kOffP, 16, 1024);
        const wgmma::SmemDesc v_desc(kv_stage + 4 * (kTileN << 7), kTileN * 128, 1024);
#pragma unroll
        for (int kk = 0; kk < kTileN / 16; ++kk) {
          Ops::template m64n256<1>(acc, p_desc.at(kk * 32), v_desc.at(kk * 16 * 128));
        }
      }
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(acc);
      if (tid == 128) {
        const uint32_t avail = bar_addr<Cfg>(smem_base, kAvailable, b);
        ptx::mbarrier_arrive(avail);
        ptx::mbarrier_arrive_cluster(ptx::cluster_peer_addr(avail, ptx::cluster_ctarank() ^ 1u));
      }
      if (t + 1 < num_tiles) ptx::bar_arrive(kBarPFree, kMath);
    }
  }

  finish_piece<Cfg>(smem, a, src, s_base, kv_head, row0, split_index, write_final, piece_bad, m0,
                    m1, l0, l1, o);
}

// The kernel body: the warpgroups take their roles and registers once, then each walks the
// worker's pieces (piece_of, as decode_kernel does) with its own loop. The role test goes
// through a shuffle so that ptxas sees it as warp-uniform.
template <class Cfg>
__device__ __forceinline__ void run_roles(uint8_t* smem, const DecodeKernelArgs& a, int kv_head,
                                          int row0, int begin_seq, int begin_token, int end_seq,
                                          int end_token, int begin_split) {
  static_assert(Cfg::kWarpSpecialized && Cfg::kRows == 64 && Cfg::kTileN == 64 &&
                Cfg::kThreads == 256 && Cfg::kProducerThreads == 128);
  auto tiles_of = [](const Piece& p) {
    return p.token_end > p.token_begin
               ? (p.token_end - p.token_begin + Cfg::kTileN - 1) / Cfg::kTileN
               : 0;
  };
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  const uint32_t smem_base = ptx::smem_addr(smem);
  if (threadIdx.x == 0) {
    for (int b = 0; b < 2; ++b) {
      ptx::mbarrier_init(bar_addr<Cfg>(smem_base, kLocalReady, b), Cfg::kProducerThreads);
      ptx::mbarrier_init(bar_addr<Cfg>(smem_base, kRemoteReady, b), 1);
      ptx::mbarrier_init(bar_addr<Cfg>(smem_base, kAvailable, b), 4);
    }
    ptx::fence_mbarrier_init();
  }
  ptx::cluster_sync();  // both CTAs' barriers exist before any remote arrival or store
  const uint32_t rank = ptx::cluster_ctarank();
  if (warpgroup == 2) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    uint32_t avail_phase = 0;
    for (int seq = begin_seq; seq <= end_seq; ++seq) {
      const Piece p =
          piece_of<Cfg>(a, seq, begin_seq, begin_token, end_seq, end_token, begin_split);
      produce_tiles<Cfg>(smem, a, p.src, kv_head, p.token_begin, p.token_end, tiles_of(p), rank,
                         avail_phase);
    }
  } else {
    if constexpr (Cfg::kSplitConsumer) {
      // Warpgroup 0 holds O, S and P (~200 registers), warpgroup 1 only O.
      uint32_t ready_phase = 0;
      auto run = [&](auto role) {
        for (int seq = begin_seq; seq <= end_seq; ++seq) {
          const Piece p =
              piece_of<Cfg>(a, seq, begin_seq, begin_token, end_seq, end_token, begin_split);
          consume_tiles_split<Cfg, decltype(role)::value>(
              smem, a, p.src, p.s_base, p.seq_len, kv_head, row0, p.token_begin, p.token_end,
              tiles_of(p), p.split_index, p.write_final, ready_phase);
        }
      };
      if (warpgroup == 0) {
        ptx::setmaxnreg_inc<kSoftmaxRegs>();
        run(std::integral_constant<int, 0>{});
      } else {
        ptx::setmaxnreg_dec<kAccumulateRegs>();
        run(std::integral_constant<int, 1>{});
      }
    } else {
      ptx::setmaxnreg_inc<kMathRegs>();
      uint32_t ready_phase = 0;
      for (int seq = begin_seq; seq <= end_seq; ++seq) {
        const Piece p =
            piece_of<Cfg>(a, seq, begin_seq, begin_token, end_seq, end_token, begin_split);
        consume_tiles<Cfg>(smem, a, p.src, p.s_base, p.seq_len, kv_head, row0, p.token_begin,
                           p.token_end, tiles_of(p), p.split_index, p.write_final, ready_phase);
      }
    }
  }
  ptx::cluster_sync();  // no CTA exits while its peer may still store into it
}

}  // namespace fp8ws

}  // namespace flashmla::detail::cuda::sm90
