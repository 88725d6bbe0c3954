// The decode kernel's arguments: one plain struct for the dense and the token-sparse families,
// filled on the host from the API's params (decode.cu). The kernel sees
// the same "plan sequence" abstraction in both: a plan sequence is one batch entry (dense: its
// s_q tokens are folded into the query rows) or one query token (sparse: every token has its
// own index list), and its KV rows come from a block table or from index lists.
#pragma once

#include <cstdint>

#include "common/decode_params.h"

namespace flashmla::detail::cuda::sm90 {

// Up to two index lists per query: indices into the main cache, then extra_indices into the
// extra cache; together they form the query's slots 0 .. topk + extra_topk - 1.
struct IndexListView {
  KVCacheView kv;                    // data == nullptr when the list is absent
  const int32_t* indices = nullptr;  // [b, s_q, topk]
  int64_t batch_stride = 0, seq_stride = 0;
  int topk = 0;                          // slots of this list
  const int32_t* topk_length = nullptr;  // [b]: only the first topk_length[b] slots count
};

struct DecodeKernelArgs {
  int s_q, h_q, h_kv, q_per_kv, dv;
  int rows;          // query rows per (plan sequence, KV head)
  int row_tiles;     // ceil(rows / kRows)
  int fold;          // plan sequences per batch entry: 1 (dense) or s_q (sparse)
  int plan_seqs;     // b * fold
  float scale_log2;  // softmax_scale * log2(e): scores are kept in the exp2 domain
  bool causal;
  bool q_aligned;   // q rows start on 16 bytes: cp.async may be used
  bool kv_aligned;  // likewise for KV rows

  const void* q;  // [b, s_q, h_q, d]
  int64_t q_batch_stride, q_seq_stride, q_head_stride;
  void* out;  // [b, s_q, h_q, dv]
  int64_t out_batch_stride, out_seq_stride, out_head_stride;
  float* lse;  // [b, h_q, s_q]
  int64_t lse_batch_stride, lse_head_stride, lse_seq_stride;
  const float* attn_sink;  // [h_q] or nullptr

  // Dense: KV rows of plan sequence b are tokens 0 .. cache_seqlens[b] - 1 through the table.
  KVCacheView kv;
  const int32_t* block_table;  // [b, max_blocks_per_seq]
  int64_t block_table_batch_stride;
  int max_blocks_per_seq;
  const int32_t* cache_seqlens;  // [b]

  // Sparse: every plan sequence has `sparse_slots` slots, from lists[0] then lists[1].
  IndexListView lists[2];
  int sparse_slots;

  ScheduleView schedule;
};

}  // namespace flashmla::detail::cuda::sm90
