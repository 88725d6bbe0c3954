// Helpers of the CUDA test suite: device buffers, running one dense-decode case through the
// public API on CPU or CUDA tensors, and comparing two backends' outputs.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/dense_case.h"
#include "flashmla/decode.h"

namespace flashmla::test {

// Skips the calling test when there is no usable GPU (CI machines have none).
#define FLASHMLA_REQUIRE_GPU()                                         \
  do {                                                                 \
    if (!::flashmla::cuda_available()) GTEST_SKIP() << "no sm_90 GPU"; \
  } while (0)

void cuda_ok(cudaError_t err, const char* what);  // throws std::runtime_error on failure

// An owning device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// make_dense_inputs with the same layout rules (random page permutation, NaN in every unused
// cache row, garbage block-table ids past each sequence's last page) but a fast generator and
// direct rounding, so that the 10^8-value caches of the large cases take a second, not a minute.
// Values are ~N(0, 1)/10 clamped to [-1, 1] (a sum of uniforms), rounded to the case's dtype.
DenseInputs fast_dense_inputs(const DenseCase& c);

// The inputs of one case as views, on the host or on the device.
struct CaseViews {
  TensorView q, kv, block_table, seqlens;
};

// Device copies of host views (same shapes and strides); keeps the buffers alive.
struct DeviceCase {
  DeviceBuffer q, kv, block_table, seqlens;
  CaseViews views;
};
// `q_elems` / `kv_elems`: elements spanned by the host views' storage.
DeviceCase upload_case(const CaseViews& host, size_t q_elems, size_t kv_elems);

struct Outputs {
  HalfTensor out;          // [b, s_q, h_q, dv]
  std::vector<float> lse;  // [b, h_q, s_q]
};

// Runs mla_decode on the views' device with poisoned outputs. On CUDA, `graph` captures the
// decode call (not the plan update) in a CUDA graph on a fresh stream and replays it twice.
Outputs run_decode(const DenseCase& c, const CaseViews& v, int num_workers, bool graph = false);

// Largest errors seen by compare_outputs, for the per-group summaries.
struct ErrorStats {
  double max_abs = 0;      // max |gpu - ref|
  double max_excess = 0;   // max |gpu - ref| / allowed
  double max_lse_rel = 0;  // max |lse - ref| / max(1, |ref|)
  void merge(const ErrorStats& o);
};

// |gpu - ref| <= 8e-4 + 2/128 |ref| per output element, lse within 8/65536 relative (+-inf must
// match exactly); NaN and never-written (poison) elements fail.
::testing::AssertionResult compare_outputs(const Outputs& gpu, const Outputs& ref,
                                           ErrorStats* stats);

// The same check against the float64 reference.
::testing::AssertionResult compare_to_reference(const Outputs& gpu, const ReferenceResult& ref,
                                                ErrorStats* stats);

}  // namespace flashmla::test
