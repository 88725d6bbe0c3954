// Timing one decode call: the median of many repetitions after a warm-up.
//
// CPU: wall time of each synchronous call; by default the last-level cache is flushed before
// each call (outside the timed region) by reading a larger buffer, so that small cases
// are not timed from a warm cache when a real decode step (a new layer's cache) would be cold.
// CUDA: the call is captured once in a CUDA graph on a
// non-default stream (one graph per input set), and each replay is timed on the GPU with a
// pair of cudaEvents; replays rotate among the input sets, and by default the L2 is flushed
// (a memset of a buffer larger than L2, outside the timed region) before each replay, as
// triton.testing.do_bench does for the FlashMLA anchor numbers.
#pragma once

#include <functional>
#include <vector>

#if defined(FLASHMLA_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace flashmla::cli {

struct TimingPolicy {
  int warmup = -1;        // untimed calls first; -1: the device's default
  int iters = 0;          // timed calls; 0: as many as fit in budget_s (within limits)
  double budget_s = 1.0;  // time budget of the timed calls when iters = 0
};

struct TimingResult {
  double median_us = 0;
  double min_us = 0;
  double mean_us = 0;
  int iters = 0;
};

TimingResult summarize_samples(std::vector<double> samples_us);

// Times `call`, a synchronous call, with the wall clock.
TimingResult time_host_calls(const std::function<void()>& call, const TimingPolicy& policy,
                             bool flush_caches);

#if defined(FLASHMLA_WITH_CUDA)
struct GpuTimingOptions {
  bool use_graph = true;  // false: launch the calls directly (for calls that cannot be captured)
  bool flush_l2 = true;
  int device = 0;
};

// `calls[s]` enqueues one decode call of input set s on the given stream.
TimingResult time_gpu_calls(const std::vector<std::function<void(cudaStream_t)>>& calls,
                            cudaStream_t stream, const TimingPolicy& policy,
                            const GpuTimingOptions& options);
#endif

}  // namespace flashmla::cli
