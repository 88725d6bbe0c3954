// Token-sparse decode through the public API against the float64 reference: -1 slots,
// topk_length (including 0), duplicate indices, an extra cache, attention sinks (finite and
// +-inf), queries without any valid index, FP8 caches, and NaN rows that must not be read.
// Some cases go through a sparse plan (mla_sparse_decode(args, plan)), the others through the
// convenience overload.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/sparse_case.h"
#include "flashmla/decode.h"

namespace flashmla::test {
namespace {

template <typename T>
T pick(Rng& rng, std::initializer_list<T> options) {
  return *(options.begin() + rng.uniform_int(0, static_cast<int>(options.size()) - 1));
}

// check_sparse_case through mla_sparse_decode(args, plan): one CPU plan for the case's shape
// (topk + extra_topk slots) serves `layers` inputs of that shape (seeds c.seed, c.seed + 1, ...).
// Each layer must match the reference, and the convenience overload bit for bit.
::testing::AssertionResult check_with_plan(SparseCase c, int layers = 2) {
  DecodeShape shape;
  shape.batch_size = c.batch;
  shape.s_q = c.s_q;
  shape.h_q = c.h_q;
  shape.page_block_size = c.page_block_size;
  shape.topk = c.topk + (c.with_extra ? c.extra_topk : 0);
  const DecodePlan plan(shape, Device::cpu(), c.dv);
  const int64_t b = c.batch;
  for (int layer = 0; layer < layers; ++layer, ++c.seed) {
    SparseCaseData data = make_sparse_data(c);
    HalfTensor expected_out;
    std::vector<float> expected_lse;
    run_sparse_library(c, data, expected_out, expected_lse);  // the convenience overload

    HalfTensor out(c.dtype, {b, c.s_q, c.h_q, c.dv}, kOutPoison);
    std::vector<float> lse(static_cast<size_t>(b) * c.h_q * c.s_q, lse_poison());
    SparseDecodeArgs args;
    args.q = data.q.view();
    args.kv_cache = data.cache.view();
    args.indices = contiguous_view(data.indices.data(), DType::kInt32, {b, c.s_q, c.topk});
    if (c.with_topk_length) {
      args.topk_length = contiguous_view(data.topk_length.data(), DType::kInt32, {b});
    }
    if (c.with_extra) {
      args.extra_kv_cache = data.extra_cache.view();
      args.extra_indices =
          contiguous_view(data.extra_indices.data(), DType::kInt32, {b, c.s_q, c.extra_topk});
      if (c.with_extra_topk_length) {
        args.extra_topk_length = contiguous_view(data.extra_topk_length.data(), DType::kInt32, {b});
      }
    }
    if (c.with_sink) args.attn_sink = contiguous_view(data.attn_sink.data(), DType::kFP32, {c.h_q});
    args.out = out.view();
    args.lse = contiguous_view(lse.data(), DType::kFP32, {b, c.h_q, c.s_q});
    args.head_dim_v = c.dv;
    args.softmax_scale = c.softmax_scale;
    mla_sparse_decode(args, plan);

    const std::string where = " (layer " + std::to_string(layer) + " of one plan)";
    auto result = matches_reference(out, lse, reference_sparse_case(c, data));
    if (!result) return result << where;
    if (out.bits != expected_out.bits || lse != expected_lse) {
      return ::testing::AssertionFailure()
             << "the plan and convenience overloads give different results" << where;
    }
  }
  return ::testing::AssertionSuccess();
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
    EXPECT_TRUE(seed % 3 == 0 ? check_with_plan(c) : check_sparse_case(c));
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
  EXPECT_TRUE(check_with_plan(c));
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
      EXPECT_TRUE(lengths ? check_with_plan(c) : check_sparse_case(c));
    }
  }
}

}  // namespace
}  // namespace flashmla::test
