#include "common/check.h"

#include <bit>
#include <cmath>
#include <sstream>

namespace flashmla::test {

float lse_poison() {
  return std::bit_cast<float>(0x7fc0dead);
}

namespace {

bool is_lse_poison(float v) {
  return std::bit_cast<uint32_t>(v) == 0x7fc0deadu;
}

}  // namespace

::testing::AssertionResult matches_reference(const HalfTensor& out, const std::vector<float>& lse,
                                             const ReferenceResult& ref, const Tolerance& tol) {
  std::ostringstream report;
  int64_t bad_out = 0, bad_lse = 0;
  constexpr int kMaxReported = 8;
  int reported = 0;
  double worst_excess = 0;
  for (int b = 0; b < ref.batch; ++b) {
    for (int s = 0; s < ref.s_q; ++s) {
      for (int h = 0; h < ref.h_q; ++h) {
        const int64_t row = (static_cast<int64_t>(b) * ref.s_q + s) * ref.h_q + h;
        for (int c = 0; c < ref.dv; ++c) {
          const int64_t i = row * ref.dv + c;
          const double expected = ref.out[i];
          const bool unwritten = out.bits[i] == kOutPoison;
          const double got = out.value(i);
          const double allowed = tol.out_abs + tol.out_rel * std::fabs(expected);
          const double error = std::fabs(got - expected);
          if (unwritten || !(error <= allowed)) {
            ++bad_out;
            if (!unwritten && std::isfinite(error)) {
              worst_excess = std::max(worst_excess, error / allowed);
            }
            if (reported++ < kMaxReported) {
              report << "  out[" << b << ", " << s << ", " << h << ", " << c
                     << "] = " << (unwritten ? "never written" : std::to_string(got))
                     << ", expected " << expected << " (allowed error " << allowed << ")\n";
            }
          }
        }
        const int64_t l = (static_cast<int64_t>(b) * ref.h_q + h) * ref.s_q + s;
        const double expected = ref.lse[l];
        const float got = lse[l];
        const bool ok = std::isinf(expected) ? got == expected
                                             : std::fabs(got - expected) <=
                                                   tol.lse_rel * std::max(1.0, std::fabs(expected));
        if (!ok) {
          ++bad_lse;
          if (reported++ < kMaxReported) {
            report << "  lse[" << b << ", " << h << ", " << s
                   << "] = " << (is_lse_poison(got) ? "never written" : std::to_string(got))
                   << ", expected " << expected << "\n";
          }
        }
      }
    }
  }
  if (bad_out == 0 && bad_lse == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad_out << " out and " << bad_lse << " lse elements out of tolerance (worst out error "
         << worst_excess << "x the allowed one among written values):\n"
         << report.str();
}

}  // namespace flashmla::test
