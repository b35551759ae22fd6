#!/usr/bin/env bash
# The CUDA device check:  bench/device_check.sh OUTDIR
#
# Meant for a lent GPU machine that has a fresh copy of the repository
# (nothing built) and no network. In order, each stage under a time limit:
#   build      the extension in place with the CUDA kernels, on every core;
#   test_cuda  pytest tests/test_cuda.py and the CUDA cases of
#              test_compile.py and test_cells.py, with FUSEDRNN_EXPECT_CUDA=1
#              so that a build without CUDA fails instead of skipping them;
#   bench      bench/cuda_bench.py: fusedrnn.LSTM against nn.LSTM (cuDNN);
#   cpu_tests  a quick subset of the CPU tests, and the build-info checks;
# then the benchmark table, last. OUTDIR receives check.log (all output),
# one log per stage, test_cuda.xml, cuda_bench.json and summary.json (each
# stage's status and seconds, the build info).
#
# Without a GPU the GPU stages are skipped (a dry run of this script);
# without nvcc the extension is built CPU-only and test_cuda says so. The
# stages share FUSEDRNN_CHECK_BUDGET_S seconds (default 420), so the check
# ends within 8 minutes. The exit status is 1 if any stage failed or ran out
# of time.
#
# The compiler is the one torch's extension builder picks (CXX, CC and
# LDSHARED when set). On this workplace's lent GPU machines CXX is
# /opt/gcc/bin/g++, a wrapper whose extensions crash when C++ throws a
# torch error that prints sizes (a three-line torch extension does too; seen
# 2026-11-27); /usr/bin/g++, the same GCC 13.3, works. There, run
#   CXX=/usr/bin/g++ CC=/usr/bin/gcc LDSHARED="/usr/bin/g++ -shared" \
#     bash bench/device_check.sh OUTDIR
set -uo pipefail

out="${1:?usage: bench/device_check.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
exec > >(tee "$out/check.log") 2>&1

budget="${FUSEDRNN_CHECK_BUDGET_S:-420}"
declare -A status seconds
order=()

# stage NAME LIMIT COMMAND...: runs COMMAND for at most LIMIT seconds (less if
# the budget has less left), its output also to OUTDIR/NAME.log.
stage() {
  local name="$1" limit="$2"
  shift 2
  order+=("$name")
  local left=$((budget - SECONDS))
  ((left < limit)) && limit=$left
  if ((limit < 15)); then
    status[$name]="out of time"
    seconds[$name]=0
    echo "== $name: ${status[$name]}"
    return 1
  fi
  echo "== $name (at most ${limit}s): $*"
  local began=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  seconds[$name]=$((SECONDS - began))
  case $rc in
    0) status[$name]=ok ;;
    124 | 137) status[$name]="timed out" ;;
    *) status[$name]="failed (exit $rc)" ;;
  esac
  echo "== $name: ${status[$name]} after ${seconds[$name]}s"
  return "$rc"
}

skip() {
  order+=("$1")
  status[$1]="skipped ($2)"
  seconds[$1]=0
  echo "== $1: ${status[$1]}"
}

echo "== machine"
echo "cores: $(nproc) | compiler: ${CXX:-default} ($(${CXX:-c++} --version | head -1))"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
python -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__,
"| CUDA", torch.version.cuda, "| GPUs", torch.cuda.device_count())'

if command -v nvcc >/dev/null || [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
  cuda=1
  "$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")" --version | tail -2
else
  cuda=0
  echo "no nvcc: building the CPU-only extension"
fi
if python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  gpu=1
else
  gpu=0
fi

export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
stage build 300 env FUSEDRNN_CUDA="$cuda" python setup.py build_ext --inplace
built=$?

if ((built != 0)); then
  skip test_cuda "the build failed"
  skip bench "the build failed"
elif ((gpu == 0)); then
  skip test_cuda "no GPU"
  skip bench "no GPU"
else
  stage test_cuda 150 env FUSEDRNN_EXPECT_CUDA=1 python -m pytest -q -rfE --durations=10 \
    -p no:cacheprovider --junitxml "$out/test_cuda.xml" -k cuda tests/test_cuda.py \
    tests/test_compile.py tests/test_cells.py
  # The benchmark stops starting new cases in time to write its results.
  bench_budget=$((budget - SECONDS - 90))
  ((bench_budget > 120)) && bench_budget=120
  stage bench 160 python -m bench.cuda_bench --out "$out/cuda_bench.json" \
    --budget "$bench_budget"
fi

if ((built != 0)); then
  skip cpu_tests "the build failed"
else
  # With the build-info checks of test_cuda.py, which need no GPU.
  stage cpu_tests 90 env FUSEDRNN_EXPECT_CUDA="$cuda" python -m pytest -q -x \
    -p no:cacheprovider tests/test_ops.py tests/test_gradcheck.py \
    tests/test_cuda.py::test_build_info_reports_cuda_honestly \
    tests/test_cuda.py::test_import_and_cpu_run
fi

failed=0
echo "== summary"
for name in "${order[@]}"; do
  printf '%-10s %-28s %4ss\n' "$name" "${status[$name]}" "${seconds[$name]}"
  [[ ${status[$name]} == ok || ${status[$name]} == skipped* ]] || failed=1
done
summary_args=()
for name in "${order[@]}"; do
  summary_args+=("$name" "${status[$name]}" "${seconds[$name]}")
done
python - "$out/summary.json" "${summary_args[@]}" <<'EOF'
import json, sys
path, fields = sys.argv[1], sys.argv[2:]
stages = {fields[i]: {"status": fields[i + 1], "seconds": int(fields[i + 2])}
          for i in range(0, len(fields), 3)}
try:
    import fusedrnn
    info = fusedrnn.build_info()
except Exception as error:  # the build failed: say why the import did
    info = {"import_error": repr(error)}
with open(path, "w") as f:
    json.dump({"stages": stages, "build_info": info}, f, indent=1)
EOF

if [[ -f "$out/cuda_bench.json" ]]; then
  echo "== fusedrnn.LSTM vs nn.LSTM (cuDNN); speedup = cuDNN time / fusedrnn time"
  python -m bench.cuda_bench --table "$out/cuda_bench.json"
fi
exit "$failed"
