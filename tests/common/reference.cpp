#include "common/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/numeric.h"

namespace flashmla::test {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// softmax(scale * q . k_t) V over the given rows, in double. Writes dv outputs and returns
// the natural-log sum-exp (+inf, outputs 0, when `rows` is empty).
double attend(const std::vector<const float*>& rows, const std::vector<double>& q, int dv,
              double scale, double* out) {
  std::fill(out, out + dv, 0.0);
  if (rows.empty()) return kInf;
  std::vector<double> scores(rows.size());
  for (size_t t = 0; t < rows.size(); ++t) {
    double dot = 0;
    for (size_t i = 0; i < q.size(); ++i) dot += q[i] * rows[t][i];
    scores[t] = scale * dot;
  }
  const double max_score = *std::max_element(scores.begin(), scores.end());
  double sum = 0;
  for (double s : scores) sum += std::exp(s - max_score);
  const double lse = max_score + std::log(sum);
  for (size_t t = 0; t < rows.size(); ++t) {
    const double weight = std::exp(scores[t] - lse);
    for (int c = 0; c < dv; ++c) out[c] += weight * rows[t][c];
  }
  return lse;
}

std::vector<double> query_row(const HalfTensor& q, int b, int s, int h) {
  const int64_t s_q = q.shape[1], h_q = q.shape[2], d = q.shape[3];
  std::vector<double> row(d);
  for (int64_t i = 0; i < d; ++i) row[i] = q.value(((b * s_q + s) * h_q + h) * d + i);
  return row;
}

ReferenceResult make_result(const HalfTensor& q, int dv) {
  ReferenceResult r;
  r.batch = static_cast<int>(q.shape[0]);
  r.s_q = static_cast<int>(q.shape[1]);
  r.h_q = static_cast<int>(q.shape[2]);
  r.dv = dv;
  r.out.assign(static_cast<size_t>(r.batch) * r.s_q * r.h_q * dv, 0.0);
  r.lse.assign(static_cast<size_t>(r.batch) * r.h_q * r.s_q, 0.0);
  return r;
}

}  // namespace

ReferenceResult reference_dense_decode(const HalfTensor& q, const PagedKV& kv, int dv,
                                       double softmax_scale, bool causal) {
  ReferenceResult r = make_result(q, dv);
  const int d = static_cast<int>(q.shape[3]);
  const double scale = softmax_scale > 0 ? softmax_scale : 1.0 / std::sqrt(d);
  const int group = r.h_q / kv.cache.h_kv;
  for (int b = 0; b < r.batch; ++b) {
    const int s_k = kv.seqlens[b];
    for (int s = 0; s < r.s_q; ++s) {
      // Causal: query s sees keys 0 .. s_k - s_q + s.
      const int visible = causal ? std::clamp(s_k - r.s_q + s + 1, 0, s_k) : s_k;
      for (int h = 0; h < r.h_q; ++h) {
        std::vector<const float*> rows;
        for (int t = 0; t < visible; ++t)
          rows.push_back(kv.cache.row_values(kv.row_of(b, t), h / group));
        const size_t row = (static_cast<size_t>(b) * r.s_q + s) * r.h_q + h;
        r.lse[(static_cast<size_t>(b) * r.h_q + h) * r.s_q + s] =
            attend(rows, query_row(q, b, s, h), dv, scale, &r.out[row * dv]);
      }
    }
  }
  return r;
}

ReferenceResult reference_sparse_decode(const SparseInputs& in) {
  const HalfTensor& q = *in.q;
  ReferenceResult r = make_result(q, in.dv);
  const int d = static_cast<int>(q.shape[3]);
  const double scale = in.softmax_scale > 0 ? in.softmax_scale : 1.0 / std::sqrt(d);
  for (int b = 0; b < r.batch; ++b) {
    for (int s = 0; s < r.s_q; ++s) {
      std::vector<const float*> rows;
      auto select = [&](const KVCache* cache, const std::vector<int32_t>* indices, int topk,
                        const std::vector<int32_t>* lengths) {
        if (cache == nullptr || indices == nullptr) return;
        const int count = lengths ? (*lengths)[b] : topk;
        for (int k = 0; k < count; ++k) {
          const int32_t index = (*indices)[(static_cast<size_t>(b) * r.s_q + s) * topk + k];
          if (index != -1) rows.push_back(cache->row_values(index, 0));
        }
      };
      select(in.cache, in.indices, in.topk, in.topk_length);
      select(in.extra_cache, in.extra_indices, in.extra_topk, in.extra_topk_length);
      for (int h = 0; h < r.h_q; ++h) {
        const size_t row = (static_cast<size_t>(b) * r.s_q + s) * r.h_q + h;
        double* out = &r.out[row * in.dv];
        const double lse = attend(rows, query_row(q, b, s, h), in.dv, scale, out);
        r.lse[(static_cast<size_t>(b) * r.h_q + h) * r.s_q + s] = lse;
        if (in.attn_sink && !rows.empty()) {
          // out * exp(lse) / (exp(lse) + exp(sink)), computed stably.
          const double sink = (*in.attn_sink)[h];
          const double factor = sink == kInf    ? 0.0
                                : sink == -kInf ? 1.0
                                                : 1.0 / (1.0 + std::exp(sink - lse));
          for (int c = 0; c < in.dv; ++c) out[c] *= factor;
        }
      }
    }
  }
  return r;
}

std::vector<uint8_t> reference_quantize_fp8_row(const uint16_t* bf16_row) {
  std::vector<uint8_t> row(656);
  for (int g = 0; g < 4; ++g) {
    double amax = 0;
    for (int i = 0; i < 128; ++i)
      amax = std::max(amax, std::fabs(bf16_value(bf16_row[g * 128 + i])));
    // scale = 2^ceil(log2(max(amax / 448, 1e-4))).
    const double scale = std::exp2(std::ceil(std::log2(std::max(amax / 448.0, 1e-4))));
    for (int i = 0; i < 128; ++i)
      row[g * 128 + i] = to_e4m3(bf16_value(bf16_row[g * 128 + i]) / scale);
    const float scale_f = static_cast<float>(scale);
    std::memcpy(&row[512 + 4 * g], &scale_f, sizeof(scale_f));
  }
  std::memcpy(&row[528], bf16_row + 512, 64 * sizeof(uint16_t));
  return row;
}

}  // namespace flashmla::test
