// DecodePlan: the split-KV schedule and its workspace, owned on the plan's device.
#include <algorithm>
#include <vector>

#include "api/backends.h"
#include "api/validate.h"
#include "common/plan_state.h"
#include "common/split_plan.h"

namespace flashmla {

using detail::fail_value;

namespace {

void check_shape(const DecodeShape& s, int head_dim_v) {
  if (s.batch_size < 1) fail_value("plan", "batch_size must be >= 1");
  if (s.s_q < 1) fail_value("plan", "s_q must be >= 1");
  if (s.h_q < 1) fail_value("plan", "h_q must be >= 1");
  if (s.h_kv < 1 || s.h_q % s.h_kv != 0) {
    fail_value("plan", "h_kv = " + std::to_string(s.h_kv) +
                           " must be >= 1 and divide h_q = " + std::to_string(s.h_q));
  }
  if (s.page_block_size < 1) fail_value("plan", "page_block_size must be >= 1");
  if (s.topk < 0) fail_value("plan", "topk must be >= 0 (0: a dense plan)");
  if (s.topk > 0 && s.h_kv != 1) {
    fail_value("plan", "a sparse plan (topk > 0) needs h_kv = 1, got " + std::to_string(s.h_kv));
  }
  if (head_dim_v < 1) fail_value("head_dim_v", "must be >= 1");
}

// Sparse plans: every query attends shape.topk index slots, so the schedule is fixed by the
// shape. Planned on the host, then copied once to a CUDA plan's buffers.
void plan_sparse(detail::PlanState& st, bool on_device) {
  const std::vector<int32_t> lengths(st.plan_sequences, st.shape.topk);
  std::vector<int32_t> ints(static_cast<size_t>(st.num_workers) * detail::kScheduleStride +
                            st.plan_sequences + 1);
  int32_t* schedule = on_device ? ints.data() : st.worker_schedule;
  int32_t* offsets =
      on_device ? ints.data() + st.num_workers * detail::kScheduleStride : st.split_offsets;
  detail::plan_splits(lengths.data(), st.plan_sequences, st.block_n, st.num_workers, st.fixed_cost,
                      schedule, offsets);
#if defined(FLASHMLA_WITH_CUDA)
  if (on_device) {
    detail::cuda::copy_to_device(st.worker_schedule, schedule,
                                 st.num_workers * detail::kScheduleStride * sizeof(int32_t),
                                 st.device.index);
    detail::cuda::copy_to_device(st.split_offsets, offsets,
                                 (st.plan_sequences + 1) * sizeof(int32_t), st.device.index);
  }
#endif
  st.planned = true;
}

constexpr size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

DecodePlan::DecodePlan(const DecodeShape& shape, Device device, int head_dim_v, int num_workers)
    : state_(std::make_unique<detail::PlanState>()) {
  check_shape(shape, head_dim_v);
  detail::PlanState& st = *state_;
  st.shape = shape;
  st.device = device;
  st.head_dim_v = head_dim_v;

  // A sparse plan schedules b * s_q independent queries of h_q rows each, like a dense plan
  // of that many one-token sequences.
  const bool sparse = shape.topk > 0;
  DecodeShape schedule_shape = shape;
  if (sparse) {
    schedule_shape = {shape.batch_size * shape.s_q, 1,         shape.h_q, 1,
                      shape.page_block_size,        shape.topk};
  }
  st.plan_sequences = schedule_shape.batch_size;
  st.rows_per_sequence = shape.h_q * schedule_shape.s_q;

  if (num_workers < 0) fail_value("num_workers", "must be >= 0 (0: the backend's choice)");
  detail::ScheduleConfig config{};
  if (!device.is_cuda()) {
    config = detail::cpu::schedule_config(schedule_shape);
  } else {
#if defined(FLASHMLA_WITH_CUDA)
    config = detail::cuda::schedule_config(schedule_shape, device.index, num_workers);
#else
    throw Error(ErrorKind::kNotSupported, "plan",
                "this build of flashmla has no CUDA backend (configure with FLASHMLA_CUDA=ON)");
#endif
  }
  st.num_workers = std::max(1, num_workers > 0 ? num_workers : config.num_workers);
  st.block_n = config.block_n;
  st.fixed_cost = config.fixed_cost;
  st.ctas_per_sm = config.ctas_per_sm;
  st.combine_groups = config.combine_groups;
  st.max_splits = st.plan_sequences + st.num_workers;

  const size_t schedule_ints = static_cast<size_t>(st.num_workers) * detail::kScheduleStride;
  const size_t offset_ints = static_cast<size_t>(st.plan_sequences) + 1;
  const size_t rows = static_cast<size_t>(st.max_splits) * st.rows_per_sequence;
  const size_t out_floats = rows * static_cast<size_t>(head_dim_v);

  if (!device.is_cuda()) {
    st.host_ints.assign(schedule_ints + offset_ints, 0);
    st.host_floats.assign(out_floats + rows, 0.0f);
    st.worker_schedule = st.host_ints.data();
    st.split_offsets = st.host_ints.data() + schedule_ints;
    st.partial_out = st.host_floats.data();
    st.partial_lse = st.host_floats.data() + out_floats;
    if (sparse) plan_sparse(st, false);
    return;
  }
#if defined(FLASHMLA_WITH_CUDA)
  // One allocation, carved into 256-byte aligned pieces.
  const size_t schedule_bytes = align_up(schedule_ints * sizeof(int32_t), 256);
  const size_t offset_bytes = align_up(offset_ints * sizeof(int32_t), 256);
  const size_t out_bytes = align_up(out_floats * sizeof(float), 256);
  const size_t lse_bytes = align_up(rows * sizeof(float), 256);
  auto* base = static_cast<char*>(detail::cuda::device_alloc(
      schedule_bytes + offset_bytes + out_bytes + lse_bytes, device.index));
  st.device_buffer = base;
  st.worker_schedule = reinterpret_cast<int32_t*>(base);
  st.split_offsets = reinterpret_cast<int32_t*>(base + schedule_bytes);
  st.partial_out = reinterpret_cast<float*>(base + schedule_bytes + offset_bytes);
  st.partial_lse = reinterpret_cast<float*>(base + schedule_bytes + offset_bytes + out_bytes);
  if (sparse) plan_sparse(st, true);
#endif
}

DecodePlan::~DecodePlan() {
#if defined(FLASHMLA_WITH_CUDA)
  if (state_ && state_->device_buffer) {
    detail::cuda::device_free(state_->device_buffer, state_->device.index);
  }
#endif
}

DecodePlan::DecodePlan(DecodePlan&&) noexcept = default;
DecodePlan& DecodePlan::operator=(DecodePlan&& other) noexcept {
  if (this != &other) {
    DecodePlan dropped(std::move(*this));  // frees our buffers
    state_ = std::move(other.state_);
  }
  return *this;
}

void DecodePlan::update(const TensorView& cache_seqlens, void* stream) {
  detail::PlanState& st = *state_;
  if (st.shape.topk > 0) {
    fail_value("plan", "is a sparse plan (topk = " + std::to_string(st.shape.topk) +
                           "): it is planned when made and takes no cache_seqlens");
  }
  detail::TensorCheck(cache_seqlens, "cache_seqlens", "[b]")
      .rank(1)
      .dtype({DType::kInt32})
      .device(st.device, "the plan")
      .dim(0, st.shape.batch_size, "b, the plan's batch_size")
      .last_dim_contiguous()
      .non_null();
  const auto* seqlens = cache_seqlens.ptr<const int32_t>();
  if (!st.device.is_cuda()) {
    for (int i = 0; i < st.shape.batch_size; ++i) {
      if (seqlens[i] < 0) {
        fail_value("cache_seqlens", "entry " + std::to_string(i) + " is negative (" +
                                        std::to_string(seqlens[i]) + ")");
      }
    }
    detail::plan_splits(seqlens, st.shape.batch_size, st.block_n, st.num_workers, st.fixed_cost,
                        st.worker_schedule, st.split_offsets);
    st.planned_seqlens.assign(seqlens, seqlens + st.shape.batch_size);
  } else {
#if defined(FLASHMLA_WITH_CUDA)
    detail::cuda::DeviceGuard guard(st.device.index);
    detail::cuda::plan_splits(seqlens, st.shape.batch_size,
                              {st.num_workers, st.block_n, st.fixed_cost}, st.worker_schedule,
                              st.split_offsets, stream);
#endif
  }
  (void)stream;
  st.planned = true;
}

const DecodeShape& DecodePlan::shape() const {
  return state_->shape;
}
Device DecodePlan::device() const {
  return state_->device;
}
int DecodePlan::head_dim_v() const {
  return state_->head_dim_v;
}
bool DecodePlan::planned() const {
  return state_->planned;
}
int DecodePlan::num_workers() const {
  return state_->num_workers;
}
int DecodePlan::block_n() const {
  return state_->block_n;
}
const detail::PlanState& DecodePlan::state() const {
  return *state_;
}

}  // namespace flashmla
