// What a benchmark record says about the build and the machine: version, git commit, date,
// device descriptions; and the report of `flashmla info`.
#pragma once

#include <map>
#include <optional>
#include <ostream>
#include <string>

namespace flashmla::cli {

std::string version_string();  // the project version, e.g. "0.1.0"

// The commit the tool was built from (`git rev-parse HEAD` at build time), or the environment's
// FLASHMLA_GIT_COMMIT when set (for builds from a tree without .git, e.g. a copied checkout).
std::string git_commit();
// Whether the build's work tree had uncommitted changes; nullopt when unknown or overridden.
std::optional<bool> git_dirty();

std::string iso_date_utc();  // "2026-11-29T03:12:45Z"

// The FLASHMLA_* environment variables of this run (except FLASHMLA_GIT_COMMIT, reported as the
// commit): some select kernel variants for A/B runs (FLASHMLA_DECODE_64ROW, FLASHMLA_COMBINE_PDL),
// so a benchmark record must say which were set.
std::map<std::string, std::string> flashmla_environment();

int cpu_thread_count();         // threads the CPU backend uses (OpenMP)
std::string cpu_description();  // "AMD EPYC 9654 96-Core Processor, 2 threads"
#if defined(FLASHMLA_WITH_CUDA)
std::string gpu_description(int device);  // "NVIDIA H200, 132 SMs, 140 GiB (cuda:0)"
#endif

// `flashmla info`: version, backends compiled in and usable, devices.
void print_info(std::ostream& out);

}  // namespace flashmla::cli
