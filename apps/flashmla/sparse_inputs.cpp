#include "sparse_inputs.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numbers>
#include <numeric>
#include <random>
#include <sstream>
#include <utility>

#include "inputs.h"
#include "random_fill.h"

namespace flashmla::cli {
namespace {

// A cap on drawn lengths, far out in the normal's tail for any mean that fits a GPU.
constexpr int64_t kMaxDrawnLength = int64_t{1} << 22;

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, n) for n >= 1 (multiply-shift of 32 random bits; bias below 2^-32 * n).
  int32_t below(int64_t n) {
    return static_cast<int32_t>(((engine_() >> 32) * static_cast<uint64_t>(n)) >> 32);
  }
  // N(0, 1) by Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  double normal() {
    const double u1 = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
    const double u2 = static_cast<double>(engine_() >> 11) * 0x1.0p-53;
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 engine_;
};

// FlashMLA's varlen tests: random.normalvariate(mean, mean / 2), at least s_q.
std::vector<int32_t> draw_seqlens(const BenchCase& c, uint64_t seed) {
  Rng rng(derive_seed(seed, seed_stream::kSeqlens));
  const auto mean = static_cast<double>(c.s_k_nominal);
  std::vector<int32_t> lengths;
  for (int i = 0; i < c.b; ++i) {
    const int64_t drawn = std::llround(mean + 0.5 * mean * rng.normal());
    lengths.push_back(static_cast<int32_t>(std::clamp<int64_t>(drawn, c.s_q, kMaxDrawnLength)));
  }
  return lengths;
}

// Fills slots[0, min(topk, length)) with distinct positions uniform over [0, length), in random
// order. `taken` has `length` zero entries and is left so.
void choose_positions(int32_t length, int topk, Rng& rng, std::vector<uint8_t>& taken,
                      int32_t* slots) {
  const int count = static_cast<int>(std::min<int64_t>(topk, length));
  if (int64_t{2} * topk > length) {
    // Dense choice: a partial Fisher-Yates shuffle of all positions.
    std::vector<int32_t> all(static_cast<size_t>(length));
    std::iota(all.begin(), all.end(), 0);
    for (int k = 0; k < count; ++k) {
      std::swap(all[static_cast<size_t>(k)], all[static_cast<size_t>(k + rng.below(length - k))]);
    }
    std::copy_n(all.begin(), count, slots);
    return;
  }
  // Sparse choice: draw until `count` distinct positions were seen.
  for (int k = 0; k < count;) {
    const int32_t position = rng.below(length);
    if (taken[static_cast<size_t>(position)] == 0) {
      taken[static_cast<size_t>(position)] = 1;
      slots[k++] = position;
    }
  }
  for (int k = 0; k < count; ++k) taken[static_cast<size_t>(slots[k])] = 0;
}

}  // namespace

SparseLayout make_sparse_layout(const BenchCase& bench_case, uint64_t seed) {
  const BenchCase& c = bench_case;
  SparseLayout layout;
  layout.cache_seqlens = c.seqlens_drawn ? draw_seqlens(c, seed) : c.cache_seqlens;
  layout.positions.assign(static_cast<size_t>(c.b) * c.s_q * c.topk, -1);
  const uint64_t index_seed = derive_seed(seed, seed_stream::kIndices);
  std::vector<uint8_t> taken;
  std::vector<uint8_t> seen;
  for (int i = 0; i < c.b; ++i) {
    const int32_t length = layout.cache_seqlens[static_cast<size_t>(i)];
    Rng rng(derive_seed(index_seed, static_cast<uint64_t>(i)));
    taken.assign(static_cast<size_t>(length), 0);
    seen.assign(static_cast<size_t>(length), 0);
    for (int j = 0; j < c.s_q; ++j) {
      int32_t* slots = layout.positions.data() + (static_cast<size_t>(i) * c.s_q + j) * c.topk;
      choose_positions(length, c.topk, rng, taken, slots);
      for (int k = 0; k < c.topk && slots[k] >= 0; ++k) {
        ++layout.attended_tokens;
        uint8_t& mark = seen[static_cast<size_t>(slots[k])];
        layout.distinct_rows += mark == 0 ? 1 : 0;
        mark = 1;
      }
    }
  }
  return layout;
}

std::string sparse_inputs_description(const BenchCase& bench_case) {
  std::ostringstream text;
  if (bench_case.seqlens_drawn) {
    text << "cache_seqlens drawn per sequence as max(s_q, round(N(mean = " << bench_case.s_k_nominal
         << ", sd = " << bench_case.s_k_nominal / 2.0
         << "))) (FlashMLA's varlen tests: random.normalvariate(s_kv, s_kv / 2))";
  } else {
    text << "cache_seqlens as listed";
  }
  text << "; each query's indices: min(topk, len) distinct token positions uniform over its "
          "sequence, in random order, through a random page permutation; other slots -1";
  return text.str();
}

double sparse_flops(const BenchCase& bench_case, const SparseLayout& layout) {
  const BenchCase& c = bench_case;
  return 2.0 * c.h_q * static_cast<double>(layout.attended_tokens) * (c.d + c.dv);
}

