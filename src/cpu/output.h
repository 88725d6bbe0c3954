// Where the final results go: out [b, s_q, h_q, dv] (bf16/fp16) and lse [b, h_q, s_q] fp32.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "common/decode_params.h"
#include "cpu/row_convert.h"

namespace flashmla::detail::cpu {

struct OutputView {
  void* out;
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;
  int dv;
  bool is_bf16;

  template <typename Params>
  static OutputView of(const Params& p) {
    return {p.out, p.out_batch_stride,          p.out_seq_stride,  p.out_head_stride,
            p.lse, p.lse_batch_stride,          p.lse_head_stride, p.lse_seq_stride,
            p.dv,  p.act_type == ActType::kBF16};
  }

  // Writes one query row's result. `lse` = -inf means the row saw no key: MLA.md asks for
  // out = 0 (the caller passes zeros) and lse = +inf.
  void write(int batch, int seq, int head, const float* values, float row_lse) const {
    uint16_t* dst = static_cast<uint16_t*>(out) + batch * out_batch_stride + seq * out_seq_stride +
                    head * out_head_stride;
    float_row_to_half(values, is_bf16, dv, dst);
    lse[batch * lse_batch_stride + head * lse_head_stride + seq * lse_seq_stride] =
        row_lse == -std::numeric_limits<float>::infinity() ? std::numeric_limits<float>::infinity()
                                                           : row_lse;
  }
};

}  // namespace flashmla::detail::cpu
