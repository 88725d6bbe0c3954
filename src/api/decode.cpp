// The decode entry points: validate every argument once, fill the params struct, dispatch by
// device. Values that live in device memory (cache_seqlens, block ids, indices) are checked here
// only for CPU tensors; the CUDA kernels never dereference an out-of-range id.
#include "flashmla/decode.h"

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>

#include "api/backends.h"
#include "api/validate.h"
#include "common/plan_state.h"

namespace flashmla {

using detail::fail_type;
using detail::fail_value;
using detail::TensorCheck;

namespace {

std::string str(int64_t v) {
  return std::to_string(v);
}

[[noreturn]] void no_cuda(const char* argument) {
  throw Error(ErrorKind::kNotSupported, argument,
              "is a CUDA tensor, but this build of flashmla has no CUDA backend "
              "(configure with FLASHMLA_CUDA=ON)");
}

#if defined(FLASHMLA_WITH_CUDA)
#define FLASHMLA_CUDA_BACKEND(fn) &detail::cuda::fn
#else
#define FLASHMLA_CUDA_BACKEND(fn) nullptr
#endif

// Runs validated params on the backend of `device`; `cuda_fn` is null in builds without CUDA.
template <typename Params>
void run_on_backend(const Device& device, const char* argument, const Params& params,
                    void (*cpu_fn)(const Params&),
                    std::type_identity_t<void (*)(const Params&, void*)> cuda_fn, void* stream) {
  if (!device.is_cuda()) {
    cpu_fn(params);
  } else if (cuda_fn == nullptr) {
    no_cuda(argument);
  } else {
#if defined(FLASHMLA_WITH_CUDA)
    detail::cuda::DeviceGuard guard(device.index);
#endif
    cuda_fn(params, stream);
  }
}

bool is_fp8_cache(const TensorView& cache) {
  return cache.dtype == DType::kFP8E4M3 || cache.dtype == DType::kUInt8;
}

detail::ActType act_type_of(DType t) {
  return t == DType::kBF16 ? detail::ActType::kBF16 : detail::ActType::kFP16;
}

// Checks a KV cache against q [b, s_q, h_q, d] and returns the kernels' view of it.
// `h_kv_required` > 0 pins the number of KV heads (sparse decode: 1).
detail::KVCacheView check_kv_cache(const TensorView& cache, const char* name, const TensorView& q,
                                   int h_kv_required) {
  const int64_t d = q.shape[3];
  TensorCheck check(cache, name, "[num_blocks, page_block_size, h_kv, d]");
  check.rank(4).device(q.device, "q").last_dim_contiguous().non_null();
  detail::KVCacheView kv;
  if (is_fp8_cache(cache)) {
    if (q.dtype != DType::kBF16) {
      fail_type("q", "an FP8 KV cache needs bf16 q, got " + std::string(dtype_name(q.dtype)));
    }
    if (d != 576) fail_value("q", "an FP8 KV cache needs d = 576, got d = " + str(d));
    check.dim(2, 1, "h_kv; the FP8 cache has one KV head").dim(3, kFP8RowBytes, "bytes per token");
    kv.format = detail::KVFormat::kFP8WithScale;
  } else {
    if (cache.dtype != q.dtype) {
      fail_type(name, "expected the dtype of q (" + std::string(dtype_name(q.dtype)) +
                          ") or an FP8 cache (fp8_e4m3/uint8), got " + cache.describe());
    }
    check.dim(3, d, "d, as in q");
    kv.format = q.dtype == DType::kBF16 ? detail::KVFormat::kBF16 : detail::KVFormat::kFP16;
  }
  if (h_kv_required > 0) check.dim(2, h_kv_required, "h_kv");
  if (cache.shape[0] < 1 || cache.shape[1] < 1 || cache.shape[2] < 1) {
    fail_value(name,
               "needs at least one page, one token per page and one head, got " + cache.describe());
  }
  if (cache.shape[0] > INT32_MAX || cache.shape[0] * cache.shape[1] > INT32_MAX) {
    fail_value(name, "has more than 2^31 token rows, got " + cache.describe());
  }
  kv.data = cache.data;
  kv.num_blocks = static_cast<int>(cache.shape[0]);
  kv.page_block_size = static_cast<int>(cache.shape[1]);
  kv.block_stride = cache.strides[0];
  kv.row_stride = cache.strides[1];
  kv.head_stride = cache.strides[2];
  return kv;
}

void check_q(const TensorView& q) {
  TensorCheck(q, "q", "[b, s_q, h_q, d]")
      .rank(4)
      .dtype({DType::kBF16, DType::kFP16})
      .last_dim_contiguous()
      .non_null();
  if (q.shape[0] < 1 || q.shape[1] < 1 || q.shape[2] < 1) {
    fail_value("q", "b, s_q and h_q must be >= 1, got " + q.describe());
  }
  if (q.shape[3] != 576 && q.shape[3] != 512) {
    fail_value("q", "head dim d must be 576 or 512, got " + str(q.shape[3]));
  }
}

void check_head_dim_v(int dv, int64_t d) {
  if (dv < 1 || dv > d) {
    fail_value("head_dim_v", "must be in [1, d = " + str(d) + "], got " + str(dv));
  }
}

// out [b, s_q, h_q, dv] dtype of q, lse [b, h_q, s_q] fp32.
void check_outputs(const TensorView& out, const TensorView& lse, const TensorView& q, int dv) {
  TensorCheck(out, "out", "[b, s_q, h_q, dv]")
      .rank(4)
      .dtype({q.dtype})
      .device(q.device, "q")
      .dim(0, q.shape[0], "b")
      .dim(1, q.shape[1], "s_q")
      .dim(2, q.shape[2], "h_q")
      .dim(3, dv, "dv = head_dim_v")
      .last_dim_contiguous()
      .non_null();
  TensorCheck(lse, "lse", "[b, h_q, s_q]")
      .rank(3)
      .dtype({DType::kFP32})
      .device(q.device, "q")
      .dim(0, q.shape[0], "b")
      .dim(1, q.shape[2], "h_q")
      .dim(2, q.shape[1], "s_q")
      .non_null();
  for (int i = 0; i < 3; ++i) {
    if (lse.strides[i] < 0) fail_value("lse", "negative stride in dimension " + str(i));
  }
}

// The q, out and lse fields that the dense and sparse params structs share.
template <typename Params>
void set_q_and_outputs(Params& p, const TensorView& q, const TensorView& out,
                       const TensorView& lse) {
  p.q = q.data;
  p.q_batch_stride = q.strides[0];
  p.q_seq_stride = q.strides[1];
  p.q_head_stride = q.strides[2];
  p.out = out.data;
  p.out_batch_stride = out.strides[0];
  p.out_seq_stride = out.strides[1];
  p.out_head_stride = out.strides[2];
  p.lse = lse.ptr<float>();
  p.lse_batch_stride = lse.strides[0];
  p.lse_head_stride = lse.strides[1];
  p.lse_seq_stride = lse.strides[2];
}

float resolve_scale(float softmax_scale, int64_t d) {
  if (softmax_scale == 0.0f) return 1.0f / std::sqrt(static_cast<float>(d));
  if (!std::isfinite(softmax_scale) || softmax_scale < 0.0f) {
    fail_value("softmax_scale", "must be a finite positive number (0: 1/sqrt(d)), got " +
                                    std::to_string(softmax_scale));
  }
  return softmax_scale;
}

// Optional [b] int32 length vector with entries in [0, max_value].
const int32_t* check_lengths(const OptionalTensor& lengths, const char* name, int64_t b,
                             const Device& device, int64_t max_value) {
  if (!lengths) return nullptr;
  TensorCheck(*lengths, name, "[b]")
      .rank(1)
      .dtype({DType::kInt32})
      .device(device, "q")
      .dim(0, b, "b")
      .last_dim_contiguous()
      .non_null();
  const auto* values = lengths->ptr<const int32_t>();
  if (!device.is_cuda()) {
    for (int64_t i = 0; i < b; ++i) {
      if (values[i] < 0 || values[i] > max_value) {
        fail_value(name, "entry " + str(i) + " = " + str(values[i]) + " is outside [0, " +
                             str(max_value) + "]");
      }
    }
  }
  return values;
}

// indices [b, s_q, topk] int32 with entries -1 or in [0, num_rows).
const int32_t* check_indices(const TensorView& indices, const char* name, const TensorView& q,
                             const detail::KVCacheView& kv) {
  TensorCheck(indices, name, "[b, s_q, topk]")
      .rank(3)
      .dtype({DType::kInt32})
      .device(q.device, "q")
      .dim(0, q.shape[0], "b")
      .dim(1, q.shape[1], "s_q")
      .last_dim_contiguous()
      .non_null();
  if (indices.shape[2] < 1) fail_value(name, "topk must be >= 1, got " + indices.describe());
  const auto* values = indices.ptr<const int32_t>();
  if (!q.device.is_cuda()) {
    const int64_t num_rows = static_cast<int64_t>(kv.num_blocks) * kv.page_block_size;
    for (int64_t b = 0; b < indices.shape[0]; ++b) {
      for (int64_t s = 0; s < indices.shape[1]; ++s) {
        const int32_t* row = values + b * indices.strides[0] + s * indices.strides[1];
        for (int64_t k = 0; k < indices.shape[2]; ++k) {
          if (row[k] < -1 || row[k] >= num_rows) {
            fail_value(name, "entry [" + str(b) + ", " + str(s) + ", " + str(k) + "] = " +
                                 str(row[k]) + " is neither -1 nor in [0, " + str(num_rows) + ")");
          }
        }
      }
    }
  }
  return values;
}

}  // namespace

void mla_decode(const DenseDecodeArgs& a, const DecodePlan& plan, void* stream) {
  const TensorView& q = a.q;
  check_q(q);
  const int64_t b = q.shape[0], s_q = q.shape[1], h_q = q.shape[2], d = q.shape[3];
  const detail::KVCacheView kv = check_kv_cache(a.kv_cache, "kv_cache", q, 0);
  const int64_t h_kv = a.kv_cache.shape[2];
  if (h_q % h_kv != 0) {
    fail_value("kv_cache", "h_kv (dimension 2) = " + str(h_kv) + " must divide h_q = " + str(h_q));
  }
  check_head_dim_v(a.head_dim_v, d);
  TensorCheck(a.block_table, "block_table", "[b, max_blocks_per_seq]")
      .rank(2)
      .dtype({DType::kInt32})
      .device(q.device, "q")
      .dim(0, b, "b")
      .last_dim_contiguous()
      .non_null();
  TensorCheck(a.cache_seqlens, "cache_seqlens", "[b]")
      .rank(1)
      .dtype({DType::kInt32})
      .device(q.device, "q")
      .dim(0, b, "b")
      .last_dim_contiguous()
      .non_null();
  check_outputs(a.out, a.lse, q, a.head_dim_v);

  const DecodeShape& ps = plan.shape();
  if (ps.topk > 0) {
    fail_value("plan", "is a sparse plan (topk = " + str(ps.topk) +
                           "); dense decode needs a plan made with topk = 0");
  }
  if (plan.device() != q.device || ps.batch_size != b || ps.s_q != s_q || ps.h_q != h_q ||
      ps.h_kv != h_kv || ps.page_block_size != kv.page_block_size ||
      plan.head_dim_v() != a.head_dim_v) {
    fail_value("plan", "was made for b=" + str(ps.batch_size) + ", s_q=" + str(ps.s_q) +
                           ", h_q=" + str(ps.h_q) + ", h_kv=" + str(ps.h_kv) +
                           ", page_block_size=" + str(ps.page_block_size) +
                           ", head_dim_v=" + str(plan.head_dim_v()) + " on " + plan.device().str() +
                           ", but this call has b=" + str(b) + ", s_q=" + str(s_q) +
                           ", h_q=" + str(h_q) + ", h_kv=" + str(h_kv) + ", page_block_size=" +
                           str(kv.page_block_size) + ", head_dim_v=" + str(a.head_dim_v) + " on " +
                           q.device.str() + "; make a plan for this shape");
  }
  if (!plan.planned()) fail_value("plan", "update() it with this step's cache_seqlens first");

  const auto* seqlens = a.cache_seqlens.ptr<const int32_t>();
  const auto* block_table = a.block_table.ptr<const int32_t>();
  const int64_t max_blocks = a.block_table.shape[1];
  if (!q.device.is_cuda()) {
    const detail::PlanState& st = plan.state();
    for (int64_t i = 0; i < b; ++i) {
      if (seqlens[i] < 0) {
        fail_value("cache_seqlens", "entry " + str(i) + " is negative (" + str(seqlens[i]) + ")");
      }
      if (seqlens[i] != st.planned_seqlens[i]) {
        fail_value("plan", "was updated with cache_seqlens[" + str(i) +
                               "] = " + str(st.planned_seqlens[i]) + ", but this call has " +
                               str(seqlens[i]) + "; update() the plan for this step");
      }
      const int64_t pages = (seqlens[i] + kv.page_block_size - 1) / kv.page_block_size;
      if (pages > max_blocks) {
        fail_value("block_table", "sequence " + str(i) + " has " + str(seqlens[i]) +
                                      " tokens, which need " + str(pages) + " pages, but only " +
                                      str(max_blocks) + " columns are given");
      }
      const int32_t* row = block_table + i * a.block_table.strides[0];
      for (int64_t p = 0; p < pages; ++p) {
        if (row[p] < 0 || row[p] >= kv.num_blocks) {
          fail_value("block_table", "entry [" + str(i) + ", " + str(p) + "] = " + str(row[p]) +
                                        " is outside [0, num_blocks = " + str(kv.num_blocks) + ")");
        }
      }
    }
  }

  detail::DenseDecodeParams p{};
  p.batch_size = static_cast<int>(b);
  p.s_q = static_cast<int>(s_q);
  p.h_q = static_cast<int>(h_q);
  p.h_kv = static_cast<int>(h_kv);
  p.d = static_cast<int>(d);
  p.dv = a.head_dim_v;
  p.q_per_kv = static_cast<int>(h_q / h_kv);
  p.softmax_scale = resolve_scale(a.softmax_scale, d);
  p.causal = a.causal;
  p.act_type = act_type_of(q.dtype);
  p.kv = kv;
  p.block_table = block_table;
  p.block_table_batch_stride = a.block_table.strides[0];
  p.max_blocks_per_seq = static_cast<int>(max_blocks);
  p.cache_seqlens = seqlens;
  set_q_and_outputs(p, q, a.out, a.lse);
  p.schedule = plan.state().view();

  run_on_backend(q.device, "q", p, &detail::cpu::dense_decode, FLASHMLA_CUDA_BACKEND(dense_decode),
                 stream);
}

namespace {

// `plan` may be null: the CPU backend needs none, and on CUDA one is made for the call.
void sparse_decode(const SparseDecodeArgs& a, const DecodePlan* plan, void* stream) {
  const TensorView& q = a.q;
  check_q(q);
  const int64_t b = q.shape[0], d = q.shape[3];
  const detail::KVCacheView kv = check_kv_cache(a.kv_cache, "kv_cache", q, 1);
  check_head_dim_v(a.head_dim_v, d);
  check_outputs(a.out, a.lse, q, a.head_dim_v);

  detail::SparseDecodeParams p{};
  p.indices = check_indices(a.indices, "indices", q, kv);
  p.topk = static_cast<int>(a.indices.shape[2]);
  p.topk_length = check_lengths(a.topk_length, "topk_length", b, q.device, p.topk);

  if (a.extra_kv_cache || a.extra_indices) {
    if (!a.extra_kv_cache) fail_value("extra_kv_cache", "is required with extra_indices");
    if (!a.extra_indices) fail_value("extra_indices", "is required with extra_kv_cache");
    p.extra_kv = check_kv_cache(*a.extra_kv_cache, "extra_kv_cache", q, 1);
    if (p.extra_kv.format != kv.format) {
      fail_type("extra_kv_cache", "must be stored like kv_cache, got " +
                                      a.extra_kv_cache->describe() + " vs " +
                                      a.kv_cache.describe());
    }
    p.extra_indices = check_indices(*a.extra_indices, "extra_indices", q, p.extra_kv);
    p.extra_topk = static_cast<int>(a.extra_indices->shape[2]);
    p.extra_indices_batch_stride = a.extra_indices->strides[0];
    p.extra_indices_seq_stride = a.extra_indices->strides[1];
    p.extra_topk_length =
        check_lengths(a.extra_topk_length, "extra_topk_length", b, q.device, p.extra_topk);
  } else if (a.extra_topk_length) {
    fail_value("extra_topk_length", "is given without extra_kv_cache and extra_indices");
  }
  if (a.attn_sink) {
    TensorCheck(*a.attn_sink, "attn_sink", "[h_q]")
        .rank(1)
        .dtype({DType::kFP32})
        .device(q.device, "q")
        .dim(0, q.shape[2], "h_q")
        .last_dim_contiguous()
        .non_null();
    p.attn_sink = a.attn_sink->ptr<const float>();
  }

  p.batch_size = static_cast<int>(b);
  p.s_q = static_cast<int>(q.shape[1]);
  p.h_q = static_cast<int>(q.shape[2]);
  p.d = static_cast<int>(d);
  p.dv = a.head_dim_v;
  p.softmax_scale = resolve_scale(a.softmax_scale, d);
  p.act_type = act_type_of(q.dtype);
  p.kv = kv;
  p.indices_batch_stride = a.indices.strides[0];
  p.indices_seq_stride = a.indices.strides[1];
  set_q_and_outputs(p, q, a.out, a.lse);

  const int slots = p.topk + (p.extra_indices ? p.extra_topk : 0);
  std::optional<DecodePlan> own_plan;
  if (plan == nullptr && q.device.is_cuda()) {
#if !defined(FLASHMLA_WITH_CUDA)
    no_cuda("q");  // before making a plan, whose error would name an argument not passed
#endif
    DecodeShape shape;
    shape.batch_size = p.batch_size;
    shape.s_q = p.s_q;
    shape.h_q = p.h_q;
    shape.h_kv = 1;
    shape.topk = slots;
    plan = &own_plan.emplace(shape, q.device, a.head_dim_v);
  }
  if (plan != nullptr) {
    const DecodeShape& ps = plan->shape();
    if (ps.topk <= 0) {
      fail_value("plan", "is a dense plan; sparse decode needs a plan made with topk = " +
                             str(slots) + " (topk + extra_topk)");
    }
    if (plan->device() != q.device || ps.batch_size != b || ps.s_q != p.s_q || ps.h_q != p.h_q ||
        ps.topk != slots || plan->head_dim_v() != a.head_dim_v) {
      fail_value("plan", "was made for b=" + str(ps.batch_size) + ", s_q=" + str(ps.s_q) +
                             ", h_q=" + str(ps.h_q) + ", topk=" + str(ps.topk) + ", head_dim_v=" +
                             str(plan->head_dim_v()) + " on " + plan->device().str() +
                             ", but this call has b=" + str(b) + ", s_q=" + str(p.s_q) +
                             ", h_q=" + str(p.h_q) + ", topk + extra_topk=" + str(slots) +
                             ", head_dim_v=" + str(a.head_dim_v) + " on " + q.device.str() +
                             "; make a plan for this shape");
    }
    p.schedule = plan->state().view();
  }

  run_on_backend(q.device, "q", p, &detail::cpu::sparse_decode,
                 FLASHMLA_CUDA_BACKEND(sparse_decode), stream);
}

}  // namespace

void mla_sparse_decode(const SparseDecodeArgs& a, const DecodePlan& plan, void* stream) {
  sparse_decode(a, &plan, stream);
}

void mla_sparse_decode(const SparseDecodeArgs& a, void* stream) {
  sparse_decode(a, nullptr, stream);
}

namespace {

// src/dst of the FP8 cache conversions: [num_blocks, page_block_size, 1, width].
void check_cache_rows(const TensorView& t, const char* name, std::initializer_list<DType> dtypes,
                      int64_t width) {
  TensorCheck(t, name, "[num_blocks, page_block_size, 1, " + str(width) + "]")
      .rank(4)
      .dtype(dtypes)
      .dim(2, 1, "h_kv")
      .dim(3, width, "values per token")
      .last_dim_contiguous()
      .non_null();
}

detail::FP8CacheConvertParams convert_params(const TensorView& src, const TensorView& dst) {
  TensorCheck(dst, "dst", "[num_blocks, page_block_size, 1, width]")
      .device(src.device, "src")
      .dim(0, src.shape[0], "num_blocks, as in src")
      .dim(1, src.shape[1], "page_block_size, as in src");
  detail::FP8CacheConvertParams p{};
  p.num_blocks = static_cast<int>(src.shape[0]);
  p.page_block_size = static_cast<int>(src.shape[1]);
  p.src = src.data;
  p.src_block_stride = src.strides[0];
  p.src_row_stride = src.strides[1];
  p.dst = dst.data;
  p.dst_block_stride = dst.strides[0];
  p.dst_row_stride = dst.strides[1];
  return p;
}

}  // namespace

void quantize_kv_cache_fp8(const TensorView& src, const TensorView& dst, void* stream) {
  check_cache_rows(src, "src", {DType::kBF16}, 576);
  check_cache_rows(dst, "dst", {DType::kFP8E4M3, DType::kUInt8}, kFP8RowBytes);
  const detail::FP8CacheConvertParams p = convert_params(src, dst);
  run_on_backend(src.device, "src", p, &detail::cpu::quantize_fp8,
                 FLASHMLA_CUDA_BACKEND(quantize_fp8), stream);
}

void dequantize_kv_cache_fp8(const TensorView& src, const TensorView& dst, void* stream) {
  check_cache_rows(src, "src", {DType::kFP8E4M3, DType::kUInt8}, kFP8RowBytes);
  check_cache_rows(dst, "dst", {DType::kBF16}, 576);
  const detail::FP8CacheConvertParams p = convert_params(src, dst);
  run_on_backend(src.device, "src", p, &detail::cpu::dequantize_fp8,
                 FLASHMLA_CUDA_BACKEND(dequantize_fp8), stream);
}

bool cuda_available() {
#if defined(FLASHMLA_WITH_CUDA)
  return detail::cuda::available();
#else
  return false;
#endif
}

}  // namespace flashmla
