// The CUDA dense decode against the CPU backend (the oracle) and, on small cases, against the
// float64 reference: fresh random inputs every run (the seed is printed; FLASHMLA_TEST_SEED
// replays one), unused cache rows NaN, garbage block-table entries past each sequence,
// poisoned outputs.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "common/dense_case.h"
#include "common/numeric.h"
#include "gpu_harness.h"

namespace flashmla::test {
namespace {

// Every (h_q, h_kv, s_q) of the brief, with b, s_k, page size, causal and length pattern drawn
// at random per case.
TEST(CudaDenseDecode, HeadsSweep) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("heads");
  Rng rng(test_seed() * 31 + 1);
  const std::vector<std::pair<int, int>> heads = {
      {1, 1},  {3, 1},  {3, 3},   {9, 1},   {9, 3},   {63, 1},  {63, 3},  {64, 1},
      {64, 2}, {64, 8}, {126, 1}, {126, 2}, {126, 3}, {128, 1}, {128, 2}, {128, 8}};
  for (auto [h_q, h_kv] : heads) {
    for (int s_q : {1, 2, 4}) {
      run_dense_gpu_case(group, random_dense_case(rng, h_q, h_kv, s_q, /*fp8=*/false));
    }
  }
}

// Page sizes, causal masking and MTP rows across tile and page boundaries.
TEST(CudaDenseDecode, PagesAndCausal) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("pages");
  Rng rng(test_seed() * 31 + 2);
  for (int page : {16, 32, 64, 128, 48}) {
    for (bool causal : {false, true}) {
      run_dense_gpu_case(group, page_boundary_case(rng, page, causal, /*fp8=*/false));
    }
  }
}

// A few small cases covering every kernel configuration (16/32/64-row tiles, bf16 and fp16,
// splits merged by the combine kernel): cheap enough for compute-sanitizer's memcheck and
// racecheck.
TEST(CudaDenseDecode, SanitizerSmall) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("small");
  Rng rng(test_seed() * 31 + 9);
  // (h_q, s_q) -> 16, 32 and 64 query rows per KV head.
  for (auto [h_q, s_q] : {std::pair{16, 1}, std::pair{16, 2}, std::pair{64, 1}}) {
    for (DType dtype : {DType::kBF16, DType::kFP16}) {
      DenseCase c = small_dense_case(rng, h_q, s_q);
      c.dtype = dtype;
      run_dense_gpu_case(group, c);
    }
  }
  // One 64-row piece of 5 tiles (odd: warpgroup 0 owns the last one in the ping-pong loop) and
  // one of 4, with a partial last tile: every barrier phase of the alternating loop.
  DenseCase c = small_dense_case(rng, 64, 1);
  c.seqlens = {300, 250};
  c.causal = false;
  c.num_workers = 1;
  run_dense_gpu_case(group, c);
}

// Edge cases: empty sequences, forced split counts, d = 512, smaller dv, fp16, scale.
TEST(CudaDenseDecode, EdgeCases) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("edge");
  Rng rng(test_seed() * 31 + 3);
  auto base = [&] {
    DenseCase c;
    c.seed = rng.engine()();
    c.seqlens = {300, 0, 5, 1000};
    c.h_q = 16;
    return c;
  };
  {  // every sequence empty
    DenseCase c = base();
    c.seqlens = {0, 0, 0};
    run_dense_gpu_case(group, c);
  }
  for (int workers : {1, 2, 3, 7, 64, 500}) {  // one worker doing everything ... many tiny splits
    for (int h_q : {16, 128}) {
      DenseCase c = base();
      c.num_workers = workers;
      c.h_q = h_q;
      c.s_q = 2;
      c.causal = true;
      run_dense_gpu_case(group, c);
    }
  }
  {  // d = 512 (latent only), dv = 512
    DenseCase c = base();
    c.d = 512;
    c.h_q = 32;
    run_dense_gpu_case(group, c);
  }
  for (int dv : {256, 100, 7}) {  // smaller value dims
    DenseCase c = base();
    c.dv = dv;
    c.h_q = 64;
    run_dense_gpu_case(group, c);
  }
  for (int h_q : {8, 32, 128}) {  // fp16, all tile sizes
    DenseCase c = base();
    c.dtype = DType::kFP16;
    c.h_q = h_q;
    c.s_q = 2;
    run_dense_gpu_case(group, c);
  }
  {  // fp16 with d = 512
    DenseCase c = base();
    c.dtype = DType::kFP16;
    c.d = 512;
    run_dense_gpu_case(group, c);
  }
  {  // DeepSeek-like softmax scale
    DenseCase c = base();
    c.softmax_scale = 0.1352f;
    c.h_q = 128;
    run_dense_gpu_case(group, c);
  }
  // Peaked softmax: scale 100 spreads the log2-domain scores over ~35 per unit of their std, so
  // tile maxima often exceed a row's reference maximum by more than the kernels' slack (2^8) and
  // the rescale path runs after the first tile, in every loop (16 / 32 rows, ping-pong 64 rows).
  for (int h_q : {16, 32, 64, 128}) {
    DenseCase c = base();
    c.softmax_scale = 100.f;
    c.h_q = h_q;
    c.seqlens = {3000, 700, 65};
    run_dense_gpu_case(group, c);
  }
  {  // long sequence with a single short neighbour: many splits of one sequence
    DenseCase c = base();
    c.seqlens = {20000, 3};
    c.h_q = 64;
    c.causal = true;
    c.s_q = 3;
    run_dense_gpu_case(group, c);
  }
}

