// Argument validation of the public API: every rejected argument raises flashmla::Error with
// the right kind (kType for dtype/device, kValue for shapes, strides and values) and the name
// of the argument. Each test starts from a valid call and breaks one thing.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "flashmla/decode.h"
#include "flashmla/error.h"

namespace flashmla {
namespace {

const char* kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kValue:
      return "kValue";
    case ErrorKind::kType:
      return "kType";
    case ErrorKind::kNotSupported:
      return "kNotSupported";
    case ErrorKind::kRuntime:
      return "kRuntime";
  }
  return "?";
}

::testing::AssertionResult raises(const std::function<void()>& call, ErrorKind kind,
                                  const std::string& argument) {
  try {
    call();
  } catch (const Error& e) {
    if (e.kind() == kind && e.argument() == argument) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "raised " << kind_name(e.kind()) << " for \"" << e.argument() << "\" (" << e.what()
           << "), expected " << kind_name(kind) << " for \"" << argument << "\"";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "raised a non-flashmla exception: " << e.what();
  }
  return ::testing::AssertionFailure()
         << "did not raise; expected " << kind_name(kind) << " for \"" << argument << "\"";
}

::testing::AssertionResult succeeds(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "raised: " << e.what();
  }
  return ::testing::AssertionSuccess();
}

// A view of the same storage with one dimension's size or stride changed.
TensorView with_dim(TensorView v, int dim, int64_t size) {
  v.shape[dim] = size;
  return v;
}
TensorView with_stride(TensorView v, int dim, int64_t stride) {
  v.strides[dim] = stride;
  return v;
}
TensorView with_dtype(TensorView v, DType dtype) {
  v.dtype = dtype;
  return v;
}
TensorView on_cuda(TensorView v) {
  v.device = Device::cuda(0);
  return v;
}
TensorView dropped_dim(TensorView v) {  // rank - 1
  --v.ndim;
  return v;
}

// A valid dense call: b = 2, s_q = 2, h_q = 4, h_kv = 2, d = 576, dv = 512, pages of 16.
class DenseValidation : public ::testing::Test {
 protected:
  static constexpr int kB = 2, kSq = 2, kHq = 4, kHkv = 2, kD = 576, kDv = 512, kPage = 16,
                       kBlocks = 4, kMaxBlocks = 3;

  DenseValidation()
      : q_(kB * kSq * kHq * kD, 0),
        kv_(kBlocks * kPage * kHkv * kD, 0),
        // Sequence 0 (20 tokens) uses pages 2, 0; sequence 1 (5 tokens) uses page 3. The other
        // columns are garbage, which must be accepted.
        block_table_{2, 0, -7, 3, 99, -1},
        seqlens_{20, 5},
        out_(kB * kSq * kHq * kDv),
        lse_(kB * kHq * kSq),
        plan_(DecodeShape{kB, kSq, kHq, kHkv, kPage}, Device::cpu(), kDv) {
    plan_.update(seqlens_view());
    args_.q = TensorView::contiguous(q_.data(), DType::kBF16, {kB, kSq, kHq, kD});
    args_.kv_cache = TensorView::contiguous(kv_.data(), DType::kBF16, {kBlocks, kPage, kHkv, kD});
    args_.block_table =
        TensorView::contiguous(block_table_.data(), DType::kInt32, {kB, kMaxBlocks});
    args_.cache_seqlens = seqlens_view();
    args_.out = TensorView::contiguous(out_.data(), DType::kBF16, {kB, kSq, kHq, kDv});
    args_.lse = TensorView::contiguous(lse_.data(), DType::kFP32, {kB, kHq, kSq});
    args_.head_dim_v = kDv;
    args_.causal = true;
  }

