#!/usr/bin/env bash
# Peak memory of `zerotrain ckpt consolidate` on a ~50M-parameter GPT checkpoint
# (2 ranks, stage 2), against the bound 2 x the largest unit's fp32 bytes + 100 MiB.
# Usage: scripts/bench_consolidate.sh [workdir]   (run from the repository root)
set -euo pipefail

BIN=${BIN:-target/release/zerotrain}
WORK=${1:-$(mktemp -d)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
  else
    echo "bench_consolidate: /usr/bin/time is missing (apt-get install time)" >&2
    exit 1
  fi
fi
[ -x "$BIN" ] || cargo build --release

# 8 blocks of 12 d^2 + 13 d (d = 720) plus 256 x 720 + 64 x 720 embeddings: 50.07M.
MODEL=(--set model.n_layer=8 --set model.d_model=720 --set model.n_head=8
       --set model.vocab=256 --set model.ctx=64)
mkdir -p "$WORK"
rm -rf "$WORK/ck" "$WORK/model.h5"
mpirun --oversubscribe --bind-to none -np 2 "$BIN" train "${MODEL[@]}" \
  --set zero.stage=2 --set train.steps=1 --set train.micro_batch=1 \
  --set checkpoint.dir="$WORK/ck" >/dev/null 2>"$WORK/train.log" || { cat "$WORK/train.log" >&2; exit 1; }

"$BIN" ckpt inspect "$WORK/ck" | sed -n '1,7p'
/usr/bin/time -v "$BIN" ckpt consolidate "$WORK/ck" --out "$WORK/model.h5" 2>"$WORK/time.txt"

peak_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
# Largest unit: the biggest `numel` in meta.json's unit table, 4 bytes per element.
largest=$("$BIN" ckpt inspect "$WORK/ck" | awk '/elements/ {if ($3 > m) m = $3} END {print m}')
bound_kib=$(( (2 * largest * 4) / 1024 + 100 * 1024 ))
params=$("$BIN" ckpt inspect "$WORK/ck" | awk '/^model/ {print $3}')
echo "consolidate: ${params} parameters, largest unit ${largest} elements ($(( largest * 4 / 1048576 )) MiB fp32)"
echo "consolidate: peak RSS $(( peak_kib / 1024 )) MiB, bound 2 x largest unit + 100 MiB = $(( bound_kib / 1024 )) MiB"
if [ "$peak_kib" -le "$bound_kib" ]; then echo "consolidate: under the bound"; else
  echo "consolidate: OVER the bound" >&2; exit 1; fi
