#!/usr/bin/env bash
# Installs what building and testing flashmla needs on Debian/Ubuntu (idempotent).
set -euo pipefail

packages=(cmake ninja-build g++ git libgtest-dev libopenblas-dev nlohmann-json3-dev libcli11-dev
          python3 python3-pip python3-venv python3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# nvcc is often installed outside PATH; the build finds it there.
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "install-deps: nvcc found at /usr/local/cuda/bin (add it to PATH to build the CUDA backend)"
fi
