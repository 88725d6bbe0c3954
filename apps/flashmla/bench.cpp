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
#include "flashmla/error.h"
#include "inputs.h"
#include "random_fill.h"
#include "report.h"
#include "sparse_inputs.h"
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
    all = add_head_variants(load_case_file(options.cases_file), options.sparse_variant_heads);
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
  shape.topk = c.topk;  // 0: a dense plan
  return shape;
}

// Whether a case runs with the FP8 cache under --kv.
bool uses_fp8_cache(const BenchCase& c, const std::string& kv) {
  return kv == "fp8" || (kv == "auto" && c.sparse());
}

// --kv against --dtype and the cases, before anything is measured.
void check_kv_option(const BenchOptions& options, DType dtype,
                     const std::vector<BenchCase>& cases) {
  if ((options.kv == "bf16" || options.kv == "fp16") && options.kv != dtype_name(dtype)) {
    throw CliError("--kv", "a 16-bit cache has the dtype of q (--dtype " + options.dtype +
                               "), got " + options.kv);
  }
  for (const BenchCase& c : cases) {
    if (!uses_fp8_cache(c, options.kv)) continue;
    const std::string which = "case " + std::to_string(c.index) + " (" + c.describe() + ")";
    if (dtype != DType::kBF16) {
      throw CliError("--kv", which + " uses the FP8 cache, which needs --dtype bf16");
    }
    if (c.d != 576 || c.h_kv != 1) {
      throw CliError("--kv", which + " cannot use the FP8 cache: it needs d = 576 and h_kv = 1");
    }
  }
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
#endif

// One decode call of one input set, enqueued on the given stream (a cudaStream_t on CUDA, null
// on the CPU, where the call is synchronous).
using DecodeCall = std::function<void(void* stream)>;

// Where the cases run, and what every kind of case shares: how many input sets fit, waiting for
// the device, and timing one call per input set (graph replays on CUDA, wall time on the CPU).
class Runner {
 public:
  Runner(Device device, const BenchOptions& options) : device_(device), options_(options) {
#if defined(FLASHMLA_WITH_CUDA)
    if (device.is_cuda()) stream_.emplace(device.index);
#endif
  }

  Device device() const {
    return device_;
  }
  void* stream() const {
#if defined(FLASHMLA_WITH_CUDA)
    if (stream_) return stream_->get();
#endif
    return nullptr;
  }

  // --input-sets, else 1 on the CPU, and on CUDA 2 unless two sets (of `per_set_bytes` each,
  // next to `shared_bytes` needed while they are built) would not fit in most of the free memory.
  int input_sets(double per_set_bytes, double shared_bytes) const {
    if (options_.input_sets > 0) return options_.input_sets;
    if (!device_.is_cuda()) return 1;
#if defined(FLASHMLA_WITH_CUDA)
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    FLASHMLA_CLI_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return 2 * per_set_bytes + shared_bytes < 0.8 * static_cast<double>(free_bytes) ? 2 : 1;
#else
    (void)per_set_bytes;
    (void)shared_bytes;
    return 1;
#endif
  }

  // Waits for all work on the device, whatever the stream: inputs written by synchronous copies
  // and legacy-stream kernels (FP8 quantization) are complete before the timed stream reads them.
  void synchronize() const {
#if defined(FLASHMLA_WITH_CUDA)
    if (device_.is_cuda()) FLASHMLA_CLI_CUDA_CHECK(cudaDeviceSynchronize());
#endif
  }

  // `calls[s]` runs the decode call of input set s; replays rotate among them.
  TimingResult time(const std::vector<DecodeCall>& calls) const {
    if (!device_.is_cuda()) {
      size_t next = 0;
      return time_host_calls([&] { calls[next++ % calls.size()](nullptr); }, options_.timing,
                             options_.flush_caches);
    }
#if defined(FLASHMLA_WITH_CUDA)
    std::vector<std::function<void(cudaStream_t)>> gpu_calls;
    for (const DecodeCall& call : calls) {
      gpu_calls.emplace_back([&call](cudaStream_t s) { call(s); });
    }
    GpuTimingOptions gpu_options;
    gpu_options.use_graph = options_.use_graph;
    gpu_options.flush_l2 = options_.flush_caches;
    gpu_options.device = device_.index;
    const cudaStream_t s = stream_->get();
    const TimingResult result = time_gpu_calls(gpu_calls, s, options_.timing, gpu_options);
    // Kernel faults surface asynchronously: make sure none happened before trusting the time.
    FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(s));
    FLASHMLA_CLI_CUDA_CHECK(cudaGetLastError());
    return result;
#else
    return {};
#endif
  }

 private:
  Device device_;
  const BenchOptions& options_;
#if defined(FLASHMLA_WITH_CUDA)
  std::optional<CudaStream> stream_;
#endif
};

