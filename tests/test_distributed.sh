#!/usr/bin/env bash
# Data-parallel `effnet train` under `mpirun -np 2` on a few hundred Fashion-MNIST images (the
# tiny net, one thread per rank):
#  - 2 ranks x batch 16 train the same model as 1 rank x batch 32 (BN on running statistics, no
#    dropout: nothing else depends on how the global batch is split), and validate on every test
#    image exactly once;
#  - with batch statistics, SyncBN (--sync-bn 2) makes 2 ranks x 16 train what 1 rank x 32
#    trains (running statistics included), and without it they differ; groups of 2 out of 4 ranks
#    run; a group that does not divide the ranks is refused;
#  - gradients all-reduced in small buckets during the backward pass give the same checkpoint,
#    bit for bit, as one all-reduce after it;
#  - a run stopped on 2 ranks resumes on 1 (and one stopped on 1 resumes on 2) at the same image
#    of the epoch and completes; a position that is not a whole number of global batches is refused;
#  - a NaN loss stops every rank; a rank killed with SIGKILL ends the whole job within 30 s with a
#    message naming it, never a hang; Ctrl-C on mpirun stops all ranks at one step, saved.
# usage: test_distributed.sh EFFNET MPIRUN   (exit 77 without mpirun, Fashion-MNIST, h5py or numpy)
set -u
effnet=$1
mpirun=${2:-mpirun}
here=$(dirname "$0")
fmnist=/usr/share/datasets/fashion-mnist
command -v "$mpirun" >/dev/null || { echo "skipped: no mpirun ($mpirun)"; exit 77; }
[ -r $fmnist/train-images-idx3-ubyte.gz ] || { echo "skipped: no Fashion-MNIST"; exit 77; }
/usr/bin/python3 -c "import h5py, numpy" 2>/dev/null || { echo "skipped: no h5py/numpy"; exit 77; }
tmp=$(mktemp -d /tmp/effnet-dist-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }
export OMP_NUM_THREADS=1
mpi() { # mpi <ranks> <effnet args...>: bounded, so that a hang fails instead of blocking
  local n=$1
  shift
  timeout 120 "$mpirun" --allow-run-as-root --oversubscribe -np "$n" -x OMP_NUM_THREADS "$effnet" "$@"
}
common=(--limit 256 --val-limit 101 --epochs 2 --lr 4 --threads 1 --loader-threads 0 --dropout 0 --bn eval --seed 3 --log-every 1)

# close <A> <B>: the /model tensors of two final checkpoints differ by less than 1e-4 of what the
# reference run A's second epoch moved them (its ckpt-8 to ckpt-16): float rounding, not a wrong
# gradient.
close() {
  /usr/bin/python3 - "$@" "$(dirname "$1")/ckpt-000000000008.h5" <<'PY'
import sys, h5py, numpy as np
a, b, mid = (h5py.File(p)["model"] for p in sys.argv[1:4])
diff = max(float(np.abs(a[n][()].astype(np.float64) - b[n][()]).max()) for n in a)
moved = max(float(np.abs(a[n][()].astype(np.float64) - mid[n][()]).max()) for n in a)
print(f"largest difference {diff:.2e}, {diff / moved:.1e} of the second epoch's largest step {moved:.2e}")
sys.exit(0 if diff < 1e-4 * moved else 1)
PY
}

# 1 rank x 32 against 2 ranks x 16: the same global batch, learning rate and images per step.
"$effnet" train "${common[@]}" --batch 32 --out "$tmp/one" >"$tmp/one.log" 2>&1 || fail "1 rank: $(tail -2 "$tmp/one.log")"
mpi 2 train "${common[@]}" --batch 16 --bucket-mb 0 --out "$tmp/two" >"$tmp/two.log" 2>&1 || fail "2 ranks: $(tail -3 "$tmp/two.log")"
final=ckpt-000000000016.h5
if out=$(close "$tmp/one/$final" "$tmp/two/$final"); then
  echo "ok: 2 ranks x 16 equal 1 rank x 32 ($out)"
else
  fail "2 ranks x 16 differ from 1 rank x 32: $out"
fi
if [ "$(grep -c '(101 images)' "$tmp/two.log")" = 2 ] && grep -q "global batch 32" "$tmp/two.log" &&
  [ "$(grep -c 'validation: loss' "$tmp/two.log")" = 2 ]; then
  echo "ok: validation covers the 101 test images once, printed by rank 0 alone"
else
  fail "validation lines: $(grep validation "$tmp/two.log" | head -3)"
fi
top() { grep -o 'top-1 [0-9.]*' "$1" | tail -1; }
[ "$(top "$tmp/one.log")" = "$(top "$tmp/two.log")" ] && echo "ok: the same validation top-1 ($(top "$tmp/one.log"))" ||
  fail "validation top-1: $(top "$tmp/one.log") on 1 rank, $(top "$tmp/two.log") on 2"

