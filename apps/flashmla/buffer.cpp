#include "buffer.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "cli_error.h"
#include "cuda_check.h"

namespace flashmla::cli {
namespace {

constexpr size_t kHostAlignment = 64;  // a cache line, and enough for any vector load

#if defined(FLASHMLA_WITH_CUDA)
// Makes `device` current for the duration of a runtime call, then restores the previous one.
class ScopedCudaDevice {
 public:
  explicit ScopedCudaDevice(int device) {
    FLASHMLA_CLI_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) FLASHMLA_CLI_CUDA_CHECK(cudaSetDevice(device));
  }
  ~ScopedCudaDevice() { cudaSetDevice(previous_); }
  ScopedCudaDevice(const ScopedCudaDevice&) = delete;
  ScopedCudaDevice& operator=(const ScopedCudaDevice&) = delete;

 private:
  int previous_ = 0;
};
#endif

#if !defined(FLASHMLA_WITH_CUDA)
[[noreturn]] void no_cuda_build() {
  throw CliError("--device", "this build of flashmla has no CUDA backend");
}
#endif

}  // namespace

Buffer::Buffer(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  const size_t allocated = bytes == 0 ? 1 : bytes;
  if (!device.is_cuda()) {
    const size_t rounded = (allocated + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    data_ = std::aligned_alloc(kHostAlignment, rounded);
    if (data_ == nullptr) throw std::bad_alloc();
    return;
  }
#if defined(FLASHMLA_WITH_CUDA)
  ScopedCudaDevice scoped(device.index);
  FLASHMLA_CLI_CUDA_CHECK(cudaMalloc(&data_, allocated));
#else
  no_cuda_build();
#endif
}

Buffer::~Buffer() {
  release();
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(other.device_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  if (!device_.is_cuda()) {
    std::free(data_);
  } else {
#if defined(FLASHMLA_WITH_CUDA)
    cudaFree(data_);  // a destructor cannot report; a failed free only leaks
#endif
  }
  data_ = nullptr;
}

Buffer Buffer::copy_to(Device device) const {
  Buffer copy(bytes_, device);
  if (bytes_ == 0) return copy;
  if (!device_.is_cuda() && !device.is_cuda()) {
    std::memcpy(copy.data_, data_, bytes_);
    return copy;
  }
#if defined(FLASHMLA_WITH_CUDA)
  FLASHMLA_CLI_CUDA_CHECK(cudaMemcpy(copy.data_, data_, bytes_, cudaMemcpyDefault));
#else
  no_cuda_build();
#endif
  return copy;
}

void Buffer::zero() {
  if (!device_.is_cuda()) {
    std::memset(data_, 0, bytes_);
    return;
  }
#if defined(FLASHMLA_WITH_CUDA)
  ScopedCudaDevice scoped(device_.index);
  FLASHMLA_CLI_CUDA_CHECK(cudaMemset(data_, 0, bytes_));
#else
  no_cuda_build();
#endif
}

}  // namespace flashmla::cli
