// Moving Q and KV tiles into shared memory for the decode kernel (decode_kernel.cuh).
//
// KV rows come from one of two places: dense decode walks a sequence's tokens through its block
// table, sparse decode walks a query's index slots. Either way each thread first fetches the raw
// ids (block id or cache-row index) of the rows it copies, one tile ahead of the copy, so that
// the dependent load never stalls the pipeline; the copy then turns ids into addresses.
//
// Two row formats: bf16/fp16 rows are copied with cp.async straight into the swizzled operand
// tile; FP8-with-scale rows (656 bytes, MLA.md section 3) are copied whole, one bulk copy per row,
// into a staging buffer and converted to a bf16 operand tile by all threads (fp8 * power-of-two
// scale is exact in bf16, so the tensor-core math sees exactly the dequantized cache).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "cuda/sm90/decode/decode_args.h"
#include "cuda/sm90/decode/ptx.cuh"
#include "cuda/sm90/decode/wgmma.cuh"

namespace flashmla::detail::cuda::sm90 {

// FP8-with-scale row: 512 e4m3 values, 4 fp32 scales (one per 128 values), 64 bf16 rope values.
inline constexpr int kFP8RowBytes = 656;
inline constexpr int kFP8RowChunks = kFP8RowBytes / 16;  // 41
inline constexpr int kFP8ScaleOffset = 512;
inline constexpr int kFP8RopeOffset = 528;

// Byte offset of 16-byte chunk `chunk` (0 .. d/8-1) of row `r` in a swizzled tile of `R` rows:
// column blocks of 64 elements (128 bytes) stored row after row, chunk c of row r at c ^ (r % 8).
template <int R>
__device__ __forceinline__ uint32_t tile_chunk_offset(int r, int chunk) {
  return static_cast<uint32_t>((((chunk >> 3) * R + r) << 7) + (((chunk & 7) ^ (r & 7)) << 4));
}

// Copies 16 bytes from global to shared memory without cp.async, for rows that are not 16-byte
// aligned. Slow, but only strided views that no framework produces take this path. Kept out of
// line: inlined at every copy site it grew the 64-row kernel from 100 KB to 142 KB of code, and
// the instruction-cache misses cost 25% (measured on the H200).
static __device__ __noinline__ void copy_16_unaligned(uint8_t* smem_base, uint32_t offset,
                                                      const void* src, bool valid) {
  uint32_t w[4];
  const auto* bytes = static_cast<const uint8_t*>(src);
  if (reinterpret_cast<uintptr_t>(src) % 2 == 0) {  // element-aligned bf16/fp16 rows
    const auto* halves = static_cast<const uint16_t*>(src);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = valid ? halves[2 * i] | (uint32_t{halves[2 * i + 1]} << 16) : 0u;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = valid ? bytes[4 * i] | (uint32_t{bytes[4 * i + 1]} << 8) |
                         (uint32_t{bytes[4 * i + 2]} << 16) | (uint32_t{bytes[4 * i + 3]} << 24)
                   : 0u;
    }
  }
  *reinterpret_cast<uint4*>(smem_base + offset) = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void copy_16(uint8_t* smem, uint32_t offset, const void* src, bool valid,
                                        bool aligned) {
  if (aligned) {
    ptx::cp_async_16(ptx::smem_addr(smem) + offset, src, valid);
  } else {
    copy_16_unaligned(smem, offset, src, valid);
  }
}

// Loads query rows [row0, row0 + kRows) of (batch entry, tokens from s_base, kv_head) into sQ;
// rows past `rows` are zeros. Row gr is token s_base + gr / q_per_kv, head gr % q_per_kv of the
// KV head's group.
template <class Cfg>
__device__ __forceinline__ void load_q_tile(uint8_t* smem, const DecodeKernelArgs& a, int batch,
                                            int s_base, int kv_head, int row0) {
  using Elem = typename Cfg::Elem;
  const int c_lo = threadIdx.x & 7;  // 8 threads per row, each a 16-byte chunk of every block
  constexpr int kRowsPerPass = Cfg::kThreads / 8;
#pragma unroll
  for (int pass = 0; pass < (Cfg::kRows + kRowsPerPass - 1) / kRowsPerPass; ++pass) {
    const int r = (threadIdx.x >> 3) + pass * kRowsPerPass;
    if (r < Cfg::kRows) {
      const int gr = row0 + r;
      const bool valid = gr < a.rows;
      const Elem* src = static_cast<const Elem*>(a.q);
      if (valid) {
        const int s = s_base + gr / a.q_per_kv;
        const int h = kv_head * a.q_per_kv + gr % a.q_per_kv;
        src += batch * a.q_batch_stride + s * a.q_seq_stride + h * a.q_head_stride;
      }
#pragma unroll
      for (int blk = 0; blk < Cfg::kColBlocks; ++blk) {
        const int chunk = blk * 8 + c_lo;
        copy_16(smem, Cfg::kOffQ + tile_chunk_offset<Cfg::kRows>(r, chunk), src + chunk * 8, valid,
                a.q_aligned);
      }
    }
  }
}

// Raw ids of the KV rows this thread copies in one tile (rows tid/8 + (kLoaders/8)*i, where
// kLoaders threads share the copy: the whole CTA, or one warpgroup in the ping-pong loop): a block
// id (dense) or a cache-row index (sparse), fetched one tile ahead of the copy. The ids are kept
// exactly as loaded, and nothing inspects them until the copy: any arithmetic on them at fetch
// time (ncu: a clamp of the sparse index) waits for the load there and exposes its latency.
template <class Cfg, int kLoaders = Cfg::kThreads>
struct KVRowIds {
  int id[Cfg::kTileN / (kLoaders / 8)];
  uint32_t skipped = 0;  // bit i: row at or past the piece's end, or a slot that does not count
                         // (zero-filled and masked, not an error)
};

// What one piece of a plan sequence reads: its batch entry and, for sparse, the counted slots
// of each index list.
struct PieceSource {
  int batch;
  const int32_t* table;    // dense: the batch entry's block-table row
  const int32_t* list[2];  // sparse: the token's index lists
  int count[2];            // sparse: slots that count in each list
};

// `ltid`: this thread's index among the kLoaders threads that share the tile.
template <class Cfg, int kLoaders>
__device__ __forceinline__ KVRowIds<Cfg, kLoaders> fetch_row_ids_by(const DecodeKernelArgs& a,
                                                                    const PieceSource& src,
                                                                    int tile_start, int token_end,
                                                                    int ltid) {
  KVRowIds<Cfg, kLoaders> ids;
  constexpr int kRowsPerPass = kLoaders / 8;
#pragma unroll
  for (int pass = 0; pass < Cfg::kTileN / kRowsPerPass; ++pass) {
    const int t = tile_start + (ltid >> 3) + pass * kRowsPerPass;
    if constexpr (Cfg::kSparse) {
      // Selects, not indexing: a runtime index into src's arrays would put them on the stack.
      const bool first = t < a.lists[0].topk;
      const int k = first ? t : t - a.lists[0].topk;
      const int count = first ? src.count[0] : src.count[1];
      const int32_t* list = first ? src.list[0] : src.list[1];
      const bool counts = t < token_end && k < count;
      ids.id[pass] = counts ? __ldg(list + k) : -1;
      if (!counts) ids.skipped |= 1u << pass;
    } else {
      const int page = t / a.kv.page_block_size;
      const bool in_piece = t < token_end;
      // A page past the block table's width is an error (-1: bad), not a skipped row.
      ids.id[pass] = in_piece && page < a.max_blocks_per_seq ? __ldg(src.table + page) : -1;
      if (!in_piece) ids.skipped |= 1u << pass;
    }
  }
  return ids;
}

template <class Cfg>
__device__ __forceinline__ KVRowIds<Cfg> fetch_row_ids(const DecodeKernelArgs& a,
                                                       const PieceSource& src, int tile_start,
                                                       int token_end) {
  return fetch_row_ids_by<Cfg, Cfg::kThreads>(a, src, tile_start, token_end, threadIdx.x);
}

// Address of the row with raw id `id` for token/slot `t`, or nullptr when the row is skipped
// (past the end, or a -1 slot). An id that lies outside the cache sets `bad` (the piece then
// outputs NaN) instead of being dereferenced.
template <class Cfg>
__device__ __forceinline__ const uint8_t* row_address(const DecodeKernelArgs& a, int id,
                                                      bool skipped, int t, int kv_head, bool& bad) {
  if (skipped) return nullptr;
  constexpr int64_t kStrideBytes = Cfg::kFP8 ? 1 : 2;
  if constexpr (Cfg::kSparse) {
    const KVCacheView& kv = t < a.lists[0].topk ? a.lists[0].kv : a.lists[1].kv;
    if (id == -1) return nullptr;
    if (id < -1 || id / kv.page_block_size >= kv.num_blocks) {
      bad = true;
      return nullptr;
    }
    const int page = id / kv.page_block_size;
    const int64_t offset =
        page * kv.block_stride + (id - page * kv.page_block_size) * kv.row_stride;
    return static_cast<const uint8_t*>(kv.data) + offset * kStrideBytes;
  } else {
    const KVCacheView& kv = a.kv;
    if (id < 0 || id >= kv.num_blocks) {
      bad = true;
      return nullptr;
    }
    const int page = t / kv.page_block_size;
    const int64_t offset = id * kv.block_stride + (t - page * kv.page_block_size) * kv.row_stride +
                           kv_head * kv.head_stride;
    return static_cast<const uint8_t*>(kv.data) + offset * kStrideBytes;
  }
}

// Issues the copies of bf16/fp16 KV tokens [tile_start, tile_start + kTileN) into one swizzled
// operand tile (FP8 rows: resolve_fp8_tile / issue_fp8_tile). Skipped rows are zero-filled: their
// pages may not exist, and a NaN there would poison P V even under a zero weight. Sparse: `valid`
// [kTileN] receives which rows take part in the softmax.
//
// This thread copies rows r = ltid / 8 + kRowsPerPass * pass, 16-byte chunk c_lo of every 128-byte
// column block. kRowsPerPass is a multiple of 8, so r % 8 (the swizzle phase) is the same for all
// of them: every copy is one per-thread shared address and one per-row global address plus
// compile-time offsets. ncu showed the loads' address arithmetic recomputed per copy (about 18
// instructions per cp.async) taking a third of the 64-row kernel's issue slots.
template <class Cfg, int kLoaders>
__device__ __forceinline__ void load_kv_tile_by(uint8_t* smem, uint32_t buffer_offset,
                                                uint8_t* valid, const DecodeKernelArgs& a,
                                                const KVRowIds<Cfg, kLoaders>& ids, int kv_head,
                                                int tile_start, bool& bad, int ltid) {
  static_assert(!Cfg::kFP8, "FP8 rows: resolve_fp8_tile / issue_fp8_tile");
  const int c_lo = ltid & 7;
  const int r0 = ltid >> 3;
  constexpr int kRowsPerPass = kLoaders / 8;
  constexpr int kPasses = Cfg::kTileN / kRowsPerPass;
  static_assert(Cfg::kTileN % kRowsPerPass == 0 && kRowsPerPass % 8 == 0, "whole, aligned passes");
  const uint8_t* rows[kPasses];
#pragma unroll
  for (int pass = 0; pass < kPasses; ++pass) {
    const int r = r0 + pass * kRowsPerPass;
    rows[pass] =
        row_address<Cfg>(a, ids.id[pass], (ids.skipped >> pass) & 1u, tile_start + r, kv_head, bad);
    if constexpr (Cfg::kSparse) {
      if (c_lo == 0) valid[r] = rows[pass] != nullptr;
    }
  }
  // Byte offset of (row r0, chunk c_lo of column block 0) in the buffer, and of (row r0 +
  // kRowsPerPass * pass, chunk c_lo of column block j) relative to it: a compile-time constant.
  const uint32_t thread_offset = buffer_offset + (r0 << 7) + ((c_lo ^ (r0 & 7)) << 4);
  auto step_offset = [](int pass, int j) -> uint32_t {
    return (j * Cfg::kTileN + pass * kRowsPerPass) << 7;
  };
  constexpr int kGroups = Cfg::kColBlocks;
  const auto* fallback = static_cast<const uint8_t*>(a.q);  // mapped; zero-filling copies
  if (a.kv_aligned) {
    const uint32_t dst = ptx::smem_addr(smem) + thread_offset;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const bool present = rows[pass] != nullptr;
      const uint8_t* src = (present ? rows[pass] : fallback) + c_lo * 16;
#pragma unroll
      for (int j = 0; j < kGroups; ++j) {
        ptx::cp_async_16(dst + step_offset(pass, j), src + j * 128, present);
      }
    }
  } else {  // cold: strided views with rows that are not 16-byte aligned
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const bool present = rows[pass] != nullptr;
      const uint8_t* src = (present ? rows[pass] : fallback) + c_lo * 16;
#pragma unroll 1
      for (int j = 0; j < kGroups; ++j) {
        copy_16_unaligned(smem, thread_offset + step_offset(pass, j), src + j * 128, present);
      }
    }
  }
}

