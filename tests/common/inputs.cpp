#include "common/inputs.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "common/numeric.h"
#include "flashmla/decode.h"

namespace flashmla::test {

namespace {
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr int kFP8Latent = 512, kFP8Group = 128, kFP8Rope = 64;
}  // namespace

double random_activation(Rng& rng) {
  return std::clamp(rng.normal() / 10.0, -1.0, 1.0);
}

HalfTensor random_half_tensor(Rng& rng, DType dtype, const std::vector<int64_t>& shape) {
  HalfTensor t(dtype, shape);
  for (auto& bits : t.bits) bits = to_half(dtype, random_activation(rng));
  return t;
}

TensorView KVCache::view() {
  void* data =
      dtype == DType::kUInt8 ? static_cast<void*>(bytes.data()) : static_cast<void*>(halves.data());
  const int64_t width = dtype == DType::kUInt8 ? kFP8RowBytes : d;
  return TensorView::strided(data, dtype, {num_blocks, page_block_size, h_kv, width},
                             {block_stride, row_stride, head_stride, 1});
}

KVCache make_nan_cache(DType dtype, int num_blocks, int page_block_size, int h_kv, int d,
                       int padding_rows) {
  KVCache c;
  c.dtype = dtype;
  c.num_blocks = num_blocks;
  c.page_block_size = page_block_size;
  c.h_kv = h_kv;
  c.d = d;
  c.head_stride = d;
  c.row_stride = static_cast<int64_t>(h_kv) * d;
  c.block_stride = c.row_stride * (page_block_size + padding_rows);
  c.halves.assign(static_cast<size_t>(c.block_stride) * num_blocks, half_nan(dtype));
  c.values.assign(static_cast<size_t>(c.num_rows()) * h_kv * d, kNaN);
  return c;
}

void fill_random_row(Rng& rng, KVCache& c, int64_t row) {
  const int64_t block = row / c.page_block_size, offset = row % c.page_block_size;
  for (int h = 0; h < c.h_kv; ++h) {
    uint16_t* stored =
        c.halves.data() + block * c.block_stride + offset * c.row_stride + h * c.head_stride;
    float* value = c.values.data() + (row * c.h_kv + h) * c.d;
    for (int i = 0; i < c.d; ++i) {
      stored[i] = to_half(c.dtype, random_activation(rng));
      value[i] = static_cast<float>(half_value(c.dtype, stored[i]));
    }
  }
}

KVCache quantize_cache_fp8(KVCache& bf16) {
  KVCache q;
  q.dtype = DType::kUInt8;
  q.num_blocks = bf16.num_blocks;
  q.page_block_size = bf16.page_block_size;
  q.h_kv = 1;
  q.d = 576;
  q.head_stride = kFP8RowBytes;
  q.row_stride = kFP8RowBytes;
  q.block_stride = static_cast<int64_t>(kFP8RowBytes) * (q.page_block_size + 1);
  q.bytes.assign(static_cast<size_t>(q.block_stride) * q.num_blocks, 0xff);
  q.values.assign(static_cast<size_t>(q.num_rows()) * q.d, kNaN);
  quantize_kv_cache_fp8(bf16.view(), q.view());

  for (int64_t row = 0; row < q.num_rows(); ++row) {
    uint8_t* stored = q.bytes.data() + row / q.page_block_size * q.block_stride +
                      row % q.page_block_size * q.row_stride;
    const float* source = bf16.row_values(row, 0);
    if (std::isnan(source[0])) {
      std::memset(stored, 0xff, kFP8RowBytes);
      continue;
    }
    float* value = q.values.data() + row * q.d;
    for (int g = 0; g < kFP8Latent / kFP8Group; ++g) {
      float scale;
      std::memcpy(&scale, stored + kFP8Latent + 4 * g, sizeof(scale));
      for (int i = g * kFP8Group; i < (g + 1) * kFP8Group; ++i) {
        value[i] = static_cast<float>(e4m3_value(stored[i]) * scale);
      }
    }
    for (int i = 0; i < kFP8Rope; ++i) {
      uint16_t bits;
      std::memcpy(&bits, stored + kFP8Latent + 16 + 2 * i, sizeof(bits));
      value[kFP8Latent + i] = static_cast<float>(bf16_value(bits));
    }
  }
  return q;
}

PagedKV make_paged_kv(Rng& rng, const std::vector<int32_t>& seqlens, int page_block_size, int h_kv,
                      int d, DType dtype, int extra_pages) {
  PagedKV p;
  p.seqlens = seqlens;
  int used_pages = 0;
  for (int32_t len : seqlens) {
    const int pages = (len + page_block_size - 1) / page_block_size;
    used_pages += pages;
    p.max_blocks = std::max(p.max_blocks, pages);
  }
  p.max_blocks += 1;  // at least one garbage column for every sequence
  const int num_blocks = std::max(1, used_pages + extra_pages);
  p.cache = make_nan_cache(dtype, num_blocks, page_block_size, h_kv, d);

  std::vector<int32_t> pages(num_blocks);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng.engine());
  const int batch = static_cast<int>(seqlens.size());
  p.block_table.resize(static_cast<size_t>(batch) * p.max_blocks);
  int next_page = 0;
  for (int i = 0; i < batch; ++i) {
    const int seq_pages = (seqlens[i] + page_block_size - 1) / page_block_size;
    for (int j = 0; j < p.max_blocks; ++j) {
      int32_t& entry = p.block_table[static_cast<size_t>(i) * p.max_blocks + j];
      if (j < seq_pages) {
        entry = pages[next_page++];
      } else {  // garbage past the last page: out of range either way
        entry =
            rng.coin() ? -rng.uniform_int(1, 1 << 20) : num_blocks + rng.uniform_int(0, 1 << 20);
      }
    }
    for (int t = 0; t < seqlens[i]; ++t) fill_random_row(rng, p.cache, p.row_of(i, t));
  }
  return p;
}

}  // namespace flashmla::test
