#include "gpu_harness.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "common/check.h"
#include "common/float_convert.h"
#include "common/numeric.h"
#include "common/reference.h"

namespace flashmla::test {

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
  }
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  cuda_ok(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)), "cudaMalloc");
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, size_t bytes) {
  cuda_ok(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice), "upload");
}

void DeviceBuffer::download(void* host, size_t bytes) const {
  cuda_ok(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost), "download");
}

uint64_t test_seed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("FLASHMLA_TEST_SEED");
    const uint64_t s =
        env ? std::strtoull(env, nullptr, 10)
            : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) %
                  1000000007ull;
    std::printf("[ gpu-tests ] FLASHMLA_TEST_SEED=%llu\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

namespace {

// splitmix64: one independent stream per cache row, so rows can be filled in any order.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// ~N(0, 1)/10 clamped to [-1, 1]: four uniforms (Irwin-Hall), variance matched.
float activation(uint64_t& state) {
  const uint64_t r = mix(state++);
  float sum = 0;
  for (int i = 0; i < 4; ++i) sum += static_cast<float>((r >> (16 * i)) & 0xffff) * (1.0f / 65536);
  return std::clamp((sum - 2.0f) * 1.7320508f / 10.0f, -1.0f, 1.0f);
}

uint16_t round_half(DType t, float v) {
  return t == DType::kBF16 ? detail::float_to_bf16(v) : detail::float_to_fp16(v);
}

}  // namespace

DenseInputs fast_dense_inputs(const DenseCase& c) {
  Rng rng(c.seed);
  DenseInputs in;
  const int64_t b = static_cast<int64_t>(c.seqlens.size());
  in.q = HalfTensor(c.dtype, {b, c.s_q, c.h_q, c.d});
  uint64_t state = rng.engine()();
  for (auto& bits : in.q.bits) bits = round_half(c.dtype, activation(state));

  PagedKV& p = in.kv;
  p.seqlens = c.seqlens;
  const int page = c.page_block_size;
  int used_pages = 0;
  for (int32_t len : c.seqlens) {
    const int pages = (len + page - 1) / page;
    used_pages += pages;
    p.max_blocks = std::max(p.max_blocks, pages);
  }
  p.max_blocks += 1;
  const int num_blocks = std::max(1, used_pages + 2);
  KVCache& kv = p.cache;
  kv.dtype = c.dtype;
  kv.num_blocks = num_blocks;
  kv.page_block_size = page;
  kv.h_kv = c.h_kv;
  kv.d = c.d;
  kv.head_stride = c.d;
  kv.row_stride = static_cast<int64_t>(c.h_kv) * c.d;
  kv.block_stride = kv.row_stride * page;
  kv.halves.assign(static_cast<size_t>(kv.block_stride) * num_blocks, half_nan(c.dtype));
  kv.values.assign(static_cast<size_t>(kv.num_rows()) * c.h_kv * c.d,
                   std::numeric_limits<float>::quiet_NaN());

  std::vector<int32_t> pages(num_blocks);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng.engine());
  p.block_table.resize(static_cast<size_t>(b) * p.max_blocks);
  int next_page = 0;
  const uint64_t row_seed = rng.engine()();
  for (int64_t i = 0; i < b; ++i) {
    const int seq_pages = (c.seqlens[i] + page - 1) / page;
    for (int j = 0; j < p.max_blocks; ++j) {
      int32_t& entry = p.block_table[static_cast<size_t>(i) * p.max_blocks + j];
      if (j < seq_pages) {
        entry = pages[next_page++];
      } else {
        entry =
            rng.coin() ? -rng.uniform_int(1, 1 << 20) : num_blocks + rng.uniform_int(0, 1 << 20);
      }
    }
    for (int t = 0; t < c.seqlens[i]; ++t) {
      const int64_t row = p.row_of(static_cast<int>(i), t);
      uint64_t st = mix(row_seed ^ static_cast<uint64_t>(row) * 0x2545f4914f6cdd1dull);
      const int64_t blk = row / page, off = row % page;
      for (int h = 0; h < c.h_kv; ++h) {
        uint16_t* stored =
            kv.halves.data() + blk * kv.block_stride + off * kv.row_stride + h * kv.head_stride;
        float* value = kv.values.data() + (row * c.h_kv + h) * c.d;
        for (int e = 0; e < c.d; ++e) {
          stored[e] = round_half(c.dtype, activation(st));
          value[e] = c.dtype == DType::kBF16 ? detail::bf16_to_float(stored[e])
                                             : detail::fp16_to_float(stored[e]);
        }
      }
    }
  }
  if (c.fp8) in.kv.cache = quantize_cache_fp8(in.kv.cache);
  return in;
}

