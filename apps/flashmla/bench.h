// `flashmla bench`: measure the ceilings, time each case, report.
#pragma once

#include <cstdint>
#include <string>

#include "bench_cases.h"
#include "timing.h"

namespace flashmla::cli {

struct BenchOptions {
  ShapeFlags shape;
  std::string cases_file;   // empty: the single case of `shape`
  std::string case_filter;  // see select_cases
  int max_cases = 0;        // 0: all
  std::string dtype = "bf16";
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  TimingPolicy timing;
  std::string json_path;  // empty: no JSON; "-": stdout (the table then goes to stderr)
  uint64_t seed = 0;
  int num_workers = 0;       // DecodePlan's num_workers (0: the backend's choice)
  bool use_graph = true;     // CUDA: replay a CUDA graph of the call (else direct launches)
  bool flush_caches = true;  // flush L2 (CUDA) / the last-level cache (CPU) before each call
  int input_sets = 0;        // input sets to rotate among; 0: 2 on CUDA, 1 on the CPU
  bool measure_ceilings = true;
};

// Runs the benchmark; returns the process exit status. Throws flashmla::Error, CliError and
// (CUDA) CudaError for main to report.
int run_bench(const BenchOptions& options);

}  // namespace flashmla::cli
