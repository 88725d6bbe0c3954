#include "ceilings.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#if defined(FLASHMLA_CLI_HAVE_OPENBLAS)
#include <cblas.h>
// OpenBLAS's own entry points; declared here too because cblas.h may be another BLAS's header.
extern "C" int openblas_get_num_threads(void);
extern "C" char* openblas_get_config(void);
#endif

#if defined(FLASHMLA_WITH_CUDA)
#include <cublas_v2.h>
#endif

#include "buffer.h"
#include "cuda_check.h"
#include "random_fill.h"
#include "timing.h"

namespace flashmla::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kCpuCopyBytes = size_t{256} << 20;
constexpr int kCpuGemmSize = 2048;
constexpr size_t kGpuCopyBytes = size_t{2} << 30;
constexpr int kGpuGemmSize = 8192;
constexpr int kRepetitions = 10;
constexpr uint64_t kGemmSeed = 0x6E6D6D;

// Work per repetition -> median and best rates over the repetitions' times.
Ceiling rate_from_times(const std::vector<double>& seconds, double work, std::string method) {
  std::vector<double> times_us;
  for (double s : seconds) times_us.push_back(s * 1e6);
  const TimingResult summary = summarize_samples(times_us);
  Ceiling ceiling;
  ceiling.median = work / (summary.median_us * 1e-6);
  ceiling.best = work / (summary.min_us * 1e-6);
  ceiling.repetitions = summary.iters;
  ceiling.method = std::move(method);
  return ceiling;
}

template <typename Body>
std::vector<double> time_repetitions(int warmup, int repetitions, Body body) {
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> seconds;
  for (int i = 0; i < repetitions; ++i) {
    const Clock::time_point start = Clock::now();
    body();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return seconds;
}

int cpu_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Each thread handles one contiguous slice, so pages are first touched (memset) by the thread
// that later copies them, which places them on its NUMA node.
template <typename SliceOp>
void for_each_thread_slice(size_t bytes, SliceOp op) {
  auto run_slice = [&](size_t thread, size_t threads) {
    const size_t slice = (bytes / threads + 4095) / 4096 * 4096;
    const size_t begin = std::min(bytes, thread * slice);
    const size_t end = std::min(bytes, begin + slice);
    if (end > begin) op(begin, end - begin);
  };
#if defined(_OPENMP)
#pragma omp parallel
  run_slice(static_cast<size_t>(omp_get_thread_num()), static_cast<size_t>(omp_get_num_threads()));
#else
  run_slice(0, 1);
#endif
}

Ceiling measure_cpu_copy() {
  Buffer source(kCpuCopyBytes, Device::cpu());
  Buffer destination(kCpuCopyBytes, Device::cpu());
  auto* src = source.as<unsigned char>();
  auto* dst = destination.as<unsigned char>();
  for_each_thread_slice(kCpuCopyBytes, [&](size_t begin, size_t size) {
    std::memset(src + begin, 1, size);
    std::memset(dst + begin, 0, size);
  });
  const std::vector<double> seconds = time_repetitions(1, kRepetitions, [&] {
    for_each_thread_slice(kCpuCopyBytes, [&](size_t begin, size_t size) {
      std::memcpy(dst + begin, src + begin, size);
    });
  });
  return rate_from_times(
      seconds, 2.0 * kCpuCopyBytes,
      "memcpy 256 MiB, read + write, " + std::to_string(cpu_threads()) + " threads");
}

#if !defined(FLASHMLA_CLI_HAVE_OPENBLAS)
// C = A * B, all n x n row-major fp32. Blocked for the caches; four rows of C share each load
// of a row slice of B. A stand-in ceiling only: OpenBLAS is typically 2-4x faster.
void blocked_sgemm(int n, const float* a, const float* b, float* c) {
  constexpr int kRows = 4;  // rows of C per pass (n is a multiple of it here)
  constexpr int kBlockK = 256;
  constexpr int kBlockJ = 512;
  std::fill(c, c + static_cast<size_t>(n) * n, 0.0f);
#pragma omp parallel for collapse(2) schedule(static)
  for (int i0 = 0; i0 < n; i0 += kRows) {
    for (int j0 = 0; j0 < n; j0 += kBlockJ) {
      const int j_end = std::min(n, j0 + kBlockJ);
      float* c_rows[kRows];
      for (int r = 0; r < kRows; ++r) c_rows[r] = c + static_cast<size_t>(i0 + r) * n;
      for (int k0 = 0; k0 < n; k0 += kBlockK) {
        const int k_end = std::min(n, k0 + kBlockK);
        for (int k = k0; k < k_end; ++k) {
          const float* b_row = b + static_cast<size_t>(k) * n;
          const float a0 = a[static_cast<size_t>(i0 + 0) * n + k];
          const float a1 = a[static_cast<size_t>(i0 + 1) * n + k];
          const float a2 = a[static_cast<size_t>(i0 + 2) * n + k];
          const float a3 = a[static_cast<size_t>(i0 + 3) * n + k];
#pragma omp simd
          for (int j = j0; j < j_end; ++j) {
            const float bj = b_row[j];
            c_rows[0][j] += a0 * bj;
            c_rows[1][j] += a1 * bj;
            c_rows[2][j] += a2 * bj;
            c_rows[3][j] += a3 * bj;
          }
        }
      }
    }
  }
}
#endif

Ceiling measure_cpu_gemm() {
  const int n = kCpuGemmSize;
  const size_t elements = static_cast<size_t>(n) * n;
  std::vector<float> a(elements), b(elements), c(elements, 0.0f);
  fill_uniform_fp32(a.data(), elements, derive_seed(kGemmSeed, 1));
  fill_uniform_fp32(b.data(), elements, derive_seed(kGemmSeed, 2));
  const double flops = 2.0 * n * n * static_cast<double>(n);
  const std::string size = std::to_string(n) + "^3";
#if defined(FLASHMLA_CLI_HAVE_OPENBLAS)
  const std::vector<double> seconds = time_repetitions(1, kRepetitions, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
  return rate_from_times(seconds, flops,
                         "openblas cblas_sgemm fp32 " + size + ", " +
                             std::to_string(openblas_get_num_threads()) + " threads (" +
                             openblas_get_config() + ")");
#else
  const std::vector<double> seconds =
      time_repetitions(1, 3, [&] { blocked_sgemm(n, a.data(), b.data(), c.data()); });
  return rate_from_times(seconds, flops,
                         "built-in blocked fp32 GEMM " + size + ", " +
                             std::to_string(cpu_threads()) +
                             " threads (OpenBLAS not found at build time; it is usually faster)");
#endif
}

#if defined(FLASHMLA_WITH_CUDA)
void check_cublas(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw CudaError(std::string(call) + " failed: " + cublasGetStatusString(status));
  }
}
#define FLASHMLA_CLI_CUBLAS_CHECK(call) check_cublas((call), #call)

// Times `enqueue` (work on `stream`) with events: warm-up, then kRepetitions timed runs.
template <typename Enqueue>
std::vector<double> time_gpu_repetitions(cudaStream_t stream, int warmup, Enqueue enqueue) {
  for (int i = 0; i < warmup; ++i) enqueue();
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  FLASHMLA_CLI_CUDA_CHECK(cudaEventCreate(&start));
  FLASHMLA_CLI_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> seconds;
  for (int i = 0; i < kRepetitions; ++i) {
    FLASHMLA_CLI_CUDA_CHECK(cudaEventRecord(start, stream));
    enqueue();
    FLASHMLA_CLI_CUDA_CHECK(cudaEventRecord(stop, stream));
    FLASHMLA_CLI_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    FLASHMLA_CLI_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    seconds.push_back(static_cast<double>(ms) * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return seconds;
}

Ceiling measure_gpu_copy(int device, cudaStream_t stream) {
  Buffer source(kGpuCopyBytes, Device::cuda(device));
  Buffer destination(kGpuCopyBytes, Device::cuda(device));
  FLASHMLA_CLI_CUDA_CHECK(cudaMemsetAsync(source.data(), 1, kGpuCopyBytes, stream));
  const std::vector<double> seconds = time_gpu_repetitions(stream, 2, [&] {
    FLASHMLA_CLI_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), kGpuCopyBytes,
                                            cudaMemcpyDeviceToDevice, stream));
  });
  return rate_from_times(seconds, 2.0 * kGpuCopyBytes,
                         "cudaMemcpyAsync device-to-device 2 GiB, read + write");
}