template <class Cfg>
__device__ __forceinline__ void load_kv_tile(uint8_t* smem, uint32_t buffer_offset, uint8_t* valid,
                                             const DecodeKernelArgs& a, const KVRowIds<Cfg>& ids,
                                             int kv_head, int tile_start, bool& bad) {
  load_kv_tile_by<Cfg, Cfg::kThreads>(smem, buffer_offset, valid, a, ids, kv_head, tile_start, bad,
                                      threadIdx.x);
}

// Threads that arrive on an FP8 staging buffer's mbarrier per tile: the first of each 8.
template <class Cfg>
inline constexpr int kFP8LoadArrivals = Cfg::kThreads / 8;

// FP8 rows are copied whole, one bulk copy per 656-byte row into a staging buffer (rows back to
// back), issued by the first of the 8 threads that fetched the row's id. Per-chunk cp.async took
// about 2600 copies per tile, which ncu showed throttled in the LSU queue. Loading a tile has two
// steps so that the caller can resolve the addresses early (their arithmetic then overlaps other
// work) and issue the copies once the buffer is free:
//   resolve_fp8_tile: row addresses, the tile's bytes, and (sparse) `valid`, which rows take part
//     in the softmax;
//   issue_fp8_tile: the copies, completing on mbarrier `bar` (kFP8LoadArrivals arrivals and the
//     copied bytes); skipped rows are zero-filled with plain stores before the arrival.
template <class Cfg>
struct FP8TileRows {
  static constexpr int kRowsPerPass = Cfg::kThreads / 8;
  static constexpr int kPasses = Cfg::kTileN / kRowsPerPass;
  static_assert(Cfg::kTileN % kRowsPerPass == 0, "whole passes");
  const uint8_t* row[kPasses];  // this thread's rows r0 + kRowsPerPass * pass; nullptr: skipped
  uint32_t bytes;               // bytes those rows bring
};

