// Tolerance checks of decode outputs against the float64 reference (MLA.md section 2).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "common/reference.h"
#include "common/tensors.h"

namespace flashmla::test {

// Fill patterns for outputs before a call: any element the library fails to write keeps them
// and is reported as "never written". 0x7fff is a NaN in both bf16 and fp16.
inline constexpr uint16_t kOutPoison = 0x7fff;
float lse_poison();  // a NaN with a recognizable payload

struct Tolerance {
  double out_abs = 8e-4;  // |out - ref| <= out_abs + out_rel * |ref|
  double out_rel = 2.0 / 128;
  double lse_rel = 8.0 / 65536;  // |lse - ref| <= lse_rel * max(1, |ref|)
};

// out [b, s_q, h_q, dv] (bf16/fp16), lse [b, h_q, s_q] fp32, both contiguous.
::testing::AssertionResult matches_reference(const HalfTensor& out, const std::vector<float>& lse,
                                             const ReferenceResult& ref, const Tolerance& tol = {});

}  // namespace flashmla::test
