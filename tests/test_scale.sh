#!/usr/bin/env bash
# `effnet scale-search` and `effnet scale-curves` end to end on a few hundred Fashion-MNIST images:
# bad flags, --dry-run, a search's table, records and plot; a search killed with SIGKILL in the
# middle of a candidate, then resumed by the same command, ends with the records of an
# uninterrupted search, bit for bit; a second search in the same folder, or one with other training
# settings, is refused; under mpirun two ranks train different candidates; the curves' networks.
# usage: test_scale.sh EFFNET [MPIRUN]   (exit 77 without Fashion-MNIST)
set -u
effnet=$1
mpirun=${2:-mpirun}
source "$(dirname "$0")/expect.sh"
fmnist=/usr/share/datasets/fashion-mnist
[ -r $fmnist/train-images-idx3-ubyte.gz ] || { echo "skipped: no Fashion-MNIST"; exit 77; }
tmp=$(mktemp -d /tmp/effnet-scale-XXXXXX)
trap 'kill -9 $bg 2>/dev/null; rm -rf "$tmp"' EXIT
bg=
export OMP_NUM_THREADS=1
# Two candidates at 32 px: (1, 1.4, 1) and (1.35, 1.1, 1) cost 1.94x and 1.98x B0's MACs.
grid=(--image-size 32 --alphas 1:1.35:0.35 --betas 1.1:1.4:0.3 --gammas 1)
common=("${grid[@]}" --limit 512 --val-limit 64 --epochs 3 --batch 32 --threads 1 --loader-threads 0 --seed 5)

expect 2 "--resume is not for a scaling run" scale-search --resume /tmp
expect 2 "--init is not for a scaling run" scale-search --init /nonexistent.h5
expect 2 "--alphas '0.5:1:0.1'" scale-search --alphas 0.5:1:0.1
expect 2 "scaling needs an EfficientNet base" scale-search --model tiny
expect 2 "drop --phi" scale-search --phi 1
expect 2 "no grid point costs 50 x" scale-search "${grid[@]}" --flops-factor 50 --out "$tmp/none"
expect 2 "--budgets 'x'" scale-curves --budgets x
expect 2 "a budget of 0.5 times" scale-curves --budgets 0.5 --image-size 32
expect 0 "2 networks within 2 x (1 +- 0.05)" scale-search "${grid[@]}" --dry-run --out "$tmp/dry"
[ -e "$tmp/dry" ] && fail "--dry-run made its folder" || ok "--dry-run writes nothing"

# The reference: an uninterrupted search.
if "$effnet" scale-search "${common[@]}" --out "$tmp/ref" >"$tmp/ref.log" 2>&1; then
  lines=$(wc -l <"$tmp/ref/scale-search.jsonl")
  if [ "$lines" = 2 ] && [ -s "$tmp/ref/scale-search.png" ] && grep -q "^chosen: alpha" "$tmp/ref.log" &&
    grep -q "phi 2: effnet train --model b0 --depth" "$tmp/ref.log"; then
    ok "a search: 2 records, the plot, the chosen family"
  else
    fail "the search's output: $lines records; $(tail -12 "$tmp/ref.log")"
  fi
else
  fail "the search failed: $(tail -5 "$tmp/ref.log")"
fi
expect 1 "with other training settings" scale-search "${common[@]}" --epochs 2 --out "$tmp/ref"

# Killed in the middle of the second candidate (after its first epoch's checkpoint), then resumed.
"$effnet" scale-search "${common[@]}" --out "$tmp/kill" >"$tmp/kill1.log" 2>&1 &
bg=$!
second=
for _ in $(seq 600); do
  if [ -s "$tmp/kill/scale-search.jsonl" ]; then
    second=$(ls -d "$tmp"/kill/net-* | while read -r d; do grep -q "$(basename "$d" | cut -d- -f2)" \
      "$tmp/kill/scale-search.jsonl" || echo "$d"; done | head -1)
    [ -n "$second" ] && ls "$second"/ckpt-*.h5 >/dev/null 2>&1 && break
  fi
  sleep 0.1
done
expect 1 "is in use by another effnet run (pid $bg)" scale-search "${common[@]}" --out "$tmp/kill"
kill -9 $bg 2>/dev/null
wait $bg 2>/dev/null
bg=
if [ -z "$second" ] || [ "$(wc -l <"$tmp/kill/scale-search.jsonl")" != 1 ]; then
  fail "the kill came at the wrong time (second: '$second'; $(wc -l <"$tmp/kill/scale-search.jsonl") records)"