namespace {

TensorView on_device(TensorView v, void* data) {
  v.data = data;
  v.device = Device::cuda(0);
  return v;
}

DeviceBuffer copy_of(const TensorView& v, size_t elems) {
  const size_t bytes = elems * dtype_size(v.dtype);
  DeviceBuffer b(bytes);
  b.upload(v.data, bytes);
  return b;
}

// Elements from a view's first to its last one, strides included.
size_t span_elems(const TensorView& v) {
  int64_t last = 0;
  for (int i = 0; i < v.ndim; ++i) {
    if (v.shape[i] == 0) return 0;
    last += (v.shape[i] - 1) * v.strides[i];
  }
  return static_cast<size_t>(last + 1);
}

}  // namespace

TensorView upload_view(const TensorView& host, DeviceBuffer& storage) {
  storage = copy_of(host, span_elems(host));
  return on_device(host, storage.get());
}

DeviceCase upload_case(const CaseViews& host, size_t q_elems, size_t kv_elems) {
  DeviceCase d;
  d.q = copy_of(host.q, q_elems);
  d.kv = copy_of(host.kv, kv_elems);
  d.block_table = copy_of(host.block_table, static_cast<size_t>(host.block_table.numel()));
  d.seqlens = copy_of(host.seqlens, static_cast<size_t>(host.seqlens.numel()));
  d.views.q = on_device(host.q, d.q.get());
  d.views.kv = on_device(host.kv, d.kv.get());
  d.views.block_table = on_device(host.block_table, d.block_table.get());
  d.views.seqlens = on_device(host.seqlens, d.seqlens.get());
  return d;
}

Outputs poisoned_outputs(DType dtype, int64_t b, int s_q, int h_q, int dv) {
  Outputs o;
  o.out = HalfTensor(dtype, {b, s_q, h_q, dv}, kOutPoison);
  o.lse.assign(static_cast<size_t>(b * h_q * s_q), lse_poison());
  return o;
}

DeviceOutputs::DeviceOutputs(const Outputs& host)
    : out_buffer(host.out.bits.size() * sizeof(uint16_t)),
      lse_buffer(host.lse.size() * sizeof(float)) {
  out_buffer.upload(host.out.bits.data(), out_buffer.bytes());
  lse_buffer.upload(host.lse.data(), lse_buffer.bytes());
  const std::vector<int64_t>& shape = host.out.shape;  // [b, s_q, h_q, dv]
  out = contiguous_view(out_buffer.get(), host.out.dtype, shape);
  out.device = Device::cuda(0);
  lse = contiguous_view(lse_buffer.get(), DType::kFP32, {shape[0], shape[2], shape[1]});
  lse.device = Device::cuda(0);
}

void DeviceOutputs::download(Outputs& host) const {
  out_buffer.download(host.out.bits.data(), out_buffer.bytes());
  lse_buffer.download(host.lse.data(), lse_buffer.bytes());
}