double sparse_bytes(const BenchCase& bench_case, const SparseLayout& layout, DType q_dtype,
                    bool fp8_cache) {
  const BenchCase& c = bench_case;
  const auto element = static_cast<double>(dtype_size(q_dtype));
  const double row_bytes = fp8_cache ? kFP8RowBytes : c.d * element;
  const double q_and_out = double{1} * c.b * c.s_q * c.h_q * (c.d + c.dv) * element;
  return static_cast<double>(layout.distinct_rows) * row_bytes + q_and_out;
}

SparseCacheBytes sparse_cache_bytes(const BenchCase& bench_case, const SparseLayout& layout,
                                    DType q_dtype, bool fp8_cache) {
  const BenchCase& c = bench_case;
  const auto rows =
      static_cast<double>(paged_layout(layout.cache_seqlens, c.page_block_size).num_blocks) *
      c.page_block_size;
  const double row16 = c.d * static_cast<double>(dtype_size(q_dtype));
  if (!fp8_cache) return {rows * row16, 0};
  return {rows * kFP8RowBytes, rows * row16};
}

SparseCaseInputs build_sparse_inputs(const BenchCase& bench_case, const SparseLayout& layout,
                                     DType q_dtype, bool fp8_cache, Device device, uint64_t seed,
                                     int num_sets) {
  const BenchCase& c = bench_case;
  const auto element_size = dtype_size(q_dtype);
  const PagedLayout paged = paged_layout(layout.cache_seqlens, c.page_block_size);
  const int64_t page = c.page_block_size;
  const int64_t num_blocks = paged.num_blocks;
  const int64_t q_elements = int64_t{c.b} * c.s_q * c.h_q * c.d;
  const int64_t out_elements = int64_t{c.b} * c.s_q * c.h_q * c.dv;
  const int64_t lse_elements = int64_t{c.b} * c.h_q * c.s_q;
  const auto slots = static_cast<int64_t>(layout.positions.size());

  Buffer q_host = random_activations(q_elements, q_dtype, derive_seed(seed, seed_stream::kQ));
  Buffer cache_host =
      random_activations(num_blocks * page * c.d, q_dtype, derive_seed(seed, seed_stream::kCache));
  Buffer sink_host(static_cast<size_t>(c.h_q) * sizeof(float), Device::cpu());
  fill_uniform_fp32(sink_host.as<float>(), static_cast<size_t>(c.h_q),
                    derive_seed(seed, seed_stream::kAttnSink));

  // FP8: the bf16 cache goes to the device once and every set's cache is quantized from it.
  Buffer cache16;
  TensorView cache16_view;
  if (fp8_cache) {
    cache16 = place(cache_host, device, true);
    cache_host = Buffer();  // on CUDA, the host copy is no longer needed
    cache16_view =
        TensorView::contiguous(cache16.data(), q_dtype, {num_blocks, page, 1, c.d}, device);
  }

  SparseCaseInputs inputs;
  inputs.num_blocks = num_blocks;
  for (int s = 0; s < num_sets; ++s) {
    const bool last = s + 1 == num_sets;
    SparseInputSet set;
    SparseDecodeArgs& args = set.args;
    set.q = place(q_host, device, last);
    if (fp8_cache) {
      set.kv_cache = quantize_cache_fp8(cache16_view);
      args.kv_cache = fp8_cache_view(set.kv_cache, num_blocks, page);
    } else {
      set.kv_cache = place(cache_host, device, last);
      args.kv_cache =
          TensorView::contiguous(set.kv_cache.data(), q_dtype, {num_blocks, page, 1, c.d}, device);
    }

    // This set's page permutation turns token positions into cache rows.
    const Buffer table = make_block_table(paged, derive_seed(seed, seed_stream::kBlockTable + s));
    const int32_t* pages = table.as<const int32_t>();
    Buffer indices_host(static_cast<size_t>(slots) * sizeof(int32_t), Device::cpu());
    int32_t* indices = indices_host.as<int32_t>();
    const int64_t slots_per_sequence = int64_t{c.s_q} * c.topk;
    for (int64_t k = 0; k < slots; ++k) {
      const int32_t position = layout.positions[static_cast<size_t>(k)];
      const int64_t sequence = k / slots_per_sequence;
      indices[k] =
          position < 0
              ? -1
              : static_cast<int32_t>(pages[sequence * paged.max_pages + position / page] * page +
                                     position % page);
    }
    set.indices = place(indices_host, device, true);
    args.indices =
        TensorView::contiguous(set.indices.data(), DType::kInt32, {c.b, c.s_q, c.topk}, device);

    if (c.attn_sink) {
      set.attn_sink = place(sink_host, device, last);
      args.attn_sink = TensorView::contiguous(set.attn_sink.data(), DType::kFP32, {c.h_q}, device);
    }
    set.out = Buffer(static_cast<size_t>(out_elements) * element_size, device);
    set.out.zero();
    set.lse = Buffer(static_cast<size_t>(lse_elements) * sizeof(float), device);
    set.lse.zero();
    args.q = TensorView::contiguous(set.q.data(), q_dtype, {c.b, c.s_q, c.h_q, c.d}, device);
    args.out = TensorView::contiguous(set.out.data(), q_dtype, {c.b, c.s_q, c.h_q, c.dv}, device);
    args.lse = TensorView::contiguous(set.lse.data(), DType::kFP32, {c.b, c.h_q, c.s_q}, device);
    args.head_dim_v = c.dv;
    inputs.sets.push_back(std::move(set));
  }
  return inputs;
}

}  // namespace flashmla::cli