  TensorView seqlens_view() { return TensorView::contiguous(seqlens_.data(), DType::kInt32, {kB}); }
  std::function<void()> call(const DenseDecodeArgs& args) {
    return [this, args] { mla_decode(args, plan_); };
  }
  std::function<void()> call(const DenseDecodeArgs& args, const DecodePlan& plan) {
    return [args, &plan] { mla_decode(args, plan); };
  }
  DenseDecodeArgs args_with(const std::function<void(DenseDecodeArgs&)>& change) {
    DenseDecodeArgs a = args_;
    change(a);
    return a;
  }

  std::vector<uint16_t> q_, kv_;
  std::vector<int32_t> block_table_, seqlens_;
  std::vector<uint16_t> out_;
  std::vector<float> lse_;
  DecodePlan plan_;
  DenseDecodeArgs args_;
};

TEST_F(DenseValidation, ValidCallSucceeds) {
  EXPECT_TRUE(succeeds(call(args_)));
}

TEST_F(DenseValidation, Q) {
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.q = dropped_dim(a.q); })), ErrorKind::kValue, "q"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.q = with_dtype(a.q, DType::kFP32); })),
                     ErrorKind::kType, "q"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.q = with_stride(a.q, 3, 2); })),
                     ErrorKind::kValue, "q"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.q = with_dim(a.q, 3, 128); })),
                     ErrorKind::kValue, "q"));
}

TEST_F(DenseValidation, KVCache) {
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.kv_cache = dropped_dim(a.kv_cache); })),
                     ErrorKind::kValue, "kv_cache"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.kv_cache = with_dtype(a.kv_cache, DType::kFP16); })),
             ErrorKind::kType, "kv_cache"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.kv_cache = on_cuda(a.kv_cache); })),
                     ErrorKind::kType, "kv_cache"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.kv_cache = with_dim(a.kv_cache, 3, 512); })),
                     ErrorKind::kValue, "kv_cache"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.kv_cache = with_stride(a.kv_cache, 3, 3); })),
                     ErrorKind::kValue, "kv_cache"));
  // h_kv = 3 does not divide h_q = 4.
  EXPECT_TRUE(raises(call(args_with([](auto& a) {
                       a.kv_cache =
                           TensorView::strided(a.kv_cache.data, DType::kBF16, {2, kPage, 3, kD},
                                               {kPage * 3 * kD, 3 * kD, kD, 1});
                     })),
                     ErrorKind::kValue, "kv_cache"));
}

TEST_F(DenseValidation, FP8CacheNeedsBF16QAndOneHeadOf656Bytes) {
  std::vector<uint8_t> fp8(kBlocks * kPage * kFP8RowBytes);
  const TensorView fp8_cache =
      TensorView::contiguous(fp8.data(), DType::kUInt8, {kBlocks, kPage, 1, kFP8RowBytes});
  // q fp16 with an FP8 cache.
  std::vector<uint16_t> out16(out_.size());
  EXPECT_TRUE(
      raises(call(args_with([&](auto& a) {
               a.kv_cache = fp8_cache;
               a.q = with_dtype(a.q, DType::kFP16);
               a.out = TensorView::contiguous(out16.data(), DType::kFP16, {kB, kSq, kHq, kDv});
             })),
             ErrorKind::kType, "q"));
  // Two KV heads.
  EXPECT_TRUE(raises(call(args_with([&](auto& a) {
                       a.kv_cache = TensorView::contiguous(fp8.data(), DType::kUInt8,
                                                           {kBlocks, kPage / 2, 2, kFP8RowBytes});
                     })),
                     ErrorKind::kValue, "kv_cache"));
  // 576 bytes per row.
  EXPECT_TRUE(raises(call(args_with([&](auto& a) { a.kv_cache = with_dim(fp8_cache, 3, 576); })),
                     ErrorKind::kValue, "kv_cache"));
}

TEST_F(DenseValidation, HeadDimV) {
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.head_dim_v = kD + 1; })), ErrorKind::kValue,
                     "head_dim_v"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.head_dim_v = 0; })), ErrorKind::kValue, "head_dim_v"));
}

