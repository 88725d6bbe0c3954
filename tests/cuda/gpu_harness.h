// Helpers of the CUDA test suite: device buffers, running one dense-decode case through the
// public API on CPU or CUDA tensors, and comparing two backends' outputs.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
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

// The base seed of the randomized cases: FLASHMLA_TEST_SEED, or one drawn per run. Printed once
// ("[ gpu-tests ] FLASHMLA_TEST_SEED=..."); failures print it again for the replay.
uint64_t test_seed();

// A copy on the device of the storage a host view spans (its strides included); returns the view
// re-pointed there. `storage` keeps the copy alive.
TensorView upload_view(const TensorView& host, DeviceBuffer& storage);

// make_dense_inputs with the same layout rules (random page permutation, NaN in every unused
// cache row, garbage block-table ids past each sequence's last page) but a fast generator and
// direct rounding, so that the 10^8-value caches of the large cases take a second, not a minute.
// Values are ~N(0, 1)/10 clamped to [-1, 1] (a sum of uniforms), rounded to the case's dtype.
// With `c.fp8` the cache is then quantized to FP8 with scale (as make_dense_inputs does).
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
// Outputs filled with the poison patterns of common/check.h.
Outputs poisoned_outputs(DType dtype, int64_t b, int s_q, int h_q, int dv);

// Device copies of (poisoned) host outputs, as contiguous CUDA views for a call.
struct DeviceOutputs {
  DeviceBuffer out_buffer, lse_buffer;
  TensorView out, lse;
  explicit DeviceOutputs(const Outputs& host);
  void download(Outputs& host) const;
};

// Runs `prepare` and then `call` on a fresh non-blocking stream and waits for them. With `graph`,
// `call` is captured in a CUDA graph instead (after `prepare` ran uncaptured) and the graph is
// replayed twice.
void run_on_stream(const std::function<void(cudaStream_t)>& call, bool graph,
                   const std::function<void(cudaStream_t)>& prepare = {});

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

// Work of the float64 reference, in (query row x key) pairs, above which a case is compared with
// the CPU backend only (the CPU suite checks that backend against the reference).
inline constexpr double kReferenceBudget = 3e6;

// The cases of one test: counts, largest errors, and a "[ summary ]" line when it goes out of
// scope.
struct CaseGroup {
  std::string name;
  int cases = 0, failures = 0;
  ErrorStats vs_cpu, vs_ref;
  explicit CaseGroup(std::string n) : name(std::move(n)) {}
  ~CaseGroup();
  CaseGroup(const CaseGroup&) = delete;
  CaseGroup& operator=(const CaseGroup&) = delete;

  // Counts one case and checks the CUDA outputs against the CPU backend's and, when given, the
  // float64 reference.
  void check(const Outputs& gpu, const Outputs& cpu, const ReferenceResult* ref);
  // Runs one case's body; an exception (e.g. kNotSupported) fails the case, not the test.
  void run(const std::string& description, const std::function<void()>& body);
};

// One dense case (bf16/fp16 or FP8 cache) on both backends, compared by `group` (and with the
// float64 reference within kReferenceBudget). `graph` as in run_decode.
void run_dense_gpu_case(CaseGroup& group, const DenseCase& c, bool graph = false);

// b lengths of s_k, or (varying) uniform in [1, s_k] with a share `empty_fraction` of zeros.
std::vector<int32_t> draw_seqlens(Rng& rng, int b, int s_k, bool varying, double empty_fraction);

// A dense case of these heads: b in {1, 2, 6, 64}, s_k in {20, 140, 4096}, page size in
// {16, 32, 64, 128}, causal and the length pattern drawn from `rng`, then b and s_k cut to bound
// the CPU oracle's work and the host cache (FP8 caches are quantized on the host).
DenseCase random_dense_case(Rng& rng, int h_q, int h_kv, int s_q, bool fp8);

// Lengths at page and tile boundaries (1, 2, 63 ... 129, 0, 700 and one up to 3000) in pages of
// `page`, s_q in [1, 8], h_q a multiple of 16.
DenseCase page_boundary_case(Rng& rng, int page, bool causal, bool fp8);

// A compute-sanitizer-sized causal case: lengths {70, 0, 130} in pages of 32, 3 workers (so the
// combine step runs).
DenseCase small_dense_case(Rng& rng, int h_q, int s_q);

// Page 1 of sequence 0 (of c.seqlens = {>= 2 pages, any}) is made a block id outside the cache,
// which the API cannot check for CUDA tensors: for 0 and 5 workers, sequence 0 must come out NaN
// and sequence 1 as on the CPU backend (the id is never dereferenced).
void expect_invalid_block_id_gives_nan(const DenseCase& c);

}  // namespace flashmla::test