void run_on_stream(const std::function<void(cudaStream_t)>& call, bool graph,
                   const std::function<void(cudaStream_t)>& prepare) {
  cudaStream_t stream = nullptr;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  try {
    if (prepare) prepare(stream);
    if (!graph) {
      call(stream);
    } else {
      cudaGraph_t g = nullptr;
      cudaGraphExec_t exec = nullptr;
      cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
      try {
        call(stream);
      } catch (...) {
        cudaStreamEndCapture(stream, &g);  // leave the stream usable
        if (g) cudaGraphDestroy(g);
        throw;
      }
      cuda_ok(cudaStreamEndCapture(stream, &g), "end capture");
      cuda_ok(cudaGraphInstantiate(&exec, g, 0), "instantiate");
      for (int i = 0; i < 2; ++i) cuda_ok(cudaGraphLaunch(exec, stream), "graph launch");
      cuda_ok(cudaStreamSynchronize(stream), "graph sync");
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(g);
    }
    cuda_ok(cudaStreamSynchronize(stream), "decode");
  } catch (...) {
    cudaStreamDestroy(stream);
    throw;
  }
  cudaStreamDestroy(stream);
}

Outputs run_decode(const DenseCase& c, const CaseViews& v, int num_workers, bool graph) {
  const int64_t b = static_cast<int64_t>(c.seqlens.size());
  const Device device = v.q.device;
  Outputs o = poisoned_outputs(c.dtype, b, c.s_q, c.h_q, c.dv);

  DecodePlan plan(decode_shape(c), device, c.dv, num_workers);

  DenseDecodeArgs args;
  args.q = v.q;
  args.kv_cache = v.kv;
  args.block_table = v.block_table;
  args.cache_seqlens = v.seqlens;
  args.head_dim_v = c.dv;
  args.softmax_scale = c.softmax_scale;
  args.causal = c.causal;

  if (!device.is_cuda()) {
    args.out = o.out.view();
    args.lse = contiguous_view(o.lse.data(), DType::kFP32, {b, c.h_q, c.s_q});
    plan.update(v.seqlens);
    mla_decode(args, plan);
    return o;
  }

  DeviceOutputs dev(o);
  args.out = dev.out;
  args.lse = dev.lse;
  run_on_stream([&](cudaStream_t stream) { mla_decode(args, plan, stream); }, graph,
                [&](cudaStream_t stream) { plan.update(v.seqlens, stream); });
  dev.download(o);
  return o;
}

void ErrorStats::merge(const ErrorStats& o) {
  max_abs = std::max(max_abs, o.max_abs);
  max_excess = std::max(max_excess, o.max_excess);
  max_lse_rel = std::max(max_lse_rel, o.max_lse_rel);
}

namespace {

// One comparison against `expected_out(i)` / `expected_lse(i)` in the library's layouts.
template <typename OutFn, typename LseFn>
::testing::AssertionResult compare(const Outputs& gpu, OutFn expected_out, LseFn expected_lse,
                                   ErrorStats* stats) {
  const Tolerance tol;
  std::ostringstream report;
  int64_t bad = 0;
  int reported = 0;
  ErrorStats s;
  for (size_t i = 0; i < gpu.out.bits.size(); ++i) {
    const double want = expected_out(i);
    const bool unwritten = gpu.out.bits[i] == kOutPoison;
    const double got = gpu.out.value(static_cast<int64_t>(i));
    const double allowed = tol.out_abs + tol.out_rel * std::fabs(want);
    const double err = std::fabs(got - want);
    if (std::isfinite(err)) {
      s.max_abs = std::max(s.max_abs, err);
      s.max_excess = std::max(s.max_excess, err / allowed);
    }
    if (unwritten || !(err <= allowed)) {
      if (reported++ < 6) {
        report << "  out[" << i << "] = " << (unwritten ? "never written" : std::to_string(got))
               << ", expected " << want << "\n";
      }
      ++bad;
    }
  }
  for (size_t i = 0; i < gpu.lse.size(); ++i) {
    const double want = expected_lse(i);
    const double got = gpu.lse[i];
    bool ok;
    if (std::isinf(want)) {
      ok = got == want;
    } else {
      const double rel = std::fabs(got - want) / std::max(1.0, std::fabs(want));
      if (std::isfinite(rel)) s.max_lse_rel = std::max(s.max_lse_rel, rel);
      ok = rel <= tol.lse_rel;
    }
    if (!ok) {
      if (reported++ < 6) report << "  lse[" << i << "] = " << got << ", expected " << want << "\n";
      ++bad;
    }
  }
  if (stats) stats->merge(s);
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " elements out of tolerance:\n" << report.str();
}

}  // namespace

