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

// Orders this thread's register writes (accumulators) before the next wgmma reads them.
__device__ __forceinline__ void fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
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
// instruction string and the matching "+f"(d[i]) constraints, n = 16, 32 or 128.
#define FLASHMLA_WGMMA_D4(i) "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3])
#define FLASHMLA_WGMMA_D16(i)                                                   \
  FLASHMLA_WGMMA_D4(i), FLASHMLA_WGMMA_D4((i) + 4), FLASHMLA_WGMMA_D4((i) + 8), \
      FLASHMLA_WGMMA_D4((i) + 12)
#define FLASHMLA_WGMMA_D32(i) FLASHMLA_WGMMA_D16(i), FLASHMLA_WGMMA_D16((i) + 16)
#define FLASHMLA_WGMMA_D128 \
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

// D[64 x 32] (+)= A[64 x 16] * B[16 x 32], A and B from shared memory (descriptors);
// kTransB = 1 reads B as MN-major (contiguous along N). One definition per element type, which
// only changes the instruction's type suffix.
#define FLASHMLA_WGMMA_M64N32K16(NAME, TYPE)                                              \
  template <int kTransB>                                                                  \
  __device__ __forceinline__ void NAME(float(&d)[16], uint64_t desc_a, uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE "." TYPE              \
                 " {" FLASHMLA_WGMMA_R16 "}, %16, %17, 1, 1, 1, 0, %18;\n"                \
                 : FLASHMLA_WGMMA_D16(0)                                                  \
                 : "l"(desc_a), "l"(desc_b), "n"(kTransB));                               \
  }

// D[64 x 256] (+)= A[64 x 16] * B[16 x 256], A and B from shared memory (descriptors);
// kTransB = 1 reads B as MN-major (contiguous along N). One definition per element type, which
// only changes the instruction's type suffix.
#define FLASHMLA_WGMMA_M64N256K16(NAME, TYPE)                                              \
  template <int kTransB>                                                                   \
  __device__ __forceinline__ void NAME(float(&d)[128], uint64_t desc_a, uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE              \
                 " {" FLASHMLA_WGMMA_R128 "}, %128, %129, 1, 1, 1, 0, %130;\n"             \
                 : FLASHMLA_WGMMA_D128                                                     \
                 : "l"(desc_a), "l"(desc_b), "n"(kTransB));                                \
  }

FLASHMLA_WGMMA_M64N32K16(mma_m64n32k16_bf16, "bf16")
FLASHMLA_WGMMA_M64N32K16(mma_m64n32k16_f16, "f16")
FLASHMLA_WGMMA_M64N256K16(mma_m64n256k16_bf16, "bf16")
FLASHMLA_WGMMA_M64N256K16(mma_m64n256k16_f16, "f16")
#undef FLASHMLA_WGMMA_M64N32K16
#undef FLASHMLA_WGMMA_M64N256K16

// Generated shapes for the ping-pong 64-row loop (decode_piece_pingpong.cuh): S at N = 64 with A
// from shared memory (SS) or from registers (RS: the Q column block kept in registers), and
// O += P V with P from registers (RS, the warpgroup's own P). RS forms take A as the four
// 32-bit registers of the m16n8k16-style A fragment of each warp; they have no trans-a.
#define FLASHMLA_WGMMA_M64N64K16_SS(NAME, TYPE)                                           \
  template <int kTransB>                                                                  \
  __device__ __forceinline__ void NAME(float(&d)[32], uint64_t desc_a, uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE              \
                 " {" FLASHMLA_WGMMA_R32 "}, %32, %33, 1, 1, 1, 0, %34;\n"                \
                 : FLASHMLA_WGMMA_D32(0)                                                  \
                 : "l"(desc_a), "l"(desc_b), "n"(kTransB));                               \
  }
