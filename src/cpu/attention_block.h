// The inner loop shared by dense and sparse decode: a block of query rows attends KV tokens
// that arrive in tiles of up to kTileTokens rows, with an online (streaming) softmax.
//
// A "query row" is one (query token, query head) pair; all rows of a block use the same KV
// head, so every KV tile is converted to fp32 once and reused by all rows. Scores live in the
// log2 domain: the caller stores q pre-multiplied by softmax_scale * log2(e), so that the
// softmax needs exp2 only.
#pragma once

#include <cstdint>
#include <memory>
#include <new>

namespace flashmla::detail::cpu {

inline constexpr int kTileTokens = 64;    // KV tokens per tile
inline constexpr int kMaxBlockRows = 64;  // query rows per block

// Dense decode cuts the s_q * q_per_kv query rows of one KV head into this many blocks of at
// most kMaxBlockRows rows (each block re-reads the KV tiles, so blocks are large).
inline int row_blocks_per_kv_head(int s_q, int q_per_kv) {
  return (s_q * q_per_kv + kMaxBlockRows - 1) / kMaxBlockRows;
}

// A 64-byte aligned float array.
class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(size_t count)
      : data_(static_cast<float*>(::operator new (count * sizeof(float), std::align_val_t{64}))) {}
  float* get() const { return data_.get(); }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete (p, std::align_val_t{64}); }
  };
  std::unique_ptr<float, Free> data_;
};

// Cache rows to fetch into the CPU caches while a tile is being computed (the next tile's),
// so that converting them later does not wait for memory.
struct TilePrefetch {
  const uint8_t* const* rows = nullptr;
  int count = 0;
  int bytes_per_row = 0;
};

// Per-thread working memory and state for one block of at most `max_rows` query rows.
// Allocates in the constructor only; begin/attend/finish_row never allocate.
class RowBlockAttention {
 public:
  // d: key width (a multiple of 64), dv <= d: value width (the first dv columns of a key).
  RowBlockAttention(int max_rows, int d, int dv);

  // Starts a new block of `rows` rows: running max -inf, sums and accumulators 0.
  void begin(int rows);

  // Where the caller writes query row r (d floats, pre-scaled, see above).
  float* q_row(int r) { return q_.get() + static_cast<int64_t>(r) * d_; }
  // Where the caller writes token t of the next tile (d floats).
  float* tile_row(int t) { return tile_.get() + static_cast<int64_t>(t) * d_; }

  // Attends tile tokens [0, num_tokens), num_tokens <= kTileTokens. Row r sees the first
  // visible[r] of them (0 <= visible[r] <= num_tokens; causal masks are prefixes).
  void attend(int num_tokens, const int* visible, const TilePrefetch& prefetch = {});

  // Row r's normalized output (dv floats) into `out`. Returns its natural-log sum-exp, or
  // -inf (with out = 0) when the row has seen no token.
  float finish_row(int r, float* out) const;

 private:
  int max_rows_, d_, dv_, dv_padded_;
  int rows_ = 0;
  AlignedFloats q_;        // [max_rows, d]
  AlignedFloats tile_;     // [kTileTokens, d]
  AlignedFloats scores_;   // [max_rows, kTileTokens]: scores, then probabilities
  AlignedFloats acc_;      // [max_rows, dv_padded]: unnormalized output
  AlignedFloats max_;      // [max_rows]: running max of the scores (log2 domain)
  AlignedFloats sum_;      // [max_rows]: running sum of exp2(score - max)
  AlignedFloats rescale_;  // [max_rows]: exp2(old max - new max) of the current tile
};

}  // namespace flashmla::detail::cpu
