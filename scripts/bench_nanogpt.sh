#!/usr/bin/env bash
# The same-run reference for the shakespeare-char figure: nanoGPT itself.
#
#   scripts/bench_nanogpt.sh CORPUS NANOGPT_DIR
#
# NANOGPT_DIR is a checkout of nanoGPT (not part of this repository) and python3 must have
# PyTorch and numpy. The corpus is encoded as nanoGPT's shakespeare_char does (the sorted
# distinct characters as uint16 ids, the first 90% for training) into a temporary folder,
# and nanoGPT's README command for CPU runs there, untouched, at its built-in seed.
# Prints one JSON line: {"val_loss": ..., "wall_s": ...}; the run's log goes to stderr.
set -euo pipefail
corpus=$1 nanogpt=$(cd "$2" && pwd)
[ -f "$nanogpt/train.py" ] || { echo "bench_nanogpt: no train.py in $nanogpt" >&2; exit 1; }
python3 -c 'import torch, numpy' || { echo "bench_nanogpt: python3 lacks torch or numpy" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/shakespeare_char"
python3 - "$corpus" "$work/data/shakespeare_char" <<'PY'
import pickle, sys
import numpy as np
text = open(sys.argv[1]).read()
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
cut = int(len(text) * 0.9)
for name, part in (("train", text[:cut]), ("val", text[cut:])):
    np.array([stoi[c] for c in part], dtype=np.uint16).tofile(f"{sys.argv[2]}/{name}.bin")
with open(f"{sys.argv[2]}/meta.pkl", "wb") as f:
    pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
PY
# train.py reads configurator.py and data/ from the working directory.
ln -s "$nanogpt/configurator.py" "$work/configurator.py"
t0=$(date +%s)
(cd "$work" && python3 "$nanogpt/train.py" "$nanogpt/config/train_shakespeare_char.py" --device=cpu \
  --compile=False --eval_iters=20 --log_interval=100 --block_size=64 --batch_size=12 --n_layer=4 \
  --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0 --out_dir="$work/out") \
  > "$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
t1=$(date +%s)
cat "$work/log" >&2
val=$(sed -n 's/^step 2000: .*val loss \([0-9.]*\).*/\1/p' "$work/log")
[ -n "$val" ] || { echo "bench_nanogpt: no 'step 2000' line in nanoGPT's log" >&2; exit 1; }
echo "{\"val_loss\": $val, \"wall_s\": $((t1 - t0))}"
