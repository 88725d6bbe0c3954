// Host buffers for tests and the views that pass them to the library.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "flashmla/tensor.h"

namespace flashmla::test {

// A contiguous view of any rank (TensorView::contiguous takes an initializer list only).
TensorView contiguous_view(void* data, DType dtype, const std::vector<int64_t>& shape);

int64_t element_count(const std::vector<int64_t>& shape);

// A contiguous tensor of 16-bit values (bf16 or fp16), kept as raw bit patterns.
struct HalfTensor {
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  std::vector<uint16_t> bits;

  HalfTensor() = default;
  HalfTensor(DType dtype, std::vector<int64_t> shape, uint16_t fill = 0);
  double value(int64_t i) const;
  TensorView view() { return contiguous_view(bits.data(), dtype, shape); }
};

// A contiguous fp32 or int32 tensor.
template <typename T>
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<T> data;

  HostTensor() = default;
  HostTensor(std::vector<int64_t> s, T fill = T{})
      : shape(std::move(s)), data(static_cast<size_t>(element_count(shape)), fill) {}
  TensorView view() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t>);
    return contiguous_view(data.data(), std::is_same_v<T, float> ? DType::kFP32 : DType::kInt32,
                           shape);
  }
};

}  // namespace flashmla::test