TEST_F(DenseValidation, BlockTable) {
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.block_table = dropped_dim(a.block_table); })),
                     ErrorKind::kValue, "block_table"));
  EXPECT_TRUE(raises(
      call(args_with([](auto& a) { a.block_table = with_dtype(a.block_table, DType::kFP32); })),
      ErrorKind::kType, "block_table"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.block_table = on_cuda(a.block_table); })),
                     ErrorKind::kType, "block_table"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.block_table = with_dim(a.block_table, 0, 1); })),
             ErrorKind::kValue, "block_table"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.block_table = with_stride(a.block_table, 1, 2); })),
             ErrorKind::kValue, "block_table"));
  // Too few columns for sequence 0's two pages.
  EXPECT_TRUE(raises(call(args_with([](auto& a) {
                       a.block_table = TensorView::strided(a.block_table.data, DType::kInt32,
                                                           {kB, 1}, {kMaxBlocks, 1});
                     })),
                     ErrorKind::kValue, "block_table"));
}

TEST_F(DenseValidation, BlockIdsOutsideTheCacheWithinUsedPages) {
  for (int32_t bad : {-1, kBlocks, 1 << 30}) {
    for (int slot : {0, 1, 3}) {  // both pages of sequence 0, the page of sequence 1
      std::vector<int32_t> table = block_table_;
      table[slot] = bad;
      DenseDecodeArgs a = args_;
      a.block_table = TensorView::contiguous(table.data(), DType::kInt32, {kB, kMaxBlocks});
      EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "block_table"))
          << "id " << bad << " at " << slot;
    }
  }
  // Garbage past the last used page is never read, so it is accepted.
  std::vector<int32_t> table = {2, 0, INT32_MIN, 3, INT32_MAX, -1000};
  DenseDecodeArgs a = args_;
  a.block_table = TensorView::contiguous(table.data(), DType::kInt32, {kB, kMaxBlocks});
  EXPECT_TRUE(succeeds(call(a)));
}

TEST_F(DenseValidation, CacheSeqlens) {
  EXPECT_TRUE(raises(
      call(args_with([](auto& a) { a.cache_seqlens = with_dtype(a.cache_seqlens, DType::kFP32); })),
      ErrorKind::kType, "cache_seqlens"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.cache_seqlens = on_cuda(a.cache_seqlens); })),
                     ErrorKind::kType, "cache_seqlens"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.cache_seqlens = with_dim(a.cache_seqlens, 0, 1); })),
             ErrorKind::kValue, "cache_seqlens"));
  EXPECT_TRUE(raises(
      call(args_with([](auto& a) {
        a.cache_seqlens = TensorView::contiguous(a.cache_seqlens.data, DType::kInt32, {1, kB});
      })),
      ErrorKind::kValue, "cache_seqlens"));
  std::vector<int32_t> negative = {20, -1};
  EXPECT_TRUE(raises(call(args_with([&](auto& a) {
                       a.cache_seqlens =
                           TensorView::contiguous(negative.data(), DType::kInt32, {kB});
                     })),
                     ErrorKind::kValue, "cache_seqlens"));
  DecodePlan plan(DecodeShape{kB, kSq, kHq, kHkv, kPage}, Device::cpu(), kDv);
  EXPECT_TRUE(
      raises([&] { plan.update(TensorView::contiguous(negative.data(), DType::kInt32, {kB})); },
             ErrorKind::kValue, "cache_seqlens"));
}

TEST_F(DenseValidation, Out) {
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.out = dropped_dim(a.out); })),
                     ErrorKind::kValue, "out"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.out = with_dtype(a.out, DType::kFP16); })),
                     ErrorKind::kType, "out"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.out = on_cuda(a.out); })), ErrorKind::kType, "out"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.out = with_dim(a.out, 3, 256); })),
                     ErrorKind::kValue, "out"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.out = with_dim(a.out, 2, kHq - 1); })),
                     ErrorKind::kValue, "out"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.out = with_stride(a.out, 3, 2); })),
                     ErrorKind::kValue, "out"));
}

