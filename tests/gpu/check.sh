#!/usr/bin/env bash
# The whole GPU proof in one call on the lent machine, under six minutes: the environment, every op
# against the CPU backend, the update kernels, training steps, NCCL with one rank against no NCCL,
# effnet's benchmark beside
# torchvision's, memcheck on two op subsets with the time left, and a summary.
# Run from the repo root as tests/gpu/check.sh; logs go to ${OUT:-/tmp/effnet-gpu}. Exit 77: no GPU.
#
# Binaries come from .gpu-bundle/ (scripts/gpu_bundle.sh, carried there), with the shared
# libraries of the bundle and of NVIDIA's Python wheels on LD_LIBRARY_PATH for effnet's programs
# only (python3 and torch keep their own); where the bundle is absent or a library is missing,
# the binaries are built there into build-gpu-local/. Every step runs under a time limit drawn
# from one budget (EFFNET_CHECK_BUDGET_S, 345 s), and fails on its own without stopping the rest.
# EFFNET_CHECK_TORCH_F32=0 skips torchvision at f32 (it is skipped anyway after 270 s).
set -u
cd "$(dirname "$0")/../.." || exit 1

out=${OUT:-/tmp/effnet-gpu}
budget=${EFFNET_CHECK_BUDGET_S:-345}
torch_f32=${EFFNET_CHECK_TORCH_F32:-1}
programs=(effnet test_cuda_ops test_cuda_update test_cuda_train test_nccl)
SECONDS=0

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU: nothing to check"
  exit 77
fi
mkdir -p "$out"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

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

# verdict <status>: PASS, FAIL (...) or SKIPPED (out of time).
verdict() {
  case $1 in
    0) echo PASS ;;
    124 | 137) echo "FAIL (timeout)" ;;
    125) echo "SKIPPED (out of time)" ;;
    127) echo "FAIL (no binary)" ;;
    *) echo "FAIL (exit $1)" ;;
  esac
}

# ---- 0. environment -------------------------------------------------------------------------
envlog=$out/env.log
: >"$envlog"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "compute capability: $(nvidia-smi --query-gpu=compute_cap --format=csv,noheader)"
} | tee -a "$envlog"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
capability=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1)

# The wheels' library folders: <nvidia>/*/lib and <nvidia>/*/*/lib holding a shared library, for
# each folder of python3's `nvidia` namespace package (the cmake module searches the same).
wheel_libs="" cudnn_root="" nccl_root=""
nvidia_dirs=$(python3 -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null)
while read -r dir; do
  [ -n "$dir" ] || continue
  for lib in "$dir"/*/lib "$dir"/*/*/lib; do
    compgen -G "$lib/*.so*" >/dev/null || continue
    wheel_libs+="${wheel_libs:+:}$lib"
    compgen -G "$lib/libcudnn.so*" >/dev/null && cudnn_root=${cudnn_root:-${lib%/lib}}
    compgen -G "$lib/libnccl.so*" >/dev/null && nccl_root=${nccl_root:-${lib%/lib}}
  done
done <<<"$nvidia_dirs"
effnet_ld=$PWD/.gpu-bundle/lib${wheel_libs:+:$wheel_libs}
[ -d /usr/local/cuda/lib64 ] && effnet_ld+=:/usr/local/cuda/lib64
{
  echo "python3: $(command -v python3); nvidia wheels in: ${nvidia_dirs:-none}"
  echo "wheel library folders: ${wheel_libs:-none}"
  echo "cuDNN root: ${cudnn_root:-none}; NCCL root: ${nccl_root:-none}"
  echo "LD_LIBRARY_PATH for effnet's programs: $effnet_ld"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1); $(ldd --version | head -1)"
  echo "in /usr/local/cuda/lib64: $(find /usr/local/cuda/lib64/ -maxdepth 1 \( -name 'libcudart.so*' \
    -o -name 'libcublas*.so*' -o -name 'libcudnn.so*' -o -name 'libnccl.so*' \) -printf '%f ' 2>/dev/null)"
} | tee -a "$envlog"

if [ -f .gpu-bundle/commit ]; then
  built=$(cat .gpu-bundle/commit) here=$(git describe --always --dirty 2>/dev/null)
  echo "bundle built from $built; this tree is ${here:-unknown (no git here)}" | tee -a "$envlog"
  if [ -n "$here" ] && [ "$built" != "$here" ]; then
    echo "check: WARNING: the bundle is not this tree's build (run scripts/gpu_bundle.sh)" | tee -a "$envlog"
  fi
