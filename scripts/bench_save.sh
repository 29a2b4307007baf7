#!/usr/bin/env bash
# The step-time stall of a checkpoint save, foreground (checkpoint.async = false) against
# background (true), each measured in its own run against that run's median step time
# without a save. 2 ranks, stage 2, GPT L4 C384 (7.2M parameters: a 43 MB rank file per
# rank), 40 steps, a save every 10 (steps 10, 20, 30; the last step's save, in the
# foreground in both, is left out).
#   boundary: the time after a save step spent on the save (metrics `save_ms`);
#   total:    the save step's window (it and the 9 steps after it) less 10 median steps,
#             so the background writer's slowdown of the steps it overlaps counts too.
# Usage: scripts/bench_save.sh [workdir]   (run from the repository root; ROUNDS=n)
set -euo pipefail

BIN=${BIN:-target/release/zerotrain}
WORK=${1:-$(mktemp -d)}
ROUNDS=${ROUNDS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
[ -x "$BIN" ] || cargo build --release
mkdir -p "$WORK"

MODEL=(--set model.n_layer=4 --set model.d_model=384 --set model.n_head=4
       --set train.micro_batch=2 --set zero.stage=2)
# Rounds interleave the two kinds, so drift on a shared machine hits both alike.
for round in $(seq 1 "$ROUNDS"); do
  for kind in sync async; do
    rm -rf "$WORK/ck_$kind"
    async=false; [ "$kind" = async ] && async=true
    mpirun --oversubscribe --bind-to none -np 2 "$BIN" train "${MODEL[@]}" \
      --set train.steps=40 --set checkpoint.every=10 --set checkpoint.keep=2 \
      --set checkpoint.async=$async --set checkpoint.dir="\"$WORK/ck_$kind\"" \
      --set log.every=1 --set log.metrics="\"$WORK/save_${kind}_$round.jsonl\"" \
      >/dev/null 2>"$WORK/save_${kind}_$round.log" || { cat "$WORK/save_${kind}_$round.log" >&2; exit 1; }
  done
done
rank_mb=$(( $(stat -c %s "$WORK/ck_sync/step-00000040/rank-00000.h5") / 1000000 ))

python3 - "$WORK" "$ROUNDS" "$rank_mb" <<'PY'
import json, statistics as st, sys
work, rounds, rank_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def measure(kind, r):
    recs = {x["step"]: x for x in map(json.loads, open(f"{work}/save_{kind}_{r}.jsonl"))}
    # The median step without a save, none in flight, past the warm-up (steps 1-3).
    base = st.median(x["step_ms"] for s, x in recs.items() if s > 3 and s < 40 and "save_ms" not in x)
    saves = [10, 20, 30]
    boundary = [recs[s]["save_ms"] for s in saves]
    total = [sum(recs[k]["step_ms"] + recs[k].get("save_ms", 0.0) for k in range(s, s + 10)) - 10 * base
             for s in saves]
    return base, st.mean(boundary), st.mean(total)
res = {}
for kind in ("sync", "async"):
    ms = [measure(kind, r) for r in range(1, rounds + 1)]
    res[kind] = [st.median(m[i] for m in ms) for i in range(3)]
print(f"save of a {rank_mb} MB rank file per rank (2 ranks), medians of {rounds} rounds:")
for kind in ("sync", "async"):
    base, boundary, total = res[kind]
    print(f"{kind:>6}: step {base:6.1f} ms; stall at the save step {boundary:6.1f} ms ({boundary / base:5.2f} steps), "
          f"over its window {total:6.1f} ms ({total / base:5.2f} steps)")
    print(json.dumps({"kind": kind, "rank_file_mb": rank_mb, "step_ms": base, "boundary_stall_ms": boundary,
                      "total_stall_ms": total, "boundary_steps": boundary / base, "total_steps": total / base}))
(sb, ss, stot), (ab, a_s, atot) = res["sync"], res["async"]
print(f"async / sync: stall at the save step {a_s / ss:.3f}, over the window {atot / stot:.3f}")
print(json.dumps({"kind": "ratio", "boundary": a_s / ss, "total": atot / stot}))
PY