// Shapes of the benchmark anchors (smaller batches where the CPU oracle would be slow).
TEST(CudaDenseDecode, AnchorShapes) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("anchors");
  Rng rng(test_seed() * 31 + 4);
  struct Shape {
    int b, s_q, h_q, s_k;
    bool varying;
  };
  for (const Shape& s : {Shape{1, 1, 128, 3667, false}, Shape{64, 1, 16, 4096, true},
                         Shape{16, 1, 128, 4096, true}, Shape{8, 1, 128, 8192, true},
                         Shape{16, 2, 128, 2048, true}, Shape{32, 2, 16, 8192, true}}) {
    DenseCase c;
    c.seed = rng.engine()();
    c.s_q = s.s_q;
    c.h_q = s.h_q;
    c.causal = s.s_q > 1;
    c.seqlens = draw_seqlens(rng, s.b, s.s_k, s.varying, 0.05);
    run_dense_gpu_case(group, c);
  }
}

// The decode call captured in a CUDA graph and replayed gives the same result.
TEST(CudaDenseDecode, GraphCapture) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("graph");
  DenseCase c;
  c.seed = test_seed() * 31 + 5;
  c.seqlens = {1000, 70, 0, 2500};
  c.h_q = 128;
  c.s_q = 2;
  c.causal = true;
  run_dense_gpu_case(group, c, /*graph=*/true);
  c.h_q = 16;
  run_dense_gpu_case(group, c, /*graph=*/true);
}

// Views whose rows are not 16-byte aligned take the kernels' slow load path.
TEST(CudaDenseDecode, UnalignedStrides) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("unaligned");
  DenseCase c;
  c.seed = test_seed() * 31 + 6;
  c.seqlens = {333, 1, 90};
  c.h_q = 16;
  c.s_q = 2;
  c.causal = true;
  DenseInputs in = fast_dense_inputs(c);
  // q with a head stride of d + 4 elements (8 bytes: not a multiple of 16).
  const int64_t b = static_cast<int64_t>(c.seqlens.size()), pitch = c.d + 4;
  std::vector<uint16_t> q_padded(static_cast<size_t>(b * c.s_q * c.h_q * pitch), 0);
  for (int64_t r = 0; r < b * c.s_q * c.h_q; ++r) {
    std::copy_n(in.q.bits.data() + r * c.d, c.d, q_padded.data() + r * pitch);
  }
  // The cache likewise, one KV head, row pitch d + 4.
  const KVCache& kv = in.kv.cache;
  std::vector<uint16_t> kv_padded(static_cast<size_t>(kv.num_rows() * pitch));
  for (int64_t r = 0; r < kv.num_rows(); ++r) {
    const int64_t blk = r / kv.page_block_size, off = r % kv.page_block_size;
    std::copy_n(kv.halves.data() + blk * kv.block_stride + off * kv.row_stride, c.d,
                kv_padded.data() + r * pitch);
  }
  CaseViews host;
  host.q = TensorView::strided(q_padded.data(), c.dtype, {b, c.s_q, c.h_q, c.d},
                               {c.s_q * c.h_q * pitch, c.h_q * pitch, pitch, 1});
  host.kv =
      TensorView::strided(kv_padded.data(), c.dtype, {kv.num_blocks, kv.page_block_size, 1, c.d},
                          {kv.page_block_size * pitch, pitch, pitch, 1});
  host.block_table = in.kv.block_table_view();
  host.seqlens = in.kv.seqlens_view();
  const Outputs cpu = run_decode(c, host, 0);
  DeviceCase dev = upload_case(host, q_padded.size(), kv_padded.size());
  group.check(run_decode(c, dev.views, 0), cpu, nullptr);
}