TEST_F(DenseValidation, Lse) {
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.lse = dropped_dim(a.lse); })),
                     ErrorKind::kValue, "lse"));
  EXPECT_TRUE(raises(call(args_with([](auto& a) { a.lse = with_dtype(a.lse, DType::kBF16); })),
                     ErrorKind::kType, "lse"));
  EXPECT_TRUE(
      raises(call(args_with([](auto& a) { a.lse = on_cuda(a.lse); })), ErrorKind::kType, "lse"));
  // [b, s_q, h_q] instead of [b, h_q, s_q].
  EXPECT_TRUE(raises(call(args_with([](auto& a) {
                       a.lse = TensorView::contiguous(a.lse.data, DType::kFP32, {kB, kSq, kHq});
                     })),
                     ErrorKind::kValue, "lse"));
}

TEST_F(DenseValidation, PlanForAnotherShape) {
  std::vector<int32_t> seqlens3 = {20, 5, 1};
  struct Variant {
    DecodeShape shape;
    int dv;
  };
  for (const Variant& v : {Variant{{3, kSq, kHq, kHkv, kPage}, kDv},  // batch size
                           Variant{{kB, 1, kHq, kHkv, kPage}, kDv},   // s_q
                           Variant{{kB, kSq, 8, kHkv, kPage}, kDv},   // h_q
                           Variant{{kB, kSq, kHq, 1, kPage}, kDv},    // h_kv
                           Variant{{kB, kSq, kHq, kHkv, 64}, kDv},    // page size
                           Variant{{kB, kSq, kHq, kHkv, kPage}, 256}}) {
    DecodePlan plan(v.shape, Device::cpu(), v.dv);
    plan.update(TensorView::contiguous(seqlens3.data(), DType::kInt32, {v.shape.batch_size}));
    EXPECT_TRUE(raises(call(args_, plan), ErrorKind::kValue, "plan"))
        << "b=" << v.shape.batch_size << " s_q=" << v.shape.s_q << " h_q=" << v.shape.h_q;
  }
}

TEST_F(DenseValidation, SparsePlanRefused) {
  DecodeShape shape{kB, kSq, kHq, 1, kPage};
  shape.topk = 64;
  const DecodePlan sparse(shape, Device::cpu(), kDv);
  EXPECT_TRUE(raises(call(args_, sparse), ErrorKind::kValue, "plan"));
}

TEST_F(DenseValidation, PlanNotUpdatedOrUpdatedForOtherLengths) {
  DecodePlan fresh(DecodeShape{kB, kSq, kHq, kHkv, kPage}, Device::cpu(), kDv);
  EXPECT_FALSE(fresh.planned());
  EXPECT_TRUE(raises(call(args_, fresh), ErrorKind::kValue, "plan"));

  std::vector<int32_t> other = {21, 5};
  DecodePlan stale(DecodeShape{kB, kSq, kHq, kHkv, kPage}, Device::cpu(), kDv);
  stale.update(TensorView::contiguous(other.data(), DType::kInt32, {kB}));
  EXPECT_TRUE(raises(call(args_, stale), ErrorKind::kValue, "plan"));
  // The plan's own update validates its argument too.
  EXPECT_TRUE(
      raises([&] { stale.update(TensorView::contiguous(other.data(), DType::kInt32, {1})); },
             ErrorKind::kValue, "cache_seqlens"));
  EXPECT_TRUE(
      raises([&] { stale.update(TensorView::contiguous(other.data(), DType::kFP32, {kB})); },
             ErrorKind::kType, "cache_seqlens"));
}