// row_address without branches: selects only, so that the compiler can interleave it with the
// conversion the caller places it beside (with row_address's early returns it stayed a separate
// block ahead of the conversion).
template <class Cfg>
__device__ __forceinline__ const uint8_t* fp8_row_address(const DecodeKernelArgs& a, int id,
                                                          bool skipped, int t, int kv_head,
                                                          bool& bad) {
  int64_t offset;
  bool in_range;
  const uint8_t* data;
  if constexpr (Cfg::kSparse) {
    const bool second = t >= a.lists[0].topk;
    const KVCacheView& kv0 = a.lists[0].kv;
    const KVCacheView& kv1 = a.lists[1].kv;
    const int page_block_size = second ? kv1.page_block_size : kv0.page_block_size;
    const int page = id / page_block_size;  // -1 (an unused slot) gives page 0, not read
    in_range = id >= 0 && page < (second ? kv1.num_blocks : kv0.num_blocks);
    bad |= !skipped && id != -1 && !in_range;
    offset = page * (second ? kv1.block_stride : kv0.block_stride) +
             (id - page * page_block_size) * (second ? kv1.row_stride : kv0.row_stride);
    data = static_cast<const uint8_t*>(second ? kv1.data : kv0.data);
  } else {
    const KVCacheView& kv = a.kv;
    const int page = t / kv.page_block_size;
    in_range = id >= 0 && id < kv.num_blocks;
    bad |= !skipped && !in_range;
    offset = id * kv.block_stride + (t - page * kv.page_block_size) * kv.row_stride +
             kv_head * kv.head_stride;
    data = static_cast<const uint8_t*>(kv.data);
  }
  return !skipped && in_range ? data + offset : nullptr;
}