::testing::AssertionResult compare_outputs(const Outputs& gpu, const Outputs& ref,
                                           ErrorStats* stats) {
  if (ref.out.bits.size() != gpu.out.bits.size() || ref.lse.size() != gpu.lse.size()) {
    return ::testing::AssertionFailure() << "shape mismatch";
  }
  // The reference must itself be complete and finite where the GPU output is compared.
  return compare(
      gpu, [&](size_t i) { return ref.out.value(static_cast<int64_t>(i)); },
      [&](size_t i) { return static_cast<double>(ref.lse[i]); }, stats);
}

::testing::AssertionResult compare_to_reference(const Outputs& gpu, const ReferenceResult& ref,
                                                ErrorStats* stats) {
  return compare(
      gpu, [&](size_t i) { return ref.out[i]; }, [&](size_t i) { return ref.lse[i]; }, stats);
}

CaseGroup::~CaseGroup() {
  std::printf(
      "[ summary ] %-10s %3d cases, %d failed | vs CPU backend: max|err| %.3g, max err/allowed "
      "%.3f, max lse rel %.3g | vs float64: max|err| %.3g, max err/allowed %.3f, lse rel "
      "%.3g\n",
      name.c_str(), cases, failures, vs_cpu.max_abs, vs_cpu.max_excess, vs_cpu.max_lse_rel,
      vs_ref.max_abs, vs_ref.max_excess, vs_ref.max_lse_rel);
}

void CaseGroup::check(const Outputs& gpu, const Outputs& cpu, const ReferenceResult* ref) {
  ++cases;
  const auto vs_cpu_ok = compare_outputs(gpu, cpu, &vs_cpu);
  EXPECT_TRUE(vs_cpu_ok) << "CUDA vs CPU backend (replay: FLASHMLA_TEST_SEED=" << test_seed()
                         << ")";
  bool ok = vs_cpu_ok;
  if (ref != nullptr) {
    const auto vs_ref_ok = compare_to_reference(gpu, *ref, &vs_ref);
    EXPECT_TRUE(vs_ref_ok) << "CUDA vs float64 reference (replay: FLASHMLA_TEST_SEED="
                           << test_seed() << ")";
    ok = ok && vs_ref_ok;
  }
  if (!ok) ++failures;
}

void CaseGroup::run(const std::string& description, const std::function<void()>& body) {
  SCOPED_TRACE(description);
  try {
    body();
  } catch (const std::exception& e) {
    ++cases;
    ++failures;
    ADD_FAILURE() << "threw: " << e.what() << " (replay: FLASHMLA_TEST_SEED=" << test_seed() << ")";
  }
}

namespace {

CaseViews host_views(DenseInputs& in) {
  return {in.q.view(), in.kv.cache.view(), in.kv.block_table_view(), in.kv.seqlens_view()};
}

DeviceCase upload_inputs(DenseInputs& in) {
  const KVCache& kv = in.kv.cache;
  const size_t kv_elems = kv.dtype == DType::kUInt8 ? kv.bytes.size() : kv.halves.size();
  return upload_case(host_views(in), in.q.bits.size(), kv_elems);
}

}  // namespace

