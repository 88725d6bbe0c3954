#include "common/sparse_case.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "flashmla/decode.h"

namespace flashmla::test {

namespace {

// A cache whose rows are random except about 10% NaN rows ("poisoned"); returns the ids of
// the good rows.
KVCache make_sparse_cache(Rng& rng, const SparseCase& c, int num_blocks, int page_block_size,
                          std::vector<int32_t>& good_rows, std::vector<int32_t>& nan_rows) {
  KVCache cache = make_nan_cache(c.dtype, num_blocks, page_block_size, 1, c.d);
  for (int64_t row = 0; row < cache.num_rows(); ++row) {
    if (rng.coin(0.1)) {
      nan_rows.push_back(static_cast<int32_t>(row));
    } else {
      fill_random_row(rng, cache, row);
      good_rows.push_back(static_cast<int32_t>(row));
    }
  }
  if (c.fp8) cache = quantize_cache_fp8(cache);
  return cache;
}

// indices [b, s_q, topk]: within `lengths`, -1 or good rows (some repeated); beyond them,
// NaN rows, which must not be read.
std::vector<int32_t> make_indices(Rng& rng, const SparseCase& c, int topk,
                                  const std::vector<int32_t>& lengths,
                                  const std::vector<int32_t>& good_rows,
                                  const std::vector<int32_t>& nan_rows, bool all_invalid_query) {
  std::vector<int32_t> indices(static_cast<size_t>(c.batch) * c.s_q * topk);
  for (int b = 0; b < c.batch; ++b) {
    for (int s = 0; s < c.s_q; ++s) {
      int32_t* slots = &indices[(static_cast<size_t>(b) * c.s_q + s) * topk];
      const int length = lengths.empty() ? topk : lengths[b];
      for (int k = 0; k < topk; ++k) {
        if (k >= length) {
          slots[k] = nan_rows.empty()
                         ? -1
                         : nan_rows[rng.uniform_int(0, static_cast<int>(nan_rows.size()) - 1)];
        } else if ((all_invalid_query && b == 0 && s == 0) || rng.coin(c.invalid_fraction) ||
                   good_rows.empty()) {
          slots[k] = -1;
        } else if (k > 0 && slots[k - 1] >= 0 && rng.coin(c.duplicate_fraction)) {
          const int32_t earlier = slots[rng.uniform_int(0, k - 1)];
          slots[k] = earlier >= 0 ? earlier : slots[k - 1];
        } else {
          slots[k] = good_rows[rng.uniform_int(0, static_cast<int>(good_rows.size()) - 1)];
        }
      }
    }
  }
  return indices;
}

std::vector<int32_t> random_lengths(Rng& rng, int batch, int topk) {
  std::vector<int32_t> lengths(batch);
  for (int b = 0; b < batch; ++b) lengths[b] = rng.uniform_int(0, topk);
  if (batch > 1) lengths[0] = 0;
  if (batch > 2) lengths[1] = topk;
  return lengths;
}

}  // namespace

std::string SparseCase::describe() const {
  std::ostringstream s;
  s << "seed=" << seed << " b=" << batch << " s_q=" << s_q << " h_q=" << h_q << " d=" << d
    << " dv=" << dv << " blocks=" << num_blocks << "x" << page_block_size << " topk=" << topk << " "
    << (fp8 ? "fp8" : dtype_name(dtype)) << (with_topk_length ? " topk_length" : "")
    << (all_invalid_query ? " all_invalid_query" : "");
  if (with_extra) {
    s << " extra=" << extra_num_blocks << "x" << extra_page_block_size
      << " extra_topk=" << extra_topk << (with_extra_topk_length ? " extra_topk_length" : "");
  }
  s << (with_sink ? " sink" : "") << " scale=" << softmax_scale;
  return s.str();
}

SparseCaseData make_sparse_data(const SparseCase& c) {
  Rng rng(c.seed);
  SparseCaseData data;
  data.q = random_half_tensor(rng, c.dtype, {c.batch, c.s_q, c.h_q, c.d});
  std::vector<int32_t> good, nan;
  data.cache = make_sparse_cache(rng, c, c.num_blocks, c.page_block_size, good, nan);
  if (c.with_topk_length) data.topk_length = random_lengths(rng, c.batch, c.topk);
  data.indices = make_indices(rng, c, c.topk, data.topk_length, good, nan, c.all_invalid_query);
  if (c.with_extra) {
    std::vector<int32_t> extra_good, extra_nan;
    data.extra_cache = make_sparse_cache(rng, c, c.extra_num_blocks, c.extra_page_block_size,
                                         extra_good, extra_nan);
    if (c.with_extra_topk_length)
      data.extra_topk_length = random_lengths(rng, c.batch, c.extra_topk);
    data.extra_indices = make_indices(rng, c, c.extra_topk, data.extra_topk_length, extra_good,
                                      extra_nan, c.all_invalid_query);
  }
  if (c.with_sink) {
    constexpr float kInf = std::numeric_limits<float>::infinity();
    for (int h = 0; h < c.h_q; ++h) {
      data.attn_sink.push_back(h % 4 == 1   ? kInf
                               : h % 4 == 2 ? -kInf
                                            : static_cast<float>(rng.uniform() * 10 - 2));
    }
  }
  return data;
}

void run_sparse_library(const SparseCase& c, SparseCaseData& data, HalfTensor& out,
                        std::vector<float>& lse) {
  out = HalfTensor(c.dtype, {c.batch, c.s_q, c.h_q, c.dv}, kOutPoison);
  lse.assign(static_cast<size_t>(c.batch) * c.h_q * c.s_q, lse_poison());
  const int64_t b = c.batch;
  SparseDecodeArgs args;
  args.q = data.q.view();
  args.kv_cache = data.cache.view();
  args.indices = contiguous_view(data.indices.data(), DType::kInt32, {b, c.s_q, c.topk});
  if (!data.topk_length.empty()) {
    args.topk_length = contiguous_view(data.topk_length.data(), DType::kInt32, {b});
  }
  if (c.with_extra) {
    args.extra_kv_cache = data.extra_cache.view();
    args.extra_indices =
        contiguous_view(data.extra_indices.data(), DType::kInt32, {b, c.s_q, c.extra_topk});
    if (!data.extra_topk_length.empty()) {
      args.extra_topk_length = contiguous_view(data.extra_topk_length.data(), DType::kInt32, {b});
    }
  }
  if (!data.attn_sink.empty()) {
    args.attn_sink = contiguous_view(data.attn_sink.data(), DType::kFP32, {c.h_q});
  }
  args.out = out.view();
  args.lse = contiguous_view(lse.data(), DType::kFP32, {b, c.h_q, c.s_q});
  args.head_dim_v = c.dv;
  args.softmax_scale = c.softmax_scale;
  mla_sparse_decode(args);
}

ReferenceResult reference_sparse_case(const SparseCase& c, const SparseCaseData& data) {
  SparseInputs in;
  in.q = &data.q;
  in.cache = &data.cache;
  in.indices = &data.indices;
  in.topk = c.topk;
  in.topk_length = data.topk_length.empty() ? nullptr : &data.topk_length;
  if (c.with_extra) {
    in.extra_cache = &data.extra_cache;
    in.extra_indices = &data.extra_indices;
    in.extra_topk = c.extra_topk;
    in.extra_topk_length = data.extra_topk_length.empty() ? nullptr : &data.extra_topk_length;
  }
  in.attn_sink = data.attn_sink.empty() ? nullptr : &data.attn_sink;
  in.dv = c.dv;
  in.softmax_scale = c.softmax_scale;
  return reference_sparse_decode(in);
}

::testing::AssertionResult check_sparse_case(const SparseCase& c) {
  SparseCaseData data = make_sparse_data(c);
  HalfTensor out;
  std::vector<float> lse;
  run_sparse_library(c, data, out, lse);
  return matches_reference(out, lse, reference_sparse_case(c, data));
}

}  // namespace flashmla::test
