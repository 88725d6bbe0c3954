#include "cpu/attention_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/simd.h"

namespace flashmla::detail::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kRowsPerKernel = 4;              // register block: query rows
constexpr int kTokensPerKernel = 4;            // register block of the score kernel: KV tokens
constexpr int kColumnsPerKernel = 4 * kLanes;  // register block of the output kernel: columns

// scores[i][j] = q_i . k_j for R <= 4 query rows and 4 tokens, dot products over `d` values.
// 16 accumulators of 16 lanes each, reduced all at once at the end (reduce16).
template <int R>
void score_kernel(const float* q, int64_t q_stride, const float* k, int64_t k_stride, int d,
                  float* scores) {
  Vec16 acc[16] = {};
  for (int c = 0; c < d; c += kLanes) {
    const Vec16 k0 = load16_reg(k + c);
    const Vec16 k1 = load16_reg(k + k_stride + c);
    const Vec16 k2 = load16_reg(k + 2 * k_stride + c);
    const Vec16 k3 = load16_reg(k + 3 * k_stride + c);
    for (int i = 0; i < R; ++i) {
      const Vec16 qi = load16(q + i * q_stride + c);
      acc[4 * i + 0] += qi * k0;
      acc[4 * i + 1] += qi * k1;
      acc[4 * i + 2] += qi * k2;
      acc[4 * i + 3] += qi * k3;
    }
  }
  const Vec16 sums = reduce16(acc);
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < kTokensPerKernel; ++j) scores[i * kTileTokens + j] = sums[4 * i + j];
  }
}

// acc[i][0:64] = rescale[i] * acc[i][0:64] + sum_t p[i][t] * v[t][0:64] for R <= 4 rows:
// 4 x 4 vectors stay in registers while the tile's tokens stream by.
template <int R>
void output_kernel(const float* p, const float* v, int64_t v_stride, int num_tokens,
                   const float* rescale, float* acc, int64_t acc_stride) {
  Vec16 o[R][4];
  for (int i = 0; i < R; ++i) {
    const Vec16 a = broadcast16(rescale[i]);
    for (int j = 0; j < 4; ++j) o[i][j] = load16(acc + i * acc_stride + j * kLanes) * a;
  }
  for (int t = 0; t < num_tokens; ++t) {
    const float* vt = v + t * v_stride;
    const Vec16 v0 = load16_reg(vt), v1 = load16_reg(vt + kLanes), v2 = load16_reg(vt + 2 * kLanes),
                v3 = load16_reg(vt + 3 * kLanes);
    for (int i = 0; i < R; ++i) {
      const Vec16 pi = broadcast16(p[i * kTileTokens + t]);
      o[i][0] += pi * v0;
      o[i][1] += pi * v1;
      o[i][2] += pi * v2;
      o[i][3] += pi * v3;
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < 4; ++j) store16(acc + i * acc_stride + j * kLanes, o[i][j]);
  }
}

// Calls kernel<R> for R = rows (1..4); the remainder block of a row loop.
template <template <int> class Kernel, typename... Args>
void dispatch_rows(int rows, Args... args) {
  switch (rows) {
    case 4:
      Kernel<4>::run(args...);
      break;
    case 3:
      Kernel<3>::run(args...);
      break;
    case 2:
      Kernel<2>::run(args...);
      break;
    default:
      Kernel<1>::run(args...);
      break;
  }
}

template <int R>
struct ScoreKernel {
  static void run(const float* q, int64_t q_stride, const float* k, int64_t k_stride, int d,
                  float* scores) {
    score_kernel<R>(q, q_stride, k, k_stride, d, scores);
  }
};

template <int R>
struct OutputKernel {
  static void run(const float* p, const float* v, int64_t v_stride, int num_tokens,
                  const float* rescale, float* acc, int64_t acc_stride) {
    output_kernel<R>(p, v, v_stride, num_tokens, rescale, acc, acc_stride);
  }
};

}  // namespace

RowBlockAttention::RowBlockAttention(int max_rows, int d, int dv)
    : max_rows_(max_rows),
      d_(d),
      dv_(dv),
      // The output kernel works on 64 columns at a time; d is a multiple of 64, so the padded
      // columns still lie within a key row (their results are never written out).
      dv_padded_((dv + kColumnsPerKernel - 1) / kColumnsPerKernel * kColumnsPerKernel),
      q_(static_cast<size_t>(max_rows) * d),
      tile_(static_cast<size_t>(kTileTokens) * d),
      scores_(static_cast<size_t>(max_rows) * kTileTokens),
      acc_(static_cast<size_t>(max_rows) * dv_padded_),
      max_(max_rows),
      sum_(max_rows),
      rescale_(max_rows) {}

