#include "bench_cases.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli_error.h"

namespace flashmla::cli {
namespace {

using Json = nlohmann::json;

// Sanity limits that keep the input generator's arithmetic meaningful; everything finer
// (h_q % h_kv, dv <= d, supported head dims) is the library's to reject.
void check_case(const BenchCase& c, const std::string& argument, const std::string& where) {
  auto require = [&](bool ok, const std::string& what) {
    if (!ok) throw CliError(argument, where + what);
  };
  require(c.b >= 1, "b must be >= 1, got " + std::to_string(c.b));
  require(c.s_q >= 1, "s_q must be >= 1, got " + std::to_string(c.s_q));
  require(c.h_q >= 1, "h_q must be >= 1, got " + std::to_string(c.h_q));
  require(c.h_kv >= 1, "h_kv must be >= 1, got " + std::to_string(c.h_kv));
  require(c.d >= 1 && c.dv >= 1, "d and dv must be >= 1");
  require(c.page_block_size >= 1,
          "page_block_size must be >= 1, got " + std::to_string(c.page_block_size));
  require(c.topk >= 0, "topk must be >= 0 (0: dense), got " + std::to_string(c.topk));
  if (c.sparse()) {
    require(c.h_kv == 1, "a sparse case needs h_kv = 1, got " + std::to_string(c.h_kv));
    require(!c.causal, "a sparse case cannot be causal");
  }
  if (c.seqlens_drawn) {
    require(c.s_k_nominal >= 0, "s_kv must be >= 0, got " + std::to_string(c.s_k_nominal));
    return;
  }
  require(c.cache_seqlens.size() == static_cast<size_t>(c.b),
          "cache_seqlens has " + std::to_string(c.cache_seqlens.size()) +
              " entries, expected b = " + std::to_string(c.b));
  require(std::all_of(c.cache_seqlens.begin(), c.cache_seqlens.end(),
                      [](int32_t len) { return len >= 0; }),
          "cache_seqlens must be >= 0");
}

// A field of one case object, with an error that says which case and field.
template <typename T>
T field(const Json& object, const char* name, const std::string& where) {
  if (!object.contains(name)) throw CliError("--cases", where + "missing field \"" + name + "\"");
  try {
    return object.at(name).get<T>();
  } catch (const Json::exception& e) {
    throw CliError("--cases", where + "field \"" + name + "\": " + e.what());
  }
}

// A field that may be absent, with a default.
template <typename T>
T optional_field(const Json& object, const char* name, const std::string& where, T fallback) {
  return object.contains(name) && !object.at(name).is_null() ? field<T>(object, name, where)
                                                             : fallback;
}

// The FlashMLA time of a case: "flashmla_us" (dense anchors) or "us" (sparse anchors).
std::optional<double> anchor_time(const Json& object, const std::string& where) {
  for (const char* name : {"flashmla_us", "us"}) {
    if (object.contains(name) && !object.at(name).is_null()) {
      return field<double>(object, name, where);
    }
  }
  return std::nullopt;
}

BenchCase parse_dense_case(const Json& object, int index, const std::string& where) {
  BenchCase c;
  c.index = index;
  c.b = field<int>(object, "b", where);
  c.s_q = field<int>(object, "s_q", where);
  c.h_q = field<int>(object, "h_q", where);
  c.h_kv = object.contains("h_kv") ? field<int>(object, "h_kv", where) : 1;
  c.d = field<int>(object, "d", where);
  c.dv = field<int>(object, "dv", where);
  c.page_block_size = field<int>(object, "page_block_size", where);
  c.causal = field<bool>(object, "causal", where);
  c.cache_seqlens = field<std::vector<int32_t>>(object, "cache_seqlens", where);
  check_case(c, "--cases", where);
  c.s_k_nominal = object.contains("s_k_nominal") ? field<int64_t>(object, "s_k_nominal", where)
                                                 : static_cast<int64_t>(std::llround(c.mean_s_k()));
  c.flashmla_us = anchor_time(object, where);
  return c;
}

// The sparse anchor format: {"b", "h_q", "s_q", "s_kv", "topk", "attn_sink", "us", ...}, the
// rest (d = 576, dv = 512, page 64, h_kv = 1) stated in the file's "what".
BenchCase parse_sparse_case(const Json& object, int index, const std::string& where) {
  BenchCase c;
  c.index = index;
  c.b = field<int>(object, "b", where);
  c.s_q = field<int>(object, "s_q", where);
  c.h_q = field<int>(object, "h_q", where);
  c.topk = field<int>(object, "topk", where);
  c.h_kv = optional_field<int>(object, "h_kv", where, 1);
  c.d = optional_field<int>(object, "d", where, 576);
  c.dv = optional_field<int>(object, "dv", where, 512);
  c.page_block_size = optional_field<int>(object, "page_block_size", where, 64);
  c.causal = optional_field<bool>(object, "causal", where, false);
  c.attn_sink = optional_field<bool>(object, "attn_sink", where, false);
  if (object.contains("cache_seqlens")) {
    c.cache_seqlens = field<std::vector<int32_t>>(object, "cache_seqlens", where);
  } else {
    c.seqlens_drawn = true;
  }
  const char* mean_name = object.contains("s_k_nominal") ? "s_k_nominal" : "s_kv";
  if (c.seqlens_drawn || object.contains(mean_name)) {
    c.s_k_nominal = field<int64_t>(object, mean_name, where);
  }
  check_case(c, "--cases", where);
  if (!c.seqlens_drawn && !object.contains(mean_name)) {
    c.s_k_nominal = static_cast<int64_t>(std::llround(c.mean_s_k()));
  }
  if (c.topk < 1) throw CliError("--cases", where + "topk must be >= 1");
  c.flashmla_us = anchor_time(object, where);
  return c;
}

BenchCase parse_case(const Json& object, int index, const std::string& where) {
  if (!object.is_object()) throw CliError("--cases", where + "is not a JSON object");
  return object.contains("topk") ? parse_sparse_case(object, index, where)
                                 : parse_dense_case(object, index, where);
}

// One condition of a --case-filter: KEY OP VALUE[|VALUE...].
struct Condition {
  std::function<int64_t(const BenchCase&)> key;
  std::string op;
  std::vector<int64_t> values;

