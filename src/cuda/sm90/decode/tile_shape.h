// How the dense decode kernel tiles query rows; shared by the planner (schedule_config) and the
// launcher so that a plan's worker count always matches the grid the kernel is launched with.
#pragma once

namespace flashmla::detail::cuda {

// The s_q new tokens of the q_per_kv heads that share one KV head are folded into the rows of
// one matrix (row = s * q_per_kv + head_in_group), since they all attend the same KV rows.
inline int decode_rows(int s_q, int q_per_kv) {
  return s_q * q_per_kv;
}

// Query rows per CTA: 16 (one MMA row block) for small groups, so that h_q = 16 decode does not
// waste 4x the tensor work, 32, or 64 (the largest tile whose Q fits next to the KV pipeline).
inline int decode_tile_rows(int rows) {
  return rows <= 16 ? 16 : rows <= 32 ? 32 : 64;
}

inline int decode_row_tiles(int rows) {
  const int tile = decode_tile_rows(rows);
  return (rows + tile - 1) / tile;
}

// Tokens per split-schedule unit. Kernel KV tiles (32 or 64 tokens) divide it, so a split that
// begins on a unit boundary begins on a tile boundary.
inline constexpr int kDecodeBlockN = 64;

// Decode CTAs per SM a plan is made for (the launcher runs the configuration built for it).
// Sparse 16- and 32-row tiles also have a configuration for two CTAs per SM (decode_launch.cuh,
// Rows*TwoPerSM): one CTA's barrier-bound phases overlap the other's, which pays once every SM
// has plenty of work (H200, FP8: h_q = 16 b = 128 224 -> 196 us, h_q = 32 b = 128 292 -> 278 us),
// but its 32-token tiles cost more per token when the work is thin (b = 2: 20.5 -> 21.8 us at
// h_q = 16, 23.6 -> 26.7 us at h_q = 32). Dense tiles measured no better or worse at two.
//   units: the plan's schedule units (a sparse plan's work is known from its shape: b * s_q
//          queries of ceil(topk / 64) units); requested_workers: the caller's worker count (0:
//          none), which asks for two per SM when it exceeds `one_wave`, the workers that fill the
//          SMs once at one CTA per SM.
inline int decode_ctas_per_sm(bool sparse, int tile_rows, long long units, int sms,
                              int requested_workers, int one_wave) {
  if (!sparse || tile_rows > 32) return 1;
  if (requested_workers > 0) return requested_workers > one_wave ? 2 : 1;
  return units >= 8LL * sms ? 2 : 1;
}

// A piece's fixed cost in schedule units (split_plan.h): loading Q (kRows x d), writing the fp32
// partial output and the combine pass reading it back; for 64-row tiles about two 64-token KV
// tiles' worth of traffic, for smaller tiles about one. Sparse queries all have the same number
// of slots, so there the fixed part only shifts where cuts fall; measured on the H200 (b = 2): 0
// is best for sparse (h_q = 128 30.8 -> 29.4 us, h_q = 16/32 within 1%), while dense b = 8
// h_q = 128 wants 2 (63.6 us; 0: 67.8).
inline int decode_fixed_cost(bool sparse, int tile_rows) {
  return sparse ? 0 : tile_rows == 64 ? 2 : 1;
}

// Split groups per combine CTA (combine.cu; the combine grid has one CTA per row of every plan
// sequence): a small grid is bound by the latency of its workspace reads and takes two groups,
// a large one (more than four CTAs per SM) one (bench/NOTES.md, session 4).
inline int decode_combine_groups(long long combine_ctas, int sms) {
  return combine_ctas <= 4LL * sms ? 2 : 1;
}

// Which consumer the FP8 2-CTA cluster loop runs (decode_piece_fp8_ws.cuh): the split one gains
// 2-7% once the workers have plenty of 64-token tiles (H200: sparse b = 64 / 74 / 128 / 148 at
// h_q = 128, 60-140 tiles per worker; dense b = 32 and 128) but costs a fixed ~12 us where they
// have few (dense b = 1 and sparse b = 2: 28 -> 41 us; dense b = 8, ~14 tiles per worker: 5%
// slower). slots_per_seq: a sparse plan's slots, or for dense the block table's width in tokens
// (the host does not know the lengths; an upper bound).
inline constexpr long long kSplitConsumerMinTilesPerWorker = 48;
inline bool decode_fp8_split_consumer(long long plan_seqs, long long slots_per_seq,
                                      int num_workers) {
  const long long tiles = plan_seqs * ((slots_per_seq + kDecodeBlockN - 1) / kDecodeBlockN);
  return tiles >= kSplitConsumerMinTilesPerWorker * (num_workers > 1 ? num_workers : 1);
}

// How the FP8 cluster producer hands its half of each tile to the peer CTA: by bulk copy (10-16%
// faster on the H200 where workers have many tiles: sparse b >= 64, dense FP8 b >= 8) or by
// per-thread st.async stores, which measured 1-2 us faster at dense b = 1 and sparse b = 2 (about
// one and two tiles per worker). Same tile count as decode_fp8_split_consumer; the threshold
// between 2 and 14 tiles per worker is a first guess, not yet measured (session 9).
inline constexpr long long kPeerBulkMinTilesPerWorker = 4;
inline bool decode_fp8_peer_bulk(long long plan_seqs, long long slots_per_seq, int num_workers) {
  const long long tiles = plan_seqs * ((slots_per_seq + kDecodeBlockN - 1) / kDecodeBlockN);
  return tiles >= kPeerBulkMinTilesPerWorker * (num_workers > 1 ? num_workers : 1);
}

}  // namespace flashmla::detail::cuda
