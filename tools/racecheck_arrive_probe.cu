// Does compute-sanitizer's racecheck honour bar.arrive -> bar.sync ordering?
//
//   nvcc -arch=sm_90a -o /tmp/probe tools/racecheck_arrive_probe.cu
//   compute-sanitizer --tool racecheck /tmp/probe
//
// Two warpgroups hand shared memory back and forth the way the ping-pong decode loop does: the
// producer writes and arrives on barrier 1, the consumer syncs on it and reads; the consumer
// arrives on barrier 2 when done, and the producer syncs on it before it writes again. Per the
// PTX memory model both hand-offs are ordered. On the H200 with CUDA 13.0 racecheck still reports
// one hazard (512 accesses), so its reports on kernels built this way need this context.
#include <cstdio>

__global__ void handoff(float* out) {
  __shared__ float s[128];
  const int t = threadIdx.x;
  if (t < 128) {
    s[t] = t;
    asm volatile("bar.arrive 1, 256;" ::: "memory");
    asm volatile("bar.sync 2, 256;" ::: "memory");
    s[t] = 2 * t;  // after the consumer's read (barrier 2)
  } else {
    asm volatile("bar.sync 1, 256;" ::: "memory");
    out[t - 128] = s[t - 128];  // after the producer's write (barrier 1)
    asm volatile("bar.arrive 2, 256;" ::: "memory");
  }
}

int main() {
  float* out = nullptr;
  cudaMalloc(&out, 128 * sizeof(float));
  handoff<<<1, 256>>>(out);
  std::printf("kernel: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
  cudaFree(out);
  return 0;
}
