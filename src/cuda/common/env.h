// Environment switches of the CUDA backend, for A/B measurements of kernel variants (each is read
// once per process by its user): FLASHMLA_DECODE_64ROW=serial, FLASHMLA_COMBINE_PDL=0,
// FLASHMLA_COMBINE_GROUPS=1|2|4.
#pragma once

#include <cstdlib>
#include <cstring>

namespace flashmla::detail::cuda {

// Whether environment variable `name` is set to exactly `value`.
inline bool env_equals(const char* name, const char* value) {
  const char* set = std::getenv(name);
  return set != nullptr && std::strcmp(set, value) == 0;
}

}  // namespace flashmla::detail::cuda
