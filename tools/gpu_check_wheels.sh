#!/usr/bin/env bash
# Download, on a machine that reaches PyPI, the wheels tools/gpu_check.sh installs on a GPU machine
# that cannot: the pure-Python packages our tests use and its image lacks (Python 3.12 wheels).
#   tools/gpu_check_wheels.sh            -> .whl/ (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
pin() { grep -E "^$1==" requirements*.txt | head -1 | cut -d: -f2; }
mkdir -p .whl
for pkg in diffusers open_clip_torch expecttest; do
  spec=$(pin "$pkg")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${spec:-$pkg}"
done
# open_clip's tokenizer needs ftfy (and ftfy wcwidth)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl ftfy wcwidth
ls -la .whl
