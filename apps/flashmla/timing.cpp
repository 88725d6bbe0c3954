#include "timing.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>

#include "buffer.h"
#include "cuda_check.h"
#include "flashmla/tensor.h"

namespace flashmla::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU calls can take seconds each (large cases on few cores): a median of 3 is the least that
// still rejects one outlier.
constexpr int kHostDefaultWarmup = 1;
constexpr int kHostMinIters = 3;
constexpr int kHostMaxIters = 10000;
// The least a cache flush reads, whatever the thread count.
constexpr size_t kMinHostFlushBytes = size_t{64} << 20;

// Evicts the caches' contents by reading, on all threads, a buffer larger than the caches they
// share (reading, not writing: dirty lines would be written back during the timed call).
class HostCacheFlusher {
 public:
  HostCacheFlusher() : buffer_(flush_bytes(), Device::cpu()) {
    std::memset(buffer_.data(), 1, buffer_.bytes());
  }

  void flush() {
    const auto* words = buffer_.as<const uint64_t>();
    const auto count = static_cast<int64_t>(buffer_.bytes() / sizeof(uint64_t));
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < count; i += 8) sum += words[i];  // one word per 64-byte line
    sink_ = sum;
  }

 private:
  // 16 MiB per thread (twice the last-level cache share of one core on current server CPUs),
  // and at least 64 MiB. Not sysconf's cache sizes: in VMs they describe the host's whole
  // socket (384 MiB of L3 on a machine where this process shares one 32 MiB L3).
  static size_t flush_bytes() {
#if defined(_OPENMP)
    const auto threads = static_cast<size_t>(omp_get_max_threads());
#else
    const size_t threads = 1;
#endif
    return std::max(kMinHostFlushBytes, threads * (size_t{16} << 20));
  }

  Buffer buffer_;
  volatile uint64_t sink_ = 0;  // keeps the reads from being optimized away
};

}  // namespace

TimingResult summarize_samples(std::vector<double> samples_us) {
  TimingResult result;
  result.iters = static_cast<int>(samples_us.size());
  if (samples_us.empty()) return result;
  std::sort(samples_us.begin(), samples_us.end());
  const size_t n = samples_us.size();
  result.median_us =
      n % 2 == 1 ? samples_us[n / 2] : 0.5 * (samples_us[n / 2 - 1] + samples_us[n / 2]);
  result.min_us = samples_us.front();
  result.mean_us = std::accumulate(samples_us.begin(), samples_us.end(), 0.0) / n;
  return result;
}

TimingResult time_host_calls(const std::function<void()>& call, const TimingPolicy& policy,
                             bool flush_caches) {
  std::optional<HostCacheFlusher> flusher;
  if (flush_caches) flusher.emplace();
  const int warmup = policy.warmup >= 0 ? policy.warmup : kHostDefaultWarmup;
  for (int i = 0; i < warmup; ++i) call();

  std::vector<double> samples_us;
  const Clock::time_point start = Clock::now();
  for (;;) {
    if (flusher) flusher->flush();
    const Clock::time_point call_start = Clock::now();
    call();
    samples_us.push_back(seconds_since(call_start) * 1e6);
    const int done = static_cast<int>(samples_us.size());
    if (policy.iters > 0) {
      if (done >= policy.iters) break;
    } else if ((done >= kHostMinIters && seconds_since(start) >= policy.budget_s) ||
               done >= kHostMaxIters) {
      break;
    }
  }
  return summarize_samples(std::move(samples_us));
}

