// Timing of the CUDA dense decode on FlashMLA's anchor cases (a disabled test: run with
// --gtest_also_run_disabled_tests --gtest_filter='*DenseDecodeBench*').
//
// Method as the anchor's: the split plan is made once, one decode call (split kernel + combine)
// is captured in a CUDA graph, and each timed replay follows an L2 flush (a 256 MB memset,
// untimed); the median of the replays is reported. Inputs are random bf16 in [-0.3, 0.3] made on
// the GPU, with the block table a random permutation of the pages.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "anchor_cases.h"
#include "flashmla/decode.h"
#include "gpu_harness.h"

namespace flashmla::test {
namespace {

__global__ void fill_random_bf16(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    p[i] = __float2bfloat16((static_cast<float>(x) / 4294967296.0f - 0.5f) * 0.6f);
  }
}

void fill(DeviceBuffer& b, size_t n, uint32_t seed) {
  fill_random_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(b.get()), n, seed);
  cuda_ok(cudaGetLastError(), "fill");
}

struct Timing {
  double median_us, min_us;
};

Timing time_case(const AnchorCase& a, int reps) {
  const int d = 576, dv = 512, page = 64;
  const int b = a.b;
  std::vector<int32_t> seqlens = a.seqlens;
  int max_pages = 0, total_pages = 0;
  for (int32_t len : seqlens) {
    const int p = (len + page - 1) / page;
    max_pages = std::max(max_pages, p);
    total_pages += p;
  }
  std::vector<int32_t> perm(total_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(1234));
  std::vector<int32_t> table(static_cast<size_t>(b) * max_pages, 0);
  int next = 0;
  for (int i = 0; i < b; ++i) {
    const int p = (seqlens[i] + page - 1) / page;
    for (int j = 0; j < p; ++j) table[static_cast<size_t>(i) * max_pages + j] = perm[next++];
  }
  const size_t q_elems = static_cast<size_t>(b) * a.s_q * a.h_q * d;
  const size_t kv_elems = static_cast<size_t>(total_pages) * page * d;
  DeviceBuffer q(q_elems * 2), kv(kv_elems * 2), bt(table.size() * 4), sl(seqlens.size() * 4);
  DeviceBuffer out(static_cast<size_t>(b) * a.s_q * a.h_q * dv * 2);
  DeviceBuffer lse(static_cast<size_t>(b) * a.s_q * a.h_q * 4);
  DeviceBuffer flush(256u << 20);
  fill(q, q_elems, 17);
  fill(kv, kv_elems, 29);
  bt.upload(table.data(), table.size() * 4);
  sl.upload(seqlens.data(), seqlens.size() * 4);

  const Device dev = Device::cuda(0);
  DecodeShape shape;
  shape.batch_size = b;
  shape.s_q = a.s_q;
  shape.h_q = a.h_q;
  shape.h_kv = 1;
  shape.page_block_size = page;
  DecodePlan plan(shape, dev, dv);

  auto view = [&](void* p, DType t, std::initializer_list<int64_t> s) {
    TensorView v = TensorView::contiguous(p, t, s);
    v.device = dev;
    return v;
  };
  DenseDecodeArgs args;
  args.q = view(q.get(), DType::kBF16, {b, a.s_q, a.h_q, d});
  args.kv_cache = view(kv.get(), DType::kBF16, {total_pages, page, 1, d});
  args.block_table = view(bt.get(), DType::kInt32, {b, max_pages});
  args.cache_seqlens = view(sl.get(), DType::kInt32, {b});
  args.out = view(out.get(), DType::kBF16, {b, a.s_q, a.h_q, dv});
  args.lse = view(lse.get(), DType::kFP32, {b, a.h_q, a.s_q});
  args.head_dim_v = dv;
  args.causal = a.causal;

  cudaStream_t stream;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  plan.update(args.cache_seqlens, stream);
  mla_decode(args, plan, stream);  // warm-up outside the graph (module load, attributes)
  cuda_ok(cudaStreamSynchronize(stream), "warm-up");
  if (std::getenv("FLASHMLA_BENCH_ONCE")) {  // for profilers: one more plain call, no timing
    mla_decode(args, plan, stream);
    cuda_ok(cudaStreamSynchronize(stream), "profiled call");
    cudaStreamDestroy(stream);
    return {0, 0};
  }

  cudaGraph_t graph;
  cudaGraphExec_t exec;
  cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
  mla_decode(args, plan, stream);
  cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (int i = 0; i < 3; ++i) cuda_ok(cudaGraphLaunch(exec, stream), "replay");

  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) cuda_ok(cudaEventCreate(&e), "event");
  for (int r = 0; r < reps; ++r) {
    cuda_ok(cudaMemsetAsync(flush.get(), r & 0xff, flush.bytes(), stream), "flush");
    cuda_ok(cudaEventRecord(ev[2 * r], stream), "record");
    cuda_ok(cudaGraphLaunch(exec, stream), "replay");
    cuda_ok(cudaEventRecord(ev[2 * r + 1], stream), "record");
  }
  cuda_ok(cudaStreamSynchronize(stream), "timed replays");
  std::vector<double> us(reps);
  for (int r = 0; r < reps; ++r) {
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, ev[2 * r], ev[2 * r + 1]), "elapsed");
    us[r] = ms * 1000.0;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  std::sort(us.begin(), us.end());
  return {us[reps / 2], us[0]};
}

TEST(CudaDenseDecodeBench, DISABLED_AnchorCases) {
  FLASHMLA_REQUIRE_GPU();
  // FLASHMLA_BENCH_FILTER=h128 / h16 restricts the cases (by h_q).
  const char* filter = std::getenv("FLASHMLA_BENCH_FILTER");
  std::printf("[ bench ] %4s %3s %4s %6s %6s | %9s %9s %7s | %8s %8s\n", "b", "s_q", "h_q",
              "causal", "s_k", "ours_us", "flashmla", "ratio", "TFLOP/s", "GB/s");
  for (const AnchorCase& a : anchor_cases()) {
    if (a.s_k_nominal > 8192) continue;    // the long ones cost device time and add little
    if (a.causal && a.s_q == 1) continue;  // same work as non-causal
    if (filter && std::string(filter) == "h16" && a.h_q != 16) continue;
    if (filter && std::string(filter) == "h128" && a.h_q != 128) continue;
    // A single case for profilers: "b128h16" / "b128h128" (s_q = 1, s_k = 4096 or 8192).
    if (filter && std::string(filter) == "b128h16" && !(a.b == 128 && a.h_q == 16 && a.s_q == 1))
      continue;
    if (filter && std::string(filter) == "b128h128" &&
        !(a.b == 128 && a.h_q == 128 && a.s_q == 1 && a.s_k_nominal == 4096))
      continue;
    const Timing t = time_case(a, 30);
    double mean_len = 0;
    for (int32_t len : a.seqlens) mean_len += len;
    mean_len /= a.b;
    const double flops = 2.0 * a.b * a.h_q * a.s_q * mean_len * (576 + 512);
    const double bytes =
        a.b * (a.s_q * a.h_q * 576 * 2.0 + mean_len * 576 * 2 + a.s_q * a.h_q * 512 * 2.0);
    std::printf("[ bench ] %4d %3d %4d %6s %6d | %9.1f %9.1f %7.2f | %8.1f %8.0f\n", a.b, a.s_q,
                a.h_q, a.causal ? "yes" : "no", a.s_k_nominal, t.median_us, a.flashmla_us,
                a.flashmla_us / t.median_us, flops / t.median_us * 1e-6,
                bytes / t.median_us * 1e-3);
  }
}

}  // namespace
}  // namespace flashmla::test
