// The CUDA token-sparse decode (mla_sparse_decode, bf16 or FP8-with-scale caches) against the
// CPU backend (the oracle) and, on small cases, the float64 reference: fresh random inputs every
// run (FLASHMLA_TEST_SEED replays one), -1 slots, duplicate indices, topk_length (0 included),
// queries without any valid slot, attention sinks (finite, +inf, -inf), an extra cache, and
// poisoned outputs. Every cache row that no counted slot selects is NaN, so a kernel that reads
// the row of a -1 slot, of a slot past topk_length, or any other row it must not, shows it.
// Calls go through a plan (DecodeShape::topk), the convenience overload, and CUDA graphs.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/numeric.h"
#include "common/sparse_case.h"
#include "flashmla/error.h"
#include "gpu_harness.h"

namespace flashmla::test {
namespace {

// Work of the float64 reference (query rows x index slots) above which a case is compared with
// the CPU backend only: about 0.2 s of reference per case.
constexpr double kSparseReferenceBudget = 5e5;

template <typename T>
T pick(Rng& rng, std::initializer_list<T> options) {
  return *(options.begin() + rng.uniform_int(0, static_cast<int>(options.size()) - 1));
}

int blocks_for(int rows, int page) {
  return (rows + page - 1) / page;
}

// Makes every row of `cache` that no counted slot of `indices` [b, s_q, topk] selects NaN, in
// storage and values (FP8 rows become 0xff bytes: NaN values, NaN scales, NaN rope).
void poison_unselected_rows(KVCache& cache, const SparseCase& c,
                            const std::vector<int32_t>& indices, int topk,
                            const std::vector<int32_t>& lengths) {
  std::vector<char> selected(static_cast<size_t>(cache.num_rows()), 0);
  for (int b = 0; b < c.batch; ++b) {
    const int count = lengths.empty() ? topk : lengths[b];
    for (int s = 0; s < c.s_q; ++s) {
      const int32_t* slots = &indices[(static_cast<size_t>(b) * c.s_q + s) * topk];
      for (int k = 0; k < count; ++k) {
        if (slots[k] >= 0) selected[slots[k]] = 1;
      }
    }
  }
  const bool fp8 = cache.dtype == DType::kUInt8;
  const int64_t width = static_cast<int64_t>(cache.h_kv) * cache.d;
  for (int64_t row = 0; row < cache.num_rows(); ++row) {
    if (selected[row]) continue;
    const int64_t at = row / cache.page_block_size * cache.block_stride +
                       row % cache.page_block_size * cache.row_stride;
    if (fp8) {
      std::fill_n(cache.bytes.begin() + at, kFP8RowBytes, uint8_t{0xff});
    } else {
      std::fill_n(cache.halves.begin() + at, width, half_nan(cache.dtype));
    }
    std::fill_n(cache.values.begin() + row * width, width, std::numeric_limits<float>::quiet_NaN());
  }
}

// make_sparse_data with every unselected row of both caches poisoned.
SparseCaseData make_gpu_sparse_data(const SparseCase& c) {
  SparseCaseData data = make_sparse_data(c);
  poison_unselected_rows(data.cache, c, data.indices, c.topk, data.topk_length);
  if (c.with_extra) {
    poison_unselected_rows(data.extra_cache, c, data.extra_indices, c.extra_topk,
                           data.extra_topk_length);
  }
  return data;
}

std::string describe(const SparseCase& c) {
  return c.describe() + " invalid=" + std::to_string(c.invalid_fraction) +
         " duplicates=" + std::to_string(c.duplicate_fraction);
}

// The sparse plan of a case: topk + extra_topk slots per query token.
DecodeShape sparse_shape(const SparseCase& c) {
  DecodeShape shape;
  shape.batch_size = c.batch;
  shape.s_q = c.s_q;
  shape.h_q = c.h_q;
  shape.h_kv = 1;
  shape.page_block_size = c.page_block_size;
  shape.topk = c.topk + (c.with_extra ? c.extra_topk : 0);
  return shape;
}

// A case's inputs on the GPU: device copies of host views, kept alive with the arguments.
struct DeviceSparseInputs {
  std::vector<DeviceBuffer> buffers;
  SparseDecodeArgs args;  // out and lse are set per run

