"""scikit-learn's digits (1797 8x8 images, 64 features, 10 classes) as a zerotrain
classification dataset, and the PyTorch MLP that zerotrain's accuracy is compared with
(tests/classify_digits.rs, `make bench`'s `classify` section).

    python3 scripts/digits.py write OUT_DIR
        Writes the split with docs/data-format.md's own `write_classify_dataset` (the
        documented h5py code, read from the doc): features scaled to [0, 1] (pixel / 16),
        a stratified split of 1440 train and 352 val rows (seed 0; 5 rows left out so
        both splits are whole global batches of 32).
    python3 scripts/digits.py torch DATA_DIR --hidden 64 --epochs 20 --lr 1e-3
            [--batch 32] [--weight-decay 0.01] [--seeds 0 1 2]
        Trains an MLP of the same shape on the same files, as zerotrain's `train` does:
        nn.Linear layers (PyTorch's default init, which zerotrain copies), ReLU between
        them, mean cross-entropy over the batch, AdamW (betas 0.9, 0.95, eps 1e-8, as
        zerotrain's defaults) with weight decay on the weights only (zerotrain's
        grouping: biases are not decayed), constant lr, shuffled batches with the tail
        dropped each epoch. Prints one JSON line per seed and their mean:
        {"seed": 0, "val_acc": 0.97} ... {"mean_val_acc": ...}.
"""
import argparse, json, os, sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN, VAL = 1440, 352


def documented_writer():
    """`write_classify_dataset` from docs/data-format.md's python block."""
    doc = open(os.path.join(ROOT, "docs", "data-format.md"), encoding="utf-8").read()
    for block in doc.split("```python\n")[1:]:
        code = block.split("```")[0]
        if "def write_classify_dataset" in code:
            scope = {"__name__": "data_format_doc"}
            exec(code, scope)
            return scope["write_classify_dataset"]
    sys.exit("docs/data-format.md has no write_classify_dataset block")


def write(out_dir):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) / 16.0  # (1797, 64), pixels 0..16 -> [0, 1]
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, train_size=TRAIN, test_size=VAL, stratify=y, random_state=0)
    documented_writer()(out_dir, x_train, y_train, x_val, y_val, classes=10)


def split(data_dir, name):
    with h5py.File(os.path.join(data_dir, f"{name}_000.h5"), "r") as f:
        return f["x"][()], f["y"][()]


def torch_runs(a):
    import torch
    from torch import nn

    torch.set_num_threads(1)
    x_train, y_train = (torch.from_numpy(v) for v in split(a.data, "train"))
    x_val, y_val = (torch.from_numpy(v) for v in split(a.data, "val"))
    widths = [x_train.shape[1], *a.hidden, 10]
    accs = []
    for seed in a.seeds:
        torch.manual_seed(seed)
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i + 2 < len(widths):
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
        rest = [p for n, p in model.named_parameters() if not n.endswith("weight")]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": a.weight_decay},
             {"params": rest, "weight_decay": 0.0}],
            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(a.epochs):
            order = torch.randperm(len(y_train), generator=gen)
            for b in range(len(y_train) // a.batch):
                idx = order[b * a.batch:(b + 1) * a.batch]
                loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            acc = (model(x_val).argmax(1) == y_val).double().mean().item()
        accs.append(acc)
        print(json.dumps({"seed": seed, "val_acc": acc}))
    print(json.dumps({"mean_val_acc": float(np.mean(accs)), "seeds": len(accs)}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("out")
    t = sub.add_parser("torch")
    t.add_argument("data")
    t.add_argument("--hidden", type=int, nargs="+", default=[64])
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    if a.cmd == "write":
        write(a.out)
    else:
        torch_runs(a)


if __name__ == "__main__":
    main()
