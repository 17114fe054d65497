#!/usr/bin/env bash
# CI: the legacy tflite-runtime backend, which needs numpy<2 (its wheels use the numpy 1.x ABI).
#
# 1. In the main environment (torch, litert-torch) build small TFLite fixture bundles plus torch
#    reference outputs: python3 tests/runtime_bundles.py DIR
# 2. In a clean venv (NOT --system-site-packages: numpy 2 is installed globally) install numpy<2,
#    tflite-runtime==2.14.0, pytest and edgeode --no-deps, then run the tflite-runtime tests against
#    the fixtures (EDGEODE_TFLITE_FIXTURES); torch is not installed there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/edgeode-tflite-runtime.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "== building TFLite fixture bundles in the main environment"
"$PYTHON" tests/runtime_bundles.py "$WORK/fixtures" > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }

echo "== clean venv with numpy<2 and tflite-runtime 2.14.0"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# setuptools/wheel here, once, so that edgeode's build below needs no isolated build env of its own (~6 s)
"$VPY" -m pip install -q "numpy<2" "tflite-runtime==2.14.0" "pytest>=7" "setuptools>=68" wheel
# install from a copy so that the build leaves no build/ directory in the checkout
mkdir "$WORK/src" && cp -r pyproject.toml README.md edgeode "$WORK/src/"
"$VPY" -m pip install -q --no-deps --no-build-isolation "$WORK/src"
"$VPY" -c "import numpy, tflite_runtime.interpreter; print('numpy', numpy.__version__, '| tflite-runtime ok')"

echo "== tflite-runtime tests"
EDGEODE_TFLITE_FIXTURES="$WORK/fixtures" "$VPY" -m pytest -q -p no:cacheprovider \
    tests/test_manifest.py tests/test_runtime.py -k "tflite_runtime or test_manifest" -rs