void run_dense_gpu_case(CaseGroup& group, const DenseCase& c, bool graph) {
  group.run(c.describe(), [&] {
    DenseInputs in = fast_dense_inputs(c);
    const Outputs cpu = run_decode(c, host_views(in), c.num_workers);
    DeviceCase dev = upload_inputs(in);
    const Outputs gpu = run_decode(c, dev.views, c.num_workers, graph);
    double work = 0;
    for (int32_t len : c.seqlens) work += static_cast<double>(len) * c.s_q * c.h_q;
    if (work <= kReferenceBudget) {
      const ReferenceResult ref =
          reference_dense_decode(in.q, in.kv, c.dv, c.softmax_scale, c.causal);
      group.check(gpu, cpu, &ref);
    } else {
      group.check(gpu, cpu, nullptr);
    }
  });
}

std::vector<int32_t> draw_seqlens(Rng& rng, int b, int s_k, bool varying, double empty_fraction) {
  std::vector<int32_t> v(b, s_k);
  if (varying) {
    for (auto& len : v) len = rng.coin(empty_fraction) ? 0 : rng.uniform_int(1, s_k);
  }
  return v;
}

DenseCase random_dense_case(Rng& rng, int h_q, int h_kv, int s_q, bool fp8) {
  const int batches[] = {1, 2, 6, 64};
  const int s_ks[] = {20, 140, 4096};
  const int pages[] = {16, 32, 64, 128};
  DenseCase c;
  c.seed = rng.engine()();
  c.h_q = h_q;
  c.h_kv = h_kv;
  c.s_q = s_q;
  c.fp8 = fp8;
  c.causal = rng.coin();
  c.page_block_size = pages[rng.uniform_int(0, 3)];
  int b = batches[rng.uniform_int(0, 3)];
  int s_k = s_ks[rng.uniform_int(0, 2)];
  while (static_cast<double>(b) * s_k * s_q * h_q > 2.5e7 && b > 1) b = std::max(1, b / 4);
  const double max_rows = fp8 ? 1.5e5 : 6e5 / h_kv;
  while (static_cast<double>(b) * s_k > max_rows && s_k > 140) s_k = std::max(140, s_k / 2);
  c.seqlens = draw_seqlens(rng, b, s_k, rng.coin(), 0.1);
  return c;
}

DenseCase page_boundary_case(Rng& rng, int page, bool causal, bool fp8) {
  DenseCase c;
  c.seed = rng.engine()();
  c.fp8 = fp8;
  c.page_block_size = page;
  c.causal = causal;
  c.s_q = rng.uniform_int(1, 8);
  c.h_q = 16 * rng.uniform_int(1, 8);
  c.seqlens = {1, 2, 63, 64, 65, 127, 129, 0, 700, static_cast<int32_t>(rng.uniform_int(1, 3000))};
  return c;
}

DenseCase small_dense_case(Rng& rng, int h_q, int s_q) {
  DenseCase c;
  c.seed = rng.engine()();
  c.seqlens = {70, 0, 130};
  c.h_q = h_q;
  c.s_q = s_q;
  c.causal = true;
  c.page_block_size = 32;
  c.num_workers = 3;
  return c;
}

void expect_invalid_block_id_gives_nan(const DenseCase& c) {
  const Tolerance tol;
  const int64_t per_seq = static_cast<int64_t>(c.s_q) * c.h_q * c.dv;
  for (int workers : {0, 5}) {
    SCOPED_TRACE(c.describe() + ", workers " + std::to_string(workers));
    DenseInputs in = fast_dense_inputs(c);
    const Outputs cpu = run_decode(c, host_views(in), 0);
    in.kv.block_table[1] = in.kv.cache.num_blocks + 1000;  // sequence 0, page 1
    DeviceCase dev = upload_inputs(in);
    const Outputs gpu = run_decode(c, dev.views, workers);
    for (int64_t i = 0; i < 2 * per_seq; ++i) {
      const double got = gpu.out.value(i), want = cpu.out.value(i);
      if (i < per_seq) {
        ASSERT_TRUE(std::isnan(got)) << "out[" << i << "] = " << got;
      } else {
        ASSERT_LE(std::fabs(got - want), tol.out_abs + tol.out_rel * std::fabs(want))
            << "out[" << i << "] = " << got << ", expected " << want;
      }
    }
  }
}

}  // namespace flashmla::test
