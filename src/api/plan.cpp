// DecodePlan: the split-KV schedule and its workspace, owned on the plan's device.
#include <algorithm>

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
  if (head_dim_v < 1) fail_value("head_dim_v", "must be >= 1");
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

  detail::ScheduleConfig config{};
  if (!device.is_cuda()) {
    config = detail::cpu::schedule_config(shape);
  } else {
#if defined(FLASHMLA_WITH_CUDA)
    config = detail::cuda::schedule_config(shape, device.index);
#else
    throw Error(ErrorKind::kNotSupported, "plan",
                "this build of flashmla has no CUDA backend (configure with FLASHMLA_CUDA=ON)");
#endif
  }
  if (num_workers < 0) fail_value("num_workers", "must be >= 0 (0: the backend's choice)");
  st.num_workers = std::max(1, num_workers > 0 ? num_workers : config.num_workers);
  st.block_n = config.block_n;
  st.fixed_cost = config.fixed_cost;
  st.max_splits = shape.batch_size + st.num_workers;

  const size_t schedule_ints = static_cast<size_t>(st.num_workers) * detail::kScheduleStride;
  const size_t offset_ints = static_cast<size_t>(shape.batch_size) + 1;
  const size_t rows = static_cast<size_t>(st.max_splits) * shape.s_q * shape.h_q;
  const size_t out_floats = rows * static_cast<size_t>(head_dim_v);

  if (!device.is_cuda()) {
    st.host_ints.assign(schedule_ints + offset_ints, 0);
    st.host_floats.assign(out_floats + rows, 0.0f);
    st.worker_schedule = st.host_ints.data();
    st.split_offsets = st.host_ints.data() + schedule_ints;
    st.partial_out = st.host_floats.data();
    st.partial_lse = st.host_floats.data() + out_floats;
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
