// The CPU backend's split-KV schedule. Dense decode runs one work item per (schedule worker,
// KV head, block of query rows); a few items per thread let dynamic scheduling even out what
// the cost model misses, while few workers keep the splits (and the combine step) cheap.
#include <omp.h>

#include <algorithm>

#include "api/backends.h"
#include "cpu/attention_block.h"

namespace flashmla::detail::cpu {

ScheduleConfig schedule_config(const DecodeShape& shape) {
  constexpr int kItemsPerThread = 4;
  // One unit is one KV tile; starting a piece (loading queries, writing a partial) and merging
  // it costs roughly one tile.
  constexpr int kFixedCost = 1;
  const int items_per_worker =
      shape.h_kv * row_blocks_per_kv_head(shape.s_q, std::max(1, shape.h_q / shape.h_kv));
  const int wanted_items = kItemsPerThread * omp_get_max_threads();
  const int num_workers = std::max(1, (wanted_items + items_per_worker - 1) / items_per_worker);
  return {num_workers, kTileTokens, kFixedCost};
}

}  // namespace flashmla::detail::cpu
