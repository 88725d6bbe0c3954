// Token-sparse MLA decode (MLA.md section 4): every query token attends its own list of cache
// rows (indices, then extra_indices into a second cache) in one softmax, with an optional
// attention sink. One work item is (sequence, query token, block of heads); h_kv is 1.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "api/backends.h"
#include "cpu/attention_block.h"
#include "cpu/output.h"
#include "cpu/row_convert.h"

namespace flashmla::detail::cpu {

namespace {

constexpr float kLog2e = 1.44269504089f;

// The selected rows of one cache for one query token.
struct IndexList {
  const KVCacheView* kv;
  const int32_t* indices;  // entries: page * page_block_size + offset, or -1 (skipped)
  int count;               // entries that count (topk_length, or all)
};

class SparseQueryRunner {
 public:
  SparseQueryRunner(const SparseDecodeParams& p, int max_rows)
      : p_(p),
        output_(OutputView::of(p)),
        block_(max_rows, p.d, p.dv),
        visible_(max_rows),
        out_row_(p.dv),
        token_rows_(static_cast<size_t>(p.topk) + (p.extra_indices ? p.extra_topk : 0)),
        row_bytes_(cache_row_bytes(p.kv, p.d)) {}

  // Query token `s` of sequence `b`, heads [head_begin, head_end).
  void run(int b, int s, int head_begin, int head_end) {
    const int num_rows = head_end - head_begin;
    block_.begin(num_rows);
    const float q_multiplier = p_.softmax_scale * kLog2e;
    const auto* q =
        static_cast<const uint16_t*>(p_.q) + b * p_.q_batch_stride + s * p_.q_seq_stride;
    for (int r = 0; r < num_rows; ++r) {
      half_row_to_float(q + (head_begin + r) * p_.q_head_stride, p_.act_type == ActType::kBF16,
                        p_.d, q_multiplier, block_.q_row(r));
    }

    // The selected rows of both caches, in order; every row of the block sees all of them.
    const IndexList lists[2] = {
        {&p_.kv, p_.indices + b * p_.indices_batch_stride + s * p_.indices_seq_stride,
         p_.topk_length ? p_.topk_length[b] : p_.topk},
        {&p_.extra_kv,
         p_.extra_indices ? p_.extra_indices + b * p_.extra_indices_batch_stride +
                                s * p_.extra_indices_seq_stride
                          : nullptr,
         !p_.extra_indices      ? 0
         : p_.extra_topk_length ? p_.extra_topk_length[b]
                                : p_.extra_topk},
    };
    int num_tokens = 0;
    for (const IndexList& list : lists) {
      const int page_size = list.kv->page_block_size;
      for (int k = 0; k < list.count; ++k) {
        const int32_t index = list.indices[k];
        if (index >= 0) {
          token_rows_[num_tokens++] = cache_row(*list.kv, index / page_size, index % page_size, 0);
        }
      }
    }

    for (int tile_begin = 0; tile_begin < num_tokens; tile_begin += kTileTokens) {
      const int tile_tokens = std::min(kTileTokens, num_tokens - tile_begin);
      for (int t = 0; t < tile_tokens; ++t) {  // the API checked: both caches share a format
        cache_row_to_float(p_.kv, token_rows_[tile_begin + t], p_.d, block_.tile_row(t));
      }
      std::fill_n(visible_.begin(), num_rows, tile_tokens);
      // Rows are scattered over the cache: fetch the next tile's while computing this one.
      const int next_begin = tile_begin + kTileTokens;
      block_.attend(tile_tokens, visible_.data(),
                    {token_rows_.data() + next_begin,
                     std::clamp(num_tokens - next_begin, 0, kTileTokens), row_bytes_});
    }

    for (int r = 0; r < num_rows; ++r) {
      const int h = head_begin + r;
      const float lse = block_.finish_row(r, out_row_.data());
      if (p_.attn_sink && std::isfinite(lse)) {
        // out * exp(lse) / (exp(lse) + exp(sink)); sink = +inf gives 0, -inf gives 1.
        const float factor = 1.0f / (1.0f + std::exp(p_.attn_sink[h] - lse));
        for (int c = 0; c < p_.dv; ++c) out_row_[c] *= factor;
      }
      output_.write(b, s, h, out_row_.data(), lse);
    }
  }

 private:
  const SparseDecodeParams& p_;
  const OutputView output_;
  RowBlockAttention block_;
  std::vector<int> visible_;                // [rows]
  std::vector<float> out_row_;              // [dv]
  std::vector<const uint8_t*> token_rows_;  // [topk + extra_topk]: the query's valid rows
  int row_bytes_;                           // bytes of one cache row
};

}  // namespace

void sparse_decode(const SparseDecodeParams& p) {
  // Blocks of heads: at most kMaxBlockRows rows, but smaller (down to 16 rows) when there
  // are too few query tokens to keep every thread busy.
  const int num_queries = p.batch_size * p.s_q;
  const int wanted_items = 2 * omp_get_max_threads();
  const int min_blocks = (p.h_q + kMaxBlockRows - 1) / kMaxBlockRows;
  const int max_blocks = std::max(min_blocks, (p.h_q + 15) / 16);
  const int blocks =
      std::clamp((wanted_items + num_queries - 1) / num_queries, min_blocks, max_blocks);
  const int heads_per_block = (p.h_q + blocks - 1) / blocks;
  const int num_blocks = (p.h_q + heads_per_block - 1) / heads_per_block;
  const int64_t num_items = static_cast<int64_t>(num_queries) * num_blocks;

#pragma omp parallel
  {
    SparseQueryRunner runner(p, heads_per_block);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      const int query = static_cast<int>(item / num_blocks);
      const int block = static_cast<int>(item % num_blocks);
      runner.run(query / p.s_q, query % p.s_q, block * heads_per_block,
                 std::min(p.h_q, (block + 1) * heads_per_block));
    }
  }
}

}  // namespace flashmla::detail::cpu