template <class Cfg>
__device__ __forceinline__ FP8TileRows<Cfg> resolve_fp8_tile(uint8_t* valid,
                                                             const DecodeKernelArgs& a,
                                                             const KVRowIds<Cfg>& ids, int kv_head,
                                                             int tile_start, bool& bad) {
  static_assert(Cfg::kFP8, "bf16/fp16 rows: load_kv_tile");
  using Rows = FP8TileRows<Cfg>;
  const int c_lo = threadIdx.x & 7;
  const int r0 = threadIdx.x >> 3;
  Rows rows;
  rows.bytes = 0;
#pragma unroll
  for (int pass = 0; pass < Rows::kPasses; ++pass) {
    const int r = r0 + pass * Rows::kRowsPerPass;
    rows.row[pass] = fp8_row_address<Cfg>(a, ids.id[pass], (ids.skipped >> pass) & 1u,
                                          tile_start + r, kv_head, bad);
    rows.bytes += rows.row[pass] != nullptr ? kFP8RowBytes : 0;
    if constexpr (Cfg::kSparse) {
      if (c_lo == 0) valid[r] = rows.row[pass] != nullptr;
    }
  }
  return rows;
}

template <class Cfg>
__device__ __forceinline__ void issue_fp8_tile(uint8_t* smem, uint32_t staging_offset, uint32_t bar,
                                               const DecodeKernelArgs& a,
                                               const FP8TileRows<Cfg>& rows) {
  using Rows = FP8TileRows<Cfg>;
  const int c_lo = threadIdx.x & 7;
  const uint32_t row_offset = staging_offset + (threadIdx.x >> 3) * kFP8RowBytes;
  constexpr uint32_t kPassBytes = Rows::kRowsPerPass * kFP8RowBytes;
  if (rows.bytes != Rows::kPasses * kFP8RowBytes) {
    // Skipped rows become zeros (the 8 threads of the row, plain stores): their pages may not
    // exist, and a NaN there would poison P V even under a zero weight.
#pragma unroll
    for (int pass = 0; pass < Rows::kPasses; ++pass) {
      if (rows.row[pass] != nullptr) continue;
#pragma unroll 1
      for (int chunk = c_lo; chunk < kFP8RowChunks; chunk += 8) {
        *reinterpret_cast<uint4*>(smem + row_offset + pass * kPassBytes + chunk * 16) =
            make_uint4(0u, 0u, 0u, 0u);
      }
    }
    // A later bulk copy (async proxy) may overwrite these rows: order the stores before it.
    wgmma::fence_proxy_async();
  }
  if (a.kv_aligned) {
    __syncwarp();  // the row's 8 threads are one quarter-warp; zero stores precede the arrival
    if (c_lo == 0) {
      if (rows.bytes > 0) {
        ptx::mbarrier_arrive_expect_tx(bar, rows.bytes);
      } else {
        ptx::mbarrier_arrive(bar);
      }
      const uint32_t dst = ptx::smem_addr(smem) + row_offset;
#pragma unroll
      for (int pass = 0; pass < Rows::kPasses; ++pass) {
        if (rows.row[pass] != nullptr) {
          ptx::bulk_copy_to_shared(dst + pass * kPassBytes, rows.row[pass], kFP8RowBytes, bar);
        }
      }
    }
  } else {  // cold: rows not 16-byte aligned; the 8 threads copy a row with plain loads and stores
#pragma unroll
    for (int pass = 0; pass < Rows::kPasses; ++pass) {
      if (rows.row[pass] == nullptr) continue;
#pragma unroll 1
      for (int chunk = c_lo; chunk < kFP8RowChunks; chunk += 8) {
        copy_16_unaligned(smem, row_offset + pass * kPassBytes + chunk * 16,
                          rows.row[pass] + chunk * 16, true);
      }
    }
    __syncwarp();  // the row's 8 threads are one quarter-warp; their stores precede the arrival
    if (c_lo == 0) ptx::mbarrier_arrive(bar);
  }
}

