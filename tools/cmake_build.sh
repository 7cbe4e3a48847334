#!/usr/bin/env bash
# Configures, builds and runs the CMake build of csrc/ and its C++ tests (ctest).
# Usage: tools/cmake_build.sh BUILD_DIR [extra cmake args, e.g. -DDAPO_FAST_SANITIZE=ON]
#
# torch's CMake config (find_package(Torch)) of a CUDA wheel insists on finding CUDA even for a
# CPU-only target: point it at nvcc, pin an arch (no GPU to detect), and hand it the NVRTC
# library that ships in the nvidia wheels rather than in /usr/local/cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/cmake_build.sh BUILD_DIR [cmake args]}
shift
prefix=$(python -c 'import torch; print(torch.utils.cmake_prefix_path)')
args=(-DCMAKE_PREFIX_PATH="$prefix")
if python -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
  export PATH="$CUDA_HOME/bin:$PATH"
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0}
  nvrtc=$(python - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
hits = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*")) + glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
print(hits[0] if hits else "")
PY
)
  args+=(-DCUDAToolkit_ROOT="$CUDA_HOME" -DCMAKE_CUDA_STANDARD=17)
  [ -n "$nvrtc" ] && args+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
cmake -S . -B "$build" "${args[@]}" "$@" >"$build.configure.log" 2>&1 || { tail -40 "$build.configure.log"; exit 1; }
cmake --build "$build" -j"${MAX_JOBS:-2}" >"$build.build.log" 2>&1 || { grep -E "error|Error" "$build.build.log" | head -40; exit 1; }
ctest --test-dir "$build" --output-on-failure
