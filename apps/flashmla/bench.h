// `flashmla bench`: measure the ceilings, time each case, report.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench_cases.h"
#include "timing.h"

namespace flashmla::cli {

struct BenchOptions {
  ShapeFlags shape;
  std::string cases_file;   // empty: the single case of `shape`
  std::string case_filter;  // see select_cases
  int max_cases = 0;        // 0: all
  std::string dtype = "bf16";
  // KV cache format: auto (sparse cases FP8, as FlashMLA's sparse anchor; dense cases --dtype),
  // fp8 (every case; needs --dtype bf16), or bf16/fp16 (every case; must equal --dtype).
  std::string kv = "auto";
  bool kv_baseline = true;  // dense cases with an FP8 cache: also time their bf16 cache first
  // Every sparse case of a case file also runs with these h_q (no anchor time).
  std::vector<int> sparse_variant_heads = {16, 32};
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

// Runs the benchmark; returns the process exit status: 0, or 3 when the backend does not
// implement some case (flashmla::Error of kind kNotSupported: the case is reported as such and
// the run goes on). Throws flashmla::Error (other kinds), CliError and (CUDA) CudaError for main
// to report.
int run_bench(const BenchOptions& options);

}  // namespace flashmla::cli
