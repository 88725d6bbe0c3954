#include "system_info.h"

#include <unistd.h>  // environ

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cuda_check.h"
#include "flashmla/decode.h"
#include "flashmla_git_commit.h"  // generated at build time by git_commit.cmake

namespace flashmla::cli {
namespace {

std::string env_commit() {
  const char* value = std::getenv("FLASHMLA_GIT_COMMIT");
  return value != nullptr ? std::string(value) : std::string();
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const size_t first = line.find_first_not_of(" \t", colon + 1);
    return first == std::string::npos ? std::string("unknown CPU") : line.substr(first);
  }
  return "unknown CPU";
}

const char* yes_no(bool value) {
  return value ? "yes" : "no";
}

#if defined(FLASHMLA_WITH_CUDA)
void print_gpus(std::ostream& out) {
  int runtime_version = 0;
  int driver_version = 0;
  cudaRuntimeGetVersion(&runtime_version);
  cudaDriverGetVersion(&driver_version);
  out << "  CUDA runtime " << runtime_version / 1000 << "." << runtime_version % 1000 / 10;
  if (driver_version > 0) {
    out << ", driver supports " << driver_version / 1000 << "." << driver_version % 1000 / 10;
  } else {
    out << ", no CUDA driver";
  }
  out << "\n";
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    out << "  no usable GPU: " << cudaGetErrorString(status) << "\n";
    cudaGetLastError();  // reset the runtime's last error, so later calls start clean
    return;
  }
  for (int device = 0; device < count; ++device) {
    cudaDeviceProp properties{};
    FLASHMLA_CLI_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
    out << "  cuda:" << device << "  " << properties.name << ", sm_" << properties.major
        << properties.minor << ", " << properties.multiProcessorCount << " SMs, "
        << properties.totalGlobalMem / (1ull << 30) << " GiB, L2 "
        << properties.l2CacheSize / (1 << 20) << " MiB\n";
  }
}
#endif

}  // namespace

std::string version_string() {
  return FLASHMLA_VERSION_STRING;
}

std::string git_commit() {
  const std::string overridden = env_commit();
  return overridden.empty() ? std::string(FLASHMLA_BUILD_GIT_COMMIT) : overridden;
}

std::optional<bool> git_dirty() {
  if (!env_commit().empty() || FLASHMLA_BUILD_GIT_DIRTY < 0) return std::nullopt;
  return FLASHMLA_BUILD_GIT_DIRTY == 1;
}

std::map<std::string, std::string> flashmla_environment() {
  std::map<std::string, std::string> variables;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string text(*entry);
    const size_t equals = text.find('=');
    if (text.rfind("FLASHMLA_", 0) != 0 || equals == std::string::npos) continue;
    const std::string name = text.substr(0, equals);
    if (name != "FLASHMLA_GIT_COMMIT") variables[name] = text.substr(equals + 1);
  }
  return variables;
}

std::string iso_date_utc() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

int cpu_thread_count() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return static_cast<int>(std::thread::hardware_concurrency());
#endif
}

std::string cpu_description() {
  return cpu_model_name() + ", " + std::to_string(cpu_thread_count()) + " threads";
}

#if defined(FLASHMLA_WITH_CUDA)
std::string gpu_description(int device) {
  cudaDeviceProp properties{};
  FLASHMLA_CLI_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  std::ostringstream text;
  text << properties.name << ", " << properties.multiProcessorCount << " SMs, "
       << properties.totalGlobalMem / (1ull << 30) << " GiB (cuda:" << device << ")";
  return text.str();
}
#endif

void print_info(std::ostream& out) {
  const std::optional<bool> dirty = git_dirty();
  out << "flashmla " << version_string() << "\n"
      << "git commit: " << git_commit() << (dirty.value_or(false) ? " (uncommitted changes)" : "")
      << "\n\n"
      << "CPU backend: yes\n"
      << "  " << cpu_description() << "\n"
#if defined(FLASHMLA_CLI_HAVE_OPENBLAS)
      << "  GEMM ceiling: OpenBLAS\n"
#else
      << "  GEMM ceiling: built-in blocked GEMM (OpenBLAS not found at build time)\n"
#endif
      << "\n";
#if defined(FLASHMLA_WITH_CUDA)
  out << "CUDA backend: compiled in; usable: " << yes_no(cuda_available()) << "\n";
  print_gpus(out);
#else
  out << "CUDA backend: " << yes_no(false) << " (built without CUDA)\n";
#endif
  out << "\n`flashmla bench --device auto` runs on: " << (cuda_available() ? "cuda:0" : "cpu")
      << "\n";
}

}  // namespace flashmla::cli
