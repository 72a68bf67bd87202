#!/usr/bin/env bash
# The GPU proof in one call on the lent machine, within 5 minutes on an H100 or H200 (so that a
# rerun fits the 15 minutes with the machine's start): a smoke gate (each part once; stops at the
# first failure), the op checks, training steps against the CPU, the update, effnet's benchmark
# beside torchvision's (bf16 first, training before inference), NCCL with one rank against no NCCL,
# f32, then memcheck on effnet's own kernels with the time left, and a summary naming the card.
# Run from the repo root as tests/gpu/check.sh after scripts/gpu_bundle.sh (carry .gpu-bundle);
# logs and the algorithm cache go to ${OUT:-/tmp/effnet-gpu}. Exit 0: all passed; 1: something
# failed; 3: the bundle lacks a library or binary (named; nothing is built here); 77: no GPU.
# EFFNET_CHECK_BUDGET_S (290) bounds the whole run; EFFNET_CHECK_BUNDLE (.gpu-bundle) the binaries;
# EFFNET_CHECK_DRY=1 goes on past "no GPU" (tests/gpu/dry_run.sh: the CPU-side parts, timed).
set -u
cd "$(dirname "$0")/../.." || exit 1

out=${OUT:-/tmp/effnet-gpu}
budget=${EFFNET_CHECK_BUDGET_S:-290}
bundle=${EFFNET_CHECK_BUNDLE:-.gpu-bundle}
dry=${EFFNET_CHECK_DRY:-0}
programs=(effnet test_cuda_smoke test_cuda_ops test_cuda_update test_cuda_train test_nccl)
SECONDS=0

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU: nothing to check"
  exit 77
fi
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Every process shares one algorithm cache: the first to time a shape writes the choice, the others
# read it, so runs compared bit for bit use the same algorithms.
export EFFNET_ALGO_CACHE=$out/cuda-algos.tsv

# limit <seconds>: that, or what is left of the budget if less (0: nothing left).
limit() {
  local left=$((budget - SECONDS))
  ((left < 0)) && left=0
  echo $(($1 < left ? $1 : left))
}

# timed <seconds> <log> <command...>: runs the command with its output appended to the log and
# echoed, killed at the limit; returns its status (124 on a timeout, 125 with no time left).
timed() {
  local t
  t=$(limit "$1")
  shift
  local log=$1
  shift
  if ((t < 5)); then
    echo "check: out of time, not run: $*" | tee -a "$log"
    return 125
  fi
  echo "\$ $*   (limit ${t} s, at ${SECONDS} s)" >>"$log"
  timeout -k 5 "$t" "$@" 2>&1 | tee -a "$log"
  return "${PIPESTATUS[0]}"
}

# verdict <status>: PASS, FAIL (...), SKIPPED (out of time) or SKIPPED (no GPU).
verdict() {
  case $1 in
    0) echo PASS ;;
    77) echo "SKIPPED (no GPU)" ;;
    78) echo "SKIPPED (not installed)" ;;
    124 | 137) echo "FAIL (timeout)" ;;
    125) echo "SKIPPED (out of time)" ;;
    127) echo "FAIL (no binary)" ;;
    *) echo "FAIL (exit $1)" ;;
  esac
}

# The steps' results, in the order they ran: name, verdict, seconds, detail.
order=()
declare -A status=() took=() detail=()
# record <step> <status> <started at> [detail]
record() {
  order+=("$1")
  status[$1]=$(verdict "$2")
  took[$1]=$((SECONDS - $3))
  detail[$1]=${4:-}
}

# ---- 0. the card, the libraries, the bundle --------------------------------------------------
envlog=$out/env.log
: >"$envlog"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
capability=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)
echo "check: on $card (driver $driver, compute capability $capability), budget $budget s" | tee -a "$envlog"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$envlog" 2>&1

# The wheels' library folders: <nvidia>/*/lib and <nvidia>/*/*/lib holding a shared library, for
# each folder of python3's `nvidia` namespace package (the cmake module searches the same).
wheel_libs=""
nvidia_dirs=$(python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)
while read -r dir; do
  [ -n "$dir" ] || continue
  for lib in "$dir"/*/lib "$dir"/*/*/lib; do
    compgen -G "$lib/*.so*" >/dev/null && wheel_libs+="${wheel_libs:+:}$lib"
  done
