// Argument checks for the API boundary. Each failure throws flashmla::Error naming the
// argument, what was expected and what was given.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashmla/error.h"
#include "flashmla/tensor.h"

namespace flashmla::detail {

[[noreturn]] void fail_value(const std::string& argument, const std::string& message);
[[noreturn]] void fail_type(const std::string& argument, const std::string& message);

// Fluent checks on one tensor argument:
//   TensorCheck(q, "q", "[b, s_q, h_q, d]").rank(4).dtype({kBF16, kFP16}).last_dim_contiguous();
class TensorCheck {
 public:
  TensorCheck(const TensorView& t, std::string name, std::string layout);

  TensorCheck& rank(int ndim);
  TensorCheck& dtype(std::initializer_list<DType> allowed);
  TensorCheck& device(const Device& expected, const char* reference_name);
  // Dimension `dim` (named `what`, e.g. "h_q") must equal `expected`.
  TensorCheck& dim(int dim, int64_t expected, const char* what);
  TensorCheck& last_dim_contiguous();
  TensorCheck& non_null();

 private:
  std::string got() const;
  const TensorView& t_;
  std::string name_;
  std::string layout_;
};

}  // namespace flashmla::detail