void RowBlockAttention::begin(int rows) {
  rows_ = rows;
  std::fill_n(max_.get(), rows, kNegInf);
  std::fill_n(sum_.get(), rows, 0.0f);
  std::fill_n(acc_.get(), static_cast<size_t>(rows) * dv_padded_, 0.0f);
}

void RowBlockAttention::attend(int num_tokens, const int* visible, const TilePrefetch& prefetch) {
  // The score kernel takes 4 tokens at a time: zero the padding rows so they stay finite.
  const int padded_tokens =
      (num_tokens + kTokensPerKernel - 1) / kTokensPerKernel * kTokensPerKernel;
  std::fill(tile_row(num_tokens), tile_row(padded_tokens), 0.0f);

  // 1. Scores [rows, padded_tokens] = Q K^T. Token blocks outside, so that 4 key rows stay in
  // L1 while all query rows pass over them.
  float* scores = scores_.get();
  // Prefetches are spread over the score loop: a few rows per token block.
  const int prefetch_per_block =
      (prefetch.count + padded_tokens / kTokensPerKernel - 1) / (padded_tokens / kTokensPerKernel);
  for (int t = 0; t < padded_tokens; t += kTokensPerKernel) {
    const int first_prefetch = t / kTokensPerKernel * prefetch_per_block;
    for (int i = first_prefetch; i < std::min(prefetch.count, first_prefetch + prefetch_per_block);
         ++i) {
      for (int byte = 0; byte < prefetch.bytes_per_row; byte += 64) {
        __builtin_prefetch(prefetch.rows[i] + byte, /*rw=*/0, /*locality=*/3);
      }
    }
    for (int r = 0; r < rows_; r += kRowsPerKernel) {
      dispatch_rows<ScoreKernel>(std::min(kRowsPerKernel, rows_ - r), q_row(r),
                                 static_cast<int64_t>(d_), tile_row(t), static_cast<int64_t>(d_),
                                 d_, scores + r * kTileTokens + t);
    }
  }

  // 2. Online softmax: new running max, probabilities, rescale factor of the old state.
  float* running_max = max_.get();
  float* running_sum = sum_.get();
  float* rescale = rescale_.get();
  for (int r = 0; r < rows_; ++r) {
    float* s = scores + r * kTileTokens;
    const int seen = visible[r];
    if (seen <= 0) {  // nothing visible in this tile: state unchanged
      std::fill_n(s, num_tokens, 0.0f);
      rescale[r] = 1.0f;
      continue;
    }
    float tile_max = kNegInf;
#pragma omp simd reduction(max : tile_max)
    for (int t = 0; t < seen; ++t) tile_max = std::max(tile_max, s[t]);
    const float new_max = std::max(running_max[r], tile_max);
    float tile_sum = 0.0f;
#pragma omp simd reduction(+ : tile_sum)
    for (int t = 0; t < num_tokens; ++t) {
      const float p = t < seen ? exp2_nonpositive(s[t] - new_max) : 0.0f;
      s[t] = p;
      tile_sum += p;
    }
    rescale[r] = exp2_nonpositive(running_max[r] - new_max);  // 0 on the first visible tile
    running_sum[r] = running_sum[r] * rescale[r] + tile_sum;
    running_max[r] = new_max;
  }

  // 3. acc = rescale * acc + P V. Column blocks outside, so that a [tokens, 64] slice of V
  // stays in L1 while all query rows pass over it.
  for (int c = 0; c < dv_padded_; c += kColumnsPerKernel) {
    for (int r = 0; r < rows_; r += kRowsPerKernel) {
      dispatch_rows<OutputKernel>(
          std::min(kRowsPerKernel, rows_ - r), scores + r * kTileTokens, tile_row(0) + c,
          static_cast<int64_t>(d_), num_tokens, rescale + r,
          acc_.get() + static_cast<int64_t>(r) * dv_padded_ + c, static_cast<int64_t>(dv_padded_));
    }
  }
}

float RowBlockAttention::finish_row(int r, float* out) const {
  const float total = sum_.get()[r];
  if (total == 0.0f) {  // every visible score contributes >= 2^0 at the max, so: no token seen
    std::fill_n(out, dv_, 0.0f);
    return kNegInf;
  }
  const float* acc = acc_.get() + static_cast<int64_t>(r) * dv_padded_;
  const float inv_total = 1.0f / total;
#pragma omp simd
  for (int c = 0; c < dv_; ++c) out[c] = acc[c] * inv_total;
  constexpr float kLn2 = 0.69314718056f;
  return (max_.get()[r] + std::log2(total)) * kLn2;
}

}  // namespace flashmla::detail::cpu
