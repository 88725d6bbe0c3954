// Dense MLA decode over a paged KV cache (MLA.md sections 2 and 3), following the split-KV
// schedule of the plan: each work item is (schedule worker, KV head, block of query rows); it
// walks the worker's pieces of sequences, and writes either the final output (a sequence with
// one split) or a partial one that combine_splits merges afterwards.
#include <algorithm>
#include <vector>

#include "api/backends.h"
#include "common/split_plan.h"
#include "cpu/attention_block.h"
#include "cpu/combine.h"
#include "cpu/output.h"
#include "cpu/row_convert.h"

namespace flashmla::detail::cpu {

namespace {

constexpr float kLog2e = 1.44269504089f;

// The query rows of one KV head: row r is query token r / q_per_kv and query head
// kv_head * q_per_kv + r % q_per_kv. A block is a contiguous range of these rows.
struct RowBlock {
  int kv_head;
  int begin, end;  // rows [begin, end)
};

// One piece of the schedule: tokens [token_begin, token_end) of sequence `seq`.
struct Piece {
  int seq;
  int token_begin, token_end;
  int split;  // index into the partial buffers, or -1: the sequence's only piece
};

class DensePieceRunner {
 public:
  DensePieceRunner(const DenseDecodeParams& p, int max_rows)
      : p_(p),
        output_(OutputView::of(p)),
        block_(max_rows, p.d, p.dv),
        visible_end_(max_rows),
        visible_(max_rows),
        out_row_(p.dv),
        tile_rows_(2 * kTileTokens),
        row_bytes_(cache_row_bytes(p.kv, p.d)) {}

  void run(const RowBlock& rows, const Piece& piece) {
    const int num_rows = rows.end - rows.begin;
    const int seq_len = p_.cache_seqlens[piece.seq];
    block_.begin(num_rows);
    load_queries(rows, piece.seq, seq_len);

    // Cache rows of the current tile and of the next one (prefetched while computing).
    const uint8_t** current_rows = tile_rows_.data();
    const uint8_t** next_rows = tile_rows_.data() + kTileTokens;
    int next_count = gather_rows(rows.kv_head, piece, piece.token_begin, next_rows);
    for (int tile_begin = piece.token_begin; tile_begin < piece.token_end;
         tile_begin += kTileTokens) {
      const int num_tokens = next_count;
      std::swap(current_rows, next_rows);
      int any_visible = 0;
      for (int r = 0; r < num_rows; ++r) {
        visible_[r] = std::clamp(visible_end_[r] - tile_begin, 0, num_tokens);
        any_visible |= visible_[r];
      }
      if (any_visible == 0) break;  // causal masks are prefixes: later tiles are hidden too
      for (int t = 0; t < num_tokens; ++t) {
        cache_row_to_float(p_.kv, current_rows[t], p_.d, block_.tile_row(t));
      }
      next_count = gather_rows(rows.kv_head, piece, tile_begin + kTileTokens, next_rows);
      block_.attend(num_tokens, visible_.data(), {next_rows, next_count, row_bytes_});
    }

    for (int r = 0; r < num_rows; ++r) {
      const int s = (rows.begin + r) / p_.q_per_kv;
      const int h = rows.kv_head * p_.q_per_kv + (rows.begin + r) % p_.q_per_kv;
      if (piece.split < 0) {
        const float lse = block_.finish_row(r, out_row_.data());
        output_.write(piece.seq, s, h, out_row_.data(), lse);
      } else {
        const int64_t partial_row = (static_cast<int64_t>(piece.split) * p_.s_q + s) * p_.h_q + h;
        p_.schedule.partial_lse[partial_row] =
            block_.finish_row(r, p_.schedule.partial_out + partial_row * p_.dv);
      }
    }
  }

