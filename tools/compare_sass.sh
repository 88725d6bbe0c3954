#!/usr/bin/env bash
# Is the machine code of the decode kernels unchanged between two git revisions? Compiles the
# instantiation files of both for sm_90a (flags as in CMakeLists.txt) and compares their SASS,
# ignoring addresses, encodings and the per-build hash in internal symbol names (nvcc's cubins
# differ byte-wise from build to build). Needs nvcc and nvdisasm (`pip install
# nvidia-cuda-nvdisasm` provides one; set NVDISASM to its path).
#
#   bash tools/compare_sass.sh [BASE_REV] [FILE...]   (default: HEAD vs the working tree, all files)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-HEAD}
shift || true
files=("$@")
[[ ${#files[@]} -gt 0 ]] || mapfile -t files < <(ls src/cuda/sm90/decode/instantiations/*.cu)
nvdisasm=${NVDISASM:-$(command -v nvdisasm || true)}
[[ -x $nvdisasm ]] || { echo "nvdisasm not found: set NVDISASM" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git worktree add -q --detach "$work/base" "$base"
trap 'git worktree remove --force "$work/base"; rm -rf "$work"' EXIT
sass() {  # tree file -> normalized SASS on stdout
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
    -I"$1/include" -I"$1/src" -cubin "$1/$2" -o "$work/k.cubin" 2>/dev/null
  "$nvdisasm" -c "$work/k.cubin" |
    sed -E 's#/\*[0-9a-f]+\*/##g; s#/\* 0x[0-9a-f]+ \*/##g; s#_INTERNAL_[0-9a-z_]+#_INTERNAL_#g' |
    grep -v -E '^\s*($|\.|//)'
}
status=0
for f in "${files[@]}"; do
  sass "$work/base" "$f" > "$work/a.s"
  sass "$PWD" "$f" > "$work/b.s"
  if cmp -s "$work/a.s" "$work/b.s"; then
    echo "same      $f"
  else
    echo "DIFFERENT $f ($(diff "$work/a.s" "$work/b.s" | grep -c '^[<>]') lines)"
    status=1
  fi
done
exit $status