fi
if [ -f .gpu-bundle/lib.tar.xz ] && [ ! -d .gpu-bundle/lib ]; then
  tar -C .gpu-bundle -xJf .gpu-bundle/lib.tar.xz 2>&1 | tee -a "$envlog"
fi
declare -A bin=()
unresolved=()
for p in "${programs[@]}"; do
  b=.gpu-bundle/bin/$p
  if [ ! -x "$b" ]; then
    unresolved+=("$p")
    echo "bundle: no $b" | tee -a "$envlog"
  elif LD_LIBRARY_PATH=$effnet_ld ldd "$b" 2>&1 | grep 'not found' | sed "s|^|bundle: $p: |" | tee -a "$envlog" | grep -q .; then
    unresolved+=("$p")
  else
    bin[$p]=$b
  fi
done
build_status=""
if [ ${#unresolved[@]} -gt 0 ]; then
  echo "check: building ${unresolved[*]} here, into build-gpu-local/ (log: build.log)" | tee -a "$envlog"
  buildlog=$out/build.log
  : >"$buildlog"
  roots=()
  [ -z "$cudnn_root" ] || roots+=(-DCUDNN_ROOT="$cudnn_root")
  [ -z "$nccl_root" ] || roots+=(-DNCCL_ROOT="$nccl_root")
  if timed 90 "$buildlog" cmake -S . -B build-gpu-local -G Ninja -DEFFNET_CUDA=ON -DEFFNET_MPI=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=native "${roots[@]}" >/dev/null; then
    timed 200 "$buildlog" cmake --build build-gpu-local -j "$(nproc)" --target "${unresolved[@]}" -- -k 0 >/dev/null
    for p in "${unresolved[@]}"; do
      b=$(find build-gpu-local -type f -name "$p" -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -1)
      [ -n "$b" ] && bin[$p]=$b
    done
    if grep -qE 'error|FAILED' "$buildlog"; then
      echo "check: building here FAILED; from build.log:" | tee -a "$envlog"
      grep -E 'error|FAILED' "$buildlog" | head -10 | tee -a "$envlog"
    fi
  else
    echo "check: configuring here FAILED (often a missing HDF5 or oneDNN): the steps needing" \
      "${unresolved[*]} fail; the others go on. From build.log:" | tee -a "$envlog"
    grep -E -A4 'CMake Error|Could NOT find|Could not find' "$buildlog" | head -20 | tee -a "$envlog"
  fi
  for p in "${unresolved[@]}"; do
    [ -n "${bin[$p]:-}" ] || build_status+="${build_status:+, }no $p"
  done
fi
echo "check: binaries: $(for p in "${programs[@]}"; do printf '%s=%s ' "$p" "${bin[$p]:-none}"; done)" | tee -a "$envlog"

# run_program <name> <seconds> <log> [args...]: the program under effnet_ld, or status 127
# (with a line in the log) when it is not there.
run_program() {
  local p=$1 t=$2 log=$3
  shift 3
  if [ -z "${bin[$p]:-}" ]; then
    echo "check: no $p binary (bundle and build failed), not run" | tee -a "$log"
    return 127
  fi
  timed "$t" "$log" env LD_LIBRARY_PATH="$effnet_ld" "${bin[$p]}" "$@"
}

# ---- 1, 2. ops, the update and training against the CPU backend ------------------------------
declare -A status=() detail=()
for step in ops update train; do
  log=$out/$step.log
  : >"$log"
  prog=test_cuda_$step
  echo "== $step: $prog (log: $step.log; its last lines:)"
  # The op checks synchronize after every node, so that a fault names its node.
  if [ "$step" = ops ]; then export EFFNET_CUDA_SYNC=1; else unset EFFNET_CUDA_SYNC; fi
  run_program "$prog" 120 "$log" >/dev/null
  rc=$?
  grep -v '^\$ ' "$log" | tail -n 3
  status[$step]=$(verdict $rc)
  detail[$step]=$(grep -v '^\$ ' "$log" | grep . | tail -1 | tr '|' '/')
done

# ---- 2b. NCCL with one rank: test_nccl (each call of the communicator, a bucket in a recorded
# graph), then `effnet train --gpus 1` (the launcher, NCCL's start, broadcasts,
# staged host all-reduces, gradient buckets recorded in the step's CUDA graph, the timed waits)
# against `effnet train --device cuda` without NCCL, B0 at 32x32 on 1024 Fashion-MNIST images:
# every step's loss (metrics.jsonl) and the final checkpoint must be the same bits.
nccllog=$out/nccl.log
: >"$nccllog"
status[nccl]="" detail[nccl]=""
data=.gpu-bundle/data/fashion-mnist-small
[ -d "$data" ] || data=/usr/share/datasets/fashion-mnist
echo "== nccl: test_nccl (the communicator call by call, one rank)"
run_program test_nccl 60 "$nccllog" | tail -4
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || status[nccl]+="test_nccl: $(verdict $rc)"
for run in plain gpus1; do
  extra=()
  [ "$run" = gpus1 ] && extra=(--gpus 1)
  echo "== nccl: effnet train ${extra[*]:-(no NCCL)}"
  run_program effnet 75 "$nccllog" train --model b0 --image-size 32 --data "$data" --limit 1024 --val-limit 256 \
    --epochs 1 --batch 64 --lr 0.05 --log-every 1 --device cuda --seed 5 --out "$scratch/$run" "${extra[@]}" | tail -3
  rc=${PIPESTATUS[0]}
  [ $rc -eq 0 ] || status[nccl]+="${status[nccl]:+; }$run: $(verdict $rc)"
done
if [ -z "${status[nccl]}" ]; then
  losses() { grep -o '"train/loss": [^,]*' "$1/metrics.jsonl"; }
  # The median rate of the last 8 steps: what NCCL with one rank costs a small step.
  rate() { grep -o '"train/images_per_s": [0-9.]*' "$1/metrics.jsonl" | tail -8 | awk '{ print $2 }' | sort -n |
    awk '{ r[NR] = $1 } END { printf "%.0f", r[int((NR + 1) / 2)] }'; }
  nccl_rates="images/s $(rate "$scratch/plain") without NCCL, $(rate "$scratch/gpus1") with"
  echo "nccl: $nccl_rates (median of the last 8 steps)" | tee -a "$nccllog"
  if cmp -s <(losses "$scratch/plain") <(losses "$scratch/gpus1"); then
    detail[nccl]="$(losses "$scratch/plain" | wc -l) step losses equal; $nccl_rates"
  else
    status[nccl]="FAIL (the losses differ)" detail[nccl]="losses differ (nccl.log has the diff)"
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
    0) detail[nccl]+="; checkpoint: $(cat "$scratch/cmp")" ;;
    77) detail[nccl]+="; checkpoint not compared (no h5py)" ;;
    *) status[nccl]="${status[nccl]:-FAIL (the checkpoints differ)}" detail[nccl]+="; checkpoint: $(tail -1 "$scratch/cmp" | cut -c1-120)" ;;
  esac