# SyncBN: batch statistics over both ranks' 16 images are the statistics of the 32, so the runs
# agree; per-rank statistics (the control) do not. The settings of `common` with batch
# statistics (no --bn eval) and a rate they train stably at.
sync=(--limit 256 --val-limit 101 --epochs 2 --lr 0.4 --threads 1 --loader-threads 0 --dropout 0 --seed 3 --log-every 1)
"$effnet" train "${sync[@]}" --batch 32 --out "$tmp/bn-one" >"$tmp/bn-one.log" 2>&1 || fail "1 rank, batch statistics: $(tail -2 "$tmp/bn-one.log")"
mpi 2 train "${sync[@]}" --batch 16 --sync-bn 2 --out "$tmp/bn-sync" >"$tmp/bn-sync.log" 2>&1 ||
  fail "2 ranks with --sync-bn 2: $(tail -3 "$tmp/bn-sync.log")"
mpi 2 train "${sync[@]}" --batch 16 --out "$tmp/bn-local" >"$tmp/bn-local.log" 2>&1 || fail "2 ranks, local BN: $(tail -3 "$tmp/bn-local.log")"
if out=$(close "$tmp/bn-one/$final" "$tmp/bn-sync/$final"); then echo "ok: --sync-bn 2 on 2 ranks x 16 equals 1 rank x 32 ($out)"
else fail "--sync-bn 2 differs from 1 rank x 32: $out"; fi
if out=$(close "$tmp/bn-one/$final" "$tmp/bn-local/$final"); then fail "without SyncBN, 2 ranks x 16 should differ from 1 rank x 32: $out"
else echo "ok: without SyncBN they differ ($out)"; fi
mpi 4 train "${sync[@]}" --epochs 1 --batch 8 --sync-bn 2 --out "$tmp/bn-groups" >"$tmp/bn-groups.log" 2>&1 &&
  grep -q "validation: loss [0-9]" "$tmp/bn-groups.log" && echo "ok: groups of 2 out of 4 ranks train" ||
  fail "--sync-bn 2 on 4 ranks: $(tail -3 "$tmp/bn-groups.log")"
out=$("$effnet" train "${sync[@]}" --batch 16 --sync-bn 2 --out "$tmp/bn-bad" 2>&1)
[ $? -eq 1 ] && grep -q "needs a number of ranks it divides (this run has 1)" <<<"$out" && echo "ok: --sync-bn 2 on 1 rank is refused" ||
  fail "--sync-bn 2 on 1 rank: $out"

# Buckets of 1 KiB during the backward pass against one all-reduce after it: bit for bit.
mpi 2 train "${common[@]}" --batch 16 --bucket-mb 0.001 --out "$tmp/buckets" >"$tmp/buckets.log" 2>&1 ||
  fail "2 ranks with buckets: $(tail -3 "$tmp/buckets.log")"
nb=$(grep -o 'gradients in [0-9]* bucket' "$tmp/buckets.log" | grep -o '[0-9]*')
if [ "${nb:-0}" -gt 3 ] && /usr/bin/python3 "$here/compare_checkpoints.py" "$tmp/two/$final" "$tmp/buckets/$final" >"$tmp/cmp.log"; then
  echo "ok: $nb buckets during the backward pass equal one all-reduce bit for bit ($(cat "$tmp/cmp.log"))"
else
  fail "buckets ($nb): $(cat "$tmp/cmp.log")"
fi

# 2 ranks stopped after 5 steps (160 images of epoch 1), resumed on 1 rank with --batch 32.
mpi 2 train "${common[@]}" --batch 16 --out "$tmp/r21" --stop-after 5 >"$tmp/r21.log" 2>&1 &&
  "$effnet" train --resume "$tmp/r21" --batch 32 >>"$tmp/r21.log" 2>&1 || fail "2 -> 1 ranks: $(tail -3 "$tmp/r21.log")"
if grep -q "at epoch 1, batch 5, step 5" "$tmp/r21.log" && out=$(close "$tmp/one/$final" "$tmp/r21/$final"); then
  echo "ok: stopped on 2 ranks, resumed on 1 at batch 5, ends where 1 rank ends ($out)"
else
  fail "2 -> 1 ranks: $(grep resumed "$tmp/r21.log") ${out:-}"
fi
# 1 rank stopped after 3 steps, resumed on 2 ranks with --batch 16.
"$effnet" train "${common[@]}" --batch 32 --out "$tmp/r12" --stop-after 3 >"$tmp/r12.log" 2>&1 &&
  mpi 2 train --resume "$tmp/r12" --batch 16 >>"$tmp/r12.log" 2>&1 || fail "1 -> 2 ranks: $(tail -3 "$tmp/r12.log")"
