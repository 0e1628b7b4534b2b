"""One epoch of SimpleCNN on Fashion-MNIST over many seeds, tinynet and plain PyTorch.

The project expects one epoch (SGD lr 0.1, batch 64, shuffled) to reach 82% test accuracy.
At lr 0.1 the accuracy after a single epoch is a snapshot of a noisy trajectory: it moves
by several points with the seed in *either* framework, so one run each says little. This
script trains ``--seeds`` runs per framework and tabulates the distributions:

* tinynet exactly as ``python -m tinynet train --model simplecnn --shuffle --seed S``
  (``tinynet.fit``, its initialisation and its shuffled order);
* PyTorch on its own: ``torch.manual_seed(S)``, PyTorch's default initialisation, a
  ``torch.randperm`` order per epoch (what ``DataLoader(shuffle=True)`` draws), the same
  scaling to [0, 1], ``F.cross_entropy`` and ``torch.optim.SGD``.

The two are independent samples (not twins: the experiments' twins share weights and
batch order, see ``experiments.common``), so comparing them compares the frameworks'
*distributions* of one-epoch accuracy. The Mann-Whitney U test (normal approximation,
no continuity correction) says whether the difference could be chance.

Each framework runs in its own process so the two can go on separate cores::

    taskset -c 0 python -m experiments.simplecnn_seeds --framework torch --seeds 0-19 &
    taskset -c 1 python -m experiments.simplecnn_seeds --framework tinynet --seeds 0-19
    python -m experiments.simplecnn_seeds --summarize

Results: ``<out>/<framework>.json`` (one record per seed) and ``<out>/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

from .common import machine, md_table, write_json, write_text

THRESHOLD = 82.0
SETTINGS = {"epochs": 1, "lr": 0.1, "batch_size": 64}


def parse_seeds(text: str) -> list[int]:
    """``"0-19"`` -> 0..19, ``"0,3,5"`` -> [0, 3, 5]."""
    seeds: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return seeds


def run_tinynet(seed: int, train, test) -> dict:
    import tinynet
    from tinynet import models
    tinynet.manual_seed(seed)
    model = models.build("simplecnn")
    opt = tinynet.SGD(model.parameters(), lr=SETTINGS["lr"])
    h = tinynet.fit(model, tinynet.CrossEntropyLoss(), opt, train, test,
                    epochs=SETTINGS["epochs"], batch_size=SETTINGS["batch_size"],
                    shuffle=True, seed=seed, progress=False)
    return {"seed": seed, "test_acc": h["test_acc"][-1], "train_loss": h["train_loss"][-1],
            "train_seconds": sum(h["seconds"])}


def run_torch(seed: int, train, test) -> dict:
    import numpy as np
    import torch
    from torch import nn
    torch.manual_seed(seed)

    def tensors(split):
        x, y = split
        return (torch.from_numpy(np.asarray(x, np.float32).reshape(-1, 1, 28, 28) / 255),
                torch.from_numpy(np.asarray(y).astype(np.int64)))
    xtr, ytr = tensors(train)
    xte, yte = tensors(test)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=SETTINGS["lr"])
    bs = SETTINGS["batch_size"]
    t0 = time.perf_counter()
    for _ in range(SETTINGS["epochs"]):
        losses = []       # the epoch's mean training loss, as fit's history
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            losses.append(loss.item() * len(idx))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).double().mean().item() * 100
    return {"seed": seed, "test_acc": acc, "train_loss": sum(losses) / len(xtr),
            "train_seconds": seconds}


def mann_whitney(a: list[float], b: list[float]) -> tuple[float, float]:
    """U of ``a`` against ``b`` and the two-sided p-value (normal approximation)."""
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    n1, n2 = len(a), len(b)
    mu, sd = n1 * n2 / 2, math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    z = (u - mu) / sd if sd else 0.0
    return u, math.erfc(abs(z) / math.sqrt(2))


def describe(runs: list[dict]) -> dict:
    acc = [r["test_acc"] for r in runs]
    return {"runs": len(acc), "mean": statistics.mean(acc),
            "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "median": statistics.median(acc), "min": min(acc), "max": max(acc),
            "at_least_82": sum(a >= THRESHOLD for a in acc),
            "median_train_seconds": statistics.median(r["train_seconds"] for r in runs)}


def summarize(out: str) -> str:
    found = {}
    for name in ("tinynet", "torch"):
        path = os.path.join(out, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                found[name] = json.load(f)
    if not found:
        raise SystemExit(f"no results in {out}: run --framework tinynet / torch first")
    stats = {k: describe(v["runs"]) for k, v in found.items()}
    rows = [[k, s["runs"], f"{s['median']:.2f}", f"{s['mean']:.2f}", f"{s['sd']:.2f}",
             f"{s['min']:.2f}", f"{s['max']:.2f}", f"{s['at_least_82']}/{s['runs']}",
             f"{s['median_train_seconds']:.1f}"] for k, s in stats.items()]
    text = ["# SimpleCNN, one epoch on Fashion-MNIST, over seeds", "",
            ("SGD lr 0.1, batch 64, shuffled; test accuracy (%) after the epoch. "
             "Written by `python -m experiments.simplecnn_seeds`; see its docstring."), ""]
    for k, v in found.items():
        text.append(f"- {k}: {v['machine']}; {v['threads']} thread(s); {v['date']}")
    text += ["", md_table(["framework", "runs", "median", "mean", "sd", "min", "max",
                           ">= 82%", "train s (median)"], rows), ""]
    if len(found) == 2:
        u, p = mann_whitney([r["test_acc"] for r in found["tinynet"]["runs"]],
                            [r["test_acc"] for r in found["torch"]["runs"]])
        text += [(f"Mann-Whitney U (tinynet vs PyTorch) = {u:.1f}, two-sided p = {p:.2f} "
                  "(normal approximation)."), ""]
    seeds = sorted({r["seed"] for v in found.values() for r in v["runs"]})
    by = {k: {r["seed"]: r["test_acc"] for r in v["runs"]} for k, v in found.items()}
    per_seed = [[s] + [f"{by[k][s]:.2f}" if s in by[k] else "" for k in found] for s in seeds]
    text += ["Per seed (the frameworks' seeds are unrelated: same number, different runs):",
             "", md_table(["seed"] + list(found), per_seed), ""]
    return write_text(os.path.join(out, "README.md"), "\n".join(text))


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.simplecnn_seeds",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--framework", choices=["tinynet", "torch"])
    p.add_argument("--seeds", default="0-19", help="e.g. 0-19 or 0,3,5 (default 0-19)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS / torch threads (default 1: one process per core)")
    p.add_argument("--out", default=os.path.join("runs", "experiments", "simplecnn_seeds"),
                   help="output folder (default: runs/experiments/simplecnn_seeds; the "
                        "committed results are in results/simplecnn_seeds: --out there to "
                        "update them)")
    p.add_argument("--summarize", action="store_true", help="write README.md from the JSONs")
    args = p.parse_args(argv)
    if args.summarize:
        with open(summarize(args.out)) as f:
            print(f.read())
        return 0
    if args.framework is None:
        p.error("give --framework tinynet or --framework torch (or --summarize)")
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        if args.threads and not os.environ.get("OPENBLAS_NUM_THREADS"):
            print("threadpoolctl is missing: NumPy's BLAS threads are not limited; set "
                  f"OPENBLAS_NUM_THREADS={args.threads} OMP_NUM_THREADS={args.threads}",
                  file=sys.stderr)
    if args.framework == "torch":
        import torch
        torch.set_num_threads(args.threads)
    else:
        import tinynet
        if hasattr(tinynet, "set_num_threads"):   # tinynet's own threads, where it has them
            tinynet.set_num_threads(args.threads)
    from tinynet import data
    train, test = data.load("fashion-mnist", "train"), data.load("fashion-mnist", "test")
    run = run_tinynet if args.framework == "tinynet" else run_torch
    runs = []
    for seed in parse_seeds(args.seeds):
        r = run(seed, train, test)
        runs.append(r)
        print(f"{args.framework} seed {seed}: {r['test_acc']:.2f}% "
              f"(train loss {r['train_loss']:.4f}, {r['train_seconds']:.1f} s)", flush=True)
        write_json(os.path.join(args.out, f"{args.framework}.json"),
                   {"framework": args.framework, "settings": SETTINGS, "machine": machine(),
                    "threads": args.threads,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
