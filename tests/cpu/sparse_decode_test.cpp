// Token-sparse decode through the public API against the float64 reference: -1 slots,
// topk_length (including 0), duplicate indices, an extra cache, attention sinks (finite and
// +-inf), queries without any valid index, FP8 caches, and NaN rows that must not be read.
#include <gtest/gtest.h>

#include "common/sparse_case.h"

namespace flashmla::test {
namespace {

template <typename T>
T pick(Rng& rng, std::initializer_list<T> options) {
  return *(options.begin() + rng.uniform_int(0, static_cast<int>(options.size()) - 1));
}

TEST(SparseDecode, RandomizedCasesMatchReference) {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    Rng rng(seed * 104729 + 3);
    SparseCase c;
    c.seed = seed;
    c.batch = rng.uniform_int(1, 3);
    c.s_q = pick(rng, {1, 1, 2, 4});
    c.h_q = pick(rng, {1, 3, 16, 64, 128});
    c.fp8 = rng.coin(0.3);
    c.d = c.fp8 ? 576 : pick(rng, {576, 512});
    c.dv = pick(rng, {512, 512, 256, 77});
    c.dtype = c.fp8 || rng.coin(0.7) ? DType::kBF16 : DType::kFP16;
    c.page_block_size = pick(rng, {1, 16, 33, 64});
    c.num_blocks = std::max(1, 300 / c.page_block_size);
    c.topk = pick(rng, {1, 7, 64, 100, 256});
    c.invalid_fraction = pick(rng, {0.0, 0.2, 0.7});
    c.with_topk_length = rng.coin();
    c.all_invalid_query = rng.coin(0.2);
    c.with_extra = rng.coin(0.4);
    c.extra_topk = pick(rng, {1, 33, 64});
    c.with_extra_topk_length = rng.coin();
    c.with_sink = rng.coin(0.4);
    c.softmax_scale = pick(rng, {0.0f, 0.0f, 3.0f});
    if (c.h_q * c.s_q * c.batch >= 256) c.topk = std::min(c.topk, 100);
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_sparse_case(c));
  }
}

TEST(SparseDecode, DeepSeekV32Shape) {
  SparseCase c;
  c.batch = 2;
  c.h_q = 64;
  c.topk = 512;
  c.num_blocks = 16;
  c.fp8 = true;
  c.seed = 100;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_sparse_case(c));
}

TEST(SparseDecode, TopkLengthZeroAndFull) {
  SparseCase c;
  c.batch = 3;  // lengths: 0, topk, random
  c.s_q = 2;
  c.with_topk_length = true;
  c.seed = 200;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_sparse_case(c));
}

TEST(SparseDecode, QueriesWithoutValidIndices) {
  for (bool sink : {false, true}) {
    SparseCase c;
    c.s_q = 2;
    c.all_invalid_query = true;
    c.with_sink = sink;
    c.seed = 300 + sink;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_sparse_case(c));
  }
  // Every slot -1 everywhere.
  SparseCase c;
  c.invalid_fraction = 1.0;
  c.seed = 302;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_sparse_case(c));
}

TEST(SparseDecode, DuplicateIndices) {
  SparseCase c;
  c.duplicate_fraction = 0.8;
  c.invalid_fraction = 0.0;
  c.softmax_scale = 4.0f;
  c.seed = 400;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_sparse_case(c));
}

TEST(SparseDecode, ExtraCacheAndSink) {
  uint64_t seed = 500;
  for (bool fp8 : {false, true}) {
    for (bool lengths : {false, true}) {
      SparseCase c;
      c.s_q = 2;
      c.h_q = 32;
      c.fp8 = fp8;
      c.with_extra = true;
      c.with_topk_length = lengths;
      c.with_extra_topk_length = lengths;
      c.with_sink = true;
      c.seed = ++seed;
      SCOPED_TRACE(c.describe());
      EXPECT_TRUE(check_sparse_case(c));
    }
  }
}

}  // namespace
}  // namespace flashmla::test
