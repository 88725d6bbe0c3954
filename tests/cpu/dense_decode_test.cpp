#include <gtest/gtest.h>

#include "common/dense_case.h"

namespace flashmla::test {
namespace {

TEST(DenseDecode, Smoke) {
  DenseCase c;
  c.seqlens = {1, 100, 4096, 0};
  c.h_q = 16;
  SCOPED_TRACE(c.describe());
  EXPECT_TRUE(check_dense_case(c));
}

}  // namespace
}  // namespace flashmla::test