if grep -q "at epoch 1, batch 3, step 3" "$tmp/r12.log" && out=$(close "$tmp/one/$final" "$tmp/r12/$final"); then
  echo "ok: stopped on 1 rank, resumed on 2 at batch 3, ends where 1 rank ends ($out)"
else
  fail "1 -> 2 ranks: $(grep resumed "$tmp/r12.log") ${out:-}"
fi
# 96 images into the epoch is not a whole number of global batches of 2 x 20: refused, all ranks.
"$effnet" train "${common[@]}" --batch 32 --out "$tmp/r3" --stop-after 3 >/dev/null 2>&1
out=$(mpi 2 train --resume "$tmp/r3" --batch 20 2>&1)
st=$?
[ $st -ne 0 ] && [ $st -ne 124 ] && grep -q "not a whole number of global batches" <<<"$out" &&
  echo "ok: an uneven position is refused (status $st)" || fail "uneven position: status $st: $(tail -2 <<<"$out")"

# A NaN loss (--lr 4 diverges within the first of 256 steps): every rank stops, nothing is saved.
out=$(mpi 2 train "${common[@]}" --batch 16 --limit 8192 --epochs 1 --out "$tmp/nan" 2>&1)
st=$?
[ $st -ne 0 ] && [ $st -ne 124 ] && grep -q "is -*nan at step" <<<"$out" && ! ls "$tmp"/nan/*.h5 >/dev/null 2>&1 &&
  echo "ok: a NaN loss stops both ranks (status $st)" || fail "NaN: status $st: $(tail -3 <<<"$out")"

# kill -9 of rank 1 mid-run: the whole job ends within 30 s, with a message naming rank 1.
"$mpirun" --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS "$effnet" train "${common[@]}" --batch 16 --limit 8192 \
  --lr 0.4 --epochs 1000 --out "$tmp/kill" >"$tmp/kill.log" 2>&1 &
job=$!
for _ in $(seq 600); do ls "$tmp/kill"/ckpt-*.h5 >/dev/null 2>&1 && break; sleep 0.05; done # mid-run: an epoch done
victim=""
for p in $(pgrep -P $job); do grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$p/environ 2>/dev/null && victim=$p; done
if [ -z "$victim" ]; then
  fail "kill: rank 1 not found among mpirun's children ($(pgrep -P $job | tr '\n' ' '))"
  kill -9 $job 2>/dev/null
else
  t0=$(date +%s)
  kill -9 "$victim"
  for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
  if kill -0 $job 2>/dev/null; then
    fail "kill: the job still runs 30 s after rank 1 died"
    kill -9 $job 2>/dev/null
  else
    wait $job
    st=$?
    secs=$(($(date +%s) - t0))
    if [ $st -ne 0 ] && grep -qi "rank 1" "$tmp/kill.log"; then
      echo "ok: rank 1 killed, the job ended in ${secs} s with status $st: $(grep -i -m1 'rank 1' "$tmp/kill.log")"
    else
      fail "kill: status $st after ${secs} s: $(tail -3 "$tmp/kill.log")"
    fi
  fi
fi

# Ctrl-C on mpirun (OpenMPI passes it on as SIGTERM): all ranks stop after the same step, rank 0
# saves that step's checkpoint. A signal that lands after an epoch's last step (during validation)
# stops the run "after epoch E", whose checkpoint is that last step's: E x the steps an epoch.
"$mpirun" --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS "$effnet" train "${common[@]}" --batch 16 --limit 8192 \
  --lr 0.4 --epochs 1000 --out "$tmp/int" >"$tmp/int.log" 2>&1 &
job=$!
for _ in $(seq 600); do ls "$tmp/int"/ckpt-*.h5 >/dev/null 2>&1 && break; sleep 0.05; done
kill -INT $job
for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
kill -0 $job 2>/dev/null && { fail "SIGINT: the job still runs 30 s later"; kill -9 $job 2>/dev/null; }
wait $job
step=$(grep -o 'stopped at step [0-9]*' "$tmp/int.log" | grep -o '[0-9]*$')
if [ -z "$step" ]; then
  epoch=$(grep -o 'stopped after epoch [0-9]*' "$tmp/int.log" | grep -o '[0-9]*$')
  per=$(grep -o '[0-9]* steps/epoch' "$tmp/int.log" | head -1 | grep -o '^[0-9]*')
  [ -n "$epoch" ] && [ -n "$per" ] && step=$((epoch * per))
fi
if [ -n "$step" ] && [ -f "$tmp/int/ckpt-$(printf %012d "$step").h5" ]; then
  echo "ok: Ctrl-C on mpirun stopped both ranks at step $step, checkpoint saved"
else
  fail "SIGINT on mpirun: $(tail -3 "$tmp/int.log")"
fi
[ "$failures" -eq 0 ] && echo "all passed" || echo "$failures failed"
exit $((failures > 0))
