// The CUDA planner's tiling and occupancy rules (cuda/sm90/decode/tile_shape.h): plain host
// functions, so they are checked here without a GPU. The decisions follow the H200 measurements
// quoted beside each rule.
#include <gtest/gtest.h>

#include "cuda/sm90/decode/tile_shape.h"

namespace flashmla::detail::cuda {
namespace {

constexpr int kSMs = 132;  // H200

// Schedule units of a sparse plan: b * s_q queries of ceil(topk / 64) units.
long long sparse_units(int b, int s_q, int topk) {
  return static_cast<long long>(b) * s_q * ((topk + kDecodeBlockN - 1) / kDecodeBlockN);
}

TEST(DecodeScheduleRules, TileRowsFoldTokensAndHeads) {
  EXPECT_EQ(decode_tile_rows(decode_rows(1, 16)), 16);
  EXPECT_EQ(decode_tile_rows(decode_rows(2, 16)), 32);
  EXPECT_EQ(decode_tile_rows(decode_rows(1, 1)), 16);
  EXPECT_EQ(decode_tile_rows(decode_rows(1, 33)), 64);
  EXPECT_EQ(decode_row_tiles(decode_rows(2, 128)), 4);
  EXPECT_EQ(decode_row_tiles(decode_rows(1, 63)), 1);
}

TEST(DecodeScheduleRules, SparseSmallTilesRunTwoPerSMOnlyWithPlentyOfWork) {
  // FlashMLA's sparse anchor shapes (s_q 2, topk 2048) at h_q 16 and 32.
  for (int tile_rows : {16, 32}) {
    EXPECT_EQ(decode_ctas_per_sm(true, tile_rows, sparse_units(2, 2, 2048), kSMs, 0, kSMs), 1)
        << "b = 2 was slower at two per SM";
    EXPECT_EQ(decode_ctas_per_sm(true, tile_rows, sparse_units(64, 2, 2048), kSMs, 0, kSMs), 2);
    EXPECT_EQ(decode_ctas_per_sm(true, tile_rows, sparse_units(128, 2, 2048), kSMs, 0, kSMs), 2);
  }
  // The threshold: 8 units per SM.
  EXPECT_EQ(decode_ctas_per_sm(true, 16, 8LL * kSMs, kSMs, 0, kSMs), 2);
  EXPECT_EQ(decode_ctas_per_sm(true, 16, 8LL * kSMs - 1, kSMs, 0, kSMs), 1);
}

TEST(DecodeScheduleRules, ExplicitWorkersPastOneWaveAskForTwoPerSM) {
  EXPECT_EQ(decode_ctas_per_sm(true, 16, 1, kSMs, 300, kSMs), 2);
  EXPECT_EQ(decode_ctas_per_sm(true, 32, 1, kSMs, kSMs + 1, kSMs), 2);
  EXPECT_EQ(decode_ctas_per_sm(true, 16, 1LL << 40, kSMs, kSMs, kSMs), 1);
  EXPECT_EQ(decode_ctas_per_sm(true, 16, 1LL << 40, kSMs, 3, kSMs), 1);
}

TEST(DecodeScheduleRules, DenseAnd64RowTilesStayAtOnePerSM) {
  const long long lots = 1LL << 40;
  for (int tile_rows : {16, 32, 64}) {
    EXPECT_EQ(decode_ctas_per_sm(false, tile_rows, lots, kSMs, 0, kSMs), 1);
    EXPECT_EQ(decode_ctas_per_sm(false, tile_rows, lots, kSMs, 500, kSMs), 1);
  }
  EXPECT_EQ(decode_ctas_per_sm(true, 64, lots, kSMs, 0, kSMs / 2), 1);
  EXPECT_EQ(decode_ctas_per_sm(true, 64, lots, kSMs, 500, kSMs / 2), 1);
}

TEST(DecodeScheduleRules, FixedCostPerPiece) {
  EXPECT_EQ(decode_fixed_cost(false, 64), 2);
  EXPECT_EQ(decode_fixed_cost(false, 32), 1);
  EXPECT_EQ(decode_fixed_cost(false, 16), 1);
  for (int tile_rows : {16, 32, 64}) EXPECT_EQ(decode_fixed_cost(true, tile_rows), 0);
}

TEST(DecodeScheduleRules, CombineSplitGroupsFollowTheGridSize) {
  // b = 1, h_q = 128: 128 rows, each with dozens of splits, latency-bound: two groups.
  EXPECT_EQ(decode_combine_groups(128, kSMs), 2);
  EXPECT_EQ(decode_combine_groups(4LL * kSMs, kSMs), 2);
  EXPECT_EQ(decode_combine_groups(4LL * kSMs + 1, kSMs), 1);
  // b = 128, s_q = 2, h_q = 128: 32768 rows with a few splits each: one group.
  EXPECT_EQ(decode_combine_groups(128LL * 2 * 128, kSMs), 1);
}

TEST(DecodeScheduleRules, Fp8SplitConsumerOnlyWithManyTilesPerWorker) {
  // h_q = 128: two 64-row tiles, a 2-CTA cluster per worker, 66 workers on 132 SMs.
  const int workers = kSMs / 2;
  // Sparse anchor shapes (s_q 2, topk 2048: plan sequences b * 2 of 32 tiles).
  EXPECT_FALSE(decode_fp8_split_consumer(2 * 2, 2048, workers)) << "b = 2: 29.8 -> 41.3 us";
  EXPECT_TRUE(decode_fp8_split_consumer(64 * 2, 2048, workers)) << "b = 64: 285.0 -> 278.4 us";
  EXPECT_TRUE(decode_fp8_split_consumer(128 * 2, 2048, workers));
  // Dense anchor shapes, the block table as wide as the longest sequence (page 64).
  EXPECT_FALSE(decode_fp8_split_consumer(1, 58 * 64, workers)) << "b = 1: 28.4 -> 41.4 us";
  EXPECT_FALSE(decode_fp8_split_consumer(8, 232 * 64, workers)) << "b = 8: 79.9 -> 84.3 us";
  EXPECT_TRUE(decode_fp8_split_consumer(32, 242 * 64, workers)) << "b = 32: 243.5 -> 238.6 us";
  // The threshold: 48 tiles per worker; no workers count as one.
  EXPECT_TRUE(decode_fp8_split_consumer(48, 64, 1));
  EXPECT_FALSE(decode_fp8_split_consumer(47, 64, 1));
  EXPECT_FALSE(decode_fp8_split_consumer(47, 64, 0));
  EXPECT_TRUE(decode_fp8_split_consumer(48LL * workers, 1, workers)) << "a partial tile counts";
}

TEST(DecodeScheduleRules, Fp8PeerBulkCopiesUnlessTheWorkersHaveAlmostNoTiles) {
  const int workers = kSMs / 2;
  // Measured on the H200 (session 9, bulk copies against per-thread st.async):
  EXPECT_FALSE(decode_fp8_peer_bulk(1, 58 * 64, workers)) << "dense b = 1: 29.5 vs 31.8 us";
  EXPECT_FALSE(decode_fp8_peer_bulk(2 * 2, 2048, workers)) << "sparse b = 2: 30.0 vs 31.0 us";
  EXPECT_TRUE(decode_fp8_peer_bulk(8, 232 * 64, workers)) << "dense b = 8: 79.7 vs 71.0 us";
  EXPECT_TRUE(decode_fp8_peer_bulk(64 * 2, 2048, workers)) << "sparse b = 64: 276.9 vs 249.1 us";
  // Every plan that takes the split consumer also takes the bulk copies (the split consumer has
  // no st.async variant).
  for (long long seqs : {1LL, 4LL, 47LL, 48LL, 100LL, 1000LL}) {
    for (int w : {0, 1, workers, 2 * workers}) {
      if (decode_fp8_split_consumer(seqs, 64, w)) {
        EXPECT_TRUE(decode_fp8_peer_bulk(seqs, 64, w)) << seqs << " sequences, " << w << " workers";
      }
    }
  }
  // The threshold: 4 tiles per worker; no workers count as one.
  EXPECT_TRUE(decode_fp8_peer_bulk(4, 64, 1));
  EXPECT_FALSE(decode_fp8_peer_bulk(3, 64, 1));
  EXPECT_FALSE(decode_fp8_peer_bulk(3, 64, 0));
}

}  // namespace
}  // namespace flashmla::detail::cuda