#if defined(FLASHMLA_WITH_CUDA)
namespace {

constexpr int kGpuDefaultWarmup = 10;
constexpr int kGpuMinIters = 20;
constexpr int kGpuMaxIters = 10000;
// Replays enqueued before the host waits: enough to keep the GPU busy, few enough events.
constexpr int kGpuBatch = 256;
// At least this much is written to flush L2 (H200: 50 MB), and at least twice the L2 size.
constexpr size_t kMinFlushBytes = size_t{256} << 20;

class EventPair {
 public:
  EventPair() {
    FLASHMLA_CLI_CUDA_CHECK(cudaEventCreate(&start_));
    FLASHMLA_CLI_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventPair() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  cudaEvent_t start() const { return start_; }
  cudaEvent_t stop() const { return stop_; }
  double elapsed_us() const {
    float ms = 0;
    FLASHMLA_CLI_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms) * 1e3;
  }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

struct GraphExecDeleter {
  void operator()(cudaGraphExec_t graph) const { cudaGraphExecDestroy(graph); }
};
using GraphExec = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter>;

// Captures `call` (which enqueues work on `stream`) into an executable graph.
GraphExec capture(const std::function<void(cudaStream_t)>& call, cudaStream_t stream) {
  // Global mode: the capture fails if the call does anything unsafe during capture (such as
  // allocating or synchronizing), which is exactly what a per-layer decode call must not do.
  FLASHMLA_CLI_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  cudaGraph_t graph = nullptr;
  try {
    call(stream);
  } catch (...) {
    // Leave the stream usable before reporting the call's own error.
    cudaStreamEndCapture(stream, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  const cudaError_t capture_status = cudaStreamEndCapture(stream, &graph);
  if (capture_status != cudaSuccess) {
    cudaGetLastError();
    throw CudaError(std::string("capturing the decode call in a CUDA graph failed: ") +
                    cudaGetErrorString(capture_status) +
                    " (run with --no-graph to time direct launches)");
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiate_status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  FLASHMLA_CLI_CUDA_CHECK(instantiate_status);
  return GraphExec(exec);
}

// Replays the calls in rotation: their graphs, or the calls themselves when graphs are off.
class Replayer {
 public:
  Replayer(const std::vector<std::function<void(cudaStream_t)>>& calls, cudaStream_t stream,
           bool use_graph)
      : calls_(calls), stream_(stream) {
    if (!use_graph) return;
    for (const auto& call : calls) graphs_.push_back(capture(call, stream));
  }

  void replay(size_t i) {
    const size_t set = i % calls_.size();
    if (graphs_.empty()) {
      calls_[set](stream_);
      FLASHMLA_CLI_CUDA_CHECK(cudaGetLastError());
    } else {
      FLASHMLA_CLI_CUDA_CHECK(cudaGraphLaunch(graphs_[set].get(), stream_));
    }
  }

 private:
  const std::vector<std::function<void(cudaStream_t)>>& calls_;
  cudaStream_t stream_;
  std::vector<GraphExec> graphs_;
};

}  // namespace

TimingResult time_gpu_calls(const std::vector<std::function<void(cudaStream_t)>>& calls,
                            cudaStream_t stream, const TimingPolicy& policy,
                            const GpuTimingOptions& options) {
  Replayer replayer(calls, stream, options.use_graph);

  Buffer flush;
  if (options.flush_l2) {
    int l2_bytes = 0;
    FLASHMLA_CLI_CUDA_CHECK(
        cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, options.device));
    flush = Buffer(std::max(kMinFlushBytes, 2 * static_cast<size_t>(l2_bytes)),
                   Device::cuda(options.device));
  }
  auto flush_l2 = [&](size_t i) {
    if (flush.data() != nullptr) {
      FLASHMLA_CLI_CUDA_CHECK(
          cudaMemsetAsync(flush.data(), static_cast<int>(i & 0xFF), flush.bytes(), stream));
    }
  };

  // Warm-up, also timed as a whole to size the run when iters is not given.
  const int warmup = std::max(1, policy.warmup >= 0 ? policy.warmup : kGpuDefaultWarmup);
  FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(stream));
  const Clock::time_point warmup_start = Clock::now();
  for (int i = 0; i < warmup; ++i) {
    flush_l2(static_cast<size_t>(i));
    replayer.replay(static_cast<size_t>(i));
  }
  FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(stream));
  const double seconds_per_replay = seconds_since(warmup_start) / warmup;

  int iters = policy.iters;
  if (iters <= 0) {
    const double fitting = policy.budget_s / std::max(seconds_per_replay, 1e-7);
    iters = static_cast<int>(std::clamp(fitting, double{kGpuMinIters}, double{kGpuMaxIters}));
  }

  std::vector<double> samples_us;
  samples_us.reserve(static_cast<size_t>(iters));
  std::vector<EventPair> events(static_cast<size_t>(std::min(iters, kGpuBatch)));
  for (int first = 0; first < iters; first += kGpuBatch) {
    const int count = std::min(kGpuBatch, iters - first);
    for (int k = 0; k < count; ++k) {
      const auto i = static_cast<size_t>(first + k);
      flush_l2(i);
      FLASHMLA_CLI_CUDA_CHECK(cudaEventRecord(events[k].start(), stream));
      replayer.replay(i);
      FLASHMLA_CLI_CUDA_CHECK(cudaEventRecord(events[k].stop(), stream));
    }
    FLASHMLA_CLI_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int k = 0; k < count; ++k) samples_us.push_back(events[k].elapsed_us());
  }
  return summarize_samples(std::move(samples_us));
}
#endif  // FLASHMLA_WITH_CUDA

}  // namespace flashmla::cli
