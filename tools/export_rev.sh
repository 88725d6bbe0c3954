#!/usr/bin/env bash
# Exports git revision REV as a plain source tree into DIR (git-ignored, e.g. .ab/main), with its
# commit hash in DIR/.git_commit, so that one device call can build and benchmark it beside the
# working tree: carry DIR, then `SOURCE=DIR TAG=name bash tools/gpu_check.sh bench` there.
#
#   bash tools/export_rev.sh REV DIR
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# == 2 ]] || { echo "usage: $0 REV DIR" >&2; exit 2; }
rev=$(git rev-parse --verify "$1^{commit}")
git check-ignore -q "$2" || { echo "$2 is not git-ignored: it would travel twice" >&2; exit 2; }
rm -rf "$2"
mkdir -p "$2"
git archive "$rev" | tar -x -C "$2"
echo "$rev" > "$2/.git_commit"
echo "exported $rev into $2"
