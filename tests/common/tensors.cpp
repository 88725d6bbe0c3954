#include "common/tensors.h"

#include "common/numeric.h"

namespace flashmla::test {

TensorView contiguous_view(void* data, DType dtype, const std::vector<int64_t>& shape) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = static_cast<int>(shape.size());
  int64_t stride = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    v.shape[i] = shape[i];
    v.strides[i] = stride;
    stride *= shape[i];
  }
  return v;
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

HalfTensor::HalfTensor(DType dtype_, std::vector<int64_t> shape_, uint16_t fill)
    : dtype(dtype_),
      shape(std::move(shape_)),
      bits(static_cast<size_t>(element_count(shape)), fill) {}

double HalfTensor::value(int64_t i) const {
  return half_value(dtype, bits[i]);
}

}  // namespace flashmla::test
