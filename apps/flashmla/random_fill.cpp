#include "random_fill.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <numbers>

namespace flashmla::cli {
namespace {

// Elements per independently seeded chunk: large enough to amortize seeding, small enough to
// spread a fill over all threads.
constexpr size_t kChunk = size_t{1} << 16;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// xoshiro256**: fast, and good enough for benchmark data.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) {
    for (uint64_t& word : state_) word = splitmix64(seed);
  }
  uint64_t next() {
    const uint64_t result = std::rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = std::rotl(state_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 24 random bits (exact in float).
  float uniform01() { return static_cast<float>(next() >> 40) * 0x1.0p-24f; }

 private:
  uint64_t state_[4];
};

// Runs `fill_chunk(first, count, rng)` over all chunks of [0, count) in parallel.
template <typename FillChunk>
void for_each_chunk(size_t count, uint64_t seed, FillChunk fill_chunk) {
  const int64_t num_chunks = static_cast<int64_t>((count + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (int64_t chunk = 0; chunk < num_chunks; ++chunk) {
    const size_t first = static_cast<size_t>(chunk) * kChunk;
    Xoshiro256 rng(derive_seed(seed, static_cast<uint64_t>(chunk)));
    fill_chunk(first, std::min(kChunk, count - first), rng);
  }
}

}  // namespace

uint16_t float_to_bf16_bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

uint16_t float_to_fp16_bits(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return sign | 0x7E00;   // NaN
  if (magnitude >= 0x477FF000u) return sign | 0x7C00;  // rounds to 65520 or more: infinity
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a subnormal half, i.e. an integer multiple of 2^-24. Scaling by 2^24 is
    // exact, and nearbyint rounds to nearest even in the default rounding mode.
    const float scaled = std::bit_cast<float>(magnitude) * 0x1.0p24f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  const uint32_t rebiased = magnitude - (112u << 23);  // exponent bias 127 -> 15
  const uint32_t rounded = rebiased + 0xFFFu + ((rebiased >> 13) & 1u);
  return sign | static_cast<uint16_t>(rounded >> 13);
}

uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t state = seed ^ (stream * 0xD1B54A32D192ED03ull);
  splitmix64(state);
  return splitmix64(state);
}

void fill_clamped_normal_16bit(uint16_t* out, size_t count, DType dtype, uint64_t seed, float scale,
                               float limit) {
  const bool bf16 = dtype == DType::kBF16;
  for_each_chunk(count, seed, [&](size_t first, size_t n, Xoshiro256& rng) {
    for (size_t i = 0; i < n; i += 2) {
      // Box-Muller: two independent normals per pair of uniforms; 1 - u keeps log's argument > 0.
      const float radius = std::sqrt(-2.0f * std::log(1.0f - rng.uniform01()));
      const float angle = 2.0f * std::numbers::pi_v<float> * rng.uniform01();
      const float pair[2] = {radius * std::cos(angle), radius * std::sin(angle)};
      for (size_t k = 0; k < 2 && i + k < n; ++k) {
        const float value = std::clamp(pair[k] * scale, -limit, limit);
        out[first + i + k] = bf16 ? float_to_bf16_bits(value) : float_to_fp16_bits(value);
      }
    }
  });
}

void fill_uniform_bf16(uint16_t* out, size_t count, uint64_t seed) {
  for_each_chunk(count, seed, [&](size_t first, size_t n, Xoshiro256& rng) {
    for (size_t i = 0; i < n; ++i) {
      out[first + i] = float_to_bf16_bits(2.0f * rng.uniform01() - 1.0f);
    }
  });
}

void fill_uniform_fp32(float* out, size_t count, uint64_t seed) {
  for_each_chunk(count, seed, [&](size_t first, size_t n, Xoshiro256& rng) {
    for (size_t i = 0; i < n; ++i) out[first + i] = 2.0f * rng.uniform01() - 1.0f;
  });
}

}  // namespace flashmla::cli
