// The machine's two ceilings, measured in the same run as the cases, so that every time can be
// judged against its roofline floor max(bytes / copy bandwidth, FLOPs / GEMM rate).
//
// CPU: multi-threaded memcpy over 256 MiB; fp32 SGEMM 2048^3 through OpenBLAS (the number the
// README compares to), or a built-in blocked GEMM when the tool was built without OpenBLAS.
// GPU: cudaMemcpyAsync device-to-device of 2 GiB; cuBLAS bf16 GEMM 8192^3 with fp32
// accumulation (cublasGemmEx) on random data.
#pragma once

#include <optional>
#include <string>

#if defined(FLASHMLA_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashmla::cli {

// A rate is an upper bound: other load, clock ramps and page faults only ever lower it, so the
// ceiling is the best repetition (as STREAM reports); the median shows how steady it was.
struct Ceiling {
  double best = 0;  // bytes/s (read + write) or FLOP/s, of the fastest repetition
  double median = 0;
  int repetitions = 0;
  std::string method;  // what was measured, e.g. "openblas cblas_sgemm fp32 2048^3"
};

struct Ceilings {
  Ceiling copy;  // bytes read + written per second
  Ceiling gemm;  // FLOP/s
};

Ceilings measure_cpu_ceilings();

#if defined(FLASHMLA_WITH_CUDA)
Ceilings measure_gpu_ceilings(int device, cudaStream_t stream);
#endif

// The roofline floor of a call moving `bytes` and computing `flops`, in seconds (from the best
// rates).
double roofline_floor_seconds(const Ceilings& ceilings, double flops, double bytes);

}  // namespace flashmla::cli