// 16 e4m3 values times the group's scale -> 16 bf16 values (two 16-byte chunks).
// kBf16Scale: the scale is exact in bf16 (FlashMLA's power-of-two scales always are), so a pair is
// widened to bf16 exactly and multiplied by `scale2` in one bf16x2 instruction: the product of a
// 4-bit fp8 significand and an 8-bit scale is exact in fp32, so rounding it once to bf16 gives the
// same bits as the fp32 path, at 5 instead of 6 instructions per pair. Otherwise each value is
// scaled in fp32 and rounded to bf16.
template <bool kBf16Scale>
__device__ __forceinline__ void dequant_16(const uint4& in, float scale, __nv_bfloat162 scale2,
                                           uint4& lo, uint4& hi) {
  const uint32_t words[4] = {in.x, in.y, in.z, in.w};
  uint32_t out[8];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2_raw pair = __nv_cvt_fp8x2_to_halfraw2(
          static_cast<__nv_fp8x2_storage_t>(words[i] >> (16 * h)), __NV_E4M3);
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&pair));
      if constexpr (kBf16Scale) {
        const __nv_bfloat162 scaled = __hmul2(__floats2bfloat162_rn(f.x, f.y), scale2);
        out[2 * i + h] = *reinterpret_cast<const uint32_t*>(&scaled);
      } else {
        out[2 * i + h] = ptx::pack2<__nv_bfloat16>(f.x * scale, f.y * scale);
      }
    }
  }
  lo = make_uint4(out[0], out[1], out[2], out[3]);
  hi = make_uint4(out[4], out[5], out[6], out[7]);
}

