#!/usr/bin/env bash
# Installs dependencies, builds everything (CUDA sources too when nvcc is present) and runs
# all tests: the C++ suites (ctest), the Python suite against the build tree, and the Python
# suite again against the package installed by `pip install .`. GPU tests skip themselves on
# machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh

python3 -m venv build/pyenv
build/pyenv/bin/pip install -q --upgrade pip
build/pyenv/bin/pip install -q "nanobind==3.1.0" "scikit-build-core==1.1.2" "pytest>=8" numpy ml_dtypes

bash tools/build.sh -DFLASHMLA_BUILD_TESTS=ON -DFLASHMLA_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$PWD/build/pyenv/bin/python"
ctest --test-dir build --output-on-failure -j "${FLASHMLA_JOBS:-$(nproc)}"
PYTHONPATH=build/python build/pyenv/bin/python -m pytest tests/python -q

# Packaging: `pip install .` into the venv, then the same tests against the installed package.
# The CUDA kernels were compiled (and compile-checked) above, so this build skips them.
FLASHMLA_CUDA=${FLASHMLA_PIP_CUDA:-OFF} build/pyenv/bin/pip install -q --no-build-isolation . \
  -C build-dir=build/pip
(cd build && pyenv/bin/python -m pytest ../tests/python -q)
