#!/usr/bin/env bash
# The main job: install dependencies, build, and run `flashmla bench` on the default shape
# (b=4, s_q=1, h_q=16, s_k=4096, bf16, page 64) on the GPU if there is one, else on the CPU.
# Arguments are passed to `flashmla bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
bash tools/build.sh -DFLASHMLA_BUILD_TESTS=OFF
./build/apps/flashmla/flashmla bench "$@"