  TensorView upload(const TensorView& host) {
    buffers.emplace_back();
    return upload_view(host, buffers.back());
  }
  TensorView upload_ints(std::vector<int32_t>& host, const std::vector<int64_t>& shape) {
    return upload(contiguous_view(host.data(), DType::kInt32, shape));
  }
};

DeviceSparseInputs upload_sparse(const SparseCase& c, SparseCaseData& data) {
  DeviceSparseInputs d;
  const int64_t b = c.batch;
  d.args.q = d.upload(data.q.view());
  d.args.kv_cache = d.upload(data.cache.view());
  d.args.indices = d.upload_ints(data.indices, {b, c.s_q, c.topk});
  if (!data.topk_length.empty()) d.args.topk_length = d.upload_ints(data.topk_length, {b});
  if (c.with_extra) {
    d.args.extra_kv_cache = d.upload(data.extra_cache.view());
    d.args.extra_indices = d.upload_ints(data.extra_indices, {b, c.s_q, c.extra_topk});
    if (!data.extra_topk_length.empty()) {
      d.args.extra_topk_length = d.upload_ints(data.extra_topk_length, {b});
    }
  }
  if (!data.attn_sink.empty()) {
    d.args.attn_sink = d.upload(contiguous_view(data.attn_sink.data(), DType::kFP32, {c.h_q}));
  }
  d.args.head_dim_v = c.dv;
  d.args.softmax_scale = c.softmax_scale;
  return d;
}

// How the GPU call is made: mla_sparse_decode(args, plan), the same captured in a CUDA graph and
// replayed, or the convenience overload mla_sparse_decode(args) that plans per call.
enum class Call { kPlan, kGraph, kConvenience };

const char* call_name(Call call) {
  return call == Call::kPlan ? "plan" : call == Call::kGraph ? "graph" : "convenience";
}

// Runs `inputs` on the GPU into poisoned outputs. `num_workers` sizes the plan (0: the backend's
// choice; the convenience overload always uses that).
Outputs run_sparse_gpu(const SparseCase& c, SparseDecodeArgs args, Call call, int num_workers) {
  Outputs o = poisoned_outputs(c.dtype, c.batch, c.s_q, c.h_q, c.dv);
  DeviceOutputs dev(o);
  args.out = dev.out;
  args.lse = dev.lse;
  if (call == Call::kConvenience) {
    run_on_stream([&](cudaStream_t stream) { mla_sparse_decode(args, stream); }, false);
  } else {
    const DecodePlan plan(sparse_shape(c), Device::cuda(0), c.dv, num_workers);
    EXPECT_TRUE(plan.planned());
    run_on_stream([&](cudaStream_t stream) { mla_sparse_decode(args, plan, stream); },
                  call == Call::kGraph);
  }
  dev.download(o);
  return o;
}

Outputs run_sparse_cpu(const SparseCase& c, SparseCaseData& data) {
  Outputs o;
  run_sparse_library(c, data, o.out, o.lse);
  return o;
}

double reference_work(const SparseCase& c) {
  return static_cast<double>(c.batch) * c.s_q * c.h_q *
         (c.topk + (c.with_extra ? c.extra_topk : 0));
}

// Checks one case's GPU outputs against the CPU backend's and, within the budget, the reference.
void check_sparse(CaseGroup& group, const SparseCase& c, const SparseCaseData& data,
                  const Outputs& gpu, const Outputs& cpu) {
  if (reference_work(c) <= kSparseReferenceBudget) {
    const ReferenceResult ref = reference_sparse_case(c, data);
    group.check(gpu, cpu, &ref);
  } else {
    group.check(gpu, cpu, nullptr);
  }
}

void run_sparse_case(CaseGroup& group, const SparseCase& c, Call call = Call::kPlan,
                     int num_workers = 0) {
  group.run(describe(c) + " call=" + call_name(call) + " workers=" + std::to_string(num_workers),
            [&] {
              SparseCaseData data = make_gpu_sparse_data(c);
              const Outputs cpu = run_sparse_cpu(c, data);
              DeviceSparseInputs dev = upload_sparse(c, data);
              const Outputs gpu = run_sparse_gpu(c, dev.args, call, num_workers);
              check_sparse(group, c, data, gpu, cpu);
            });
}

// A case of the given shape whose options (lengths, an all-invalid query, an extra cache, sinks,
// scale, shares of -1 and duplicate slots) are drawn from `rng`. The cache holds about 2 x topk
// rows (at least 256), so that most rows are selected by some query and the rest are NaN.
SparseCase random_case(Rng& rng, int batch, int s_q, int h_q, int topk, bool fp8, int page) {
  SparseCase c;
  c.seed = rng.engine()();
  c.batch = batch;
  c.s_q = s_q;
  c.h_q = h_q;
  c.topk = topk;
  c.fp8 = fp8;
  c.page_block_size = page;
  c.num_blocks = blocks_for(std::max(256, 2 * topk), page);
  c.invalid_fraction = pick(rng, {0.0, 0.2, 0.6});
  c.duplicate_fraction = pick(rng, {0.0, 0.1, 0.5});
  c.with_topk_length = rng.coin();
  c.all_invalid_query = rng.coin(0.25);
  c.with_extra = rng.coin(0.4);
  c.extra_page_block_size = pick(rng, {16, 32, 64});
  c.extra_topk = pick(rng, {1, 48, 64, 128});
  c.extra_num_blocks = blocks_for(std::max(64, 2 * c.extra_topk), c.extra_page_block_size);
  c.with_extra_topk_length = rng.coin();
  c.with_sink = rng.coin(0.4);
  c.softmax_scale = pick(rng, {0.0f, 0.1352f, 4.0f});
  return c;
}

// A small case: b = 2, s_q = 2, h_q = 16, topk = 100 over 16 pages of 16 rows; options off.
SparseCase small_case(Rng& rng, bool fp8) {
  SparseCase c;
  c.seed = rng.engine()();
  c.batch = 2;
  c.s_q = 2;
  c.h_q = 16;
  c.topk = 100;
  c.fp8 = fp8;
  c.page_block_size = 16;
  c.num_blocks = 16;
  return c;
}

// Every h_q (FlashMLA's 64 and 128, smaller and odd ones) x s_q 1, 2 x bf16 and FP8 caches; b,
// topk (a multiple of 64 or not, up to 2048), page size and the options drawn per case;
// alternately through a plan and the convenience overload.
TEST(CudaSparseDecode, HeadsSweep) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-heads");
  Rng rng(test_seed() * 41 + 1);
  int n = 0;
  for (int h_q : {1, 3, 8, 16, 32, 64, 128}) {
    for (int s_q : {1, 2}) {
      for (bool fp8 : {false, true}) {
        const int topk = pick(rng, {64, 100, 128, 2048});
        int b = rng.uniform_int(1, 8);
        // Bound the CPU oracle's work and the host-side data generation.
        while (static_cast<double>(b) * s_q * h_q * topk > 4e6 && b > 1) b /= 2;
        const SparseCase c = random_case(rng, b, s_q, h_q, topk, fp8, pick(rng, {64, 16}));
        // Every other plan call asks for 300 workers: past one wave of the SMs, which takes
        // 16- and 32-row tiles to their two-CTA-per-SM configuration.
        const Call call = n % 2 ? Call::kConvenience : Call::kPlan;
        run_sparse_case(group, c, call, n++ % 4 == 2 ? 300 : 0);
      }
    }
  }
}

// topk from 1 to 2048 (multiples of 64 and not) against page sizes 64, 16, 33 and 1.
TEST(CudaSparseDecode, TopkAndPageSizes) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-topk");
  Rng rng(test_seed() * 41 + 2);
  for (int topk : {1, 7, 64, 100, 2048}) {
    for (int page : {64, 16, 33}) {
      const SparseCase c = random_case(rng, rng.uniform_int(1, 3), rng.uniform_int(1, 2),
                                       pick(rng, {16, 64}), topk, rng.coin(), page);
      run_sparse_case(group, c);
    }
  }
  const SparseCase c = random_case(rng, 2, 2, 16, 100, true, /*page=*/1);
  run_sparse_case(group, c);
}