Ceiling measure_gpu_gemm(int device, cudaStream_t stream) {
  const int n = kGpuGemmSize;
  const size_t elements = static_cast<size_t>(n) * n;
  // Random operands: tensor cores draw less power on zeros, which would flatter the ceiling.
  Buffer host(elements * sizeof(uint16_t), Device::cpu());
  fill_uniform_bf16(host.as<uint16_t>(), elements, derive_seed(kGemmSeed, 1));
  Buffer a = host.copy_to(Device::cuda(device));
  fill_uniform_bf16(host.as<uint16_t>(), elements, derive_seed(kGemmSeed, 2));
  Buffer b = host.copy_to(Device::cuda(device));
  Buffer c(elements * sizeof(uint16_t), Device::cuda(device));

  cublasHandle_t handle = nullptr;
  FLASHMLA_CLI_CUBLAS_CHECK(cublasCreate(&handle));
  std::vector<double> seconds;
  try {
    FLASHMLA_CLI_CUBLAS_CHECK(cublasSetStream(handle, stream));
    const float alpha = 1.0f;
    const float beta = 0.0f;
    seconds = time_gpu_repetitions(stream, 3, [&] {
      FLASHMLA_CLI_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha,
                                             a.data(), CUDA_R_16BF, n, b.data(), CUDA_R_16BF, n,
                                             &beta, c.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT));
    });
  } catch (...) {
    cublasDestroy(handle);
    throw;
  }
  cublasDestroy(handle);
  return rate_from_times(
      seconds, 2.0 * n * n * static_cast<double>(n),
      "cublasGemmEx bf16 " + std::to_string(n) + "^3, fp32 accumulation, random data");
}
#endif  // FLASHMLA_WITH_CUDA

}  // namespace

Ceilings measure_cpu_ceilings() {
  Ceilings ceilings{measure_cpu_copy(), measure_cpu_gemm()};
#if defined(FLASHMLA_CLI_HAVE_OPENBLAS)
  // OpenBLAS's worker threads keep spinning for a while after a call; let them go idle so that
  // they do not compete with the first timed decode calls.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
#endif
  return ceilings;
}

#if defined(FLASHMLA_WITH_CUDA)
Ceilings measure_gpu_ceilings(int device, cudaStream_t stream) {
  return {measure_gpu_copy(device, stream), measure_gpu_gemm(device, stream)};
}
#endif

double roofline_floor_seconds(const Ceilings& ceilings, double flops, double bytes) {
  const double memory_seconds = ceilings.copy.best > 0 ? bytes / ceilings.copy.best : 0.0;
  const double compute_seconds = ceilings.gemm.best > 0 ? flops / ceilings.gemm.best : 0.0;
  return std::max(memory_seconds, compute_seconds);
}

}  // namespace flashmla::cli
