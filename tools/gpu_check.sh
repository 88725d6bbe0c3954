#!/usr/bin/env bash
# One call on the GPU machine (the `device` tool; carry .deps): build the library, CLI, CUDA
# tests and Python extension; run the CUDA test suite, the Python CUDA tests, the host-overhead
# measurement and `flashmla bench` over the dense anchor cases. Logs and JSON go to $OUT.
#
#   bash tools/gpu_check.sh [build|tests|gtest|pytest|bench|bench-sparse|bench-fp8|ncu|sweep|ab|all]...
#   (default: all, which is build, tests and the three benches; tests = gtest + pytest)
#   PACK_LOGS=1 packs the logs, ncu reports and SASS tables into one $OUT/logs<TAG>.tgz at the end
#   (the device tool returns at most 8 files); JSON results stay as they are.
#   BENCH_ARGS adds options to the dense bench; TAG=name suffixes the bench logs and JSON files
#   (A/B runs of one build in one call). SOURCE=dir (with TAG) builds and runs another tree, e.g.
#   the base revision of an A/B: `bash tools/export_rev.sh main .ab/main` here, carry .ab, then
#   `SOURCE=.ab/main TAG=main bash tools/gpu_check.sh bench` there.
#
# .deps holds what the GPU image lacks: CLI11 and nlohmann headers (.deps/include), GoogleTest
# sources (.deps/googletest) and the anchor files (.deps/anchors).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/flashmla-gpu-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
# The device copy of the tree has no up-to-date .git: `git rev-parse HEAD > .deps/git_commit` before
# the call lets the bench JSON carry the right commit. A bench run outside this script must export
# FLASHMLA_GIT_COMMIT=$(cat .deps/git_commit) itself (session 5 got a stale commit without it).
steps=${*:-all}
has() {
  [[ " $steps " == *" $1 "* || (" $steps " == *" all "* && $1 != ncu && $1 != sweep && $1 != ab) ||
    (" $steps " == *" tests "* && ($1 == gtest || $1 == pytest)) ]]
}
tag=${TAG:+_$TAG}
# SOURCE=dir builds another source tree (e.g. a revision exported by tools/export_rev.sh) into
# BUILD (default build-gpu, or build-gpu_<TAG> with SOURCE): A/B of two revisions in one call.
SOURCE=${SOURCE:-.}
if [[ $SOURCE == . ]]; then BUILD=${BUILD:-build-gpu}; else BUILD=${BUILD:-build-gpu$tag}; fi
commit_file=.deps/git_commit
[[ $SOURCE == . ]] || commit_file=$SOURCE/.git_commit  # written by tools/export_rev.sh
[[ -f $commit_file ]] && export FLASHMLA_GIT_COMMIT=$(cat "$commit_file")

if has build || has gtest || has pytest || has bench || has bench-sparse || has bench-fp8 || has ncu ||
  has sweep || has ab; then
  t0=$SECONDS
  cmake -S "$SOURCE" -B "$BUILD" -G Ninja -DFLASHMLA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
    -DFLASHMLA_BUILD_TESTS=ON -DFLASHMLA_BUILD_CLI=ON -DFLASHMLA_BUILD_PYTHON=ON \
    -DPython_EXECUTABLE="$(command -v python3)" -DFLASHMLA_DEPS_INCLUDE="$PWD/.deps/include" \
    -DFLASHMLA_GTEST_SOURCE_DIR="$PWD/.deps/googletest" > "$OUT/build$tag.log" 2>&1 &&
    cmake --build "$BUILD" -j "$(nproc)" >> "$OUT/build$tag.log" 2>&1
  rc=$?
  echo "=== build rc=$rc ($((SECONDS - t0)) s)"
  [[ $rc == 0 ]] || { grep -E "error" -A3 "$OUT/build$tag.log" | head -60; exit 1; }
fi

