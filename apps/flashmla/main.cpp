// flashmla: the command-line tool. Parses the command line (CLI11) and reports errors; the
// work is done by bench.cpp (`flashmla bench`) and system_info.cpp (`flashmla info`).
#include <CLI/CLI.hpp>
#include <iostream>
#include <limits>
#include <new>
#include <string>

#include "bench.h"
#include "cli_error.h"
#include "cuda_check.h"
#include "flashmla/error.h"
#include "system_info.h"

namespace {

using flashmla::cli::BenchOptions;

std::string version_text() {
  std::string text = "flashmla " + flashmla::cli::version_string() + " (git " +
                     flashmla::cli::git_commit() + ")\nbackends: cpu";
#if defined(FLASHMLA_WITH_CUDA)
  text += ", cuda";
#endif
  return text;
}

void add_bench_options(CLI::App& bench, BenchOptions& options) {
  flashmla::cli::ShapeFlags& shape = options.shape;
  // Integer ranges (so that messages do not quote the largest double), kept out of --help.
  const CLI::Validator positive = CLI::Range(1, std::numeric_limits<int>::max()).description("");
  const CLI::Validator non_negative =
      CLI::Range(0, std::numeric_limits<int>::max()).description("");
  std::vector<CLI::Option*> shape_flags = {
      bench.add_option("--batch", shape.batch, "Batch size b")->check(positive),
      bench.add_option("--s-q", shape.s_q, "New (query) tokens per sequence")->check(positive),
      bench.add_option("--s-k", shape.s_k, "Cached tokens of every sequence")->check(non_negative),
      bench.add_option("--heads", shape.heads, "Query heads h_q")->check(positive),
      bench.add_option("--heads-kv", shape.heads_kv, "KV heads h_kv (divides h_q)")
          ->check(positive),
      bench.add_option("--page-block-size", shape.page_block_size, "Tokens per KV page")
          ->check(positive),
      bench.add_option("--head-dim", shape.head_dim, "Head dimension d of q and K (576 or 512)")
          ->check(positive),
      bench.add_option("--head-dim-v", shape.head_dim_v, "Head dimension dv of V and out")
          ->check(positive),
      bench.add_flag("--causal", shape.causal, "Causal masking among the s_q new tokens"),
      bench
          .add_option("--topk", shape.topk,
                      "Token-sparse decode (mla_sparse_decode, with attn_sink) with this many "
                      "indices per query, drawn from each sequence's s_k tokens (0: dense)")
          ->check(non_negative),
  };
  for (CLI::Option* flag : shape_flags) flag->capture_default_str()->group("Shape (one case)");

  CLI::Option* cases =
      bench
          .add_option("--cases", options.cases_file,
                      "Case list in the FlashMLA anchor format (shared/anchors/*.json); each "
                      "case brings its own cache_seqlens and, when present, FlashMLA's time")
          ->type_name("FILE")
          ->group("Case list");
  for (CLI::Option* flag : shape_flags) cases->excludes(flag);
  bench
      .add_option("--sparse-variant-heads", options.sparse_variant_heads,
                  "Every token-sparse case of a --cases file (cases with topk, e.g. "
                  "shared/anchors/flashmla-sparse-decode-h200.json) also runs with each of these "
                  "h_q, as extra cases numbered after the file's, without anchor time")
      ->delimiter(',')
      ->check(positive)
      ->capture_default_str()
      ->group("Case list");
  bench
      .add_flag(
          "--no-sparse-variants", [&options](int64_t) { options.sparse_variant_heads.clear(); },
          "Only the file's own sparse cases (no --sparse-variant-heads)")
      ->group("Case list");
  bench
      .add_option("--case-filter", options.case_filter,
                  "Only cases matching all conditions KEY OP VALUE, comma-separated; KEY: "
                  "index b s_q s_k h_q h_kv d dv page causal topk (0: dense) anchor (1: has "
                  "FlashMLA's time); OP: = != < <= > >=; '=' takes alternatives a|b. E.g. "
                  "\"b<=8,h_q=128\" or \"index=0|13\"")
      ->type_name("EXPR")
      ->group("Case list");
  bench.add_option("--max-cases", options.max_cases, "At most this many cases (0: all)")
      ->check(non_negative)
      ->group("Case list");

  bench.add_option("--dtype", options.dtype, "Dtype of q and out (and of a 16-bit KV cache)")
      ->check(CLI::IsMember({"bf16", "fp16"}))
      ->capture_default_str();
  bench
      .add_option("--kv", options.kv,
                  "KV cache: auto (token-sparse cases FP8, as FlashMLA's sparse anchor; dense "
                  "cases --dtype), fp8 (every case: the 656-byte \"FP8 with scale\" cache, "
                  "quantized from the bf16 inputs on the device; needs --dtype bf16), or "
                  "bf16/fp16 (every case, equal to --dtype)")
      ->check(CLI::IsMember({"auto", "fp8", "bf16", "fp16"}))
      ->capture_default_str();
  bench.add_flag(
      "--no-bf16-kv-baseline", [&options](int64_t) { options.kv_baseline = false; },
      "Dense cases with the FP8 cache: do not also time their bf16 cache (same inputs, timed "
      "before quantizing)");
  bench
      .add_option("--device", options.device,
                  "auto (CUDA when usable, else CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
  bench.add_option("--seed", options.seed, "Seed of the random inputs")->capture_default_str();
  bench
      .add_option("--num-workers", options.num_workers,
                  "DecodePlan num_workers (0: the backend's choice)")
      ->check(non_negative)
      ->capture_default_str();

  bench
      .add_option(
          "--warmup", options.timing.warmup,
          "Untimed calls before timing (default: 10 on CUDA, 1 on the CPU; at least 1 on CUDA, "
          "where it also sizes the run)")
      ->check(non_negative)
      ->group("Timing");
  bench
      .add_option("--iters", options.timing.iters,
                  "Timed calls (default: as many as fit in --budget)")
      ->check(non_negative)
      ->group("Timing");
  bench
      .add_option("--budget", options.timing.budget_s,
                  "Seconds of timed calls per case when --iters is not given")
      ->check(CLI::Range(1e-3, 1e6).description(""))
      ->capture_default_str()
      ->group("Timing");
  bench
      .add_option("--input-sets", options.input_sets,
                  "Input sets to rotate among (default: 2 on CUDA, 1 on the CPU)")
      ->check(non_negative)
      ->group("Timing");
  bench
      .add_flag(
          "--no-graph", [&options](int64_t) { options.use_graph = false; },
          "CUDA: time direct launches instead of CUDA-graph replays")
      ->group("Timing");
  bench
      .add_flag(
          "--no-flush,--no-flush-l2", [&options](int64_t) { options.flush_caches = false; },
          "Keep caches warm between calls (default: before each timed call, flush L2 on CUDA, as "
          "triton do_bench does, or the last-level cache on the CPU)")
      ->group("Timing");
  bench
      .add_flag(
          "--no-ceilings", [&options](int64_t) { options.measure_ceilings = false; },
          "Skip measuring copy bandwidth and GEMM rate (no roofline fractions)")
      ->group("Timing");

  bench
      .add_option("--json", options.json_path,
                  "Also write the run as JSON to FILE ('-': stdout; the table then goes to "
                  "stderr)")
      ->type_name("FILE")
      ->group("Output");
}

// flashmla::Error and CliError messages already start with the offending argument.
void print_error(const std::string& message) {
  std::cerr << "error: " << message << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flashmla: Multi-head Latent Attention decode over a paged KV cache", "flashmla"};
  app.set_version_flag("--version", version_text());
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  flashmla bench                                  # b=4 s_q=1 h_q=16 s_k=4096 bf16\n"
      "  flashmla bench --batch 64 --heads 128 --s-k 8192 --json -\n"
      "  flashmla bench --cases anchors.json --case-filter \"b<=8\" --device cpu\n"
      "  flashmla bench --cases flashmla-sparse-decode-h200.json   # + h_q 16, 32 variants\n"
      "  flashmla bench --cases flashmla-dense-decode-h200.json --kv fp8\n"
      "  flashmla bench --batch 2 --s-q 2 --heads 16 --s-k 4096 --topk 128 --device cpu\n"
      "  flashmla info");

  BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand(
      "bench",
      "Time MLA decode, dense or token-sparse (one full decode call: split-KV + combine), "
      "against the machine's copy-bandwidth and GEMM ceilings; exit status 3 when the backend "
      "does not implement some case (reported as n/a)");
  add_bench_options(*bench, bench_options);
  CLI::App* info =
      app.add_subcommand("info", "Show the build, its backends and the devices they can use");

  CLI11_PARSE(app, argc, argv);

  try {
    if (*bench) return flashmla::cli::run_bench(bench_options);
    if (*info) {
      flashmla::cli::print_info(std::cout);
      return 0;
    }
  } catch (const flashmla::Error& e) {
    print_error(e.what());
    return 2;
  } catch (const flashmla::cli::CliError& e) {
    print_error(e.what());
    return 2;
#if defined(FLASHMLA_WITH_CUDA)
  } catch (const flashmla::cli::CudaError& e) {
    print_error(std::string("cuda: ") + e.what());
    return 1;
#endif
  } catch (const std::bad_alloc&) {
    print_error("out of host memory");
    return 1;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
  return 0;
}