fi
status[nccl]=${status[nccl]:-PASS}
echo "nccl: ${status[nccl]} (${detail[nccl]})"

# ---- 3, 4. effnet's benchmark, then torchvision's -------------------------------------------
# Results by "<precision> <mode>": images/s and peak device MiB for each side.
declare -A ours_ips=() ours_mib=() theirs_ips=() theirs_mib=()
# note <step> <text>: adds "<text>" to the step's failures.
note() { status[$1]+="${status[$1]:+; }$2"; }
benchlog=$out/bench.log
: >"$benchlog"
status[bench]=""
for precision in bf16 f32; do
  for mode in train infer; do
    echo "== bench: effnet b0 $precision $mode, batch 256"
    run_program effnet 60 "$benchlog" bench b0 --device cuda --precision "$precision" --batch 256 \
      --mode "$mode" --warmup 5 --iters 20 --json >"$scratch/ours"
    rc=$?
    cat "$scratch/ours"
    line=$(grep '^{' "$scratch/ours" | tail -1)
    if [ $rc -ne 0 ]; then
      note bench "$precision $mode: $(verdict $rc)"
      continue
    fi
    if ! fields=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(r["images_per_s"], r["median_ms"], r["peak_device_mib"])' "$line" 2>&1); then
      echo "check: no JSON line with images_per_s, median_ms and peak_device_mib: ${fields##*$'\n'}" | tee -a "$benchlog"
      note bench "$precision $mode: FAIL (no JSON line with the fields)"
      continue
    fi
    read -r ips _ mib <<<"$fields"
    ours_ips["$precision $mode"]=$ips
    ours_mib["$precision $mode"]=$mib
  done
done
status[bench]=${status[bench]:-PASS}

