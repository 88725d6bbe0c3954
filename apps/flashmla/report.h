// Reporting a bench run: the ceilings and the case table for people, and the JSON record
// (bench/results/) for tools.
#pragma once

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
  BenchCase bench_case;
  DType dtype = DType::kBF16;
  TimingResult timing;
  double flops = 0;
  double bytes = 0;
  std::optional<double> floor_us;  // when ceilings were measured
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