// Queries without any valid slot, all slots -1, topk_length 0 and < topk, heavy duplicates,
// sinks of every kind, extra caches of other page sizes.
TEST(CudaSparseDecode, EdgeCases) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-edge");
  Rng rng(test_seed() * 41 + 3);
  auto base = [&](bool fp8) {
    SparseCase c = small_case(rng, fp8);
    c.batch = 3;  // with_topk_length: sequence 0 gets 0, sequence 1 topk, sequence 2 random
    return c;
  };
  for (bool fp8 : {false, true}) {
    for (bool sink : {false, true}) {  // query (0, 0) has only -1 slots: out 0, lse +inf
      SparseCase c = base(fp8);
      c.all_invalid_query = true;
      c.with_sink = sink;
      c.with_extra = true;
      run_sparse_case(group, c);
    }
    {  // every slot of every query -1, in both caches
      SparseCase c = base(fp8);
      c.invalid_fraction = 1.0;
      c.with_extra = true;
      c.with_sink = true;
      run_sparse_case(group, c);
    }
    {  // topk_length 0 / topk / random in both caches, with sinks
      SparseCase c = base(fp8);
      c.with_topk_length = true;
      c.with_extra = true;
      c.with_extra_topk_length = true;
      c.with_sink = true;
      run_sparse_case(group, c);
    }
    {  // most slots repeat an earlier index, sharp softmax
      SparseCase c = base(fp8);
      c.duplicate_fraction = 0.8;
      c.invalid_fraction = 0.0;
      c.softmax_scale = 12.0f;
      run_sparse_case(group, c);
    }
  }
  for (int h_q : {3, 64, 128}) {  // sinks cycle finite, +inf, -inf, finite over the heads
    SparseCase c = base(h_q != 64);
    c.h_q = h_q;
    c.with_sink = true;
    c.softmax_scale = 4.0f;
    run_sparse_case(group, c);
  }
  for (int extra_page : {1, 64}) {  // extra caches: a large extra_topk, and extra_topk = 1
    SparseCase c = base(extra_page == 1);
    c.with_extra = true;
    c.extra_page_block_size = extra_page;
    c.extra_topk = extra_page == 1 ? 1 : 256;
    c.extra_num_blocks = blocks_for(512, extra_page);
    c.with_extra_topk_length = true;
    run_sparse_case(group, c);
  }
}

