// The backends behind the API layer. Each receives validated params structs only.
#pragma once

#include <cstddef>

#include "common/decode_params.h"
#include "flashmla/decode.h"

namespace flashmla::detail {

// How a backend wants its split-KV schedule cut (see split_plan.h).
struct ScheduleConfig {
  int num_workers;  // parallel work units per KV head and query-row tile
  int block_n;      // tokens per schedule unit
  int fixed_cost;   // per-piece overhead, in units
  // CUDA: decode CTAs per SM the plan is made for (1 or 2); the launcher runs the kernel
  // configuration built for that occupancy.
  int ctas_per_sm = 1;
  int combine_groups = 1;  // CUDA: split groups per combine CTA (combine.cu)
};

namespace cpu {
ScheduleConfig schedule_config(const DecodeShape& shape);
void dense_decode(const DenseDecodeParams& params);
void sparse_decode(const SparseDecodeParams& params);
void quantize_fp8(const FP8CacheConvertParams& params);
void dequantize_fp8(const FP8CacheConvertParams& params);
}  // namespace cpu

#if defined(FLASHMLA_WITH_CUDA)
namespace cuda {
// Makes `device` current for its scope and restores the caller's device after, so that work on
// tensors of cuda:1 runs there without moving the program's later work.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

bool available();
int current_device();
// num_workers: the caller's override (0: choose).
ScheduleConfig schedule_config(const DecodeShape& shape, int device, int num_workers);
void* device_alloc(size_t bytes, int device);  // throws Error(kRuntime) on failure
void device_free(void* ptr, int device) noexcept;
// Synchronous host-to-device copy (plan construction only, never on a per-call path).
void copy_to_device(void* dst, const void* src, size_t bytes, int device);
// Runs plan_splits in one GPU thread on `stream`.
void plan_splits(const int32_t* cache_seqlens, int batch_size, const ScheduleConfig& config,
                 int32_t* worker_schedule, int32_t* split_offsets, void* stream);
void dense_decode(const DenseDecodeParams& params, void* stream);
void sparse_decode(const SparseDecodeParams& params, void* stream);
void quantize_fp8(const FP8CacheConvertParams& params, void* stream);
void dequantize_fp8(const FP8CacheConvertParams& params, void* stream);
}  // namespace cuda
#endif

}  // namespace flashmla::detail
