#!/usr/bin/env bash
# Compiles and links the CUDA build of dapo_fast._C into a scratch directory (the in-place CPU
# build is left alone) and imports it. CUDA sources compile here but never run: no GPU.
# Usage: tools/check_cuda_build.sh [scratch_dir]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${1:-$(mktemp -d)}
mkdir -p "$scratch"
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PATH="$CUDA_HOME/bin:$PATH"
export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export MAX_JOBS=${MAX_JOBS:-2}
python setup.py -q build_ext --build-temp "$scratch/temp" --build-lib "$scratch/lib" >"$scratch/build.log" 2>&1 || {
  grep -E "error|Error" "$scratch/build.log" | head -40; echo "CUDA build failed, log: $scratch/build.log"; exit 1; }
mkdir -p "$scratch/pkg"
rm -rf "$scratch/pkg/dapo_fast" && cp -r dapo_fast "$scratch/pkg/" && rm -f "$scratch/pkg/dapo_fast"/_C*.so
cp "$scratch"/lib/dapo_fast/_C*.so "$scratch/pkg/dapo_fast/"
cd "$scratch/pkg" && python - <<'PY'
import torch, dapo_fast
info = dapo_fast.build_info()
assert info["cuda"], info
ops = [op for op in torch._C._dispatch_get_all_op_names() if op.startswith("dapo_fast::")]
missing = [op for op in ops if "_triton" not in op and not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
print("CUDA build imports:", info)
print("ops with a CUDA kernel:", sorted(set(ops) - set(missing)))
print("ops without one:", sorted(missing))
assert not missing, f"compiled ops without a CUDA kernel: {sorted(missing)}"
PY