// Forced worker counts: one worker doing everything, splits of one query's slots merged by the
// combine step, more workers than work.
TEST(CudaSparseDecode, ForcedSplits) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-splits");
  Rng rng(test_seed() * 41 + 4);
  for (int workers : {1, 2, 3, 7, 64, 500}) {
    for (int h_q : {16, 128}) {
      SparseCase c = random_case(rng, 2, 2, h_q, 512, rng.coin(), 64);
      c.with_extra = true;
      c.with_topk_length = true;
      run_sparse_case(group, c, Call::kPlan, workers);
    }
  }
}

// DeepSeek-V3.2-sized batches: b = 64, h_q = 128, topk = 2048 (FP8, as served), and MTP with an
// extra cache.
TEST(CudaSparseDecode, LargeBatches) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-large");
  Rng rng(test_seed() * 41 + 5);
  {
    SparseCase c = random_case(rng, 64, 1, 128, 2048, /*fp8=*/true, 64);
    c.num_blocks = 128;  // 8192 rows
    c.all_invalid_query = true;
    run_sparse_case(group, c);
  }
  {
    SparseCase c = random_case(rng, 16, 2, 64, 2048, /*fp8=*/false, 64);
    c.with_extra = true;
    c.extra_topk = 128;
    c.extra_num_blocks = 8;
    c.with_topk_length = true;
    run_sparse_case(group, c, Call::kConvenience);
  }
}

