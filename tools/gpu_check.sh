#!/usr/bin/env bash
# The GPU check: build dapo_fast with its CUDA kernels against the torch installed on this CUDA
# machine, run every test (the `cuda` ones and the Triton kernels natively, no interpreter), run
# `dapo-fast bench --quick --device cuda`, and write one summary file.
#
#   tools/gpu_check.sh [OUT_DIR]        (default: $OUT, else ./gpu_check_out)
#
# Sized for a 16-core H100/H200 machine: about 2 min build, 2-3 min tests, 1 min bench (under 8 min).
# Python packages the machine lacks (diffusers, open_clip_torch, ...) are taken from wheels in
# .whl/ when that folder exists (tools/gpu_check_wheels.sh downloads them on a machine with PyPI);
# the tests that need a missing package are skipped and listed in the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
summary="$out/gpu_check_summary.txt"
py=${PYTHON:-python3}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
say() { echo "$*" | tee -a "$summary"; }
: >"$summary"

say "# dapo_fast GPU check ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$summary"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/dapo_site .whl/*.whl \
    >"$out/wheels.log" 2>&1 && export PYTHONPATH=/tmp/dapo_site${PYTHONPATH:+:$PYTHONPATH}
  say "wheels: $(ls .whl | wc -l) installed from .whl/ (log: wheels.log)"
fi
"$py" - <<'EOF' 2>&1 | tee -a "$summary"
import importlib, platform
import torch
print(f"python {platform.python_version()}, torch {torch.__version__} (cuda {torch.version.cuda}), "
      f"device {torch.cuda.get_device_name(0)} sm_{''.join(map(str, torch.cuda.get_device_capability(0)))}")
for name in ("triton", "torchvision", "diffusers", "transformers", "open_clip", "cv2", "hypothesis", "xdist"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name} {getattr(mod, '__version__', '?')}")
    except Exception as err:  # report, do not stop: the tests that need it skip
        print(f"  {name} missing ({type(err).__name__})")
EOF

# ---- build: CUDA kernels for the visible device, all cores
arch=$("$py" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
t0=$(date +%s)
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=$(nproc) "$py" setup.py build_ext --inplace >"$out/build.log" 2>&1
build_rc=$?
say "build: rc=$build_rc in $(( $(date +%s) - t0 ))s (TORCH_CUDA_ARCH_LIST=$arch, MAX_JOBS=$(nproc); log: build.log)"
if [ $build_rc -ne 0 ]; then
  tail -30 "$out/build.log" | tee -a "$summary"
  exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$py" -c "import dapo_fast; print('build_info:', dapo_fast.build_info())" 2>&1 | tee -a "$summary"

# ---- tests: everything, the CUDA and native-Triton ones included (TRITON_INTERPRET stays unset)
unset TRITON_INTERPRET
workers=""
"$py" -c "import xdist" 2>/dev/null && workers="-n 8"
t0=$(date +%s)
timeout 330 "$py" -m pytest tests -q -rfEs $workers -p no:cacheprovider >"$out/pytest.log" 2>&1
test_rc=$?
say "tests: rc=$test_rc in $(( $(date +%s) - t0 ))s (log: pytest.log)"
grep -E "^(FAILED|ERROR) " "$out/pytest.log" | head -40 | tee -a "$summary"
grep -E "^SKIPPED" "$out/pytest.log" | head -20 | tee -a "$summary"
tail -1 "$out/pytest.log" | tee -a "$summary"

# ---- benchmarks on the GPU
t0=$(date +%s)
timeout 150 "$py" -m dapo_fast.cli bench --quick --device cuda --repeats 5 --out "$out/bench" >"$out/bench.log" 2>&1
bench_rc=$?
say "bench: rc=$bench_rc in $(( $(date +%s) - t0 ))s (log: bench.log; CSV in bench/)"
grep -E "^\|" "$out/bench.log" | head -80 >>"$summary"

say "total: $(elapsed)s"
[ $test_rc -eq 0 ] && [ $bench_rc -eq 0 ]
