// The combine step of split-KV dense decode: merges the partial results of every sequence
// that the schedule cut into several pieces.
#pragma once

#include "common/decode_params.h"

namespace flashmla::detail::cpu {

// For each sequence with more than one split and each (query token, head):
//   lse = log sum_s exp(lse_s),  out = sum_s exp(lse_s - lse) * out_s,
// where empty pieces have lse_s = -inf; a row whose pieces are all empty gets out = 0 and
// lse = +inf. Multi-threaded over rows.
void combine_splits(const DenseDecodeParams& params);

}  // namespace flashmla::detail::cpu
