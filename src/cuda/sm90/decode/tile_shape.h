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

}  // namespace flashmla::detail::cuda
