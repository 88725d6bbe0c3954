#include "api/validate.h"

namespace flashmla::detail {

void fail_value(const std::string& argument, const std::string& message) {
  throw Error(ErrorKind::kValue, argument, message);
}

void fail_type(const std::string& argument, const std::string& message) {
  throw Error(ErrorKind::kType, argument, message);
}

TensorCheck::TensorCheck(const TensorView& t, std::string name, std::string layout)
    : t_(t), name_(std::move(name)), layout_(std::move(layout)) {}

std::string TensorCheck::got() const {
  return ", got " + t_.describe();
}

TensorCheck& TensorCheck::rank(int ndim) {
  if (t_.ndim != ndim) {
    fail_value(name_, "expected " + std::to_string(ndim) + " dimensions " + layout_ + got());
  }
  return *this;
}

TensorCheck& TensorCheck::dtype(std::initializer_list<DType> allowed) {
  std::string names;
  for (DType d : allowed) {
    if (d == t_.dtype) return *this;
    names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
  }
  fail_type(name_, "expected dtype " + names + got());
}

TensorCheck& TensorCheck::device(const Device& expected, const char* reference_name) {
  if (t_.device != expected) {
    fail_type(name_, "expected the device of " + std::string(reference_name) + " (" +
                         expected.str() + ")" + got());
  }
  return *this;
}

TensorCheck& TensorCheck::dim(int dim, int64_t expected, const char* what) {
  if (t_.shape[dim] != expected) {
    fail_value(name_, "expected dimension " + std::to_string(dim) + " (" + what + ") of " +
                          layout_ + " to be " + std::to_string(expected) + got());
  }
  return *this;
}

TensorCheck& TensorCheck::last_dim_contiguous() {
  if (t_.ndim > 0 && t_.shape[t_.ndim - 1] > 1 && t_.strides[t_.ndim - 1] != 1) {
    fail_value(name_, "the last dimension must be contiguous (stride 1), got stride " +
                          std::to_string(t_.strides[t_.ndim - 1]));
  }
  for (int i = 0; i < t_.ndim; ++i) {
    if (t_.shape[i] < 0) fail_value(name_, "negative size in dimension " + std::to_string(i));
    if (t_.strides[i] < 0) fail_value(name_, "negative stride in dimension " + std::to_string(i));
  }
  return *this;
}

TensorCheck& TensorCheck::non_null() {
  if (t_.data == nullptr && t_.numel() > 0) fail_value(name_, "data pointer is null");
  return *this;
}

}  // namespace flashmla::detail
