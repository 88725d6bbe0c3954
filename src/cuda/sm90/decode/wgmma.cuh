// Hopper warpgroup MMA (wgmma) wrappers: shared-memory matrix descriptors and the shapes the
// 64-row decode kernels use: m64n32k16 (S = Q K^T, K-major A and B) and m64n256k16 (O += P V,
// V read N-major) for the serial loop; m64n64k16 and register-A (RS) forms for the ping-pong
// loop. Requires sm_90a. Instruction strings are spelled out (no CUTLASS).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace flashmla::detail::cuda::wgmma {

// Shared-memory matrix descriptor for the 128-byte swizzle mode. Tiles are stored as 8-row x
// 128-byte atoms (1024 bytes, rows at 128 bytes, 16-byte chunk c of row r at c ^ (r % 8)),
// atoms 1024-byte aligned.
//   K-major operand: `stride` = bytes between 8-row groups along M/N (1024 for our tiles);
//                    `leading` is unused by the hardware in this mode.
//   MN-major operand: `leading` = bytes between 64-element column blocks along M/N,
//                     `stride` = bytes between 8-row groups along K.
__device__ __forceinline__ uint64_t make_desc(uint32_t smem_addr, uint32_t leading,
                                              uint32_t stride) {
  return static_cast<uint64_t>((smem_addr & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((leading >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((stride >> 4) & 0x3FFF) << 32) | (uint64_t{1} << 62);
}

// A descriptor held as its two 32-bit words, for stepping through a tile: at(bytes) is the
// descriptor of the address `bytes` further on, one 32-bit add of a constant (CUTLASS steps its
// descriptor iterators the same way). Built with make_desc at every step, each wgmma cost ~12
// instructions, two to four of them R2UR, to recompute both descriptors. The 14-bit address
// field cannot carry into `leading`: shared-memory addresses and offsets stay below 2^18 bytes.
struct SmemDesc {
  uint32_t lo, hi;
  __device__ __forceinline__ SmemDesc(uint32_t smem_addr, uint32_t leading, uint32_t stride) {
    const uint64_t d = make_desc(smem_addr, leading, stride);
    lo = static_cast<uint32_t>(d);
    hi = static_cast<uint32_t>(d >> 32);
  }
  __device__ __forceinline__ uint64_t at(uint32_t byte_offset) const {
    return (static_cast<uint64_t>(hi) << 32) | (lo + (byte_offset >> 4));
  }
};

// Orders this thread's register writes (accumulators) before the next wgmma reads them.
__device__ __forceinline__ void fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
// Pins accumulator registers at this point of the program: the compiler may not move their reads
// or writes across it (CUTLASS's warpgroup_fence_operand), so no access drifts into a window
// where a wgmma owns them.
template <int N>
__device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes (st.shared, cp.async) visible to the
// async proxy that wgmma reads through; needed before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Accumulator operands of the shapes below: the "%0, ..., %(n-1)" register list of the
// instruction string (R<n>) and the matching "+f"(d[i]) constraints (ACC<n>), n = 16, 32 or 128.
#define FLASHMLA_WGMMA_D4(i) "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3])
#define FLASHMLA_WGMMA_D16(i)                                                   \
  FLASHMLA_WGMMA_D4(i), FLASHMLA_WGMMA_D4((i) + 4), FLASHMLA_WGMMA_D4((i) + 8), \
      FLASHMLA_WGMMA_D4((i) + 12)
#define FLASHMLA_WGMMA_D32(i) FLASHMLA_WGMMA_D16(i), FLASHMLA_WGMMA_D16((i) + 16)
#define FLASHMLA_WGMMA_ACC16 FLASHMLA_WGMMA_D16(0)
#define FLASHMLA_WGMMA_ACC32 FLASHMLA_WGMMA_D32(0)
#define FLASHMLA_WGMMA_ACC128 \
  FLASHMLA_WGMMA_D32(0), FLASHMLA_WGMMA_D32(32), FLASHMLA_WGMMA_D32(64), FLASHMLA_WGMMA_D32(96)
#define FLASHMLA_WGMMA_R16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define FLASHMLA_WGMMA_R32 \
  FLASHMLA_WGMMA_R16       \
  ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define FLASHMLA_WGMMA_R128                                                                    \
  FLASHMLA_WGMMA_R32                                                                           \
  ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, "    \
  "%49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, " \
  "%67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, " \
  "%85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, "    \
  "%102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, " \
  "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"

// One shape D[64 x N] (+)= A[64 x 16] * B[16 x N] of element type TYPE, as a static member FN of
// Ops<Elem>; kTransB = 1 reads B as MN-major (contiguous along N). ACC: accumulator count,
// ARGS: the operands after the accumulators as the instruction spells them.
//   SS: A and B from shared memory (descriptors).
//   RS: A from registers, the four 32-bit registers of each warp's m16n8k16-style A fragment
//       (no trans-a).
#define FLASHMLA_WGMMA_SS(FN, TYPE, N, ACC, ARGS)                                               \
  template <int kTransB>                                                                        \
  static __device__ __forceinline__ void FN(float(&d)[ACC], uint64_t desc_a, uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE                \
                 " {" FLASHMLA_WGMMA_R##ACC "}, " ARGS ";\n"                                    \
                 : FLASHMLA_WGMMA_ACC##ACC                                                      \
                 : "l"(desc_a), "l"(desc_b), "n"(kTransB));                                     \
  }
#define FLASHMLA_WGMMA_RS(FN, TYPE, N, ACC, ARGS)                                          \
  template <int kTransB>                                                                   \
  static __device__ __forceinline__ void FN(float(&d)[ACC], const uint32_t(&a)[4],         \
                                            uint64_t desc_b) {                             \
    asm volatile("wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TYPE "." TYPE           \
                 " {" FLASHMLA_WGMMA_R##ACC "}, " ARGS ";\n"                               \
                 : FLASHMLA_WGMMA_ACC##ACC                                                 \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(kTransB)); \
  }
// The shapes the 64-row loops use: the serial loop (decode_piece) S at N = 32 and P V at
// N = 256; the ping-pong loop (decode_piece_pingpong.cuh) S at N = 64 with Q from shared memory
// or, for its last column block, registers, and P V with P from registers.
#define FLASHMLA_WGMMA_OPS(TYPE)                                                        \
  FLASHMLA_WGMMA_SS(m64n32, TYPE, 32, 16, "%16, %17, 1, 1, 1, 0, %18")                  \
  FLASHMLA_WGMMA_SS(m64n64, TYPE, 64, 32, "%32, %33, 1, 1, 1, 0, %34")                  \
  FLASHMLA_WGMMA_SS(m64n256, TYPE, 256, 128, "%128, %129, 1, 1, 1, 0, %130")            \
  FLASHMLA_WGMMA_RS(m64n64_rs, TYPE, 64, 32, "{%32, %33, %34, %35}, %36, 1, 1, 1, %37") \
  FLASHMLA_WGMMA_RS(m64n256_rs, TYPE, 256, 128, "{%128, %129, %130, %131}, %132, 1, 1, 1, %133")

// Element-type dispatch.
template <typename Elem>
struct Ops;
template <>
struct Ops<__nv_bfloat16> {
  FLASHMLA_WGMMA_OPS("bf16")
};
template <>
struct Ops<__half> {
  FLASHMLA_WGMMA_OPS("f16")
};

#undef FLASHMLA_WGMMA_OPS
#undef FLASHMLA_WGMMA_SS
#undef FLASHMLA_WGMMA_RS
#undef FLASHMLA_WGMMA_D4
#undef FLASHMLA_WGMMA_D16
#undef FLASHMLA_WGMMA_D32
#undef FLASHMLA_WGMMA_ACC16
#undef FLASHMLA_WGMMA_ACC32
#undef FLASHMLA_WGMMA_ACC128
#undef FLASHMLA_WGMMA_R16
#undef FLASHMLA_WGMMA_R32
#undef FLASHMLA_WGMMA_R128

}  // namespace flashmla::detail::cuda::wgmma
