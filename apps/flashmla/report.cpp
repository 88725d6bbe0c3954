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
  auto any = [&](auto predicate) { return std::any_of(results.begin(), results.end(), predicate); };
  const bool any_anchor =
      any([](const CaseResult& r) { return r.bench_case.flashmla_us.has_value(); });
  const bool any_variant =
      any([](const CaseResult& r) { return r.bench_case.variant_of.has_value(); });
  const bool any_sparse = any([](const CaseResult& r) { return r.bench_case.sparse(); });
  const bool any_other_kv = any([](const CaseResult& r) { return r.kv_dtype != r.dtype; });
  const bool any_bf16_cache =
      any([](const CaseResult& r) { return r.bf16_cache_timing.has_value(); });
  const bool any_not_supported = any([](const CaseResult& r) { return !r.measured(); });

  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"case"};
  if (any_variant) header.push_back("variant of");
  for (const char* name : {"b", "s_q", "s_k", "mean s_k", "h_q", "h_kv"}) header.push_back(name);
  if (any_sparse) header.push_back("topk");
  header.push_back("causal");
  if (any_other_kv) header.push_back("kv");
  header.push_back("time us");
  if (any_bf16_cache) header.push_back("bf16-kv us");
  for (const char* name : {on_gpu ? "TFLOP/s" : "GFLOP/s", "GB/s", "% floor"}) {
    header.push_back(name);
  }
  if (any_anchor) {
    header.push_back("FlashMLA us");
    header.push_back("ratio");
  }
  rows.push_back(header);
  for (const CaseResult& r : results) {
    const BenchCase& c = r.bench_case;
    const double seconds = r.timing.median_us * 1e-6;
    std::vector<std::string> row = {std::to_string(c.index)};
    if (any_variant) row.push_back(c.variant_of ? std::to_string(*c.variant_of) : "-");
    for (const std::string& cell :
         {std::to_string(c.b), std::to_string(c.s_q), std::to_string(c.s_k_nominal),
          fixed(c.mean_s_k(), 0), std::to_string(c.h_q), std::to_string(c.h_kv)}) {
      row.push_back(cell);
    }
    if (any_sparse) row.push_back(c.sparse() ? std::to_string(c.topk) : "-");
    row.push_back(c.causal ? "yes" : "no");
    if (any_other_kv) row.push_back(r.kv_dtype == DType::kFP8E4M3 ? "fp8" : dtype_name(r.kv_dtype));
    row.push_back(r.measured() ? compact(r.timing.median_us) : "n/a");
    if (any_bf16_cache) {
      row.push_back(r.bf16_cache_timing ? compact(r.bf16_cache_timing->median_us) : "-");
    }
    if (r.measured()) {
      row.push_back(compact(r.flops / seconds / (on_gpu ? 1e12 : 1e9)));
      row.push_back(compact(r.bytes / seconds / 1e9));
      row.push_back(r.floor_us ? fixed(100.0 * *r.floor_us / r.timing.median_us, 1) : "-");
    } else {
      row.insert(row.end(), {"-", "-", "-"});
    }
    if (any_anchor) {
      const bool ratio = c.flashmla_us && r.measured();
      row.push_back(c.flashmla_us ? compact(*c.flashmla_us) : "-");
      row.push_back(ratio ? fixed(*c.flashmla_us / r.timing.median_us, 2) : "-");
    }
    rows.push_back(row);
  }
  print_columns(out, rows);
  out << "\ntime: median per call; % floor: roofline floor max(bytes / copy bandwidth, FLOPs / "
         "GEMM rate) over time";
  if (any_anchor) out << "; ratio: FlashMLA time / ours (> 1: faster than FlashMLA)";
  out << "\n";
  if (any_sparse) {
    out << "sparse (topk): FLOPs = 2*h_q*attended tokens*(d+dv); bytes = distinct cache rows read "
           "(656 each in FP8) + q + out\n";
  }
  if (any([](const CaseResult& r) { return !r.bench_case.sparse() && r.kv_dtype != r.dtype; })) {
    out << "dense with the fp8 kv cache: bytes = b*(mean s_k*656 + q + out)\n";
  }
  if (any_bf16_cache) {
    out << "bf16-kv us: the same inputs with the bf16 cache, timed before it was quantized\n";
  }
  if (any_not_supported) {
    std::vector<std::string> messages;
    for (const CaseResult& r : results) {
      if (r.not_supported &&
          std::find(messages.begin(), messages.end(), *r.not_supported) == messages.end()) {
        messages.push_back(*r.not_supported);
      }
    }
    out << "n/a: not supported by this backend:\n";
    for (const std::string& message : messages) out << "  " << message << "\n";
  }
}

Json run_to_json(const RunRecord& run) {
  Json record;
  record["tool"] = "flashmla bench";
  record["version"] = version_string();
  record["git_commit"] = git_commit();
  const std::optional<bool> dirty = git_dirty();
  record["git_dirty"] = dirty ? Json(*dirty) : Json(nullptr);
  record["date"] = iso_date_utc();
  record["environment"] = flashmla_environment();
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
    const bool measured = r.measured();
    std::optional<double> fraction_of_floor;
    if (r.floor_us && measured) fraction_of_floor = *r.floor_us / r.timing.median_us;
    std::optional<double> ratio;
    if (c.flashmla_us && measured) ratio = *c.flashmla_us / r.timing.median_us;
    auto when_measured = [&](double value) { return measured ? Json(value) : Json(nullptr); };
    Json entry = {
        {"index", c.index},
        {"variant_of", c.variant_of ? Json(*c.variant_of) : Json(nullptr)},
        {"kind", c.sparse() ? "sparse" : "dense"},
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
        {"topk", c.topk},
        {"attn_sink", c.attn_sink},
        {"dtype", dtype_name(r.dtype)},
        {"kv_cache",
         r.kv_dtype == DType::kFP8E4M3 ? "fp8 (656-byte FP8 with scale)" : dtype_name(r.kv_dtype)},
        {"us", when_measured(r.timing.median_us)},
        {"us_min", when_measured(r.timing.min_us)},
        {"us_mean", when_measured(r.timing.mean_us)},
        {"iters", r.timing.iters},
        {"flops", r.flops},
        {"bytes", r.bytes},
        {"tflops", when_measured(r.flops / seconds / 1e12)},
        {"gbps", when_measured(r.bytes / seconds / 1e9)},
        {"floor_us", optional_number(r.floor_us)},
        {"fraction_of_floor", optional_number(fraction_of_floor)},
        {"flashmla_us", optional_number(c.flashmla_us)},
        {"ratio", optional_number(ratio)},
    };
    if (r.bf16_cache_timing) entry["bf16_cache_us"] = r.bf16_cache_timing->median_us;
    if (r.not_supported) entry["not_supported"] = *r.not_supported;
    if (c.sparse()) {
      entry["attended_tokens"] = r.attended_tokens;
      entry["distinct_rows"] = r.distinct_rows;
      entry["inputs"] = r.inputs_note;
      if (c.seqlens_drawn) entry["cache_seqlens"] = c.cache_seqlens;
    }
    cases.push_back(std::move(entry));
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