// One plan serves every layer: several layers' inputs of one shape through the same plan, one
// after another on one stream, directly and captured in one CUDA graph replayed twice.
TEST(CudaSparseDecode, LayersShareAPlanAndGraphCapture) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-graph");
  Rng rng(test_seed() * 41 + 6);
  for (bool graph : {false, true}) {
    for (bool fp8 : {false, true}) {
      SparseCase shape = random_case(rng, 4, 2, graph ? 128 : 16, 256, fp8, 64);
      shape.with_extra = true;
      group.run(describe(shape) + (graph ? " graph" : " direct") + " 3 layers", [&] {
        constexpr int kLayers = 3;
        std::vector<SparseCase> cases(kLayers, shape);
        std::vector<SparseCaseData> data;
        std::vector<Outputs> cpu, gpu;
        std::vector<DeviceSparseInputs> inputs;
        std::vector<DeviceOutputs> outputs;
        outputs.reserve(kLayers);
        for (int layer = 0; layer < kLayers; ++layer) {
          cases[layer].seed = shape.seed + layer;
          data.push_back(make_gpu_sparse_data(cases[layer]));
          cpu.push_back(run_sparse_cpu(cases[layer], data[layer]));
          inputs.push_back(upload_sparse(cases[layer], data[layer]));
          gpu.push_back(poisoned_outputs(shape.dtype, shape.batch, shape.s_q, shape.h_q, shape.dv));
          outputs.emplace_back(gpu[layer]);
          inputs[layer].args.out = outputs[layer].out;
          inputs[layer].args.lse = outputs[layer].lse;
        }
        const DecodePlan plan(sparse_shape(shape), Device::cuda(0), shape.dv);
        run_on_stream(
            [&](cudaStream_t stream) {
              for (const DeviceSparseInputs& layer : inputs) {
                mla_sparse_decode(layer.args, plan, stream);
              }
            },
            graph);
        for (int layer = 0; layer < kLayers; ++layer) {
          SCOPED_TRACE("layer " + std::to_string(layer));
          outputs[layer].download(gpu[layer]);
          check_sparse(group, cases[layer], data[layer], gpu[layer], cpu[layer]);
        }
      });
    }
  }
}