// Dense decode: plan once (updated with the case's cache_seqlens), then time the call. With the
// FP8 cache, the bf16 inputs are built first (and timed, unless --no-bf16-kv-baseline), then each
// set's cache is quantized in place; everything else stays.
void measure_dense(const BenchCase& c, DType dtype, bool fp8, const Runner& runner,
                   const BenchOptions& options, uint64_t seed, CaseResult& result) {
  result.flops = c.flops();
  result.bytes = fp8 ? c.bytes_fp8_cache() : c.bytes(dtype_size(dtype));
  const PagedLayout paged = paged_layout(c.cache_seqlens, c.page_block_size);
  const double rows = static_cast<double>(paged.num_blocks) * c.page_block_size;
  const int sets = runner.input_sets(rows * c.h_kv * c.d * static_cast<double>(dtype_size(dtype)),
                                     fp8 ? rows * kFP8RowBytes : 0.0);
  CaseInputs inputs = build_case_inputs(c, dtype, runner.device(), seed, sets);
  runner.synchronize();
  DecodePlan plan(decode_shape(c), runner.device(), c.dv, options.num_workers);
  plan.update(inputs.cache_seqlens_view, runner.stream());
  runner.synchronize();

  std::vector<DecodeCall> calls;
  for (const DecodeInputSet& set : inputs.sets) {
    // By reference: the FP8 conversion below swaps set.args.kv_cache under the same calls.
    calls.emplace_back([&plan, &set](void* stream) { mla_decode(set.args, plan, stream); });
  }
  if (fp8) {
    if (options.kv_baseline) result.bf16_cache_timing = runner.time(calls);
    convert_caches_to_fp8(inputs, c);
    runner.synchronize();
  }
  result.timing = runner.time(calls);
}

// Token-sparse decode over the case's layout (lengths and token positions, drawn beforehand): a
// sparse plan, planned when made (its schedule depends on the shape alone), then time the call.
void measure_sparse(const BenchCase& c, const SparseLayout& layout, DType dtype, bool fp8,
                    const Runner& runner, const BenchOptions& options, uint64_t seed,
                    CaseResult& result) {
  result.flops = sparse_flops(c, layout);
  result.bytes = sparse_bytes(c, layout, dtype, fp8);
  result.attended_tokens = layout.attended_tokens;
  result.distinct_rows = layout.distinct_rows;
  result.inputs_note = sparse_inputs_description(c);
  const SparseCacheBytes cache_bytes = sparse_cache_bytes(c, layout, dtype, fp8);
  const int sets = runner.input_sets(cache_bytes.per_set, cache_bytes.shared);
  SparseCaseInputs inputs = build_sparse_inputs(c, layout, dtype, fp8, runner.device(), seed, sets);
  runner.synchronize();
  DecodePlan plan(decode_shape(c), runner.device(), c.dv, options.num_workers);

  std::vector<DecodeCall> calls;
  for (const SparseInputSet& set : inputs.sets) {
    calls.emplace_back([&plan, &set](void* stream) { mla_sparse_decode(set.args, plan, stream); });
  }
  result.timing = runner.time(calls);
}

std::string timing_method(bool on_gpu, const BenchOptions& options, bool any_sparse, bool any_fp8) {
  std::ostringstream text;
  const char* call =
      any_sparse ? "one decode call (mla_decode / mla_sparse_decode)" : "one decode call";
  if (on_gpu) {
    text << "median of per-replay cudaEvent times of "
         << (options.use_graph ? "CUDA-graph replays of " : "direct launches of ") << call
         << " on a non-blocking stream, rotating over "
         << (options.input_sets > 0 ? std::to_string(options.input_sets)
                                    : std::string("2 (1 when memory is short)"))
         << " input sets"
         << (options.flush_caches ? ", L2 flushed before each replay (as triton do_bench)" : "");
  } else {
    text << "median wall time of repeated synchronous calls of " << call << " after warm-up"
         << (options.flush_caches ? ", last-level cache flushed (by reading a larger buffer) "
                                    "before each call"
                                  : "");
  }
  text << "; DecodePlan made once beforehand (dense: updated with the case's cache_seqlens"
       << (any_sparse ? "; sparse: topk plan, planned when made" : "") << ")";
  if (any_fp8) {
    text << "; FP8 caches quantized from the bf16 inputs by quantize_kv_cache_fp8 on the device"
         << " of the run";
  }
  return text.str();
}

