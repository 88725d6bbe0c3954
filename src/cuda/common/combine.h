// Merging split-KV partial results into the final output (MLA.md section 2, "combine").
#pragma once

#include <cuda_runtime.h>

#include "common/decode_params.h"

namespace flashmla::detail::cuda {

// For every sequence with more than one split: lse = log sum_s exp(lse_s) and
// out = sum_s exp(lse_s - lse) * out_s, read from params.schedule's workspace. Sequences with one
// split were written by the decode kernel itself and are skipped. No host sync.
void launch_combine(const DenseDecodeParams& params, cudaStream_t stream);

}  // namespace flashmla::detail::cuda