TEST(PlanValidation, ShapeChecks) {
  EXPECT_TRUE(raises(
      [] {
        DecodePlan(DecodeShape{2, 1, 4, 3, 64}, Device::cpu());
      },
      ErrorKind::kValue, "plan"));
  EXPECT_TRUE(raises(
      [] {
        DecodePlan(DecodeShape{0, 1, 4, 1, 64}, Device::cpu());
      },
      ErrorKind::kValue, "plan"));
  EXPECT_TRUE(raises(
      [] {
        DecodePlan(DecodeShape{1, 1, 4, 1, 64}, Device::cpu(), 0);
      },
      ErrorKind::kValue, "head_dim_v"));
#if !defined(FLASHMLA_WITH_CUDA)
  EXPECT_TRUE(raises(
      [] {
        DecodePlan(DecodeShape{1, 1, 4, 1, 64}, Device::cuda(0));
      },
      ErrorKind::kNotSupported, "plan"));
#endif
}

TEST(PlanValidation, SparsePlans) {
  auto sparse_shape = [](int h_kv, int topk) {
    DecodeShape shape{2, 2, 4, h_kv, 64};
    shape.topk = topk;
    return shape;
  };
  EXPECT_TRUE(
      raises([&] { DecodePlan(sparse_shape(2, 8), Device::cpu()); }, ErrorKind::kValue, "plan"));
  EXPECT_TRUE(
      raises([&] { DecodePlan(sparse_shape(1, -1), Device::cpu()); }, ErrorKind::kValue, "plan"));
  // Planned when made: there are no lengths to update it with.
  DecodePlan plan(sparse_shape(1, 8), Device::cpu());
  EXPECT_TRUE(plan.planned());
  EXPECT_EQ(plan.shape().topk, 8);
  std::vector<int32_t> seqlens = {8, 8};
  EXPECT_TRUE(
      raises([&] { plan.update(TensorView::contiguous(seqlens.data(), DType::kInt32, {2})); },
             ErrorKind::kValue, "plan"));
  EXPECT_TRUE(plan.planned());
#if !defined(FLASHMLA_WITH_CUDA)
  EXPECT_TRUE(raises([&] { DecodePlan(sparse_shape(1, 8), Device::cuda(0)); },
                     ErrorKind::kNotSupported, "plan"));
#endif
}

// A valid sparse call: b = 2, s_q = 1, h_q = 4, cache of 3 pages x 16 rows (48 rows).
class SparseValidation : public ::testing::Test {
 protected:
  static constexpr int kB = 2, kHq = 4, kD = 576, kDv = 512, kRows = 48, kTopk = 8;

  SparseValidation()
      : q_(kB * kHq * kD, 0),
        kv_(kRows * kD, 0),
        extra_kv_(2 * 8 * kD, 0),
        indices_{0, 5, -1, 47, 47, 3, -1, -1, 1, 2, 3, 4, 5, 6, 7, 8},
        extra_indices_{0, 15, -1, 3, 2, 1},
        lengths_{3, kTopk},
        sink_(kHq, 0.5f),
        out_(kB * kHq * kDv),
        lse_(kB * kHq) {
    args_.q = TensorView::contiguous(q_.data(), DType::kBF16, {kB, 1, kHq, kD});
    args_.kv_cache = TensorView::contiguous(kv_.data(), DType::kBF16, {3, 16, 1, kD});
    args_.indices = TensorView::contiguous(indices_.data(), DType::kInt32, {kB, 1, kTopk});
    args_.topk_length = TensorView::contiguous(lengths_.data(), DType::kInt32, {kB});
    args_.attn_sink = TensorView::contiguous(sink_.data(), DType::kFP32, {kHq});
    args_.out = TensorView::contiguous(out_.data(), DType::kBF16, {kB, 1, kHq, kDv});
    args_.lse = TensorView::contiguous(lse_.data(), DType::kFP32, {kB, kHq, 1});
    args_.head_dim_v = kDv;
  }
  SparseDecodeArgs with_extra() {
    SparseDecodeArgs a = args_;
    a.extra_kv_cache = TensorView::contiguous(extra_kv_.data(), DType::kBF16, {2, 8, 1, kD});
    a.extra_indices = TensorView::contiguous(extra_indices_.data(), DType::kInt32, {kB, 1, 3});
    return a;
  }
  // The valid call with every tensor on cuda:0 (never dereferenced: validation stops first).
  SparseDecodeArgs args_on_cuda() const {
    SparseDecodeArgs a = args_;
    a.q = on_cuda(a.q);
    a.kv_cache = on_cuda(a.kv_cache);
    a.indices = on_cuda(a.indices);
    a.topk_length = on_cuda(*a.topk_length);
    a.attn_sink = on_cuda(*a.attn_sink);
    a.out = on_cuda(a.out);
    a.lse = on_cuda(a.lse);
    return a;
  }
  static std::function<void()> call(const SparseDecodeArgs& args) {
    return [args] { mla_sparse_decode(args); };
  }
  static std::function<void()> call(const SparseDecodeArgs& args, const DecodePlan& plan) {
    return [args, &plan] { mla_sparse_decode(args, plan); };
  }
  // The sparse plan of the valid call (s_q = 1, h_kv = 1), `topk` slots per query.
  static DecodeShape plan_shape(int topk, int b = kB, int s_q = 1, int h_q = kHq) {
    DecodeShape shape{b, s_q, h_q, 1, 16};
    shape.topk = topk;
    return shape;
  }