torchlog=$out/torch.log
: >"$torchlog"
status[torch]=""
torch_note=""
for precision in bf16 f32; do
  for mode in train infer; do
    if [ "$precision" = f32 ] && { [ "$torch_f32" = 0 ] || ((SECONDS > 270)); }; then
      echo "check: torchvision f32 $mode skipped (EFFNET_CHECK_TORCH_F32=$torch_f32, at $SECONDS s)" | tee -a "$torchlog"
      torch_note=" (f32 skipped)"
      continue
    fi
    echo "== torch: torchvision b0 $precision $mode, batch 256"
    timed 90 "$torchlog" env PYTHONUNBUFFERED=1 python3 scripts/bench_torch.py b0 --device cuda \
      --precision "$precision" --batch 256 --mode "$mode" --warmup 5 --iters 20 >"$scratch/theirs"
    rc=$?
    cat "$scratch/theirs"
    ips=$(sed -n 's/.* \([0-9.]*\) images\/s.*/\1/p' "$scratch/theirs" | head -1)
    mib=$(sed -n 's/.*peak GPU memory \([0-9.]*\) MiB.*/\1/p' "$scratch/theirs" | head -1)
    if [ $rc -ne 0 ] || [ -z "$ips" ]; then
      [ $rc -ne 0 ] || rc=1  # ran, but printed no "N images/s"
      note torch "$precision $mode: $(verdict $rc)"
      continue
    fi
    theirs_ips["$precision $mode"]=$ips
    theirs_mib["$precision $mode"]=${mib:--}
  done
done
status[torch]=${status[torch]:-PASS}

unset EFFNET_CUDA_SYNC

# ---- 5. with time left: our kernels under compute-sanitizer's memcheck ----------------------
# Two subsets of the op checks (padding, cropping and convolutions; batch norm's reductions) for
# out-of-bounds and misaligned accesses. Skipped, not failed, when the budget is spent.
sanlog=$out/sanitizer.log
: >"$sanlog"
status[sanitizer]=""
if ! command -v compute-sanitizer >/dev/null; then
  status[sanitizer]="SKIPPED (no compute-sanitizer)"
elif [ -z "${bin[test_cuda_ops]:-}" ]; then
  status[sanitizer]="SKIPPED (no test_cuda_ops)"
else
  ran=0
  for subset in "s2 same" "bn train"; do
    ((budget - SECONDS >= 40)) || continue
    ran=$((ran + 1))
    echo "== sanitizer: test_cuda_ops '$subset' under memcheck"
    timed 60 "$sanlog" compute-sanitizer --tool memcheck --error-exitcode 9 --target-processes all \
      env LD_LIBRARY_PATH="$effnet_ld" "${bin[test_cuda_ops]}" "$subset" >/dev/null
    rc=$?
    grep -E 'ERROR SUMMARY|Invalid|out of bounds' "$sanlog" | tail -3
    [ $rc -eq 0 ] || note sanitizer "'$subset': $(verdict $rc)"
  done
  if ((ran == 0)); then status[sanitizer]="SKIPPED (out of time)"; fi
  status[sanitizer]=${status[sanitizer]:-PASS}
  ((ran == 0 || ran == 2)) || status[sanitizer]+=" ($ran of 2 subsets; no time for the rest)"
fi

# ---- 6. summary -----------------------------------------------------------------------------
failed=0
for step in ops update train nccl bench torch; do
  [ "${status[$step]}" = PASS ] || failed=1
done
case ${status[sanitizer]} in PASS* | SKIPPED*) ;; *) failed=1 ;; esac
{
  echo "## effnet GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "card: $card, driver $driver, compute capability $capability; ${SECONDS} s"
  [ -z "$build_status" ] || echo "built here: $build_status"
  echo
  echo "| step | result | last line |"
  echo "|---|---|---|"
  echo "| ops (test_cuda_ops) | ${status[ops]} | ${detail[ops]} |"
  echo "| update (test_cuda_update) | ${status[update]} | ${detail[update]} |"
  echo "| train (test_cuda_train) | ${status[train]} | ${detail[train]} |"
  echo "| NCCL, one rank (effnet train --gpus 1 against no NCCL) | ${status[nccl]} | ${detail[nccl]} |"
  echo "| effnet bench | ${status[bench]} | |"
  echo "| torchvision bench | ${status[torch]}$torch_note | |"
  echo "| memcheck (2 op subsets) | ${status[sanitizer]} | |"
  echo
  echo "B0 at 224, batch 256, images/s and peak GPU memory:"
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