if has gtest; then
  t0=$SECONDS
  timeout ${GTEST_TIMEOUT:-300} $BUILD/tests/flashmla_gpu_tests > "$OUT/gpu_tests.log" 2>&1
  echo "=== gpu tests rc=$? ($((SECONDS - t0)) s)"
  grep -E "^\[ (summary|gpu-tests) \]|^\[  FAILED  \]|^\[  PASSED  \]" "$OUT/gpu_tests.log" | tail -30
  t0=$SECONDS
  timeout 200 compute-sanitizer --tool memcheck $BUILD/tests/flashmla_gpu_tests \
    --gtest_filter='*SanitizerSmall*:*InvalidBlockId*' > "$OUT/memcheck.log" 2>&1
  echo "=== memcheck rc=$? ($((SECONDS - t0)) s): $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log")"
  # The FP8 cluster loop's split consumer only runs on large plans by default: force it here.
  FLASHMLA_FP8_CONSUMER=split timeout 200 compute-sanitizer --tool memcheck \
    $BUILD/tests/flashmla_gpu_tests --gtest_filter='*FP8DenseDecode.SanitizerSmall:*SparseDecode.SanitizerSmall' \
    > "$OUT/memcheck_split.log" 2>&1
  echo "=== memcheck (FP8 split consumer) rc=$?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_split.log")"
  t0=$SECONDS
  timeout 200 compute-sanitizer --tool racecheck $BUILD/tests/flashmla_gpu_tests \
    --gtest_filter='*SanitizerSmall*' > "$OUT/racecheck.log" 2>&1
  echo "=== racecheck rc=$? ($((SECONDS - t0)) s): $(grep -E 'RACECHECK SUMMARY' "$OUT/racecheck.log")"
  # The ping-pong loop's bar.arrive hand-offs draw reports racecheck cannot order
  # (tools/racecheck_arrive_probe.cu); the serial 64-row loop must stay at 0.
  FLASHMLA_DECODE_64ROW=serial timeout 200 compute-sanitizer --tool racecheck \
    $BUILD/tests/flashmla_gpu_tests --gtest_filter='*SanitizerSmall*' > "$OUT/racecheck_serial.log" 2>&1
  echo "=== racecheck (serial 64-row loop) rc=$?: $(grep -E 'RACECHECK SUMMARY' "$OUT/racecheck_serial.log")"
fi

if has pytest; then
  for suite in test_cuda.py "--ignore=tests/python/test_cuda.py"; do
    t0=$SECONDS
    [[ $suite == test_cuda.py ]] && target=tests/python/test_cuda.py || target="tests/python $suite"
    PYTHONPATH=$BUILD/python timeout 300 python3 -X faulthandler -m pytest $target -v -rf \
      -p no:cacheprovider > "$OUT/pytest_${suite//[^a-z]/}.log" 2>&1
    echo "=== pytest $suite rc=$? ($((SECONDS - t0)) s)"
    grep -E "FAILED|Error|passed|failed|Fatal|^tests.*(PASSED|FAILED)" "$OUT/pytest_${suite//[^a-z]/}.log" |
      grep -v "^ *File" | tail -25
  done
  PYTHONPATH=$BUILD/python timeout 120 python3 tests/python/bench_overhead.py \
    > "$OUT/overhead.log" 2>&1
  echo "=== overhead rc=$?"; tail -12 "$OUT/overhead.log"
fi

if has bench; then
  t0=$SECONDS
  timeout 400 $BUILD/apps/flashmla/flashmla bench --cases .deps/anchors/flashmla-dense-decode-h200.json \
    --device cuda ${BENCH_ARGS:-} --json "$OUT/bench_dense_anchor$tag.json" > "$OUT/bench$tag.log" 2>&1
  echo "=== bench$tag rc=$? ($((SECONDS - t0)) s)"; tail -32 "$OUT/bench$tag.log"
fi

if has bench-sparse; then  # issue 5: FlashMLA's sparse FP8 cases, plus h_q 16 and 32 variants
  t0=$SECONDS
  timeout 300 $BUILD/apps/flashmla/flashmla bench --cases .deps/anchors/flashmla-sparse-decode-h200.json \
    --device cuda --no-ceilings --json "$OUT/bench_sparse_anchor$tag.json" > "$OUT/bench_sparse$tag.log" 2>&1
  echo "=== bench sparse$tag rc=$? ($((SECONDS - t0)) s)"; tail -26 "$OUT/bench_sparse$tag.log"
fi

if has bench-fp8; then  # issue 5: dense decode over an FP8 cache on the dense anchor cases
  t0=$SECONDS
  timeout 300 $BUILD/apps/flashmla/flashmla bench --cases .deps/anchors/flashmla-dense-decode-h200.json \
    --device cuda --kv fp8 --no-ceilings --json "$OUT/bench_dense_fp8_anchor$tag.json" > "$OUT/bench_fp8$tag.log" 2>&1
  echo "=== bench fp8$tag rc=$? ($((SECONDS - t0)) s)"; tail -28 "$OUT/bench_fp8$tag.log"
fi