 private:
  // Converts the block's query rows to fp32, pre-scaled into the log2 domain, and computes
  // how many keys each row may see (causal: query j sees keys 0 .. s_k - s_q + j).
  void load_queries(const RowBlock& rows, int seq, int seq_len) {
    const float q_multiplier = p_.softmax_scale * kLog2e;
    const auto* q = static_cast<const uint16_t*>(p_.q) + seq * p_.q_batch_stride;
    for (int r = 0; r < rows.end - rows.begin; ++r) {
      const int s = (rows.begin + r) / p_.q_per_kv;
      const int h = rows.kv_head * p_.q_per_kv + (rows.begin + r) % p_.q_per_kv;
      half_row_to_float(q + s * p_.q_seq_stride + h * p_.q_head_stride,
                        p_.act_type == ActType::kBF16, p_.d, q_multiplier, block_.q_row(r));
      visible_end_[r] = p_.causal ? seq_len - p_.s_q + s + 1 : seq_len;
    }
  }

  // Addresses of the cache rows of tokens [tile_begin, min(tile_begin + kTileTokens,
  // piece end)) into `rows`; returns their number (0 past the end of the piece).
  int gather_rows(int kv_head, const Piece& piece, int tile_begin, const uint8_t** rows) const {
    const int32_t* pages = p_.block_table + piece.seq * p_.block_table_batch_stride;
    const int page_size = p_.kv.page_block_size;
    const int count = std::clamp(piece.token_end - tile_begin, 0, kTileTokens);
    for (int t = 0; t < count; ++t) {
      const int token = tile_begin + t;
      rows[t] = cache_row(p_.kv, pages[token / page_size], token % page_size, kv_head);
    }
    return count;
  }

  const DenseDecodeParams& p_;
  const OutputView output_;
  RowBlockAttention block_;
  std::vector<int> visible_end_;           // [rows]: keys [0, visible_end) are visible
  std::vector<int> visible_;               // [rows]: visible tokens of the current tile
  std::vector<float> out_row_;             // [dv]
  std::vector<const uint8_t*> tile_rows_;  // [2, kTileTokens]: current and next tile
  int row_bytes_;                          // bytes of one cache row
};

}  // namespace

void dense_decode(const DenseDecodeParams& p) {
  const ScheduleView& schedule = p.schedule;
  // Query rows sharing a KV head, cut into balanced blocks of at most kMaxBlockRows.
  const int rows_per_head = p.s_q * p.q_per_kv;
  const int blocks_per_head = row_blocks_per_kv_head(p.s_q, p.q_per_kv);
  const int rows_per_block = (rows_per_head + blocks_per_head - 1) / blocks_per_head;
  const int64_t blocks_per_worker = static_cast<int64_t>(p.h_kv) * blocks_per_head;
  const int64_t num_items = schedule.num_workers * blocks_per_worker;

#pragma omp parallel
  {
    DensePieceRunner runner(p, rows_per_block);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < num_items; ++item) {
      const int worker = static_cast<int>(item / blocks_per_worker);
      const int kv_head = static_cast<int>(item % blocks_per_worker) / blocks_per_head;
      const int block = static_cast<int>(item % blocks_per_worker) % blocks_per_head;
      const RowBlock rows{kv_head, block * rows_per_block,
                          std::min(rows_per_head, (block + 1) * rows_per_block)};

      const int32_t* work = schedule.worker_schedule + worker * kScheduleStride;
      for (int seq = work[kBeginSeq]; seq <= work[kEndSeq]; ++seq) {
        const bool first = seq == work[kBeginSeq], last = seq == work[kEndSeq];
        Piece piece{seq, first ? work[kBeginToken] : 0,
                    last ? work[kEndToken] : p.cache_seqlens[seq], -1};
        if (num_splits_of(schedule.split_offsets, seq) > 1) {
          piece.split = schedule.split_offsets[seq] + (first ? work[kBeginSplit] : 0);
        }
        runner.run(rows, piece);
      }
    }
  }
  combine_splits(p);
}

}  // namespace flashmla::detail::cpu
