// Error checking for CUDA runtime calls and kernel launches in the CUDA backend.
//
// Every failure becomes flashmla::Error(kRuntime), so callers (the API layer, the Python
// bindings) see one exception type whatever the backend.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "flashmla/error.h"

namespace flashmla::detail::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  throw Error(ErrorKind::kRuntime, "",
              std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
                  "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace flashmla::detail::cuda

// Checks a cudaError_t-returning call.
#define FLASHMLA_CUDA_CHECK(call)                                                           \
  do {                                                                                      \
    const cudaError_t flashmla_err_ = (call);                                               \
    if (flashmla_err_ != cudaSuccess) {                                                     \
      ::flashmla::detail::cuda::throw_cuda_error(flashmla_err_, #call, __FILE__, __LINE__); \
    }                                                                                       \
  } while (0)

// Checks the launch that was just made (configuration errors, not asynchronous faults).
#define FLASHMLA_CUDA_CHECK_LAUNCH(name)                                                     \
  do {                                                                                       \
    const cudaError_t flashmla_err_ = cudaGetLastError();                                    \
    if (flashmla_err_ != cudaSuccess) {                                                      \
      ::flashmla::detail::cuda::throw_cuda_error(flashmla_err_, "launch of " name, __FILE__, \
                                                 __LINE__);                                  \
    }                                                                                        \
  } while (0)
