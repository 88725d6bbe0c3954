#include "bench.h"

#include <algorithm>
#include <functional>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <vector>

#include "ceilings.h"
#include "cli_error.h"
#include "cuda_check.h"
#include "flashmla/decode.h"
#include "inputs.h"
#include "random_fill.h"
#include "report.h"
#include "system_info.h"

namespace flashmla::cli {
namespace {

DType parse_dtype(const std::string& name) {
  if (name == "bf16") return DType::kBF16;
  if (name == "fp16") return DType::kFP16;
  throw CliError("--dtype", "expected bf16 or fp16, got \"" + name + "\"");
}

Device resolve_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  int index = 0;
  if (name != "cuda") {
    const std::string ordinal = name.rfind("cuda:", 0) == 0 ? name.substr(5) : std::string();
    const bool is_number =
        !ordinal.empty() && ordinal.size() <= 4 &&
        std::all_of(ordinal.begin(), ordinal.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!is_number) {
      throw CliError("--device", "expected auto, cpu, cuda or cuda:N, got \"" + name + "\"");
    }
    index = std::stoi(ordinal);
  }
#if defined(FLASHMLA_WITH_CUDA)
  if (!cuda_available()) {
    throw CliError("--device", "CUDA was requested, but no usable GPU was found");
  }
  int count = 0;
  FLASHMLA_CLI_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (index >= count) {
    throw CliError("--device", name + " does not exist (" + std::to_string(count) + " GPUs)");
  }
  return Device::cuda(index);
#else
  (void)index;
  throw CliError("--device", "CUDA was requested, but this build has no CUDA backend");
#endif
}

std::vector<BenchCase> chosen_cases(const BenchOptions& options) {
  std::vector<BenchCase> all;
  if (options.cases_file.empty()) {
    all.push_back(case_from_flags(options.shape));
  } else {
    all = load_case_file(options.cases_file);
  }
  std::vector<BenchCase> selected = select_cases(all, options.case_filter, options.max_cases);
  if (selected.empty()) {
    throw CliError("--case-filter", "no case matches \"" + options.case_filter + "\" (of " +
                                        std::to_string(all.size()) + ")");
  }
  return selected;
}

DecodeShape decode_shape(const BenchCase& c) {
  DecodeShape shape;
  shape.batch_size = c.b;
  shape.s_q = c.s_q;
  shape.h_q = c.h_q;
  shape.h_kv = c.h_kv;
  shape.page_block_size = c.page_block_size;
  return shape;
}

// Times one case on the CPU backend.
TimingResult time_case_on_cpu(const BenchCase& c, DType dtype, const BenchOptions& options,
                              uint64_t seed) {
  const int sets = std::max(1, options.input_sets);
  CaseInputs inputs = build_case_inputs(c, dtype, Device::cpu(), seed, sets);
  DecodePlan plan(decode_shape(c), Device::cpu(), c.dv, options.num_workers);
  plan.update(inputs.cache_seqlens_view);
  size_t next = 0;
  return time_host_calls([&] { mla_decode(inputs.sets[next++ % inputs.sets.size()].args, plan); },
                         options.timing, options.flush_caches);
}

#if defined(FLASHMLA_WITH_CUDA)
class CudaStream {
 public:
  explicit CudaStream(int device) {
    FLASHMLA_CLI_CUDA_CHECK(cudaSetDevice(device));
    // Non-blocking: graph capture is not allowed on the legacy default stream, and the work
    // must not serialize with it.
    FLASHMLA_CLI_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaStream() { cudaStreamDestroy(stream_); }
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Bytes of one input set's KV cache, as build_case_inputs will allocate it.
double kv_cache_bytes(const BenchCase& c, DType dtype) {
  double pages = 0;
  for (int32_t length : c.cache_seqlens) {
    pages += (length + c.page_block_size - 1) / c.page_block_size;
  }
  return std::max(pages, 1.0) * c.page_block_size * c.h_kv * c.d *
         static_cast<double>(dtype_size(dtype));
}

// Two sets unless two copies of the cache would not fit in (most of) the free memory.
int gpu_input_sets(const BenchCase& c, DType dtype, const BenchOptions& options) {
  if (options.input_sets > 0) return options.input_sets;
  size_t free_bytes = 0;
  size_t total_bytes = 0;
  FLASHMLA_CLI_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return 2 * kv_cache_bytes(c, dtype) < 0.8 * static_cast<double>(free_bytes) ? 2 : 1;
}

// Times one case on the CUDA backend: plan once, then graph replays of the decode call.
TimingResult time_case_on_gpu(const BenchCase& c, DType dtype, const BenchOptions& options,
                              uint64_t seed, int device, cudaStream_t stream) {
  const int sets = gpu_input_sets(c, dtype, options);
  CaseInputs inputs = build_case_inputs(c, dtype, Device::cuda(device), seed, sets);
  DecodePlan plan(decode_shape(c), Device::cuda(device), c.dv, options.num_workers);
  plan.update(inputs.cache_seqlens_view, stream);
  FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(stream));

  std::vector<std::function<void(cudaStream_t)>> calls;
  for (const DecodeInputSet& set : inputs.sets) {
    calls.emplace_back([&plan, &set](cudaStream_t s) { mla_decode(set.args, plan, s); });
  }
  GpuTimingOptions gpu_options;
  gpu_options.use_graph = options.use_graph;
  gpu_options.flush_l2 = options.flush_caches;
  gpu_options.device = device;
  const TimingResult result = time_gpu_calls(calls, stream, options.timing, gpu_options);
  // Kernel faults surface asynchronously: make sure none happened before trusting the time.
  FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(stream));
  FLASHMLA_CLI_CUDA_CHECK(cudaGetLastError());
  return result;
}
#endif

std::string timing_method(bool on_gpu, const BenchOptions& options) {
  std::ostringstream text;
  if (on_gpu) {
    text << "median of per-replay cudaEvent times of "
         << (options.use_graph ? "CUDA-graph replays of one decode call"
                               : "direct launches of one decode call")
         << " on a non-blocking stream, rotating over "
         << (options.input_sets > 0 ? std::to_string(options.input_sets)
                                    : std::string("2 (1 when memory is short)"))
         << " input sets"
         << (options.flush_caches ? ", L2 flushed before each replay (as triton do_bench)" : "")
         << "; DecodePlan updated once beforehand";
  } else {
    text << "median wall time of repeated synchronous decode calls after warm-up"
         << (options.flush_caches ? ", last-level cache flushed (by reading a larger buffer) "
                                    "before each call"
                                  : "")
         << "; DecodePlan updated once beforehand";
  }
  return text.str();
}

// "287.0 us, 80.1% of floor, FlashMLA 1.05x": a case's result in one progress line.
std::string progress_summary(const CaseResult& result) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(1) << result.timing.median_us << " us";
  if (result.floor_us) {
    text << ", " << 100.0 * *result.floor_us / result.timing.median_us << "% of floor";
  }
  if (result.bench_case.flashmla_us) {
    text << std::setprecision(2) << ", FlashMLA/ours "
         << *result.bench_case.flashmla_us / result.timing.median_us;
  }
  return text.str();
}

}  // namespace