done <<<"$nvidia_dirs"
effnet_ld=$PWD/$bundle/lib${wheel_libs:+:$wheel_libs}
[ -d /usr/local/cuda/lib64 ] && effnet_ld+=:/usr/local/cuda/lib64
{
  echo "python3: $(command -v python3); nvidia wheels in: ${nvidia_dirs:-none}"
  echo "LD_LIBRARY_PATH for effnet's programs: $effnet_ld"
} >>"$envlog"

if [ -f "$bundle/commit" ]; then
  built=$(cat "$bundle/commit") here=$(git describe --always --dirty 2>/dev/null)
  echo "bundle built from $built; this tree is ${here:-unknown (no git here)}" | tee -a "$envlog"
  [ -z "$here" ] || [ "$built" = "$here" ] ||
    echo "check: WARNING: the bundle is not this tree's build (run scripts/gpu_bundle.sh)" | tee -a "$envlog"
fi
if [ -f "$bundle/lib.tar.xz" ] && [ ! -d "$bundle/lib" ]; then
  tar -C "$bundle" -xJf "$bundle/lib.tar.xz" 2>&1 | tee -a "$envlog"
fi
# Nothing is built here: a missing binary or library stops the check, naming it.
missing=()
for p in "${programs[@]}"; do
  b=$bundle/bin/$p
  if [ ! -x "$b" ]; then
    missing+=("$p: no $b")
    continue
  fi
  while read -r lib; do missing+=("$p: $lib not found"); done < <(LD_LIBRARY_PATH=$effnet_ld ldd "$b" 2>&1 |
    awk '/not found/ { print $1 }')
done
if [ ${#missing[@]} -gt 0 ]; then
  printf 'check: STOP: the bundle cannot run here:\n' | tee -a "$envlog"
  printf '  %s\n' "${missing[@]}" | tee -a "$envlog"
  echo "check: rebuild the bundle (scripts/gpu_bundle.sh) with the library, or add its wheel; nothing ran" |
    tee -a "$envlog"
  exit 3
fi
echo "check: bundle and libraries resolve (${SECONDS} s)" | tee -a "$envlog"

# run <name> <seconds> <log> [args...]: a bundled program under effnet_ld.
run() {
  local p=$1 t=$2 log=$3
  shift 3
  timed "$t" "$log" env LD_LIBRARY_PATH="$effnet_ld" "$bundle/bin/$p" "$@"
}
# last_line <log>: its last line that is not a command, for the summary.
last_line() { grep -v '^\$ ' "$1" | grep . | tail -1 | tr '|' '/'; }

# ---- 1. the smoke gate: each part once; a failure here stops the check ------------------------
log=$out/smoke.log
: >"$log"
echo "== smoke: test_cuda_smoke (log: smoke.log)"
t0=$SECONDS
export EFFNET_CUDA_SYNC=1 # every node synchronized: a fault names its node
run test_cuda_smoke 60 "$log" >/dev/null
rc=$?
grep -E 'FAILED|CHECK|skipped' "$log" | head -10
record smoke "$rc" "$t0" "$(grep -c ' ok$' "$log") checks ok, $(grep -c 'FAILED$' "$log") failed"
if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 77 ] && [ "$dry" = 1 ]; }; then
  echo "check: STOP: the smoke gate failed ($(verdict "$rc")); what failed:"
  grep -E 'FAILED|CHECK|error|skipped' "$log" | head -20
  echo "check: on $card; ${SECONDS} s; logs in $out"
  exit 1
fi

# ---- 2-4. the op checks, training steps against the CPU, the update --------------------------
for step in ops train update; do
  log=$out/$step.log
  : >"$log"
  echo "== $step: test_cuda_$step (log: $step.log)"
  t0=$SECONDS
  [ "$step" = ops ] || unset EFFNET_CUDA_SYNC # the op checks keep synchronizing after every node
  run "test_cuda_$step" 60 "$log" >/dev/null
  rc=$?
  grep -E 'FAILED|CHECK' "$log" | head -5
  record "$step" "$rc" "$t0" "$(last_line "$log")"
done