fi
if "$effnet" scale-search "${common[@]}" --out "$tmp/kill" >"$tmp/kill2.log" 2>&1; then
  grep -q "^1 of 2 runs to train" "$tmp/kill2.log" && grep -q "(resumed)" "$tmp/kill2.log" &&
    ok "the resumed search trains the unfinished run only, from its checkpoint" ||
    fail "the resume: $(head -8 "$tmp/kill2.log")"
  # The same records as the uninterrupted search (but the time, the rank and whether resumed).
  norm() { sed -E 's/"seconds":[^,]*,"resumed":[a-z]*//' "$1" | sort; }
  if [ "$(norm "$tmp/ref/scale-search.jsonl")" = "$(norm "$tmp/kill/scale-search.jsonl")" ]; then
    ok "killed and resumed = uninterrupted, bit for bit"
  else
    fail "killed and resumed differ:"$'\n'"$(norm "$tmp/ref/scale-search.jsonl")"$'\n'"$(norm \
      "$tmp/kill/scale-search.jsonl")"
  fi
else
  fail "the resumed search failed: $(tail -5 "$tmp/kill2.log")"
fi

# Two ranks split the candidates: each trains one, rank 0 reports both.
if command -v "$mpirun" >/dev/null; then
  # (OpenMPI keeps allocations past MPI_Finalize: no leak check under mpirun)
  if ASAN_OPTIONS=detect_leaks=0 timeout 300 "$mpirun" --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS \
    -x ASAN_OPTIONS "$effnet" scale-search \
    "${common[@]}" --out "$tmp/mpi" >"$tmp/mpi.log" 2>&1; then
    ranks=$(grep -o '"rank":[0-9]' "$tmp/mpi/scale-search.jsonl" | sort | tr '\n' ' ')
    keys=$(grep -o '"key":"[0-9a-f]*"' "$tmp/mpi/scale-search.jsonl" | sort -u | wc -l)
    [ "$ranks" = '"rank":0 "rank":1 ' ] && [ "$keys" = 2 ] && grep -q "^chosen: alpha" "$tmp/mpi.log" &&
      ok "2 ranks: one candidate each ($ranks)" ||
      fail "2 ranks: ranks '$ranks', $keys networks; $(tail -5 "$tmp/mpi.log")"
  else
    grep -q "this effnet was built without MPI" "$tmp/mpi.log" && echo "skipped: this effnet has no MPI" ||
      fail "2 ranks failed: $(tail -5 "$tmp/mpi.log")"
  fi
else
  echo "skipped: no mpirun"
fi

# --gpus N: the launcher needs the GPUs; a worker (told its rank, as the launcher does) trains on
# its own GPU, cuda:<rank>.
expect 1 "--gpus 1024, but" scale-search "${common[@]}" --gpus 1024 --out "$tmp/gpus"
expect 2 "with --objective throughput every worker would time" scale-search "${common[@]}" --gpus 2 \
  --objective throughput
EFFNET_RANK=1 EFFNET_WORLD_SIZE=2 expect 1 "cuda:1" scale-search "${common[@]}" --gpus 2 --out "$tmp/gpus"
EFFNET_RANK=0 EFFNET_WORLD_SIZE=3 expect 2 "as for a worker of --gpus, but this is not one" scale-search \
  "${common[@]}" --gpus 2 --out "$tmp/gpus"

# The hardware-aware objective: each network's inference timed, the time per image the cost.
expect 0 "networks within 2 x (1 +- 0.9) of its time per image" scale-search "${grid[@]}" --objective throughput \
  --tolerance 0.9 --bench-iters 2 --batch 8 --threads 1 --dry-run

# The curves: compound's bases are --alpha, --beta, --gamma; the base and each strategy at 2x.
expect 0 "compound with alpha 1.3 beta 1.05 gamma 1.1" scale-curves --image-size 32 --budgets 2 --alpha 1.3 \
  --beta 1.05 --gamma 1.1 --dry-run
curves=(--image-size 32 --budgets 2 --limit 128 --val-limit 32 --epochs 1 --batch 32 --threads 1 --loader-threads 0)
if "$effnet" scale-curves "${curves[@]}" --out "$tmp/curves" >"$tmp/curves.log" 2>&1; then
  n=$(wc -l <"$tmp/curves/scale-curves.jsonl")
  for s in base compound width depth resolution; do grep -q "\"strategy\":\"$s\"" "$tmp/curves/scale-curves.jsonl" ||
    fail "curves: no $s record"; done
  [ "$n" = 5 ] && [ -s "$tmp/curves/scale-curves.png" ] && ok "curves: 5 networks, the plot" ||
    fail "curves: $n records; $(tail -5 "$tmp/curves.log")"
else
  fail "scale-curves failed: $(tail -5 "$tmp/curves.log")"
fi
exit $((failures > 0))
