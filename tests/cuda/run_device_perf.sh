#!/usr/bin/env bash
# One call on the GPU machine for performance work: build, time the anchor cases, and profile one
# memory-bound and one compute-bound decode kernel with Nsight Compute. Logs go to $OUT.
#   bash tests/cuda/run_device_perf.sh     (carry .deps, as for run_device.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/flashmla-device-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH

t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DFLASHMLA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DFLASHMLA_NATIVE=ON -DFLASHMLA_WERROR=OFF -DFLASHMLA_BUILD_CLI=OFF -DFLASHMLA_BUILD_TESTS=ON \
  -DFLASHMLA_GTEST_SOURCE_DIR="$PWD/.deps/googletest" > "$OUT/build.log" 2>&1 &&
  ninja -C build-gpu flashmla_gpu_tests >> "$OUT/build.log" 2>&1 || {
  grep -E "error" -A4 "$OUT/build.log" | head -40; exit 1; }
echo "=== build ($((SECONDS - t0)) s)"
bin=build-gpu/tests/flashmla_gpu_tests
bench() {  # env assignments as arguments
  env "$@" timeout 90 "$bin" --gtest_also_run_disabled_tests --gtest_filter='*DenseDecodeBench*' \
    2>&1 | grep -E "^\[ bench \]|Failure|rror" | grep -v "b s_q"
}
bench X=0 > "$OUT/bench.log" 2>&1
cat "$OUT/bench.log"
for c in b128h16 b128h128; do
  t0=$SECONDS
  FLASHMLA_BENCH_ONCE=1 FLASHMLA_BENCH_FILTER=$c timeout 150 ncu --clock-control none \
    -k regex:dense_decode_kernel --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section LaunchStats --section Occupancy \
    "$bin" --gtest_also_run_disabled_tests --gtest_filter='*DenseDecodeBench*' > "$OUT/ncu_$c.txt" 2>&1
  echo "=== ncu $c rc=$? ($((SECONDS - t0)) s)"
  grep -E "Duration|Throughput|Busy|Warp Cycles Per Issued|Issued Warp|No Eligible|Active Warps Per|stalled|spends|Registers|Shared Memory Configuration Size|L2 Hit|Mem Pipes|Bandwidth" \
    "$OUT/ncu_$c.txt" | cut -c1-400 | head -40
done
