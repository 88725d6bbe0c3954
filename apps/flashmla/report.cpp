#include "report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli_error.h"
#include "system_info.h"

namespace flashmla::cli {
namespace {

using Json = nlohmann::ordered_json;

std::string fixed(double value, int decimals) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(decimals) << value;
  return text.str();
}

// Decimals that keep about four significant digits for values from 0.01 to 100000.
int decimals_for(double value) {
  const double magnitude = std::fabs(value);
  if (magnitude >= 1000) return 0;
  if (magnitude >= 100) return 1;
  if (magnitude >= 10) return 2;
  return 3;
}
std::string compact(double value) {
  return fixed(value, decimals_for(value));
}

// Right-aligned columns sized to their widest cell.
void print_columns(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += std::string(widths[i] - row[i].size() + (i == 0 ? 0 : 2), ' ') + row[i];
    }
    out << line << "\n";
  }
}

Json optional_number(const std::optional<double>& value) {
  return value ? Json(*value) : Json(nullptr);
}

}  // namespace

void print_ceilings(std::ostream& out, const Ceilings& ceilings, bool on_gpu) {
  const double gemm_scale = on_gpu ? 1e12 : 1e9;
  const char* gemm_unit = on_gpu ? "TFLOP/s" : "GFLOP/s";
  out << "Ceilings (best of " << ceilings.copy.repetitions << " / " << ceilings.gemm.repetitions
      << " repetitions; median in brackets)\n"
      << "  copy bandwidth  " << compact(ceilings.copy.best / 1e9) << " GB/s ["
      << compact(ceilings.copy.median / 1e9) << "]  " << ceilings.copy.method << "\n"
      << "  GEMM rate       " << compact(ceilings.gemm.best / gemm_scale) << " " << gemm_unit
      << " [" << compact(ceilings.gemm.median / gemm_scale) << "]  " << ceilings.gemm.method
      << "\n\n";
}

void print_case_table(std::ostream& out, const std::vector<CaseResult>& results, bool on_gpu) {
  const bool any_anchor = std::any_of(results.begin(), results.end(), [](const CaseResult& r) {
    return r.bench_case.flashmla_us.has_value();
  });
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {
      "case", "b",      "s_q",    "s_k",     "mean s_k",
      "h_q",  "h_kv",   "causal", "time us", on_gpu ? "TFLOP/s" : "GFLOP/s",
      "GB/s", "% floor"};
  if (any_anchor) {
    header.push_back("FlashMLA us");
    header.push_back("ratio");
  }
  rows.push_back(header);
  for (const CaseResult& r : results) {
    const BenchCase& c = r.bench_case;
    const double seconds = r.timing.median_us * 1e-6;
    std::vector<std::string> row = {
        std::to_string(c.index),
        std::to_string(c.b),
        std::to_string(c.s_q),
        std::to_string(c.s_k_nominal),
        fixed(c.mean_s_k(), 0),
        std::to_string(c.h_q),
        std::to_string(c.h_kv),
        c.causal ? "yes" : "no",
        compact(r.timing.median_us),
        compact(r.flops / seconds / (on_gpu ? 1e12 : 1e9)),
        compact(r.bytes / seconds / 1e9),
        r.floor_us ? fixed(100.0 * *r.floor_us / r.timing.median_us, 1) : "-"};
    if (any_anchor) {
      row.push_back(c.flashmla_us ? compact(*c.flashmla_us) : "-");
      row.push_back(c.flashmla_us ? fixed(*c.flashmla_us / r.timing.median_us, 2) : "-");
    }
    rows.push_back(row);
  }
  print_columns(out, rows);
  out << "\ntime: median per call; % floor: roofline floor max(bytes / copy bandwidth, FLOPs / "
         "GEMM rate) over time";
  if (any_anchor) out << "; ratio: FlashMLA time / ours (> 1: faster than FlashMLA)";
  out << "\n";
}

Json run_to_json(const RunRecord& run) {
  Json record;
  record["tool"] = "flashmla bench";
  record["version"] = version_string();
  record["git_commit"] = git_commit();
  const std::optional<bool> dirty = git_dirty();
  record["git_dirty"] = dirty ? Json(*dirty) : Json(nullptr);
  record["date"] = iso_date_utc();
  record["device"] = run.device;
  record["backend"] = run.on_gpu ? "cuda" : "cpu";
  record["timing_method"] = run.timing_method;
  if (run.ceilings) {
    const Ceilings& ceilings = *run.ceilings;
    record["ceilings"] = {
        {"copy_GBps_read_plus_write", ceilings.copy.best / 1e9},
        {"copy_GBps_median", ceilings.copy.median / 1e9},
        {"copy_method", ceilings.copy.method},
        {"gemm_TFLOPS", ceilings.gemm.best / 1e12},
        {"gemm_TFLOPS_median", ceilings.gemm.median / 1e12},
        {"gemm_method", ceilings.gemm.method},
        {"copy_repetitions", ceilings.copy.repetitions},
        {"gemm_repetitions", ceilings.gemm.repetitions},
        {"rates", "best repetition (the floors use these); *_median: the median repetition"},
    };
  } else {
    record["ceilings"] = nullptr;
  }
  Json cases = Json::array();
  for (const CaseResult& r : run.cases) {
    const BenchCase& c = r.bench_case;
    const double seconds = r.timing.median_us * 1e-6;
    std::optional<double> fraction_of_floor;
    if (r.floor_us) fraction_of_floor = *r.floor_us / r.timing.median_us;
    std::optional<double> ratio;
    if (c.flashmla_us) ratio = *c.flashmla_us / r.timing.median_us;
    cases.push_back({
        {"index", c.index},
        {"b", c.b},
        {"s_q", c.s_q},
        {"s_k_nominal", c.s_k_nominal},
        {"mean_s_k", c.mean_s_k()},
        {"h_q", c.h_q},
        {"h_kv", c.h_kv},
        {"d", c.d},
        {"dv", c.dv},
        {"page_block_size", c.page_block_size},
        {"causal", c.causal},
        {"dtype", dtype_name(r.dtype)},
        {"us", r.timing.median_us},
        {"us_min", r.timing.min_us},
        {"us_mean", r.timing.mean_us},
        {"iters", r.timing.iters},
        {"flops", r.flops},
        {"bytes", r.bytes},
        {"tflops", r.flops / seconds / 1e12},
        {"gbps", r.bytes / seconds / 1e9},
        {"floor_us", optional_number(r.floor_us)},
        {"fraction_of_floor", optional_number(fraction_of_floor)},
        {"flashmla_us", optional_number(c.flashmla_us)},
        {"ratio", optional_number(ratio)},
    });
  }
  record["cases"] = std::move(cases);
  return record;
}

void write_json(const RunRecord& run, const std::string& path) {
  const std::string text = run_to_json(run).dump(2) + "\n";
  if (path == "-") {
    std::cout << text << std::flush;
    return;
  }
  std::ofstream file(path);
  if (!file) throw CliError("--json", path + ": cannot open for writing");
  file << text;
  if (!file.flush()) throw CliError("--json", path + ": write failed");
}

}  // namespace flashmla::cli
