// Non-owning tensor views: the only way data crosses the public API.
//
// A view is plain data (pointer, dtype, shape, strides in elements, device); it never
// allocates or frees. Frameworks (torch, numpy, DLPack) are converted to views by the
// bindings; the core knows nothing of them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace flashmla {

enum class DType : uint8_t { kBF16, kFP16, kFP32, kFP8E4M3, kInt32, kUInt8 };

// Bytes per element.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kBF16:
    case DType::kFP16:
      return 2;
    case DType::kFP32:
    case DType::kInt32:
      return 4;
    case DType::kFP8E4M3:
    case DType::kUInt8:
      return 1;
  }
  return 0;
}

const char* dtype_name(DType t);

enum class DeviceType : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;  // CUDA ordinal; 0 for the CPU

  static Device cpu() { return {DeviceType::kCPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::kCUDA, index}; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

inline constexpr int kMaxTensorDims = 6;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFP32;
  int ndim = 0;
  std::array<int64_t, kMaxTensorDims> shape{};
  std::array<int64_t, kMaxTensorDims> strides{};  // in elements, not bytes
  Device device{};

  // A contiguous (row-major) view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               Device device = Device::cpu());
  // A view with explicit strides (in elements).
  static TensorView strided(void* data, DType dtype, std::initializer_list<int64_t> shape,
                            std::initializer_list<int64_t> strides, Device device = Device::cpu());

  bool defined() const { return data != nullptr || numel() == 0; }
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  int64_t stride(int dim) const { return strides[dim < 0 ? dim + ndim : dim]; }
  int64_t numel() const;
  bool is_contiguous() const;
  // "[2, 3, 576] bf16 cuda:0", for error messages.
  std::string describe() const;

  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

// An optional argument: a view that may be absent.
struct OptionalTensor {
  TensorView view;
  bool present = false;

  OptionalTensor() = default;
  OptionalTensor(const TensorView& v) : view(v), present(true) {}  // NOLINT: implicit by design
  explicit operator bool() const { return present; }
  const TensorView* operator->() const { return &view; }
  const TensorView& operator*() const { return view; }
};

}  // namespace flashmla
