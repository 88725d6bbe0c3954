#!/usr/bin/env bash
# One call on the GPU machine: build the library and the CUDA test suite, run the suite, run
# compute-sanitizer (memcheck, racecheck) on the small cases, and time the anchor cases.
# Full logs go to $OUT (at most 8 files come back); a short digest is printed last.
#
#   bash tests/cuda/run_device.sh [quick]     # quick: skip the sanitizers
#
# GoogleTest: the package if installed, else the sources in .deps/googletest (carry .deps).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/flashmla-device-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
mode=${1:-full}

{
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw --format=csv
  echo "cores: $(nproc)"; cmake --version | head -1; nvcc --version | tail -1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

t0=$SECONDS
cmake -S . -B build-gpu -G Ninja -DFLASHMLA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DFLASHMLA_NATIVE=ON -DFLASHMLA_WERROR=OFF -DFLASHMLA_BUILD_CLI=OFF -DFLASHMLA_BUILD_TESTS=ON \
  -DFLASHMLA_GTEST_SOURCE_DIR="$PWD/.deps/googletest" > "$OUT/build.log" 2>&1 &&
  ninja -C build-gpu flashmla_gpu_tests >> "$OUT/build.log" 2>&1
rc=$?
echo "=== build rc=$rc ($((SECONDS - t0)) s)"
if [[ $rc != 0 ]]; then
  grep -E "error|Error" -A4 "$OUT/build.log" | head -80
  exit 1
fi
bin=build-gpu/tests/flashmla_gpu_tests

t0=$SECONDS
timeout 300 "$bin" > "$OUT/tests.log" 2>&1
rc=$?
echo "=== tests rc=$rc ($((SECONDS - t0)) s)"
if [[ $mode != quick ]]; then
  t0=$SECONDS
  timeout 150 compute-sanitizer --tool memcheck --leak-check full "$bin" \
    --gtest_filter='*SanitizerSmall*:*InvalidBlockId*:*Unaligned*:*FP8*' > "$OUT/memcheck.log" 2>&1
  echo "=== memcheck rc=$? ($((SECONDS - t0)) s)"
  t0=$SECONDS
  timeout 150 compute-sanitizer --tool racecheck --racecheck-report all "$bin" \
    --gtest_filter='*SanitizerSmall*' > "$OUT/racecheck.log" 2>&1
  echo "=== racecheck rc=$? ($((SECONDS - t0)) s)"
fi

t0=$SECONDS
timeout 150 "$bin" --gtest_also_run_disabled_tests --gtest_filter='*DenseDecodeBench*' \
  > "$OUT/bench.log" 2>&1
echo "=== bench rc=$? ($((SECONDS - t0)) s)"
echo "=================== digest"
grep -E "^\[ (summary|gpu-tests) \]|^\[  FAILED  \]|^\[  PASSED  \]|Failure|never written|expected" \
  "$OUT/tests.log" | head -60
for f in memcheck racecheck; do
  [[ -f $OUT/$f.log ]] && { echo "--- $f:"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Error|Hazard|PASSED|FAILED" "$OUT/$f.log" | sort | uniq -c | head -12; }
done
echo "--- bench:"
grep -E "^\[ bench \]|Failure|error" "$OUT/bench.log"
