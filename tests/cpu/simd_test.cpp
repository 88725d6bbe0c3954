// The SIMD helpers of the CPU kernels (src/cpu/simd.h).
#include "cpu/simd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace flashmla::detail::cpu {
namespace {

TEST(Simd, Exp2NonPositiveIsAccurate) {
  double worst = 0;
  for (int i = 0; i <= 1260000; ++i) {
    const float x = -static_cast<float>(i) * 1e-4f;  // [-126, 0]
    const double exact = std::exp2(static_cast<double>(x));
    worst = std::max(worst, std::fabs(exp2_nonpositive(x) - exact) / exact);
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(exp2_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp2_nonpositive(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(exp2_nonpositive(-1000.0f), 0.0f);
}

TEST(Simd, Reduce16SumsEachVector) {
  Vec16 v[16];
  for (int j = 0; j < 16; ++j) {
    for (int lane = 0; lane < kLanes; ++lane) v[j][lane] = static_cast<float>(j * 100 + lane);
  }
  const Vec16 sums = reduce16(v);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(sums[j], 16.0f * j * 100 + 120.0f) << j;
}

}  // namespace
}  // namespace flashmla::detail::cpu