# ---- 5. the benchmarks: effnet, torchvision (one process, every configuration) ----------------
# bench <precision> <mode>: effnet's images/s and peak MiB into ours_*.
declare -A ours_ips=() ours_mib=() theirs_ips=() theirs_mib=()
benchlog=$out/bench.log
: >"$benchlog"
bench() {
  local k="$1 $2" t0=$SECONDS rc line fields ips mib
  echo "== bench: effnet b0 $1 $2, batch 256"
  run effnet 45 "$benchlog" bench b0 --device cuda --precision "$1" --batch 256 --mode "$2" --warmup 5 --iters 20 \
    --json >"$scratch/ours"
  rc=$?
  grep -v '^{' "$scratch/ours" | tail -2
  line=$(grep '^{' "$scratch/ours" | tail -1)
  if [ "$rc" -eq 0 ] && fields=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["images_per_s"], r["peak_device_mib"])' "$line" 2>&1); then
    read -r ips mib <<<"$fields"
    ours_ips[$k]=$ips ours_mib[$k]=$mib
  elif [ "$rc" -eq 0 ]; then
    echo "check: no JSON line with images_per_s and peak_device_mib" | tee -a "$benchlog"
    rc=1
  fi
  record "effnet $k" "$rc" "$t0" "${ours_ips[$k]:+${ours_ips[$k]} images/s}"
}
bench bf16 train
bench bf16 infer

torchlog=$out/torch.log
: >"$torchlog"
echo "== torch: torchvision b0 bf16 and f32, training and inference, batch 256, one process"
t0=$SECONDS
timed 110 "$torchlog" env PYTHONUNBUFFERED=1 python3 scripts/bench_torch.py b0 --device cuda --batch 256 --warmup 5 \
  --iters 20 --configs bf16:train,bf16:infer,f32:train,f32:infer >/dev/null
rc=$?
# Each configuration prints "torchvision ... <train step|inference>, <card>, <precision>: ... N images/s"
# and a memory line with its peak.
while read -r mode precision ips mib; do
  theirs_ips["$precision $mode"]=$ips theirs_mib["$precision $mode"]=$mib
done < <(awk '/^torchvision / {
    mode = /train step/ ? "train" : "infer"
    precision = $0; sub(/: median.*/, "", precision); sub(/.*, /, "", precision)
    ips = $0; sub(/ images\/s.*/, "", ips); sub(/.* /, "", ips) }
  /peak GPU memory/ {
    mib = $0; sub(/.*peak GPU memory /, "", mib); sub(/ MiB.*/, "", mib); print mode, precision, ips, mib }' "$torchlog")
grep -E '^torchvision|Error|error' "$torchlog" | tail -5
record torch "$rc" "$t0" "${#theirs_ips[@]} of 4 configurations"

# ---- 6. NCCL with one rank -----------------------------------------------------------------------
# test_nccl (each call of the communicator), then `effnet train --gpus 1` (the launcher, NCCL's
# start, broadcasts, the scalars' all-reduces, gradient buckets in the step's graph, the timed
# waits) against `effnet train --device cuda` without NCCL, B0 at 32x32 on 1024 Fashion-MNIST
# images: every step's loss and the final checkpoint must be the same bits. The plain run goes
# first and writes the algorithm cache; the NCCL run reads the same choices.
nccllog=$out/nccl.log
: >"$nccllog"
echo "== nccl: test_nccl, then effnet train without and with --gpus 1"
t0=$SECONDS
nccl_fail=""
data=$bundle/data/fashion-mnist-small
[ -d "$data" ] || data=/usr/share/datasets/fashion-mnist
run test_nccl 30 "$nccllog" | tail -2
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || nccl_fail="test_nccl: $(verdict "$rc")"
nccl_rc=$rc
for which in plain gpus1; do
  extra=()
  [ "$which" = gpus1 ] && extra=(--gpus 1)
  run effnet 50 "$nccllog" train --model b0 --image-size 32 --data "$data" --limit 1024 --val-limit 256 --epochs 1 \
    --batch 64 --lr 0.05 --log-every 1 --device cuda --seed 5 --out "$scratch/$which" "${extra[@]}" | tail -1
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || nccl_fail+="${nccl_fail:+; }$which: $(verdict "$rc")" nccl_rc=$rc
done
nccl_detail=$nccl_fail
if [ -z "$nccl_fail" ]; then
  losses() { grep -o '"train/loss": [^,]*' "$1/metrics.jsonl"; }
  # The median rate of the last 8 steps: what NCCL with one rank costs a small step.
  rate() { grep -o '"train/images_per_s": [0-9.]*' "$1/metrics.jsonl" | tail -8 | awk '{ print $2 }' | sort -n |
    awk '{ r[NR] = $1 } END { printf "%.0f", r[int((NR + 1) / 2)] }'; }
  rates="images/s $(rate "$scratch/plain") without NCCL, $(rate "$scratch/gpus1") with"
  echo "nccl: $rates (median of the last 8 steps)" | tee -a "$nccllog"
  if cmp -s <(losses "$scratch/plain") <(losses "$scratch/gpus1"); then
    nccl_detail="$(losses "$scratch/plain" | wc -l) step losses equal; $rates"
  else
    nccl_rc=1 nccl_detail="losses differ (nccl.log has the diff)"
    diff <(losses "$scratch/plain") <(losses "$scratch/gpus1") | head -6 | tee -a "$nccllog"
  fi
  ckpt=$(cd "$scratch/plain" && ls ckpt-*.h5 | tail -1)
  for py in python3 /usr/bin/python3; do # the first with h5py
    "$py" tests/compare_checkpoints.py "$scratch/plain/$ckpt" "$scratch/gpus1/$ckpt" >"$scratch/cmp" 2>&1
    cmp_rc=$?
    [ $cmp_rc -eq 77 ] || break
  done
  tee -a "$nccllog" <"$scratch/cmp"
  case $cmp_rc in
    0) nccl_detail+="; checkpoint: $(cat "$scratch/cmp")" ;;
    77) nccl_detail+="; checkpoint not compared (no h5py)" ;;
    *) nccl_rc=1 nccl_detail+="; checkpoint: $(tail -1 "$scratch/cmp" | cut -c1-120)" ;;
  esac
