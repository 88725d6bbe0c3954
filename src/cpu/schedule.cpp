// The CPU backend's split-KV schedule: a few pieces per thread, so that dynamic scheduling
// evens out what the cost model misses, without making the combine step expensive.
#include <omp.h>

#include <algorithm>

#include "api/backends.h"
#include "cpu/attention_block.h"

namespace flashmla::detail::cpu {

ScheduleConfig schedule_config(const DecodeShape& shape) {
  (void)shape;
  constexpr int kWorkersPerThread = 4;
  // One unit is one KV tile; starting a piece (loading queries, writing a partial) and merging
  // it costs roughly one tile.
  constexpr int kFixedCost = 1;
  return {std::max(1, kWorkersPerThread * omp_get_max_threads()), kTileTokens, kFixedCost};
}

}  // namespace flashmla::detail::cpu
