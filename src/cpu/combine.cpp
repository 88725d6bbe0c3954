#include "cpu/combine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/split_plan.h"
#include "cpu/output.h"

namespace flashmla::detail::cpu {

void combine_splits(const DenseDecodeParams& p) {
  const ScheduleView& schedule = p.schedule;
  const OutputView output = OutputView::of(p);
  const int rows_per_seq = p.s_q * p.h_q;
  const int64_t total_rows = static_cast<int64_t>(p.batch_size) * rows_per_seq;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

#pragma omp parallel
  {
    std::vector<float> merged(p.dv);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < total_rows; ++row) {
      const int seq = static_cast<int>(row / rows_per_seq);
      const int num_splits = num_splits_of(schedule.split_offsets, seq);
      if (num_splits <= 1) continue;  // written directly by its only piece
      const int s = static_cast<int>(row % rows_per_seq) / p.h_q;
      const int h = static_cast<int>(row % rows_per_seq) % p.h_q;
      // Partial row of split i: [split, s_q, h_q] flattened.
      auto partial_row = [&](int i) {
        return (static_cast<int64_t>(schedule.split_offsets[seq] + i) * p.s_q + s) * p.h_q + h;
      };

      float max_lse = kNegInf;
      for (int i = 0; i < num_splits; ++i) {
        max_lse = std::max(max_lse, schedule.partial_lse[partial_row(i)]);
      }
      std::fill(merged.begin(), merged.end(), 0.0f);
      if (max_lse == kNegInf) {  // no piece saw a key
        output.write(seq, s, h, merged.data(), kNegInf);
        continue;
      }
      float sum = 0.0f;
      for (int i = 0; i < num_splits; ++i) {
        sum += std::exp(schedule.partial_lse[partial_row(i)] - max_lse);
      }
      const float lse = max_lse + std::log(sum);
      for (int i = 0; i < num_splits; ++i) {
        const float weight = std::exp(schedule.partial_lse[partial_row(i)] - lse);
        if (weight == 0.0f) continue;  // also skips empty pieces, whose outputs are zeros
        const float* part = schedule.partial_out + partial_row(i) * p.dv;
        float* acc = merged.data();
#pragma omp simd
        for (int c = 0; c < p.dv; ++c) acc[c] += weight * part[c];
      }
      output.write(seq, s, h, merged.data(), lse);
    }
  }
}

}  // namespace flashmla::detail::cpu