fi
record nccl "$nccl_rc" "$t0" "$nccl_detail"

# ---- 7. f32 -------------------------------------------------------------------------------------
bench f32 train
bench f32 infer

# ---- 8. with the time left: effnet's own kernels under compute-sanitizer's memcheck -------------
# The depthwise cases through effnet's kernels, then batch norm's (reductions, vector accesses):
# out-of-bounds and misaligned accesses. Skipped, not failed, when the budget is spent.
sanlog=$out/sanitizer.log
: >"$sanlog"
t0=$SECONDS
san_rc=0 ran=0
if command -v compute-sanitizer >/dev/null; then
  for subset in depthwise "bn train"; do
    ((budget - SECONDS >= 40)) || continue
    ran=$((ran + 1))
    echo "== sanitizer: test_cuda_ops '$subset' under memcheck"
    timed 60 "$sanlog" compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
      env LD_LIBRARY_PATH="$effnet_ld" "$bundle/bin/test_cuda_ops" "$subset" >/dev/null
    rc=$?
    grep -E 'ERROR SUMMARY|Invalid|out of bounds' "$sanlog" | tail -3
    [ $rc -eq 0 ] || san_rc=$rc
  done
  ((ran > 0)) || san_rc=125
else
  echo "check: no compute-sanitizer" | tee -a "$sanlog"
  san_rc=78
fi
record memcheck "$san_rc" "$t0" "$ran of 2 subsets"

# ---- 9. summary -----------------------------------------------------------------------------------
failed=0
for step in "${order[@]}"; do
  case ${status[$step]} in PASS | SKIPPED*) ;; *) failed=1 ;; esac
done
{
  echo "## effnet GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "ran on: $card, driver $driver, compute capability $capability; ${SECONDS} s of a $budget s budget"
  echo
  echo "| step | result | s | detail |"
  echo "|---|---|---|---|"
  for step in "${order[@]}"; do
    echo "| $step | ${status[$step]} | ${took[$step]} | ${detail[$step]} |"
  done
  echo
  echo "B0 at 224, batch 256, on $card: images/s and peak GPU memory"
  echo
  echo "| precision | mode | effnet images/s | torchvision images/s | ratio | effnet peak MiB | torch peak MiB |"
  echo "|---|---|---|---|---|---|---|"
  for precision in bf16 f32; do
    for mode in train infer; do
      k="$precision $mode"
      ratio=-
      if [ -n "${ours_ips[$k]:-}" ] && [ -n "${theirs_ips[$k]:-}" ]; then
        ratio=$(awk -v a="${ours_ips[$k]}" -v b="${theirs_ips[$k]}" 'BEGIN { printf "%.2fx", a / b }')
      fi
      echo "| $precision | $mode | ${ours_ips[$k]:--} | ${theirs_ips[$k]:--} | $ratio | ${ours_mib[$k]:--} | ${theirs_mib[$k]:--} |"
    done
  done
} >"$out/summary.md"
echo
cat "$out/summary.md"
exit $failed
