// Checking every CUDA runtime / cuBLAS call: a failure throws CudaError naming the call and
// where it was made, so a broken run never reports a time.
#pragma once

#if defined(FLASHMLA_WITH_CUDA)

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace flashmla::cli {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) {
    throw CudaError(std::string(call) + " failed: " + cudaGetErrorName(status) + " (" +
                    cudaGetErrorString(status) + ") at " + file + ":" + std::to_string(line));
  }
}

}  // namespace flashmla::cli

#define FLASHMLA_CLI_CUDA_CHECK(call) ::flashmla::cli::check_cuda((call), #call, __FILE__, __LINE__)

#endif  // FLASHMLA_WITH_CUDA
