#!/usr/bin/env bash
# The engine's data path on the simulated device against the CPU, same binary, same run:
# 2 ranks x 1 core, GPT V256 T128 L4 H4 C128, 8 seq/rank, bf16, every stage. Variants,
# run interleaved (ROUNDS rounds, each variant once per round, medians over rounds):
#   cpu          system.device = "cpu" (the baseline)
#   sim direct   system.device = "sim", system.cuda_aware = "on"  (MPI on device memory)
#   sim staged   system.device = "sim", system.cuda_aware = "off" (through host buffers)
#   before       BEFORE_BIN's cpu run, when set: another build (e.g. the commit before a
#                change) for a same-run before/after comparison of the CPU step time
# Prints a table and one JSON line per (stage, variant).
#
#   scripts/bench_device.sh OUTDIR
#   BEFORE_BIN=/path/to/old/zerotrain ROUNDS=3 STAGES="0 3" scripts/bench_device.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bench/device}
BIN=${BIN:-target/release/zerotrain}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-30}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1
mkdir -p "$OUT"

variants=("cpu" "sim_direct" "sim_staged")
[ -n "${BEFORE_BIN:-}" ] && variants+=("before")

run() { # stage variant round
  local stage=$1 v=$2 r=$3 bin=$BIN dev=()
  case $v in
    cpu) dev=(--set system.device='"cpu"') ;;
    sim_direct) dev=(--set system.device='"sim"' --set system.cuda_aware='"on"') ;;
    sim_staged) dev=(--set system.device='"sim"' --set system.cuda_aware='"off"') ;;
    before) bin=$BEFORE_BIN ;;
  esac
  mpirun --oversubscribe --bind-to none -np 2 "$bin" train --set model.vocab=256 --set model.ctx=128 \
    --set model.n_layer=4 --set model.n_head=4 --set model.d_model=128 --set train.micro_batch=8 \
    --set train.steps="$STEPS" --set precision.dtype='"bf16"' --set zero.stage="$stage" \
    --set zero.bucket_mb=1 --set log.every=1 --set log.metrics="\"$OUT/s$stage-$v-$r.jsonl\"" \
    "${dev[@]}" >/dev/null 2>&1
}

for stage in ${STAGES:-0 1 2 3}; do
  for r in $(seq 1 "$ROUNDS"); do
    for v in "${variants[@]}"; do run "$stage" "$v" "$r"; done
  done
done

python3 - "$OUT" "$ROUNDS" "${STAGES:-0 1 2 3}" "${variants[@]}" <<'PY'
import json, sys, statistics as st
out, rounds, stages, variants = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split()], sys.argv[4:]
def load(stage, v, r):
    return [json.loads(l) for l in open(f"{out}/s{stage}-{v}-{r}.jsonl")][5:]  # skip warm-up
print(f"{'stage':>5} {'variant':>11} {'step ms':>8} {'tokens/s':>9} {'vs cpu':>7} {'h2d B/step':>11} {'d2h B/step':>11}")
for stage in stages:
    med = {}
    for v in variants:
        runs = [load(stage, v, r) for r in range(1, rounds + 1)]
        step = st.median(st.median(x["step_ms"] for x in recs) for recs in runs)
        tps = st.median(st.median(x["tokens_per_s"] for x in recs) for recs in runs)
        h2d = st.median(x.get("h2d_bytes", 0) for x in runs[0])
        d2h = st.median(x.get("d2h_bytes", 0) for x in runs[0])
        med[v] = (step, tps, h2d, d2h)
    for v in variants:
        step, tps, h2d, d2h = med[v]
        ratio = tps / med["cpu"][1]
        print(f"{stage:>5} {v:>11} {step:>8.1f} {tps:>9.0f} {ratio:>7.3f} {h2d:>11.0f} {d2h:>11.0f}")
        print(json.dumps({"stage": stage, "variant": v, "step_ms": step, "tokens_per_s": tps,
                          "vs_cpu": ratio, "h2d_bytes": h2d, "d2h_bytes": d2h}))
PY
