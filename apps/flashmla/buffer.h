// Owned memory for benchmark inputs and scratch: 64-byte aligned host memory, or memory on one
// CUDA device. The library never allocates the tensors it is given; the tool does it here.
#pragma once

#include <cstddef>

#include "flashmla/tensor.h"

namespace flashmla::cli {

class Buffer {
 public:
  Buffer() = default;
  // Uninitialized memory of `bytes` bytes on `device` (at least one byte is allocated, so that
  // empty tensors still get a valid pointer).
  Buffer(size_t bytes, Device device);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

  // A copy of this buffer on `device` (host -> host, host -> device; synchronous).
  Buffer copy_to(Device device) const;
  // Sets every byte to zero (synchronous).
  void zero();

 private:
  void release() noexcept;

  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_{};
};

}  // namespace flashmla::cli