// FP8 staging buffer (kTileN rows of 656 bytes) -> swizzled bf16 operand tile. kThreads / kTileN
// threads share a row (4 for 64-token tiles, 8 for 32): thread (row = tid % kTileN, part = tid /
// kTileN) converts 512 / kPerRow consecutive latent values (within one 128-value scale group) and
// 8 / kPerRow of the row's 16-byte rope chunks. 8 consecutive rows per quarter-warp keep the
// 16-byte shared loads and stores free of bank conflicts.
template <class Cfg>
__device__ __forceinline__ void convert_fp8_tile(uint8_t* smem, uint32_t staging_offset,
                                                 uint32_t tile_offset) {
  constexpr int kPerRow = Cfg::kThreads / Cfg::kTileN;
  static_assert(
      Cfg::kThreads == kPerRow * Cfg::kTileN && (kPerRow == 4 || kPerRow == 8) && Cfg::kD == 576,
      "4 or 8 threads per row");
  constexpr int kValues = 512 / kPerRow;  // latent values per thread: 128 or 64
  const int r = threadIdx.x % Cfg::kTileN;
  const int part = threadIdx.x / Cfg::kTileN;
  const uint8_t* row = smem + staging_offset + r * kFP8RowBytes;
  const float scale = reinterpret_cast<const float*>(row + kFP8ScaleOffset)[part * kValues / 128];
  const __nv_bfloat162 scale2 = __float2bfloat162_rn(scale);  // used only if exact
  auto convert_part = [&](auto bf16_scale) {
#pragma unroll
    for (int i = 0; i < kValues / 16; ++i) {  // 16 values per step
      const uint4 in = *reinterpret_cast<const uint4*>(row + part * kValues + i * 16);
      uint4 lo, hi;
      dequant_16<decltype(bf16_scale)::value>(in, scale, scale2, lo, hi);
      const int chunk = part * kValues / 8 + 2 * i;  // 8 bf16 values per chunk
      *reinterpret_cast<uint4*>(smem + tile_offset + tile_chunk_offset<Cfg::kTileN>(r, chunk)) = lo;
      *reinterpret_cast<uint4*>(smem + tile_offset + tile_chunk_offset<Cfg::kTileN>(r, chunk + 1)) =
          hi;
    }
  };
  if (Cfg::kBf16ScaleMultiply && (__float_as_uint(scale) & 0xffffu) == 0) {
    convert_part(std::true_type{});
  } else {
    convert_part(std::false_type{});
  }
#pragma unroll
  for (int i = 0; i < 8 / kPerRow; ++i) {  // rope: 64 bf16 values = 8 chunks, copied as is
    const int rope_chunk = part * (8 / kPerRow) + i;
    const uint4 v = *reinterpret_cast<const uint4*>(row + kFP8RopeOffset + rope_chunk * 16);
    *reinterpret_cast<uint4*>(smem + tile_offset +
                              tile_chunk_offset<Cfg::kTileN>(r, 64 + rope_chunk)) = v;
  }
}

}  // namespace flashmla::detail::cuda::sm90