  std::vector<uint16_t> q_, kv_, extra_kv_;
  std::vector<int32_t> indices_, extra_indices_, lengths_;
  std::vector<float> sink_;
  std::vector<uint16_t> out_;
  std::vector<float> lse_;
  SparseDecodeArgs args_;
};

TEST_F(SparseValidation, ValidCallsSucceed) {
  EXPECT_TRUE(succeeds(call(args_)));
  EXPECT_TRUE(succeeds(call(with_extra())));
}

TEST_F(SparseValidation, Indices) {
  for (int32_t bad : {kRows, -2, INT32_MIN}) {
    std::vector<int32_t> indices = indices_;
    indices[9] = bad;  // past topk_length[0] = 3 still counts: every entry is validated
    SparseDecodeArgs a = args_;
    a.indices = TensorView::contiguous(indices.data(), DType::kInt32, {kB, 1, kTopk});
    EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "indices")) << bad;
  }
  SparseDecodeArgs a = args_;
  a.indices = with_dtype(args_.indices, DType::kFP32);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "indices"));
  a = args_;
  a.indices = dropped_dim(args_.indices);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "indices"));
  a = args_;
  a.indices = with_dim(args_.indices, 0, 1);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "indices"));
  a = args_;
  a.indices = with_stride(args_.indices, 2, 2);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "indices"));
}

TEST_F(SparseValidation, TopkLength) {
  for (int32_t bad : {kTopk + 1, -1}) {
    std::vector<int32_t> lengths = {bad, 1};
    SparseDecodeArgs a = args_;
    a.topk_length = TensorView::contiguous(lengths.data(), DType::kInt32, {kB});
    EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "topk_length")) << bad;
  }
  SparseDecodeArgs a = args_;
  a.topk_length = with_dtype(*args_.topk_length, DType::kFP32);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "topk_length"));
  a.topk_length = with_dim(*args_.topk_length, 0, 1);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "topk_length"));
}

TEST_F(SparseValidation, AttnSink) {
  SparseDecodeArgs a = args_;
  a.attn_sink = with_dim(*args_.attn_sink, 0, kHq - 1);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "attn_sink"));
  a.attn_sink = with_dtype(*args_.attn_sink, DType::kBF16);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "attn_sink"));
  a.attn_sink = on_cuda(*args_.attn_sink);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "attn_sink"));
}