int run_bench(const BenchOptions& options) {
  const DType dtype = parse_dtype(options.dtype);
  const Device device = resolve_device(options.device);
  const std::vector<BenchCase> cases = chosen_cases(options);
  const bool on_gpu = device.is_cuda();
  // With the JSON record on stdout, everything for people goes to stderr.
  std::ostream& out = options.json_path == "-" ? std::cerr : std::cout;

  RunRecord run;
  run.on_gpu = on_gpu;
  run.timing_method = timing_method(on_gpu, options);
#if defined(FLASHMLA_WITH_CUDA)
  std::optional<CudaStream> stream;
  if (on_gpu) {
    stream.emplace(device.index);
    run.device = gpu_description(device.index);
  }
#endif
  if (!on_gpu) run.device = cpu_description();

  const std::optional<bool> dirty = git_dirty();
  out << "flashmla bench " << version_string() << " (git " << git_commit().substr(0, 12)
      << (dirty.value_or(false) ? ", uncommitted changes" : "") << ") on " << run.device << ", "
      << dtype_name(dtype) << "\n\n";

  if (options.measure_ceilings) {
    if (cases.size() > 1) std::cerr << "measuring ceilings ..." << std::endl;
#if defined(FLASHMLA_WITH_CUDA)
    run.ceilings =
        on_gpu ? measure_gpu_ceilings(device.index, stream->get()) : measure_cpu_ceilings();
#else
    run.ceilings = measure_cpu_ceilings();
#endif
    print_ceilings(out, *run.ceilings, on_gpu);
  }

  // Long runs can be cut short (a time limit): each case's result goes to stderr as it comes.
  const bool show_progress = cases.size() > 1;
  for (size_t i = 0; i < cases.size(); ++i) {
    const BenchCase& c = cases[i];
    if (show_progress) {
      std::cerr << "[" << i + 1 << "/" << cases.size() << "] case " << c.index << ": "
                << c.describe() << " ..." << std::flush;
    }
    // Seeded by the case's position in the file, so a filtered run sees the same inputs.
    const uint64_t seed = derive_seed(options.seed, static_cast<uint64_t>(c.index));
    CaseResult result;
    result.bench_case = c;
    result.dtype = dtype;
    try {
#if defined(FLASHMLA_WITH_CUDA)
      result.timing = on_gpu
                          ? time_case_on_gpu(c, dtype, options, seed, device.index, stream->get())
                          : time_case_on_cpu(c, dtype, options, seed);
#else
      result.timing = time_case_on_cpu(c, dtype, options, seed);
#endif
    } catch (...) {
      if (show_progress) std::cerr << std::endl;  // the error message gets a line of its own
      throw;
    }
    result.flops = c.flops();
    result.bytes = c.bytes(dtype_size(dtype));
    if (run.ceilings) {
      result.floor_us = roofline_floor_seconds(*run.ceilings, result.flops, result.bytes) * 1e6;
    }
    if (show_progress) std::cerr << " " << progress_summary(result) << std::endl;
    run.cases.push_back(std::move(result));
  }

  print_case_table(out, run.cases, on_gpu);
  if (!options.json_path.empty()) write_json(run, options.json_path);
  return 0;
}

}  // namespace flashmla::cli
