#include "inputs.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <utility>

#include "random_fill.h"

namespace flashmla::cli {
namespace {

// The anchor's distribution: N(0,1)/10 clamped to [-1, 1].
constexpr float kInputScale = 0.1f;
constexpr float kInputLimit = 1.0f;

}  // namespace

Buffer place(Buffer& host, Device device, bool last_use) {
  if (!device.is_cuda() && last_use) return std::move(host);
  return host.copy_to(device);
}

PagedLayout paged_layout(const std::vector<int32_t>& cache_seqlens, int page_block_size) {
  PagedLayout layout;
  const int64_t page = page_block_size;
  for (int32_t length : cache_seqlens) {
    layout.pages_per_sequence.push_back((length + page - 1) / page);
  }
  for (int64_t pages : layout.pages_per_sequence) {
    layout.max_pages = std::max(layout.max_pages, pages);
  }
  // At least one page, so that an all-empty batch still has a valid cache to point at.
  layout.num_blocks =
      std::max<int64_t>(1, std::accumulate(layout.pages_per_sequence.begin(),
                                           layout.pages_per_sequence.end(), int64_t{0}));
  return layout;
}

// Sequence i's pages are permutation[first_page[i] .. first_page[i] + pages[i]); entries past a
// sequence's last page are never read and stay 0.
Buffer make_block_table(const PagedLayout& layout, uint64_t seed) {
  std::vector<int32_t> permutation(static_cast<size_t>(layout.num_blocks));
  std::iota(permutation.begin(), permutation.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(permutation.begin(), permutation.end(), rng);

  const auto batch = static_cast<int64_t>(layout.pages_per_sequence.size());
  const int64_t max_pages = layout.max_pages;
  Buffer table(static_cast<size_t>(batch * max_pages) * sizeof(int32_t), Device::cpu());
  table.zero();
  int32_t* rows = table.as<int32_t>();
  int64_t next = 0;
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t page = 0; page < layout.pages_per_sequence[i]; ++page) {
      rows[i * max_pages + page] = permutation[static_cast<size_t>(next++)];
    }
  }
  return table;
}

Buffer random_activations(int64_t count, DType dtype, uint64_t seed) {
  Buffer host(static_cast<size_t>(count) * dtype_size(dtype), Device::cpu());
  fill_clamped_normal_16bit(host.as<uint16_t>(), static_cast<size_t>(count), dtype, seed,
                            kInputScale, kInputLimit);
  return host;
}

TensorView fp8_cache_view(const Buffer& buffer, int64_t num_blocks, int64_t page_block_size) {
  return TensorView::contiguous(buffer.data(), DType::kFP8E4M3,
                                {num_blocks, page_block_size, 1, kFP8RowBytes}, buffer.device());
}

Buffer quantize_cache_fp8(const TensorView& cache) {
  const int64_t num_blocks = cache.size(0);
  const int64_t page = cache.size(1);
  Buffer fp8(static_cast<size_t>(num_blocks * page * kFP8RowBytes), cache.device);
  // The legacy stream orders the quantization after the synchronous copies that filled `cache`.
  quantize_kv_cache_fp8(cache, fp8_cache_view(fp8, num_blocks, page), nullptr);
  return fp8;
}

void convert_caches_to_fp8(CaseInputs& inputs, const BenchCase& bench_case) {
  for (DecodeInputSet& set : inputs.sets) {
    Buffer fp8 = quantize_cache_fp8(set.args.kv_cache);
    set.args.kv_cache = fp8_cache_view(fp8, inputs.num_blocks, bench_case.page_block_size);
    set.kv_cache = std::move(fp8);  // frees the bf16 cache (cudaFree waits for the quantization)
  }
  inputs.kv_cache_bytes = inputs.num_blocks * bench_case.page_block_size * kFP8RowBytes;
}

CaseInputs build_case_inputs(const BenchCase& bench_case, DType dtype, Device device, uint64_t seed,
                             int num_sets) {
  const BenchCase& c = bench_case;
  const auto element_size = dtype_size(dtype);
  const int64_t page = c.page_block_size;
  const PagedLayout layout = paged_layout(c.cache_seqlens, c.page_block_size);
  const int64_t num_blocks = layout.num_blocks;
  const int64_t max_pages = layout.max_pages;

  const int64_t q_elements = int64_t{c.b} * c.s_q * c.h_q * c.d;
  const int64_t cache_elements = num_blocks * page * c.h_kv * c.d;
  const int64_t out_elements = int64_t{c.b} * c.s_q * c.h_q * c.dv;
  const int64_t lse_elements = int64_t{c.b} * c.h_q * c.s_q;

  Buffer q_host = random_activations(q_elements, dtype, derive_seed(seed, seed_stream::kQ));
  Buffer cache_host =
      random_activations(cache_elements, dtype, derive_seed(seed, seed_stream::kCache));
  Buffer seqlens_host(c.cache_seqlens.size() * sizeof(int32_t), Device::cpu());
  std::copy(c.cache_seqlens.begin(), c.cache_seqlens.end(), seqlens_host.as<int32_t>());

  CaseInputs inputs;
  inputs.num_blocks = num_blocks;
  inputs.kv_cache_bytes = cache_elements * static_cast<int64_t>(element_size);
  inputs.cache_seqlens = place(seqlens_host, device, true);
  inputs.cache_seqlens_view =
      TensorView::contiguous(inputs.cache_seqlens.data(), DType::kInt32, {c.b}, device);

  for (int s = 0; s < num_sets; ++s) {
    const bool last = s + 1 == num_sets;
    DecodeInputSet set;
    set.q = place(q_host, device, last);
    set.kv_cache = place(cache_host, device, last);
    Buffer table_host = make_block_table(layout, derive_seed(seed, seed_stream::kBlockTable + s));
    set.block_table = place(table_host, device, true);
    set.out = Buffer(static_cast<size_t>(out_elements) * element_size, device);
    set.out.zero();
    set.lse = Buffer(static_cast<size_t>(lse_elements) * sizeof(float), device);
    set.lse.zero();

    DenseDecodeArgs& args = set.args;
    args.q = TensorView::contiguous(set.q.data(), dtype, {c.b, c.s_q, c.h_q, c.d}, device);
    args.kv_cache =
        TensorView::contiguous(set.kv_cache.data(), dtype, {num_blocks, page, c.h_kv, c.d}, device);
    args.block_table =
        TensorView::contiguous(set.block_table.data(), DType::kInt32, {c.b, max_pages}, device);
    args.cache_seqlens = inputs.cache_seqlens_view;
    args.out = TensorView::contiguous(set.out.data(), dtype, {c.b, c.s_q, c.h_q, c.dv}, device);
    args.lse = TensorView::contiguous(set.lse.data(), DType::kFP32, {c.b, c.h_q, c.s_q}, device);
    args.head_dim_v = c.dv;
    args.causal = c.causal;
    inputs.sets.push_back(std::move(set));
  }
  return inputs;
}

}  // namespace flashmla::cli