// A block id outside the cache (which the API cannot check for CUDA tensors) is never
// dereferenced: its sequence comes out NaN and the others are unaffected.
TEST(CudaDenseDecode, InvalidBlockIdGivesNaN) {
  FLASHMLA_REQUIRE_GPU();
  DenseCase c;
  c.seed = test_seed() * 31 + 7;
  c.seqlens = {200, 150};
  c.h_q = 16;
  expect_invalid_block_id_gives_nan(c);
}

// FP8 cache conversions are bit-identical to the CPU backend's.
TEST(CudaFP8Cache, QuantizeDequantizeMatchCpu) {
  FLASHMLA_REQUIRE_GPU();
  Rng rng(test_seed() * 31 + 8);
  const int num_blocks = 37, page = 64;
  std::vector<uint16_t> src(static_cast<size_t>(num_blocks) * page * 576);
  for (size_t i = 0; i < src.size(); ++i) {
    // Mostly activations, some rows tiny (scale floor 1e-4) or large.
    const int64_t row = static_cast<int64_t>(i / 576);
    const double mul = row % 7 == 0 ? 1e-5 : row % 11 == 0 ? 300.0 : 1.0;
    src[i] = to_half(DType::kBF16, random_activation(rng) * mul);
  }
  auto src_view = [&](void* p, Device d) {
    TensorView v = TensorView::contiguous(p, DType::kBF16, {num_blocks, page, 1, 576});
    v.device = d;
    return v;
  };
  // FlashMLA's layout: one padding row per page.
  const int64_t dst_block = static_cast<int64_t>(page + 1) * kFP8RowBytes;
  auto dst_view = [&](void* p, Device d) {
    TensorView v = TensorView::strided(p, DType::kUInt8, {num_blocks, page, 1, kFP8RowBytes},
                                       {dst_block, kFP8RowBytes, kFP8RowBytes, 1});
    v.device = d;
    return v;
  };
  std::vector<uint8_t> cpu_q(static_cast<size_t>(num_blocks * dst_block), 0xAB);
  quantize_kv_cache_fp8(src_view(src.data(), Device::cpu()), dst_view(cpu_q.data(), Device::cpu()));
  std::vector<uint16_t> cpu_dq(src.size(), 0x1234);
  dequantize_kv_cache_fp8(dst_view(cpu_q.data(), Device::cpu()),
                          src_view(cpu_dq.data(), Device::cpu()));

  DeviceBuffer d_src(src.size() * 2), d_q(cpu_q.size()), d_dq(src.size() * 2);
  d_src.upload(src.data(), src.size() * 2);
  std::vector<uint8_t> fill(cpu_q.size(), 0xAB);
  d_q.upload(fill.data(), fill.size());
  quantize_kv_cache_fp8(src_view(d_src.get(), Device::cuda(0)),
                        dst_view(d_q.get(), Device::cuda(0)));
  dequantize_kv_cache_fp8(dst_view(d_q.get(), Device::cuda(0)),
                          src_view(d_dq.get(), Device::cuda(0)));
  cuda_ok(cudaDeviceSynchronize(), "fp8 conversions");
  std::vector<uint8_t> gpu_q(cpu_q.size());
  std::vector<uint16_t> gpu_dq(src.size());
  d_q.download(gpu_q.data(), gpu_q.size());
  d_dq.download(gpu_dq.data(), gpu_dq.size() * 2);
  int64_t q_diff = 0, dq_diff = 0;
  for (size_t i = 0; i < cpu_q.size(); ++i) q_diff += cpu_q[i] != gpu_q[i];
  for (size_t i = 0; i < cpu_dq.size(); ++i) dq_diff += cpu_dq[i] != gpu_dq[i];
  std::printf(
      "[ summary ] fp8        quantize: %lld of %zu bytes differ; dequantize: %lld of %zu "
      "values differ\n",
      static_cast<long long>(q_diff), cpu_q.size(), static_cast<long long>(dq_diff), cpu_dq.size());
  EXPECT_EQ(q_diff, 0);
  EXPECT_EQ(dq_diff, 0);
}

}  // namespace
}  // namespace flashmla::test
