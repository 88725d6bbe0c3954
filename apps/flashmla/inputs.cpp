#include "inputs.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <utility>

#include "random_fill.h"

namespace flashmla::cli {
namespace {

// Streams of the case seed, so that q, the cache and each block table are independent.
constexpr uint64_t kQStream = 1;
constexpr uint64_t kCacheStream = 2;
constexpr uint64_t kBlockTableStream = 100;  // + set index

// The anchor's distribution: N(0,1)/10 clamped to [-1, 1].
constexpr float kInputScale = 0.1f;
constexpr float kInputLimit = 1.0f;

// Moves a host buffer into place when it is used once on the CPU; copies it otherwise.
Buffer place(Buffer& host, Device device, bool last_use) {
  if (!device.is_cuda() && last_use) return std::move(host);
  return host.copy_to(device);
}

// Sequence i's pages are permutation[first_page[i] .. first_page[i] + pages[i]); entries past a
// sequence's last page are never read and stay 0.
Buffer make_block_table(const std::vector<int64_t>& pages_per_sequence, int64_t max_pages,
                        int64_t num_blocks, uint64_t seed) {
  std::vector<int32_t> permutation(static_cast<size_t>(num_blocks));
  std::iota(permutation.begin(), permutation.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(permutation.begin(), permutation.end(), rng);

  const auto batch = static_cast<int64_t>(pages_per_sequence.size());
  Buffer table(static_cast<size_t>(batch * max_pages) * sizeof(int32_t), Device::cpu());
  table.zero();
  int32_t* rows = table.as<int32_t>();
  int64_t next = 0;
  for (int64_t i = 0; i < batch; ++i) {
    for (int64_t page = 0; page < pages_per_sequence[i]; ++page) {
      rows[i * max_pages + page] = permutation[static_cast<size_t>(next++)];
    }
  }
  return table;
}

}  // namespace

CaseInputs build_case_inputs(const BenchCase& bench_case, DType dtype, Device device, uint64_t seed,
                             int num_sets) {
  const BenchCase& c = bench_case;
  const auto element_size = dtype_size(dtype);
  const int64_t page = c.page_block_size;

  std::vector<int64_t> pages_per_sequence;
  for (int32_t length : c.cache_seqlens) pages_per_sequence.push_back((length + page - 1) / page);
  const int64_t max_pages =
      std::max<int64_t>(1, *std::max_element(pages_per_sequence.begin(), pages_per_sequence.end()));
  // At least one page, so that an all-empty batch still has a valid cache to point at.
  const int64_t num_blocks = std::max<int64_t>(
      1, std::accumulate(pages_per_sequence.begin(), pages_per_sequence.end(), int64_t{0}));

  const int64_t q_elements = int64_t{c.b} * c.s_q * c.h_q * c.d;
  const int64_t cache_elements = num_blocks * page * c.h_kv * c.d;
  const int64_t out_elements = int64_t{c.b} * c.s_q * c.h_q * c.dv;
  const int64_t lse_elements = int64_t{c.b} * c.h_q * c.s_q;

  Buffer q_host(static_cast<size_t>(q_elements) * element_size, Device::cpu());
  fill_clamped_normal_16bit(q_host.as<uint16_t>(), static_cast<size_t>(q_elements), dtype,
                            derive_seed(seed, kQStream), kInputScale, kInputLimit);
  Buffer cache_host(static_cast<size_t>(cache_elements) * element_size, Device::cpu());
  fill_clamped_normal_16bit(cache_host.as<uint16_t>(), static_cast<size_t>(cache_elements), dtype,
                            derive_seed(seed, kCacheStream), kInputScale, kInputLimit);
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
    Buffer table_host = make_block_table(pages_per_sequence, max_pages, num_blocks,
                                         derive_seed(seed, kBlockTableStream + s));
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