// "287.0 us, 80.1% of floor, FlashMLA 1.05x": a case's result in one progress line.
std::string progress_summary(const CaseResult& result) {
  if (!result.measured()) return "not supported: " + *result.not_supported;
  std::ostringstream text;
  text << std::fixed << std::setprecision(1) << result.timing.median_us << " us";
  if (result.bf16_cache_timing) {
    text << " (bf16 cache " << result.bf16_cache_timing->median_us << ")";
  }
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
  check_kv_option(options, dtype, cases);
  const bool on_gpu = device.is_cuda();
  const bool any_sparse =
      std::any_of(cases.begin(), cases.end(), [](const BenchCase& c) { return c.sparse(); });
  const bool any_fp8 = std::any_of(cases.begin(), cases.end(), [&](const BenchCase& c) {
    return uses_fp8_cache(c, options.kv);
  });
  // With the JSON record on stdout, everything for people goes to stderr.
  std::ostream& out = options.json_path == "-" ? std::cerr : std::cout;

  RunRecord run;
  run.on_gpu = on_gpu;
  run.timing_method = timing_method(on_gpu, options, any_sparse, any_fp8);
  const Runner runner(device, options);
#if defined(FLASHMLA_WITH_CUDA)
  if (on_gpu) run.device = gpu_description(device.index);
#endif
  if (!on_gpu) run.device = cpu_description();

  const std::optional<bool> dirty = git_dirty();
  out << "flashmla bench " << version_string() << " (git " << git_commit().substr(0, 12)
      << (dirty.value_or(false) ? ", uncommitted changes" : "") << ") on " << run.device << ", "
      << dtype_name(dtype);
  if (any_fp8) {
    out << (options.kv == "fp8" ? ", FP8 KV cache" : ", FP8 KV cache for sparse cases");
  }
  for (const auto& [name, value] : flashmla_environment()) out << ", " << name << "=" << value;
  out << "\n\n";

  if (options.measure_ceilings) {
    if (cases.size() > 1) std::cerr << "measuring ceilings ..." << std::endl;
#if defined(FLASHMLA_WITH_CUDA)
    run.ceilings =
        on_gpu ? measure_gpu_ceilings(device.index, static_cast<cudaStream_t>(runner.stream()))
               : measure_cpu_ceilings();
#else
    run.ceilings = measure_cpu_ceilings();
#endif
    print_ceilings(out, *run.ceilings, on_gpu);
  }

  // Long runs can be cut short (a time limit): each case's result goes to stderr as it comes.
  const bool show_progress = cases.size() > 1;
  bool any_not_supported = false;
  for (size_t i = 0; i < cases.size(); ++i) {
    BenchCase c = cases[i];
    // Seeded by the case's position in the file, so a filtered run sees the same inputs (and an
    // h_q variant those of its original).
    const uint64_t seed = derive_seed(options.seed, static_cast<uint64_t>(c.seed_index()));
    std::optional<SparseLayout> layout;
    if (c.sparse()) {
      layout = make_sparse_layout(c, seed);
      c.cache_seqlens = layout->cache_seqlens;
    }
    if (show_progress) {
      std::cerr << "[" << i + 1 << "/" << cases.size() << "] case " << c.index << ": "
                << c.describe() << " ..." << std::flush;
    }
    const bool fp8 = uses_fp8_cache(c, options.kv);
    CaseResult result;
    result.bench_case = c;
    result.dtype = dtype;
    result.kv_dtype = fp8 ? DType::kFP8E4M3 : dtype;
    try {
      if (layout) {
        measure_sparse(c, *layout, dtype, fp8, runner, options, seed, result);
      } else {
        measure_dense(c, dtype, fp8, runner, options, seed, result);
      }
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::kNotSupported) {
        if (show_progress) std::cerr << std::endl;  // the error message gets a line of its own
        throw;
      }
      // Reported with the case; the other cases still run.
      result.not_supported = e.what();
      result.timing = {};
      any_not_supported = true;
    } catch (...) {
      if (show_progress) std::cerr << std::endl;
      throw;
    }
    if (run.ceilings) {
      result.floor_us = roofline_floor_seconds(*run.ceilings, result.flops, result.bytes) * 1e6;
    }
    if (show_progress) std::cerr << " " << progress_summary(result) << std::endl;
    run.cases.push_back(std::move(result));
  }

  print_case_table(out, run.cases, on_gpu);
  if (!options.json_path.empty()) write_json(run, options.json_path);
  return any_not_supported ? 3 : 0;
}

}  // namespace flashmla::cli
