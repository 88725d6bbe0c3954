// Dense decode through the public API (DecodePlan + mla_decode on CPU tensors) against the
// float64 reference: randomized shapes, edge cases of lengths and masks, FP8 caches, and the
// split-KV machinery (several worker counts on the same inputs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/dense_case.h"
#include "common/numeric.h"

namespace flashmla::test {
namespace {

// Multiply-adds of the reference for a case; keeps the randomized sweep within budget.
double reference_cost(const DenseCase& c) {
  double tokens = 0;
  for (int32_t len : c.seqlens) tokens += len;
  return tokens * c.s_q * c.h_q * (c.d + c.dv);
}

template <typename T>
T pick(Rng& rng, std::initializer_list<T> options) {
  return *(options.begin() + rng.uniform_int(0, static_cast<int>(options.size()) - 1));
}

DenseCase random_case(uint64_t seed) {
  Rng rng(seed * 7919 + 17);
  DenseCase c;
  c.seed = seed;
  c.h_q = pick(rng, {1, 3, 9, 16, 32, 63, 126, 128});
  std::vector<int> kv_heads;
  for (int h_kv : {1, 2, 3, 8}) {
    if (c.h_q % h_kv == 0) kv_heads.push_back(h_kv);
  }
  c.h_kv = kv_heads[rng.uniform_int(0, static_cast<int>(kv_heads.size()) - 1)];
  c.s_q = rng.coin(0.5) ? 1 : rng.uniform_int(2, 8);
  c.causal = rng.coin();
  c.fp8 = c.h_kv == 1 && rng.coin(0.2);
  c.d = c.fp8 ? 576 : pick(rng, {576, 512});
  c.dv = pick(rng, {512, 512, 256, 100, c.d});
  c.dtype = c.fp8 || rng.coin() ? DType::kBF16 : DType::kFP16;
  c.page_block_size = pick(rng, {1, 16, 33, 64, 128});
  c.softmax_scale = pick(rng, {0.0f, 0.0f, 0.5f, 2.0f});  // larger scales: peakier softmax
  const int batch = rng.uniform_int(1, 5);
  for (int i = 0; i < batch; ++i) {
    const double kind = rng.uniform();
    c.seqlens.push_back(kind < 0.15   ? 0
                        : kind < 0.3  ? rng.uniform_int(1, 3)
                        : kind < 0.85 ? rng.uniform_int(4, 300)
                                      : rng.uniform_int(301, 1500));
  }
  // Keep the reference under ~25M multiply-adds: shorten the sequences if needed.
  const double budget = 25e6, cost = reference_cost(c);
  if (cost > budget) {
    for (int32_t& len : c.seqlens) len = static_cast<int32_t>(len * budget / cost);
  }
  c.num_workers = pick(rng, {0, 0, 1, 3, 17});
  return c;
}

TEST(DenseDecode, RandomizedShapesMatchReference) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    const DenseCase c = random_case(seed);
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

// The performance target's shape: b = 4, h_q = 16, s_k = 4096.
TEST(DenseDecode, BenchmarkShape) {
  DenseCase c;
  c.seqlens = {4096, 4096, 4096, 4096};
  c.h_q = 16;
  c.seed = 101;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_dense_case(c));
}

TEST(DenseDecode, HeadCountsAndGroups) {
  struct Heads {
    int h_q, h_kv;
  };
  uint64_t seed = 200;
  for (Heads heads : {Heads{1, 1}, Heads{3, 1}, Heads{9, 3}, Heads{63, 1}, Heads{126, 2},
                      Heads{128, 1}, Heads{128, 8}, Heads{16, 2}, Heads{24, 8}}) {
    DenseCase c;
    c.seqlens = {37, 130, 1};
    c.h_q = heads.h_q;
    c.h_kv = heads.h_kv;
    c.s_q = 2;
    c.causal = true;
    c.seed = ++seed;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

TEST(DenseDecode, EmptySequencesAndQueriesWithoutKeys) {
  // Causal s_q = 4: in a sequence of 1 or 2 tokens, the first queries see no key (lse +inf).
  for (bool causal : {false, true}) {
    DenseCase c;
    c.seqlens = {0, 1, 0, 2, 700, 0, 3};
    c.s_q = 4;
    c.h_q = 8;
    c.causal = causal;
    c.page_block_size = 16;
    c.seed = 300 + causal;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

TEST(DenseDecode, AllSequencesEmpty) {
  for (int workers : {0, 1, 5}) {
    DenseCase c;
    c.seqlens = {0, 0, 0};
    c.s_q = 2;
    c.h_q = 4;
    c.num_workers = workers;
    c.seed = 310;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

TEST(DenseDecode, PageSizes) {
  uint64_t seed = 400;
  for (int page : {1, 16, 33, 64, 128}) {
    DenseCase c;
    c.seqlens = {page * 3 + 1, page, 2 * page - 1, 5};
    c.h_q = 16;
    c.s_q = 3;
    c.causal = true;
    c.page_block_size = page;
    c.seed = ++seed;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

TEST(DenseDecode, HeadDims) {
  struct Dims {
    int d, dv;
  };
  uint64_t seed = 500;
  for (Dims dims : {Dims{576, 512}, Dims{512, 512}, Dims{576, 576}, Dims{576, 256}, Dims{512, 64},
                    Dims{576, 1}, Dims{512, 100}}) {
    DenseCase c;
    c.seqlens = {200, 65};
    c.h_q = 8;
    c.d = dims.d;
    c.dv = dims.dv;
    c.seed = ++seed;
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

TEST(DenseDecode, FP16) {
  DenseCase c;
  c.seqlens = {513, 64, 0, 1000};
  c.h_q = 32;
  c.h_kv = 2;
  c.s_q = 2;
  c.causal = true;
  c.dtype = DType::kFP16;
  c.seed = 600;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_dense_case(c));
}

TEST(DenseDecode, FP8Cache) {
  uint64_t seed = 700;
  for (int page : {64, 33}) {
    for (int h_q : {1, 16, 128}) {
      DenseCase c;
      c.seqlens = {300, 1, 0, 777};
      if (h_q == 128) c.seqlens = {150, 1, 0, 90};
      c.h_q = h_q;
      c.s_q = h_q == 128 ? 1 : 2;
      c.causal = true;
      c.fp8 = true;
      c.page_block_size = page;
      c.seed = ++seed;
      SCOPED_TRACE(c.describe());
      EXPECT_TRUE(check_dense_case(c));
    }
  }
}

TEST(DenseDecode, SharpSoftmax) {
  // A large scale makes every query attend a handful of tokens: errors in single tokens
  // (a wrong page, a wrong mask) cannot hide in an average.
  for (float scale : {4.0f, 16.0f}) {
    DenseCase c;
    c.seqlens = {1000, 77};
    c.h_q = 16;
    c.s_q = 3;
    c.causal = true;
    c.page_block_size = 33;
    c.softmax_scale = scale;
    c.seed = 800 + static_cast<uint64_t>(scale);
    SCOPED_TRACE(c.describe());
    EXPECT_TRUE(check_dense_case(c));
  }
}

// The same inputs through plans with different worker counts: 1 worker (no split), a few,
// and many more workers than units (many splits per sequence, idle workers). Each must match
// the reference, and they must agree with each other to within a rounding of the output.
TEST(DenseDecode, SplitCountsAgree) {
  DenseCase c;
  c.seqlens = {3000, 1, 0, 640, 65, 1234};
  c.h_q = 16;
  c.s_q = 2;
  c.causal = true;
  c.seed = 900;
  DenseInputs in = make_dense_inputs(c);
  const ReferenceResult ref = reference_dense_decode(in.q, in.kv, c.dv, c.softmax_scale, c.causal);
  const DenseOutputs unsplit = run_dense_library(c, in, 1);
  EXPECT_TRUE(matches_reference(unsplit.out, unsplit.lse, ref));
  for (int workers : {2, 3, 8, 31, 100, 1000}) {
    SCOPED_TRACE("num_workers=" + std::to_string(workers));
    const DenseOutputs split = run_dense_library(c, in, workers);
    EXPECT_TRUE(matches_reference(split.out, split.lse, ref));
    int64_t differing = 0;
    for (size_t i = 0; i < split.out.bits.size(); ++i) {
      const double a = split.out.value(static_cast<int64_t>(i));
      const double b = unsplit.out.value(static_cast<int64_t>(i));
      if (std::fabs(a - b) > std::ldexp(std::fabs(b), -7) + 1e-6) ++differing;
    }
    EXPECT_EQ(differing, 0) << "outputs differ by more than one bf16 ulp from the unsplit run";
    for (size_t i = 0; i < split.lse.size(); ++i) {
      const float a = split.lse[i], b = unsplit.lse[i];
      EXPECT_TRUE(a == b || std::fabs(a - b) <= 1e-5f * std::max(1.0f, std::fabs(b)))
          << "lse " << i << ": " << a << " vs " << b;
    }
  }
}

// A single long sequence cut into many splits.
TEST(DenseDecode, LongSequenceManySplits) {
  DenseCase c;
  c.seqlens = {10000};
  c.h_q = 4;
  c.s_q = 2;
  c.causal = true;
  c.num_workers = 40;
  c.seed = 1000;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_dense_case(c));
}

// A sequence's result does not depend on the rest of the batch.
TEST(DenseDecode, BatchCompositionDoesNotMatter) {
  DenseCase single;
  single.seqlens = {900};
  single.h_q = 16;
  single.seed = 1100;
  DenseInputs single_in = make_dense_inputs(single);
  const DenseOutputs alone = run_dense_library(single, single_in, 0);

  // The same sequence (same q, same token values) as sequence 2 of a batch of 4.
  DenseCase batch = single;
  batch.seqlens = {5, 2000, 900, 0};
  DenseInputs batch_in = make_dense_inputs(batch);
  const int64_t q_row = static_cast<int64_t>(single.s_q) * single.h_q * single.d;
  std::copy(single_in.q.bits.begin(), single_in.q.bits.end(), batch_in.q.bits.begin() + 2 * q_row);
  for (int t = 0; t < 900; ++t) {
    const int64_t from = single_in.kv.row_of(0, t), to = batch_in.kv.row_of(2, t);
    std::copy_n(single_in.kv.cache.halves.begin() + from * single.d, single.d,
                batch_in.kv.cache.halves.begin() + to * single.d);
  }
  const DenseOutputs in_batch = run_dense_library(batch, batch_in, 0);
  const int64_t out_row = static_cast<int64_t>(single.s_q) * single.h_q * single.dv;
  for (int64_t i = 0; i < out_row; ++i) {
    EXPECT_NEAR(in_batch.out.value(2 * out_row + i), alone.out.value(i),
                std::ldexp(std::fabs(alone.out.value(i)), -7) + 1e-6)
        << "element " << i;
  }
}

// Non-contiguous q, out and lse (padded heads, lse stored as [b, s_q, h_q] and viewed
// transposed) give the same results as contiguous ones.
TEST(DenseDecode, StridedTensors) {
  DenseCase c;
  c.seqlens = {100, 250};
  c.h_q = 8;
  c.s_q = 3;
  c.causal = true;
  c.seed = 1200;
  DenseInputs in = make_dense_inputs(c);
  const DenseOutputs expected = run_dense_library(c, in, 0);

  const int64_t b = 2, pad = 64;
  std::vector<uint16_t> q_padded(b * c.s_q * c.h_q * (c.d + pad), 0);
  for (int64_t row = 0; row < b * c.s_q * c.h_q; ++row) {
    std::copy_n(in.q.bits.begin() + row * c.d, c.d, q_padded.begin() + row * (c.d + pad));
  }
  std::vector<uint16_t> out_padded(b * c.s_q * c.h_q * (c.dv + 8), kOutPoison);
  std::vector<float> lse_storage(b * c.s_q * c.h_q, lse_poison());

  DecodeShape shape{2, c.s_q, c.h_q, c.h_kv, c.page_block_size};
  DecodePlan plan(shape, Device::cpu(), c.dv);
  plan.update(in.kv.seqlens_view());
  DenseDecodeArgs args;
  args.q = TensorView::strided(q_padded.data(), DType::kBF16, {b, c.s_q, c.h_q, c.d},
                               {c.s_q * c.h_q * (c.d + pad), c.h_q * (c.d + pad), c.d + pad, 1});
  args.kv_cache = in.kv.cache.view();
  args.block_table = in.kv.block_table_view();
  args.cache_seqlens = in.kv.seqlens_view();
  args.out = TensorView::strided(out_padded.data(), DType::kBF16, {b, c.s_q, c.h_q, c.dv},
                                 {c.s_q * c.h_q * (c.dv + 8), c.h_q * (c.dv + 8), c.dv + 8, 1});
  args.lse = TensorView::strided(lse_storage.data(), DType::kFP32, {b, c.h_q, c.s_q},
                                 {c.s_q * c.h_q, 1, c.h_q});
  args.head_dim_v = c.dv;
  args.causal = c.causal;
  mla_decode(args, plan);

  for (int64_t row = 0; row < b * c.s_q * c.h_q; ++row) {
    for (int col = 0; col < c.dv; ++col) {
      ASSERT_EQ(out_padded[row * (c.dv + 8) + col], expected.out.bits[row * c.dv + col]);
    }
    for (int col = c.dv; col < c.dv + 8; ++col) {
      ASSERT_EQ(out_padded[row * (c.dv + 8) + col], kOutPoison) << "padding written";
    }
  }
  for (int64_t i = 0; i < b; ++i) {
    for (int s = 0; s < c.s_q; ++s) {
      for (int h = 0; h < c.h_q; ++h) {
        EXPECT_EQ(lse_storage[(i * c.s_q + s) * c.h_q + h],
                  expected.lse[(i * c.h_q + h) * c.s_q + s]);
      }
    }
  }
}

// One plan serves several layers of a step, and is updated for the next step.
TEST(DenseDecode, PlanReusedAcrossLayersAndSteps) {
  DenseCase c;
  c.seqlens = {300, 20};
  c.h_q = 16;
  c.seed = 1300;
  DenseInputs in = make_dense_inputs(c);
  const ReferenceResult ref = reference_dense_decode(in.q, in.kv, c.dv, 0, false);
  for (int layer = 0; layer < 3; ++layer) {
    const DenseOutputs o = run_dense_library(c, in, 0);
    EXPECT_TRUE(matches_reference(o.out, o.lse, ref));
  }
  // Next step: one more token per sequence (the last page may change).
  DenseCase next = c;
  next.seqlens = {301, 21};
  next.seed = 1301;
  SCOPED_TRACE(next.describe());
  EXPECT_TRUE(check_dense_case(next));
}

}  // namespace
}  // namespace flashmla::test