#define FLASHMLA_WGMMA_M64N64K16_RS(NAME, TYPE)                                                 \
  template <int kTransB>                                                                        \
  __device__ __forceinline__ void NAME(float(&d)[32], const uint32_t(&a)[4], uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE                    \
                 " {" FLASHMLA_WGMMA_R32 "}, {%32, %33, %34, %35}, %36, 1, 1, 1, %37;\n"        \
                 : FLASHMLA_WGMMA_D32(0)                                                        \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(kTransB));      \
  }
#define FLASHMLA_WGMMA_M64N256K16_RS(NAME, TYPE)                                                 \
  template <int kTransB>                                                                         \
  __device__ __forceinline__ void NAME(float(&d)[128], const uint32_t(&a)[4], uint64_t desc_b) { \
    asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE                    \
                 " {" FLASHMLA_WGMMA_R128 "}, {%128, %129, %130, %131}, %132, 1, 1, 1, %133;\n"  \
                 : FLASHMLA_WGMMA_D128                                                           \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(kTransB));       \
  }

FLASHMLA_WGMMA_M64N64K16_SS(mma_m64n64k16_ss_bf16, "bf16")
FLASHMLA_WGMMA_M64N64K16_SS(mma_m64n64k16_ss_f16, "f16")
FLASHMLA_WGMMA_M64N64K16_RS(mma_m64n64k16_rs_bf16, "bf16")
FLASHMLA_WGMMA_M64N64K16_RS(mma_m64n64k16_rs_f16, "f16")
FLASHMLA_WGMMA_M64N256K16_RS(mma_m64n256k16_rs_bf16, "bf16")
FLASHMLA_WGMMA_M64N256K16_RS(mma_m64n256k16_rs_f16, "f16")
#undef FLASHMLA_WGMMA_M64N64K16_SS
#undef FLASHMLA_WGMMA_M64N64K16_RS
#undef FLASHMLA_WGMMA_M64N256K16_RS
#undef FLASHMLA_WGMMA_D4
#undef FLASHMLA_WGMMA_D16
#undef FLASHMLA_WGMMA_D32
#undef FLASHMLA_WGMMA_D128
#undef FLASHMLA_WGMMA_R16
#undef FLASHMLA_WGMMA_R32
#undef FLASHMLA_WGMMA_R128

// Element-type dispatch.
template <typename Elem>
struct Ops;
template <>
struct Ops<__nv_bfloat16> {
  template <int kTransB>
  static __device__ __forceinline__ void m64n32(float (&d)[16], uint64_t a, uint64_t b) {
    mma_m64n32k16_bf16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n256(float (&d)[128], uint64_t a, uint64_t b) {
    mma_m64n256k16_bf16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n64(float (&d)[32], uint64_t a, uint64_t b) {
    mma_m64n64k16_ss_bf16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n64_rs(float (&d)[32], const uint32_t (&a)[4],
                                                   uint64_t b) {
    mma_m64n64k16_rs_bf16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n256_rs(float (&d)[128], const uint32_t (&a)[4],
                                                    uint64_t b) {
    mma_m64n256k16_rs_bf16<kTransB>(d, a, b);
  }
};
template <>
struct Ops<__half> {
  template <int kTransB>
  static __device__ __forceinline__ void m64n32(float (&d)[16], uint64_t a, uint64_t b) {
    mma_m64n32k16_f16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n256(float (&d)[128], uint64_t a, uint64_t b) {
    mma_m64n256k16_f16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n64(float (&d)[32], uint64_t a, uint64_t b) {
    mma_m64n64k16_ss_f16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n64_rs(float (&d)[32], const uint32_t (&a)[4],
                                                   uint64_t b) {
    mma_m64n64k16_rs_f16<kTransB>(d, a, b);
  }
  template <int kTransB>
  static __device__ __forceinline__ void m64n256_rs(float (&d)[128], const uint32_t (&a)[4],
                                                    uint64_t b) {
    mma_m64n256k16_rs_f16<kTransB>(d, a, b);
  }
};

}  // namespace flashmla::detail::cuda::wgmma
