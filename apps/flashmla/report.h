// Reporting a bench run: the ceilings and the case table for people, and the JSON record
// (bench/results/) for tools.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench_cases.h"
#include "ceilings.h"
#include "flashmla/tensor.h"
#include "timing.h"

namespace flashmla::cli {

struct CaseResult {
  BenchCase bench_case;           // with the cache_seqlens it ran with (drawn ones filled in)
  DType dtype = DType::kBF16;     // of q and out
  DType kv_dtype = DType::kBF16;  // of the cache: dtype, or kFP8E4M3 for the FP8 cache
  TimingResult timing;
  double flops = 0;
  double bytes = 0;
  std::optional<double> floor_us;  // when ceilings were measured
  // Dense cases with an FP8 cache: the same inputs timed with their bf16 cache first.
  std::optional<TimingResult> bf16_cache_timing;
  // The backend's message when it does not implement the case (timing is then empty).
  std::optional<std::string> not_supported;
  // Sparse cases: index slots that are not -1, distinct cache rows they read, how made.
  int64_t attended_tokens = 0;
  int64_t distinct_rows = 0;
  std::string inputs_note;

  bool measured() const { return !not_supported.has_value(); }
};

struct RunRecord {
  bool on_gpu = false;
  std::string device;         // description of the device the cases ran on
  std::string timing_method;  // how each time was taken, in words
  std::optional<Ceilings> ceilings;
  std::vector<CaseResult> cases;
};

void print_ceilings(std::ostream& out, const Ceilings& ceilings, bool on_gpu);
void print_case_table(std::ostream& out, const std::vector<CaseResult>& results, bool on_gpu);

nlohmann::ordered_json run_to_json(const RunRecord& run);
// Writes the record to `path`, or to stdout when path is "-".
void write_json(const RunRecord& run, const std::string& path);

}  // namespace flashmla::cli
