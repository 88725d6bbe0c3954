// The CUDA dense decode from an FP8-with-scale KV cache ([num_blocks, page, 1, 656] bytes, one
// padding row per page as in FlashMLA) against the CPU backend on the same cache and, on small
// cases, against the float64 reference over the dequantized values. Fresh random inputs every
// run (FLASHMLA_TEST_SEED replays one), NaN in every unused cache row (0xff bytes: NaN values and
// NaN scales), garbage block-table entries past each sequence, poisoned outputs.
#include <gtest/gtest.h>

#include <utility>

#include "common/dense_case.h"
#include "gpu_harness.h"

namespace flashmla::test {
namespace {

// bf16 q, d = 576 and one KV head: the FP8 cache's only layout (DenseCase's defaults).
DenseCase fp8_case(Rng& rng) {
  DenseCase c;
  c.seed = rng.engine()();
  c.fp8 = true;
  return c;
}

// Every h_q of FlashMLA and odd ones, s_q 1 and 2; b, lengths (0 included), page size and causal
// drawn per case.
TEST(CudaFP8DenseDecode, HeadsSweep) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("fp8-heads");
  Rng rng(test_seed() * 37 + 1);
  for (int h_q : {1, 9, 16, 32, 63, 64, 128}) {
    for (int s_q : {1, 2}) run_dense_gpu_case(group, random_dense_case(rng, h_q, 1, s_q, true));
  }
}

// Page sizes (one not a power of two), causal masking and lengths at page and tile boundaries.
TEST(CudaFP8DenseDecode, PagesAndCausal) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("fp8-pages");
  Rng rng(test_seed() * 37 + 2);
  for (int page : {16, 32, 64, 128, 48}) {
    for (bool causal : {false, true}) {
      run_dense_gpu_case(group, page_boundary_case(rng, page, causal, /*fp8=*/true));
    }
  }
}

// 16, 32 and 64 query rows per tile, with forced splits so that the combine kernel runs: cheap
// enough for compute-sanitizer's memcheck and racecheck.
TEST(CudaFP8DenseDecode, SanitizerSmall) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("fp8-small");
  Rng rng(test_seed() * 37 + 3);
  // 128 query rows (h_q 128, or h_q 64 with s_q 2) run the 2-CTA cluster loop.
  for (auto [h_q, s_q] : {std::pair{16, 1}, std::pair{16, 2}, std::pair{64, 1}, std::pair{128, 1},
                          std::pair{64, 2}}) {
    DenseCase c = small_dense_case(rng, h_q, s_q);
    c.fp8 = true;
    run_dense_gpu_case(group, c);
  }
}

// An all-empty batch, forced split counts (one worker ... many tiny splits), MTP rows spanning
// tiles, a DeepSeek softmax scale, one long sequence split many ways, the V3 anchor shape.
TEST(CudaFP8DenseDecode, EdgeCases) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("fp8-edge");
  Rng rng(test_seed() * 37 + 4);
  auto with = [&](std::vector<int32_t> seqlens, int h_q, int s_q, int workers = 0) {
    DenseCase c = fp8_case(rng);
    c.seqlens = std::move(seqlens);
    c.h_q = h_q;
    c.s_q = s_q;
    c.causal = s_q > 1;
    c.num_workers = workers;
    return c;
  };
  run_dense_gpu_case(group, with({0, 0, 0}, 16, 1));
  for (int workers : {1, 2, 7, 64, 500}) {
    run_dense_gpu_case(group, with({300, 0, 5, 1000}, 16, 2, workers));
    run_dense_gpu_case(group, with({300, 0, 5, 1000}, 128, 2, workers));
  }
  run_dense_gpu_case(group, with({300, 0, 5, 1000}, 32, 3));
  run_dense_gpu_case(group, with({300, 0, 5, 1000}, 32, 4));
  DenseCase scaled = with({300, 0, 5, 1000}, 128, 1);
  scaled.softmax_scale = 0.1352f;
  run_dense_gpu_case(group, scaled);
  run_dense_gpu_case(group, with({20000, 3}, 64, 2));
  // Peaked softmax (scale 100): the rescale path after the first tile, in the 16- and 64-row
  // loops and in the cluster loop with the single consumer and (one worker, 48+ tiles) the split.
  for (int h_q : {16, 64, 128}) {
    DenseCase peaked = with({3000, 700, 65}, h_q, 1);
    peaked.softmax_scale = 100.f;
    run_dense_gpu_case(group, peaked);
  }
  DenseCase peaked_split = with({4000, 3500}, 128, 1, 1);
  peaked_split.softmax_scale = 100.f;
  run_dense_gpu_case(group, peaked_split);
  run_dense_gpu_case(group, with(draw_seqlens(rng, 16, 4096, true, 0.05), 128, 1));
}

// The decode call captured in a CUDA graph and replayed gives the same result.
TEST(CudaFP8DenseDecode, GraphCapture) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("fp8-graph");
  Rng rng(test_seed() * 37 + 5);
  for (int h_q : {128, 16}) {
    DenseCase c = fp8_case(rng);
    c.seqlens = {1000, 70, 0, 2500};
    c.h_q = h_q;
    c.s_q = 2;
    c.causal = true;
    run_dense_gpu_case(group, c, /*graph=*/true);
  }
}

// A block id outside the cache is never dereferenced by the FP8 path either.
TEST(CudaFP8DenseDecode, InvalidBlockIdGivesNaN) {
  FLASHMLA_REQUIRE_GPU();
  Rng rng(test_seed() * 37 + 6);
  DenseCase c = fp8_case(rng);
  c.seqlens = {200, 150};
  expect_invalid_block_id_gives_nan(c);
}

}  // namespace
}  // namespace flashmla::test