// q with a head stride of d + 4 (rows not 16-byte aligned), indices with padded rows, and caches
// with a padded row pitch and a spare row per page: bf16 rows of d + 4 values (not 16-byte
// aligned), FP8 rows of 672 bytes (bulk copies) and of 660 bytes (not 16-byte aligned: the plain
// copy path). Compared with the CPU backend on the contiguous inputs.
TEST(CudaSparseDecode, StridedViews) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-strided");
  Rng rng(test_seed() * 41 + 7);
  const std::pair<bool, int64_t> layouts[] = {{false, 4}, {true, 16}, {true, 4}};
  for (const auto& [fp8, pad] : layouts) {
    SparseCase c = random_case(rng, 2, 2, 16, 100, fp8, 16);
    c.with_extra = false;
    group.run(describe(c) + " strided, row pad " + std::to_string(pad), [&] {
      SparseCaseData data = make_gpu_sparse_data(c);
      const Outputs cpu = run_sparse_cpu(c, data);
      DeviceSparseInputs dev = upload_sparse(c, data);

      const int64_t b = c.batch, q_pitch = c.d + 4;
      std::vector<uint16_t> q(static_cast<size_t>(b * c.s_q * c.h_q * q_pitch), 0);
      for (int64_t r = 0; r < b * c.s_q * c.h_q; ++r) {
        std::copy_n(data.q.bits.data() + r * c.d, c.d, q.data() + r * q_pitch);
      }
      dev.args.q =
          dev.upload(TensorView::strided(q.data(), c.dtype, {b, c.s_q, c.h_q, c.d},
                                         {c.s_q * c.h_q * q_pitch, c.h_q * q_pitch, q_pitch, 1}));

      const int64_t idx_pitch = c.topk + 3;
      std::vector<int32_t> indices(static_cast<size_t>(b * c.s_q * idx_pitch), -1);
      for (int64_t r = 0; r < b * c.s_q; ++r) {
        std::copy_n(data.indices.data() + r * c.topk, c.topk, indices.data() + r * idx_pitch);
      }
      dev.args.indices = dev.upload(TensorView::strided(
          indices.data(), DType::kInt32, {b, c.s_q, c.topk}, {c.s_q * idx_pitch, idx_pitch, 1}));

      // The cache re-laid with a row pitch of `width + pad` elements and page + 1 rows per page.
      const KVCache& kv = data.cache;
      const int64_t width = fp8 ? kFP8RowBytes : c.d, pitch = width + pad;
      const int64_t page_pitch = (kv.page_block_size + 1) * pitch;
      const size_t elem = fp8 ? 1 : 2;
      std::vector<uint8_t> cache(static_cast<size_t>(kv.num_blocks * page_pitch) * elem, 0xff);
      const auto* src = fp8 ? kv.bytes.data() : reinterpret_cast<const uint8_t*>(kv.halves.data());
      for (int64_t row = 0; row < kv.num_rows(); ++row) {
        const int64_t blk = row / kv.page_block_size, off = row % kv.page_block_size;
        std::memcpy(cache.data() + (blk * page_pitch + off * pitch) * elem,
                    src + (blk * kv.block_stride + off * kv.row_stride) * elem, width * elem);
      }
      dev.args.kv_cache = dev.upload(
          TensorView::strided(cache.data(), kv.dtype, {kv.num_blocks, kv.page_block_size, 1, width},
                              {page_pitch, pitch, pitch, 1}));

      check_sparse(group, c, data, run_sparse_gpu(c, dev.args, Call::kPlan, 0), cpu);
    });
  }
}

// Small cases over the main code paths (bf16 and FP8 caches, extra cache, lengths, sinks, an
// all-invalid query, split and combined slots, 16-, 32- and 64-head tiles): cheap enough for
// compute-sanitizer's memcheck and racecheck.
TEST(CudaSparseDecode, SanitizerSmall) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-small");
  Rng rng(test_seed() * 41 + 8);
  for (bool fp8 : {false, true}) {
    SparseCase c = small_case(rng, fp8);
    c.with_topk_length = true;
    c.all_invalid_query = fp8;
    c.with_extra = true;
    c.with_extra_topk_length = true;
    c.with_sink = true;
    run_sparse_case(group, c, Call::kPlan, /*num_workers=*/3);
    // 16- and 32-row tiles at two CTAs per SM (300 workers: past one wave).
    run_sparse_case(group, c, Call::kPlan, /*num_workers=*/300);
    c.h_q = 32;
    run_sparse_case(group, c, Call::kConvenience);
    run_sparse_case(group, c, Call::kPlan, /*num_workers=*/300);
  }
  // 64 query rows: FP8 (serial loop, one tile) and bf16 (ping-pong loop, three tiles); 128
  // query rows of FP8: the 2-CTA cluster loop.
  for (auto [fp8, h_q] : {std::pair{true, 64}, std::pair{false, 64}, std::pair{true, 128}}) {
    SparseCase c;
    c.seed = rng.engine()();
    c.batch = 1;
    c.h_q = h_q;
    c.topk = fp8 ? 64 : 192;
    c.fp8 = fp8;
    c.num_blocks = 4;
    run_sparse_case(group, c, Call::kConvenience);
  }
}

