#!/usr/bin/env bash
# The first-GPU-run checklist, all output under one folder.
#
#   benchmarks/gpu_check.sh [--out DIR (default build/gpu_check)] [--only STEP[,STEP...]] [--dry-run] [--list]
#
# Steps (in order; --only picks some, e.g. to split the run over several 10-minute calls):
#   env          nvidia-smi, nvcc, compute-sanitizer, python/torch/triton versions
#   build        python setup.py build_ext --inplace (this GPU's arch only; nothing installed)
#   pytest_cuda  pytest -m cuda (native kernels required: LDMVFI_FAST_REQUIRE_NATIVE=1)
#   memcheck     compute-sanitizer memcheck, caching allocator off, driver at awkward shapes
#   racecheck    compute-sanitizer racecheck on the attention kernels (native, triton)
#   initcheck    compute-sanitizer initcheck, caching allocator off, driver at awkward shapes
#   memcheck_big compute-sanitizer memcheck once at the real padded 1080p shapes (1536x2048)
#   bench_ops    driver --bench: native, triton, reference and SDPA (window copies included) at 1080p
#   kernels      benchmarks/kernels.py (reference vs CUDA kernels), no torch.compile
#   compile      benchmarks/kernels.py with torch.compile, last, two cases (dsepconv, decoder_output)
#   precision    benchmarks/precision.py: official preset (random weights) at 256x448 and 1080p, bf16/fp16
#                vs fp32, per stage, whole 4-step interpolation; at 1080p each fp32 island off in turn
#   latency_half benchmarks/latency.py --dtype bfloat16 at 1080p, official, 4 steps, vs float32
#
# The frame pair of precision: build/bikes_pair.npz when present (benchmarks/precision.py
# --save-pair writes it on a machine with PyAV; the GPU image has none), else bikes.mp4 itself.
#
# Without a CUDA device (or with --dry-run) nothing runs: every step's command is listed and the
# script exits 0. Needs no PyAV and no network. Each step's log is DIR/<step>.log; DIR/summary.tsv
# has step, exit status, seconds. Exit status: 0 when every step that ran passed, 1 otherwise,
# 2 on bad options.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="build/gpu_check"  # build/ is git-ignored
DRY=0
LIST=0
ONLY=""
ALL_STEPS="env build pytest_cuda memcheck racecheck initcheck memcheck_big bench_ops kernels compile precision latency_half"

while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --out=*) OUT="${1#--out=}"; shift ;;
    --only) ONLY="${2:?--only needs step names}"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    --dry-run) DRY=1; shift ;;
    --list) LIST=1; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$LIST" = 1 ]; then
  for s in $ALL_STEPS; do echo "$s"; done
  exit 0
fi
STEPS="$ALL_STEPS"
if [ -n "$ONLY" ]; then
  STEPS=""
  for s in ${ONLY//,/ }; do
    case " $ALL_STEPS " in
      *" $s "*) STEPS="$STEPS $s" ;;
      *) echo "error: unknown step $s (steps: $ALL_STEPS)" >&2; exit 2 ;;
    esac
  done
fi

cd "$REPO" || exit 2
# the package is used from this checkout (built in place, not installed)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ "$DRY" = 0 ]; then
  if [ -z "$PY" ] || ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA device here (torch.cuda.is_available() is false or torch is missing): dry run"
    DRY=1
  fi
fi
ARCH=""
if [ "$DRY" = 0 ]; then
  ARCH="$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")"
  mkdir -p "$OUT" || exit 2
  OUT="$(cd "$OUT" && pwd)"
  printf 'step\texit\tseconds\n' > "$OUT/summary.tsv"
fi
SAN="compute-sanitizer --error-exitcode 10 --print-limit 100"
DRIVER="$PY benchmarks/gpu_check_driver.py"
NOCACHE="env PYTORCH_NO_CUDA_MEMORY_CACHING=1"
FAILED=0

# step NAME TIMEOUT_S COMMAND...: run (or list) one step, log to $OUT/NAME.log
step() {
  local name="$1" limit="$2"
  shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] $name (timeout ${limit}s): $*"
    return 0
  fi
  echo "== $name: $*"
  local t0=$SECONDS rc
  timeout --kill-after=30 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$OUT/summary.tsv"
  echo "   exit $rc in $((SECONDS - t0)) s (log: $OUT/$name.log)"
  tail -n 3 "$OUT/$name.log" | sed 's/^/   | /'
  [ "$rc" = 0 ] || FAILED=1
}

step env 60 bash -c "nvidia-smi; nvcc --version; compute-sanitizer --version; $PY -c \"import torch, sys; \
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(), torch.cuda.get_device_capability()); import triton; print('triton', triton.__version__)\""
# the compilers on PATH (the g++ torch was built with), not Python's sysconfig ones: on the H200 image those
# are /opt/gcc's, and an extension linked by them segfaults when an op raises (two libstdc++ unwinders)
step build 600 env TORCH_CUDA_ARCH_LIST="${ARCH:-THIS_GPU_ARCH}" MAX_JOBS=16 FORCE_CUDA=1 CC=gcc CXX=g++ \
  LDSHARED="g++ -shared" "$PY" setup.py build_ext --inplace
step pytest_cuda 600 env LDMVFI_FAST_REQUIRE_NATIVE=1 "$PY" -m pytest -m cuda -q -rs -p no:cacheprovider \
  --continue-on-collection-errors --junitxml="$OUT/pytest_cuda.xml" tests
step memcheck 480 $NOCACHE $SAN --tool memcheck --leak-check no $DRIVER --small --out "$OUT/memcheck.json"
step racecheck 420 $SAN --tool racecheck --racecheck-report all $DRIVER --small --ops maxvit_attention \
  --dtypes float32 bfloat16 --out "$OUT/racecheck.json"
step initcheck 420 $NOCACHE $SAN --tool initcheck $DRIVER --small --dtypes float32 bfloat16 --out "$OUT/initcheck.json"
step memcheck_big 420 $NOCACHE $SAN --tool memcheck --leak-check no $DRIVER --big --dtypes float32 bfloat16 \
  --out "$OUT/memcheck_big.json"
step bench_ops 420 $DRIVER --bench --dtypes float32 bfloat16 --out "$OUT/bench_ops.json"
step kernels 480 "$PY" benchmarks/kernels.py --no-compile --out "$OUT/kernels.json"
step compile 480 "$PY" benchmarks/kernels.py --cases dsepconv decoder_output --dtypes float32 \
  --out "$OUT/kernels_compile.json"
PAIR_ARGS=""
[ -f build/bikes_pair.npz ] && PAIR_ARGS="--pair build/bikes_pair.npz"
step precision 360 bash -c "$PY benchmarks/precision.py --config official --device cuda --height 256 --width 448 \
  --steps 4 $PAIR_ARGS -v --out $OUT/precision_256x448.json && $PY benchmarks/precision.py --config official \
  --device cuda --height 1080 --width 1920 --steps 4 --ablate --repeats 3 $PAIR_ARGS -v --out $OUT/precision_1080p.json"
step latency_half 240 "$PY" benchmarks/latency.py --config official --device cuda --dtype bfloat16 \
  --height 1080 --width 1920 --steps 4 --eta 0 --padding minimal --repeats 5 --no-memory --quiet \
  --out "$OUT/latency_half.json"

if [ "$DRY" = 1 ]; then
  echo "dry run: nothing was executed"
  exit 0
fi
echo "summary: $OUT/summary.tsv"
cat "$OUT/summary.tsv"
exit "$FAILED"
