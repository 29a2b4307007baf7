#!/usr/bin/env bash
# Every ZeRO stage at world sizes where whole slices of a unit are padding (issue 14):
# a tiny GPT (2 layers, width 32, ctx 16) on the addition task, 8 steps, 2 samples per
# rank, each stage at N ranks against one rank at stage 0 on the same global batch (2N).
# Prints the largest relative loss difference over the steps and each run's wall time;
# one JSON object per run on stdout lines starting with '{'.
# Usage: scripts/bench_ranks.sh [workdir] [N ...]   (run from the repository root)
set -euo pipefail

BIN=${BIN:-target/release/zerotrain}
WORK=${1:-$(mktemp -d)}
shift || true
WORLDS=${*:-1 6 7 8 13 16 32}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
[ -x "$BIN" ] || cargo build --release
mkdir -p "$WORK"
[ -f "$WORK/add/manifest.json" ] ||
  "$BIN" data synth --task addition --out "$WORK/add" --count 2000 --val-count 100 >/dev/null

run() {  # np stage micro_batch metrics
  local t0=$EPOCHREALTIME
  mpirun --oversubscribe --bind-to none -np "$1" "$BIN" train --set data.source='"hdf5"' \
    --set data.path="\"$WORK/add\"" --set model.vocab=13 --set train.steps=8 --set train.lr=1e-2 \
    --set zero.stage="$2" --set train.micro_batch="$3" --set log.every=1 \
    --set log.metrics="\"$4\"" >/dev/null 2>"$4.log" || { cat "$4.log" >&2; exit 1; }
  python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$t0" "$EPOCHREALTIME"
}

printf '%4s %6s %22s %8s\n' N stage "max rel. loss diff" "wall s"
for np in $WORLDS; do
  ref="$WORK/ref_np$np.jsonl"
  run 1 0 $((2 * np)) "$ref" >/dev/null
  for stage in 0 1 2 3; do
    m="$WORK/np${np}_stage$stage.jsonl"
    wall=$(run "$np" "$stage" 2 "$m")
    python3 - "$ref" "$m" "$np" "$stage" "$wall" <<'PY'
import json, sys
ref, got = ([json.loads(l)["loss"] for l in open(p)] for p in sys.argv[1:3])
np_, stage, wall = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
assert len(ref) == len(got) == 8, (len(ref), len(got))
rel = max(abs(a - b) / abs(b) for a, b in zip(got, ref))
print(f"{np_:>4} {stage:>6} {rel:>22.2e} {wall:>8.1f}")
print(json.dumps({"np": np_, "stage": stage, "max_rel_loss_diff": rel, "wall_s": wall,
                  "losses": got}))
PY
  done
done
