#!/usr/bin/env bash
# Installs dependencies, builds everything (CUDA sources too when nvcc is present) and runs
# all tests. GPU tests skip themselves on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh -DFLASHMLA_BUILD_TESTS=ON
ctest --test-dir build --output-on-failure -j "${FLASHMLA_JOBS:-$(nproc)}"