  bool holds(const BenchCase& c) const {
    const int64_t v = key(c);
    if (op == "=" || op == "==") {
      return std::find(values.begin(), values.end(), v) != values.end();
    }
    const int64_t w = values.front();
    if (op == "!=") return v != w;
    if (op == "<") return v < w;
    if (op == "<=") return v <= w;
    if (op == ">") return v > w;
    return v >= w;  // ">=", the only operator left after parsing
  }
};

std::function<int64_t(const BenchCase&)> filter_key(const std::string& name) {
  if (name == "index") return [](const BenchCase& c) { return int64_t{c.index}; };
  if (name == "b") return [](const BenchCase& c) { return int64_t{c.b}; };
  if (name == "s_q") return [](const BenchCase& c) { return int64_t{c.s_q}; };
  if (name == "s_k") return [](const BenchCase& c) { return c.s_k_nominal; };
  if (name == "h_q") return [](const BenchCase& c) { return int64_t{c.h_q}; };
  if (name == "h_kv") return [](const BenchCase& c) { return int64_t{c.h_kv}; };
  if (name == "d") return [](const BenchCase& c) { return int64_t{c.d}; };
  if (name == "dv") return [](const BenchCase& c) { return int64_t{c.dv}; };
  if (name == "page") return [](const BenchCase& c) { return int64_t{c.page_block_size}; };
  if (name == "causal") return [](const BenchCase& c) { return int64_t{c.causal ? 1 : 0}; };
  if (name == "topk") return [](const BenchCase& c) { return int64_t{c.topk}; };
  if (name == "anchor") {
    return [](const BenchCase& c) { return int64_t{c.flashmla_us.has_value() ? 1 : 0}; };
  }
  throw CliError("--case-filter", "unknown key \"" + name +
                                      "\" (known: index, b, s_q, s_k, h_q, h_kv, d, dv, page, "
                                      "causal, topk, anchor)");
}

int64_t parse_filter_value(const std::string& text, const std::string& term) {
  if (text == "true") return 1;
  if (text == "false") return 0;
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) {
    throw CliError("--case-filter", "\"" + term + "\": \"" + text + "\" is not an integer");
  }
  return value;
}

Condition parse_condition(const std::string& term) {
  const size_t op_begin = term.find_first_of("=!<>");
  if (op_begin == std::string::npos || op_begin == 0) {
    throw CliError("--case-filter", "\"" + term + "\" is not KEY OP VALUE (OP: = != < <= > >=)");
  }
  size_t op_end = op_begin + 1;
  if (op_end < term.size() && term[op_end] == '=') ++op_end;
  Condition condition;
  condition.key = filter_key(term.substr(0, op_begin));
  condition.op = term.substr(op_begin, op_end - op_begin);
  if (condition.op == "!") throw CliError("--case-filter", "\"" + term + "\": unknown operator");
  std::stringstream alternatives(term.substr(op_end));
  for (std::string value; std::getline(alternatives, value, '|');) {
    condition.values.push_back(parse_filter_value(value, term));
  }
  if (condition.values.empty()) throw CliError("--case-filter", "\"" + term + "\" has no value");
  const bool equality = condition.op == "=" || condition.op == "==";
  if (!equality && condition.values.size() > 1) {
    throw CliError("--case-filter", "\"" + term + "\": only = takes several values");
  }
  return condition;
}

std::vector<Condition> parse_filter(const std::string& filter) {
  std::vector<Condition> conditions;
  std::stringstream terms(filter);
  for (std::string term; std::getline(terms, term, ',');) {
    term.erase(std::remove_if(term.begin(), term.end(),
                              [](unsigned char ch) { return std::isspace(ch) != 0; }),
               term.end());
    if (!term.empty()) conditions.push_back(parse_condition(term));
  }
  return conditions;
}

}  // namespace