TEST_F(SparseValidation, ExtraCache) {
  SparseDecodeArgs a = with_extra();
  a.extra_indices = OptionalTensor();
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_indices"));
  a = with_extra();
  a.extra_kv_cache = OptionalTensor();
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_kv_cache"));

  std::vector<int32_t> bad = extra_indices_;
  bad[4] = 16;  // the extra cache has 2 x 8 rows
  a = with_extra();
  a.extra_indices = TensorView::contiguous(bad.data(), DType::kInt32, {kB, 1, 3});
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_indices"));

  std::vector<int32_t> lengths = {4, 0};  // > extra_topk = 3
  a = with_extra();
  a.extra_topk_length = TensorView::contiguous(lengths.data(), DType::kInt32, {kB});
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_topk_length"));
  a = args_;  // extra_topk_length without an extra cache
  lengths = {1, 0};
  a.extra_topk_length = TensorView::contiguous(lengths.data(), DType::kInt32, {kB});
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_topk_length"));

  // The extra cache must be stored like the main one.
  std::vector<uint8_t> fp8(2 * 8 * kFP8RowBytes);
  a = with_extra();
  a.extra_kv_cache = TensorView::contiguous(fp8.data(), DType::kUInt8, {2, 8, 1, kFP8RowBytes});
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "extra_kv_cache"));
  a = with_extra();
  a.extra_kv_cache = with_dim(a.extra_kv_cache.view, 3, 512);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "extra_kv_cache"));
}

TEST_F(SparseValidation, PlanOverload) {
  const DecodePlan plan(plan_shape(kTopk), Device::cpu(), kDv);
  EXPECT_TRUE(succeeds(call(args_, plan)));
  EXPECT_TRUE(succeeds(call(args_, plan)));  // one plan serves every layer
  // With an extra cache the plan counts topk + extra_topk slots.
  const DecodePlan with_extra_plan(plan_shape(kTopk + 3), Device::cpu(), kDv);
  EXPECT_TRUE(succeeds(call(with_extra(), with_extra_plan)));
  EXPECT_TRUE(raises(call(with_extra(), plan), ErrorKind::kValue, "plan"));
  EXPECT_TRUE(raises(call(args_, with_extra_plan), ErrorKind::kValue, "plan"));
}

TEST_F(SparseValidation, PlanForAnotherShape) {
  struct Variant {
    DecodeShape shape;
    int dv;
    const char* what;
  };
  for (const Variant& v :
       {Variant{plan_shape(kTopk, 3), kDv, "batch size"},
        Variant{plan_shape(kTopk, kB, 2), kDv, "s_q"},
        Variant{plan_shape(kTopk, kB, 1, 8), kDv, "h_q"},
        Variant{plan_shape(kTopk + 1), kDv, "topk"}, Variant{plan_shape(kTopk - 1), kDv, "topk"},
        Variant{plan_shape(kTopk), 256, "head_dim_v"}}) {
    const DecodePlan plan(v.shape, Device::cpu(), v.dv);
    EXPECT_TRUE(raises(call(args_, plan), ErrorKind::kValue, "plan")) << v.what;
  }
  // A dense plan of the same shape.
  DecodePlan dense(DecodeShape{kB, 1, kHq, 1, 16}, Device::cpu(), kDv);
  std::vector<int32_t> seqlens = {48, 48};
  dense.update(TensorView::contiguous(seqlens.data(), DType::kInt32, {kB}));
  EXPECT_TRUE(raises(call(args_, dense), ErrorKind::kValue, "plan"));
}

TEST_F(SparseValidation, PlanOnAnotherDevice) {
  // Tensors on cuda:0 with a CPU plan.
  const DecodePlan plan(plan_shape(kTopk), Device::cpu(), kDv);
  EXPECT_TRUE(raises(call(args_on_cuda(), plan), ErrorKind::kValue, "plan"));
}

