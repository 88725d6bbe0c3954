// Compares the CPU dense decode with OpenBLAS SGEMM on this machine (not part of the build).
//
// Case: b = 4, s_q = 1, h_q = 16, h_kv = 1, s_k = 4096 (every sequence), d = 576, dv = 512,
// bf16, page 64, pages in random order; FLOPs = b * h_q * s_q * s_k * 2 * (576 + 512).
// SGEMM: 2048^3. The two are interleaved so that both see the same machine load.
//
//   cmake --build build-cpu --target flashmla
//   g++ -O2 -std=c++20 -fopenmp tools/cpu_decode_vs_sgemm.cpp -Iinclude
//       build-cpu/libflashmla.a -lopenblas -o /tmp/cpu_decode_vs_sgemm   (one line)
//   /tmp/cpu_decode_vs_sgemm [rounds]      # OMP_NUM_THREADS / OPENBLAS_NUM_THREADS apply
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "flashmla/decode.h"

namespace {

uint16_t to_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof(b));
  return static_cast<uint16_t>((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void report(const char* name, std::vector<double> times, double flops) {
  std::sort(times.begin(), times.end());
  const double best = times.front(), median = times[times.size() / 2];
  std::printf("%-7s best %8.3f ms (%6.1f GFLOP/s)  median %8.3f ms (%6.1f GFLOP/s)\n", name,
              best * 1e3, flops / best / 1e9, median * 1e3, flops / median / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace flashmla;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.1f);

  const int n = 2048;
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (float& x : a) x = normal(rng);
  for (float& x : b) x = normal(rng);
  auto sgemm = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };

  const int batch = 4, h_q = 16, s_k = 4096, d = 576, dv = 512, page = 64;
  const int pages = batch * s_k / page;
  std::vector<uint16_t> q(batch * h_q * d), kv(static_cast<size_t>(pages) * page * d);
  for (uint16_t& x : q) x = to_bf16(normal(rng));
  for (uint16_t& x : kv) x = to_bf16(normal(rng));
  std::vector<int32_t> block_table(pages), seqlens(batch, s_k);
  for (int i = 0; i < pages; ++i) block_table[i] = i;
  std::shuffle(block_table.begin(), block_table.end(), rng);
  std::vector<uint16_t> out(batch * h_q * dv);
  std::vector<float> lse(batch * h_q);

  DecodePlan plan(DecodeShape{batch, 1, h_q, 1, page}, Device::cpu(), dv);
  const TensorView seqlens_view = TensorView::contiguous(seqlens.data(), DType::kInt32, {batch});
  plan.update(seqlens_view);
  DenseDecodeArgs args;
  args.q = TensorView::contiguous(q.data(), DType::kBF16, {batch, 1, h_q, d});
  args.kv_cache = TensorView::contiguous(kv.data(), DType::kBF16, {pages, page, 1, d});
  args.block_table = TensorView::contiguous(block_table.data(), DType::kInt32, {batch, s_k / page});
  args.cache_seqlens = seqlens_view;
  args.out = TensorView::contiguous(out.data(), DType::kBF16, {batch, 1, h_q, dv});
  args.lse = TensorView::contiguous(lse.data(), DType::kFP32, {batch, h_q, 1});
  args.head_dim_v = dv;

  sgemm();
  for (int i = 0; i < 3; ++i) mla_decode(args, plan);
  std::vector<double> sgemm_times, decode_times;
  for (int r = 0; r < rounds; ++r) {
    double start = seconds();
    sgemm();
    sgemm_times.push_back(seconds() - start);
    for (int i = 0; i < 10; ++i) {
      start = seconds();
      mla_decode(args, plan);
      decode_times.push_back(seconds() - start);
    }
  }
  std::printf("OpenMP threads %d, OpenBLAS threads %d, plan workers %d\n", omp_get_max_threads(),
              openblas_get_num_threads(), plan.num_workers());
  report("sgemm", sgemm_times, 2.0 * n * n * n);
  report("decode", decode_times, 2.0 * batch * h_q * s_k * (576.0 + 512.0));
  return 0;
}