// Indices outside the cache (which the API cannot check for CUDA tensors) are never
// dereferenced (compute-sanitizer's memcheck runs this test): the query holding them gets its lse
// written (its values are unspecified), and every other query is unaffected.
TEST(CudaSparseDecode, InvalidBlockIdInIndicesNeverRead) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-invalid");
  Rng rng(test_seed() * 41 + 9);
  for (bool fp8 : {false, true}) {
    SparseCase c = small_case(rng, fp8);
    c.invalid_fraction = 0.1;
    for (int workers : {0, 5}) {
      group.run(describe(c) + " workers=" + std::to_string(workers), [&] {
        SparseCaseData data = make_gpu_sparse_data(c);
        const Outputs cpu = run_sparse_cpu(c, data);
        // Query token 0 of sequence 1: past the last row, far past it, negative but not -1.
        const int bad_b = 1, bad_s = 0;
        int32_t* slots = &data.indices[(static_cast<size_t>(bad_b) * c.s_q + bad_s) * c.topk];
        slots[0] = c.num_blocks * c.page_block_size;
        slots[40] = std::numeric_limits<int32_t>::max();
        slots[70] = -7;
        slots[99] = std::numeric_limits<int32_t>::min();
        DeviceSparseInputs dev = upload_sparse(c, data);
        Outputs gpu = run_sparse_gpu(c, dev.args, Call::kPlan, workers);
        // The bad query's values are unspecified (NaN from the kernel is 0x7fff, the poison
        // pattern, so only lse shows that it was written): take the CPU's there, compare the rest.
        const float poison = lse_poison();
        int unwritten = 0;
        for (int h = 0; h < c.h_q; ++h) {
          const size_t row = (static_cast<size_t>(bad_b) * c.s_q + bad_s) * c.h_q + h;
          std::copy_n(cpu.out.bits.begin() + row * c.dv, c.dv, gpu.out.bits.begin() + row * c.dv);
          float& lse = gpu.lse[(static_cast<size_t>(bad_b) * c.h_q + h) * c.s_q + bad_s];
          unwritten += std::memcmp(&lse, &poison, sizeof(float)) == 0;
          lse = cpu.lse[(static_cast<size_t>(bad_b) * c.h_q + h) * c.s_q + bad_s];
        }
        EXPECT_EQ(unwritten, 0) << "lse of the query with bad indices never written";
        group.check(gpu, cpu, nullptr);
      });
    }
  }
}

// Shapes beyond FlashMLA's sparse kernels (fp16 q and cache, d = 512, dv < 512): the CUDA backend
// either computes them like the CPU backend or refuses with kNotSupported, never silently wrong.
TEST(CudaSparseDecode, OtherDtypesAndHeadDims) {
  FLASHMLA_REQUIRE_GPU();
  CaseGroup group("sp-other");
  Rng rng(test_seed() * 41 + 10);
  struct Variant {
    DType dtype;
    int d, dv;
  };
  int refused = 0;
  for (const Variant& v : {Variant{DType::kFP16, 576, 512}, Variant{DType::kBF16, 512, 512},
                           Variant{DType::kBF16, 576, 256}, Variant{DType::kFP16, 512, 77}}) {
    SparseCase c = random_case(rng, 2, 2, 16, 100, /*fp8=*/false, 64);
    c.dtype = v.dtype;
    c.d = v.d;
    c.dv = v.dv;
    group.run(describe(c), [&] {
      SparseCaseData data = make_gpu_sparse_data(c);
      const Outputs cpu = run_sparse_cpu(c, data);
      DeviceSparseInputs dev = upload_sparse(c, data);
      Outputs gpu;
      try {
        gpu = run_sparse_gpu(c, dev.args, Call::kPlan, 0);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::kNotSupported) throw;
        ++refused;
        std::printf("[ gpu-tests ] sparse %s d=%d dv=%d: not supported on CUDA (%s)\n",
                    dtype_name(c.dtype), c.d, c.dv, e.what());
        return;
      }
      check_sparse(group, c, data, gpu, cpu);
    });
  }
  std::printf("[ gpu-tests ] sparse other dtypes/head dims: %d of 4 refused with kNotSupported\n",
              refused);
}

}  // namespace
}  // namespace flashmla::test