TEST_F(SparseValidation, CacheOutAndHeadDimV) {
  SparseDecodeArgs a = args_;
  a.kv_cache = TensorView::contiguous(kv_.data(), DType::kBF16, {3, 8, 2, kD});  // h_kv = 2
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "kv_cache"));
  a = args_;
  a.kv_cache = with_dtype(args_.kv_cache, DType::kFP16);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "kv_cache"));
  a = args_;
  a.head_dim_v = kD + 64;
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "head_dim_v"));
  a = args_;
  a.out = with_dim(args_.out, 3, 256);
  EXPECT_TRUE(raises(call(a), ErrorKind::kValue, "out"));
  a = args_;
  a.lse = with_dtype(args_.lse, DType::kFP16);
  EXPECT_TRUE(raises(call(a), ErrorKind::kType, "lse"));
}

// quantize_kv_cache_fp8 / dequantize_kv_cache_fp8.
class FP8ConvertValidation : public ::testing::Test {
 protected:
  FP8ConvertValidation() : bf16_(2 * 4 * 576), fp8_(2 * 4 * kFP8RowBytes) {
    bf16_view_ = TensorView::contiguous(bf16_.data(), DType::kBF16, {2, 4, 1, 576});
    fp8_view_ = TensorView::contiguous(fp8_.data(), DType::kUInt8, {2, 4, 1, kFP8RowBytes});
  }
  std::vector<uint16_t> bf16_;
  std::vector<uint8_t> fp8_;
  TensorView bf16_view_, fp8_view_;
};

TEST_F(FP8ConvertValidation, Quantize) {
  auto quantize = [](TensorView src, TensorView dst) {
    return [src, dst] { quantize_kv_cache_fp8(src, dst); };
  };
  EXPECT_TRUE(succeeds(quantize(bf16_view_, fp8_view_)));
  EXPECT_TRUE(succeeds(quantize(bf16_view_, with_dtype(fp8_view_, DType::kFP8E4M3))));
  EXPECT_TRUE(
      raises(quantize(with_dtype(bf16_view_, DType::kFP16), fp8_view_), ErrorKind::kType, "src"));
  EXPECT_TRUE(raises(quantize(with_dim(bf16_view_, 3, 512), fp8_view_), ErrorKind::kValue, "src"));
  EXPECT_TRUE(raises(quantize(with_stride(bf16_view_, 3, 2), fp8_view_), ErrorKind::kValue, "src"));
  EXPECT_TRUE(
      raises(quantize(bf16_view_, with_dtype(fp8_view_, DType::kBF16)), ErrorKind::kType, "dst"));
  EXPECT_TRUE(raises(quantize(bf16_view_, with_dim(fp8_view_, 3, 576)), ErrorKind::kValue, "dst"));
  EXPECT_TRUE(raises(quantize(bf16_view_, with_dim(fp8_view_, 0, 1)), ErrorKind::kValue, "dst"));
  EXPECT_TRUE(raises(quantize(bf16_view_, on_cuda(fp8_view_)), ErrorKind::kType, "dst"));
}

TEST_F(FP8ConvertValidation, Dequantize) {
  auto dequantize = [](TensorView src, TensorView dst) {
    return [src, dst] { dequantize_kv_cache_fp8(src, dst); };
  };
  EXPECT_TRUE(succeeds(dequantize(fp8_view_, bf16_view_)));
  EXPECT_TRUE(raises(dequantize(bf16_view_, bf16_view_), ErrorKind::kType, "src"));
  EXPECT_TRUE(
      raises(dequantize(with_dim(fp8_view_, 3, 576), bf16_view_), ErrorKind::kValue, "src"));
  EXPECT_TRUE(raises(dequantize(fp8_view_, fp8_view_), ErrorKind::kType, "dst"));
  EXPECT_TRUE(raises(dequantize(fp8_view_, with_dim(bf16_view_, 1, 3)), ErrorKind::kValue, "dst"));
}

#if !defined(FLASHMLA_WITH_CUDA)
// CUDA tensors in a build without CUDA: the plan-less form names q, not the plan it would make.
TEST_F(SparseValidation, CudaTensorsWithoutCudaBackend) {
  EXPECT_TRUE(raises(call(args_on_cuda()), ErrorKind::kNotSupported, "q"));
}
#endif

}  // namespace
}  // namespace flashmla