if has ncu; then  # where the time goes: NCU_CASES="kind:index ..." (kind dense, fp8 or sparse)
  # Per case: the section summary (ncu_<kind>_<index>.txt) and the stall samples per SASS
  # instruction (sass_<kind>_<index>.csv; summarize with tools/sass_hotspots.py).
  for kc in ${NCU_CASES:-dense:0 dense:17 dense:21}; do
    kind=${kc%%:*} c=${kc##*:}
    case $kind in
      dense) args=(--cases .deps/anchors/flashmla-dense-decode-h200.json) ;;
      fp8) args=(--cases .deps/anchors/flashmla-dense-decode-h200.json --kv fp8 --no-bf16-kv-baseline) ;;
      sparse) args=(--cases .deps/anchors/flashmla-sparse-decode-h200.json) ;;
    esac
    rep=/tmp/ncu_${kind}_$c$tag
    timeout 150 ncu --clock-control none -k regex:decode_kernel -c 1 --import-source no \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
      --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
      --section SourceCounters -o "$rep" -f \
      $BUILD/apps/flashmla/flashmla bench "${args[@]}" --device cuda --case-filter "index=$c" \
      --no-ceilings --budget 0.05 > "$rep.log" 2>&1
    echo "=== ncu $kind case $c rc=$?"
    ncu -i "$rep.ncu-rep" --page details > "$OUT/ncu_${kind}_$c$tag.txt" 2>&1
    ncu -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/sass_${kind}_$c$tag.csv" 2>&1
    grep -E "Duration|DRAM Throughput|Compute \(SM\) Throughput|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Registers Per|L2 Hit" \
      "$OUT/ncu_${kind}_$c$tag.txt" | head -12
    python3 tools/sass_hotspots.py --top 6 "$OUT/sass_${kind}_$c$tag.csv" | head -16
  done
fi

if has sweep; then  # split granularity for the small-batch anchor cases (index 16: b=1, 17: b=8)
  for w in 4 8 16 33 66; do
    timeout 60 $BUILD/apps/flashmla/flashmla bench --cases .deps/anchors/flashmla-dense-decode-h200.json \
      --device cuda --case-filter "index=16|17|19" --num-workers $w --no-ceilings 2>&1 |
      grep -E "^ *(16|17|19) " | sed "s/^/workers=$w /"
  done
fi

if has ab; then  # interleaved A/B of revisions: AB_TREES="name:dir ..." (dir . = this build)
  # Each other tree (e.g. from tools/export_rev.sh, carried) gets a CLI-only build in
  # build-ab_<name>, in parallel; then AB_ROUNDS rounds (default 2) of every tree over AB_CASES
  # ("kind:filter ...", kind dense, sparse or fp8; filter as --case-filter's index=), one line of
  # "case:median us" per tree, kind and round.
  declare -A ab_bin
  for nd in ${AB_TREES:?AB_TREES=\"name:dir ...\"}; do
    name=${nd%%:*} dir=${nd#*:}
    if [[ $dir == . ]]; then ab_bin[$name]=$BUILD/apps/flashmla/flashmla; continue; fi
    ab_bin[$name]=build-ab_$name/apps/flashmla/flashmla
    (cmake -S "$dir" -B "build-ab_$name" -G Ninja -DFLASHMLA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DFLASHMLA_BUILD_CLI=ON -DFLASHMLA_DEPS_INCLUDE="$PWD/.deps/include" > "$OUT/build_ab_$name.log" 2>&1 &&
      cmake --build "build-ab_$name" -j "$(($(nproc) / 2))" --target flashmla_cli \
        >> "$OUT/build_ab_$name.log" 2>&1
      echo "=== build ab $name rc=$?") &
  done
  wait
  for round in $(seq 1 "${AB_ROUNDS:-2}"); do
    for nd in $AB_TREES; do
      name=${nd%%:*}
      for kc in ${AB_CASES:-dense:0|16|17 sparse:0|1|3 fp8:0|16}; do
        kind=${kc%%:*} filter=${kc#*:}
        case $kind in
          dense) args=(--cases .deps/anchors/flashmla-dense-decode-h200.json) ;;
          fp8) args=(--cases .deps/anchors/flashmla-dense-decode-h200.json --kv fp8 --no-bf16-kv-baseline) ;;
          sparse) args=(--cases .deps/anchors/flashmla-sparse-decode-h200.json) ;;
        esac
        log="$OUT/ab_${name}_${kind}_$round.log"
        timeout 120 "${ab_bin[$name]}" bench "${args[@]}" --device cuda --no-ceilings \
          --case-filter "index=$filter" > "$log" 2>&1
        echo "--- $name $kind round $round: $(grep -E '^ +[0-9]+ ' "$log" |
          awk '{printf "%s:%s ", $1, $(NF-5)}')"
      done
    done
  done
fi

if [[ ${PACK_LOGS:-0} == 1 ]]; then
  (cd "$OUT" && shopt -s nullglob && files=(*.log *.txt *.csv) &&
    if ((${#files[@]})); then tar czf "logs$tag.tgz" "${files[@]}" && rm -f "${files[@]}"; fi)
  echo "=== logs packed into $OUT/logs$tag.tgz"
fi
