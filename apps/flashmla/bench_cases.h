// The cases `flashmla bench` times: one from the shape flags, or a list from a case file in the
// format of the FlashMLA anchor files (shared/anchors/flashmla-dense-decode-*.json, and the
// token-sparse shared/anchors/flashmla-sparse-decode-*.json, whose cases carry `topk`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace flashmla::cli {

struct BenchCase {
  int index = 0;  // position in the case list before any filtering (0-based)
  int b = 4;
  int s_q = 1;
  int h_q = 16;
  int h_kv = 1;
  int d = 576;
  int dv = 512;
  int page_block_size = 64;
  bool causal = false;
  int64_t s_k_nominal = 4096;          // the file's s_k_nominal, else the flag's --s-k
  std::vector<int32_t> cache_seqlens;  // [b]
  std::optional<double> flashmla_us;   // FlashMLA's time for this case, when the file has it

  // Token-sparse decode (mla_sparse_decode) when topk > 0: every query attends topk index slots
  // of its own sequence's cache rows. h_kv is 1 and causal is false.
  int topk = 0;
  bool attn_sink = false;  // sparse: pass attn_sink [h_q]
  // Sparse anchor cases give only the mean length (s_k_nominal): cache_seqlens are drawn from the
  // run's seed (sparse_inputs.h) and filled in just before the case runs; empty until then.
  bool seqlens_drawn = false;
  // An h_q variant of case `variant_of` (same lengths, indices and cache; no anchor time).
  std::optional<int> variant_of;

  bool sparse() const { return topk > 0; }
  // The case whose position seeds the inputs: variants see their original's data.
  int seed_index() const { return variant_of.value_or(index); }
  double mean_s_k() const;
  // Dense cases, the anchor's method: FLOPs = b*h_q*s_q*mean_len*2*(d+dv) (causal masking not
  // discounted); bytes = b*(s_q*h_q*d + mean_len*h_kv*d + s_q*h_q*dv) * element size.
  double flops() const;
  double bytes(size_t element_size) const;
  // Dense cases over an FP8 cache (656 bytes per token, h_kv = 1) with bf16 q and out:
  // bytes = b*(s_q*h_q*d*2 + mean_len*656 + s_q*h_q*dv*2).
  double bytes_fp8_cache() const;
  // "b=128 s_q=1 s_k=4096 h_q=128 h_kv=1 causal", for progress lines.
  std::string describe() const;
};

// The shape flags of `flashmla bench`; every sequence gets s_k cached tokens.
struct ShapeFlags {
  int batch = 4;
  int s_q = 1;
  int s_k = 4096;
  int heads = 16;
  int heads_kv = 1;
  int page_block_size = 64;
  int head_dim = 576;
  int head_dim_v = 512;
  bool causal = false;
  int topk = 0;  // > 0: a token-sparse case (with attn_sink), every sequence of length s_k
};

BenchCase case_from_flags(const ShapeFlags& flags);

// Reads {"cases": [...]} (or a bare array). A dense case needs b, s_q, h_q, d, dv,
// page_block_size, causal and cache_seqlens; h_kv defaults to 1, s_k_nominal to the rounded
// mean length, flashmla_us is optional. A case with "topk" is token-sparse (the sparse anchor
// format): it needs b, s_q, h_q, topk and s_kv (the mean cache length; or s_k_nominal); d, dv and
// page_block_size default to 576, 512 and 64, attn_sink to false, h_kv must be 1 and causal
// false; without cache_seqlens the lengths are drawn around s_kv; FlashMLA's time is "us" (or
// flashmla_us). Throws CliError("--cases", ...) naming file and case.
std::vector<BenchCase> load_case_file(const std::string& path);

// Appends, for every sparse case of `cases`, one variant per entry of `heads` that differs from
// the case's h_q: the same case with that h_q, numbered after the last case, without anchor time.
std::vector<BenchCase> add_head_variants(std::vector<BenchCase> cases,
                                         const std::vector<int>& heads);

// The cases matching `filter`, at most `max_cases` of them (0: no limit), in order.
//
// A filter is comma-separated conditions, all of which must hold: KEY OP VALUE with KEY one of
// index, b, s_q, s_k (nominal), h_q, h_kv, d, dv, page, causal (0/1), topk (0: dense), anchor
// (1: has FlashMLA's time); OP one of = != < <= > >=; VALUE a number, or with "=" several
// separated by '|'. Example: "b<=8,h_q=128" or "index=0|10|12". Throws
// CliError("--case-filter", ...) on a malformed filter.
std::vector<BenchCase> select_cases(const std::vector<BenchCase>& cases, const std::string& filter,
                                    int max_cases);

}  // namespace flashmla::cli
