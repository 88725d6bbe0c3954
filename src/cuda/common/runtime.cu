// Device discovery and memory for the CUDA backend.
#include <cuda_runtime.h>

#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "api/backends.h"
#include "cuda/common/check.h"
#include "cuda/common/device_info.h"

namespace flashmla::detail::cuda {

DeviceGuard::DeviceGuard(int device) {
  FLASHMLA_CUDA_CHECK(cudaGetDevice(&previous_));
  if (device != previous_) FLASHMLA_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  int current = previous_;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
}

bool available() {
  // Must never throw: CI machines have the CUDA runtime but no driver or GPU.
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return false;
  }
  for (int d = 0; d < count; ++d) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    if (major == 9) return true;  // the kernels are built for sm_90a only
  }
  return false;
}

int current_device() {
  int device = 0;
  FLASHMLA_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

void* device_alloc(size_t bytes, int device) {
  DeviceGuard guard(device);
  void* ptr = nullptr;
  if (bytes == 0) bytes = 1;  // a valid, freeable pointer even for empty workspaces
  FLASHMLA_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return ptr;
}

void device_free(void* ptr, int device) noexcept {
  if (ptr == nullptr) return;
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  if (previous != device) cudaSetDevice(device);
  cudaFree(ptr);
  if (previous != device) cudaSetDevice(previous);
  cudaGetLastError();  // a destructor reports nothing; do not leave an error behind
}

void copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  FLASHMLA_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  // A copy from pageable memory may return before it lands; later work on other (non-blocking)
  // streams must see the data.
  FLASHMLA_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

int sm_count(int device) {
  static std::mutex mutex;
  static std::vector<int> cache;
  std::lock_guard<std::mutex> lock(mutex);
  if (device < 0) device = 0;
  if (static_cast<size_t>(device) >= cache.size()) cache.resize(device + 1, 0);
  if (cache[device] == 0) {
    int count = 0;
    FLASHMLA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cache[device] = count;
  }
  return cache[device];
}

void set_max_dynamic_smem(const void* kernel, int bytes) {
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> done;
  int device = 0;
  FLASHMLA_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  if (done.count({kernel, device})) return;
  FLASHMLA_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.insert({kernel, device});
}

}  // namespace flashmla::detail::cuda
