// Reproducible random data for benchmark inputs and the GEMM ceiling.
//
// Every fill is split into fixed-size chunks, each with its own generator seeded from
// (seed, stream, chunk), so the result is the same whatever the number of OpenMP threads.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flashmla/tensor.h"

namespace flashmla::cli {

// Round-to-nearest-even conversions of a finite float to the 16-bit formats.
uint16_t float_to_bf16_bits(float value);
uint16_t float_to_fp16_bits(float value);

// A 64-bit seed for one independent stream of `seed` (splitmix64 of both).
uint64_t derive_seed(uint64_t seed, uint64_t stream);

// `count` values of N(0,1) * scale, clamped to [-limit, limit], rounded to `dtype`
// (bf16 or fp16), written as raw 16-bit patterns.
void fill_clamped_normal_16bit(uint16_t* out, size_t count, DType dtype, uint64_t seed, float scale,
                               float limit);

// `count` values uniform in [-1, 1), as bf16 bit patterns or fp32.
void fill_uniform_bf16(uint16_t* out, size_t count, uint64_t seed);
void fill_uniform_fp32(float* out, size_t count, uint64_t seed);

}  // namespace flashmla::cli
