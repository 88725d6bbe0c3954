#include "gpu_harness.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "common/check.h"
#include "common/float_convert.h"
#include "common/numeric.h"

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

}  // namespace

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

Outputs run_decode(const DenseCase& c, const CaseViews& v, int num_workers, bool graph) {
  const int64_t b = static_cast<int64_t>(c.seqlens.size());
  const Device device = v.q.device;
  Outputs o;
  o.out = HalfTensor(c.dtype, {b, c.s_q, c.h_q, c.dv}, kOutPoison);
  o.lse.assign(static_cast<size_t>(b * c.h_q * c.s_q), lse_poison());

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

  const size_t out_bytes = o.out.bits.size() * sizeof(uint16_t);
  const size_t lse_bytes = o.lse.size() * sizeof(float);
  DeviceBuffer out(out_bytes), lse(lse_bytes);
  out.upload(o.out.bits.data(), out_bytes);  // poison
  lse.upload(o.lse.data(), lse_bytes);
  args.out = contiguous_view(out.get(), c.dtype, {b, c.s_q, c.h_q, c.dv});
  args.out.device = device;
  args.lse = contiguous_view(lse.get(), DType::kFP32, {b, c.h_q, c.s_q});
  args.lse.device = device;

  cudaStream_t stream = nullptr;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  try {
    plan.update(v.seqlens, stream);
    if (!graph) {
      mla_decode(args, plan, stream);
    } else {
      cudaGraph_t g = nullptr;
      cudaGraphExec_t exec = nullptr;
      cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
      mla_decode(args, plan, stream);
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
  out.download(o.out.bits.data(), out_bytes);
  lse.download(o.lse.data(), lse_bytes);
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

}  // namespace flashmla::test
