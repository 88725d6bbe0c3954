// Per-device facts the CUDA backend needs on the host, read once and cached.
#pragma once

namespace flashmla::detail::cuda {

// Multiprocessor count of `device` (throws Error(kRuntime) on failure).
int sm_count(int device);

// Raises a kernel's dynamic shared-memory limit once per (kernel, device); the attribute is
// per device, so it is set again when a kernel first runs on another one.
void set_max_dynamic_smem(const void* kernel, int bytes);

}  // namespace flashmla::detail::cuda