double BenchCase::mean_s_k() const {
  if (cache_seqlens.empty()) return 0.0;
  const double total = std::accumulate(cache_seqlens.begin(), cache_seqlens.end(), 0.0);
  return total / static_cast<double>(cache_seqlens.size());
}

double BenchCase::flops() const {
  return double{1} * b * h_q * s_q * mean_s_k() * 2.0 * (d + dv);
}

double BenchCase::bytes(size_t element_size) const {
  const double elements =
      double{1} * s_q * h_q * d + mean_s_k() * h_kv * d + double{1} * s_q * h_q * dv;
  return b * elements * static_cast<double>(element_size);
}

double BenchCase::bytes_fp8_cache() const {
  constexpr double kFP8RowBytes = 656;    // flashmla::kFP8RowBytes
  constexpr double kActivationBytes = 2;  // bf16 q and out
  return b * ((double{1} * s_q * h_q * d + double{1} * s_q * h_q * dv) * kActivationBytes +
              mean_s_k() * kFP8RowBytes);
}

std::string BenchCase::describe() const {
  std::ostringstream text;
  text << "b=" << b << " s_q=" << s_q << " s_k=" << s_k_nominal << " h_q=" << h_q
       << " h_kv=" << h_kv;
  if (d != 576 || dv != 512) text << " d=" << d << " dv=" << dv;
  if (page_block_size != 64) text << " page=" << page_block_size;
  if (causal) text << " causal";
  if (sparse()) text << " topk=" << topk << (attn_sink ? " sink" : "");
  if (variant_of) text << " (h_q variant of case " << *variant_of << ")";
  return text.str();
}

BenchCase case_from_flags(const ShapeFlags& flags) {
  BenchCase c;
  c.b = flags.batch;
  c.s_q = flags.s_q;
  c.h_q = flags.heads;
  c.h_kv = flags.heads_kv;
  c.d = flags.head_dim;
  c.dv = flags.head_dim_v;
  c.page_block_size = flags.page_block_size;
  c.causal = flags.causal;
  c.s_k_nominal = flags.s_k;
  c.topk = flags.topk;
  c.attn_sink = flags.topk > 0;
  c.cache_seqlens.assign(static_cast<size_t>(std::max(flags.batch, 0)), flags.s_k);
  check_case(c, "shape flags", "");
  return c;
}

std::vector<BenchCase> load_case_file(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw CliError("--cases", path + ": cannot open the file");
  Json document;
  try {
    document = Json::parse(file);
  } catch (const Json::exception& e) {
    throw CliError("--cases", path + ": not valid JSON: " + e.what());
  }
  const Json* list = &document;
  if (document.is_object()) {
    if (!document.contains("cases")) throw CliError("--cases", path + ": no \"cases\" array");
    list = &document.at("cases");
  }
  if (!list->is_array() || list->empty()) {
    throw CliError("--cases", path + ": \"cases\" must be a non-empty array");
  }
  std::vector<BenchCase> cases;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string where = path + ": case " + std::to_string(i) + ": ";
    cases.push_back(parse_case((*list)[i], static_cast<int>(i), where));
  }
  return cases;
}

std::vector<BenchCase> add_head_variants(std::vector<BenchCase> cases,
                                         const std::vector<int>& heads) {
  const size_t originals = cases.size();
  int next_index = 0;
  for (const BenchCase& c : cases) next_index = std::max(next_index, c.index + 1);
  for (int h_q : heads) {
    for (size_t i = 0; i < originals; ++i) {
      const BenchCase& original = cases[i];
      if (!original.sparse() || original.h_q == h_q) continue;
      BenchCase variant = original;
      variant.index = next_index++;
      variant.h_q = h_q;
      variant.variant_of = original.index;
      variant.flashmla_us.reset();
      cases.push_back(std::move(variant));
    }
  }
  return cases;
}

std::vector<BenchCase> select_cases(const std::vector<BenchCase>& cases, const std::string& filter,
                                    int max_cases) {
  const std::vector<Condition> conditions = parse_filter(filter);
  std::vector<BenchCase> selected;
  for (const BenchCase& c : cases) {
    if (max_cases > 0 && static_cast<int>(selected.size()) >= max_cases) break;
    const bool match = std::all_of(conditions.begin(), conditions.end(),
                                   [&](const Condition& condition) { return condition.holds(c); });
    if (match) selected.push_back(c);
  }
  return selected;
}

}  // namespace flashmla::cli
