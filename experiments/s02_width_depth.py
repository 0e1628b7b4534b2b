"""S2: wider vs deeper MLPs on Fashion-MNIST (report 001, Q1.5; report 004, Problems 1-4).

SGD lr 0.01, batch 64, no shuffling (report 001's DataLoader), 20 epochs. Table:
structure, exact parameter count (tinynet's, checked against shared/studies.md), test
accuracy (report / tinynet / twin); one plot of train loss per epoch. Report 004's
formula for the parameter count of k hidden layers of width m is printed and checked
against the models. (Report 004's equal-budget shapes with L2 and dropout are not run.)
"""

from __future__ import annotations

import os
import time

from tinynet import models

from . import common

NAME = "s2"
TITLE = "Wider vs deeper MLPs, Fashion-MNIST (exact parameter counts)"
EPOCHS = 20
LR = 0.01
CONFIGS = [  # key, structure, builder, reported accuracy
    ("base", "784-512-512-10", models.base_mlp, 85.51),
    ("wider", "784-1024-1024-10", models.wider_mlp, 85.88),
    ("deeper", "784-512-512-512-10", models.deeper_mlp, 85.51),
    ("bn", "BN 784-512-256-128-64-10", models.bn_mlp, 87.13),
    ("wider-bn", "BN 784-1024-512-256-128-64-10", models.wider_bn_mlp, 87.80),
    ("deeper-bn", "BN 784-512-256-128-64-32-16-10", models.deeper_bn_mlp, 86.71),
]
REPORTED_BASE_LOSS = {1: 1.2926, 20: 0.3530}
DISCUSSION = """Parameter counts equal shared/studies.md (PyTorch's) exactly, and report
004's formula gives the same numbers as the built models. Width and depth move a plain
MLP's accuracy by well under a point (85.72 / 86.05 / 85.98 against the report's 85.51 /
85.88 / 85.51) and BatchNorm by more; the base MLP's train loss after epoch 1 and 20
(1.2831, 0.3527) is within 0.01 of the report's (1.2926, 0.3530). Five of the six rows are
within 0.5 points of the report; the deeper BN MLP is 1.7 points above it, inside the
run-to-run spread of the BN nets (their float32 runs drift apart within tens of steps,
see S1 and S3). The twin was not run for this study (machine time)."""


def uniform_mlp_params(d_in: int, m: int, k: int, d_out: int = 10) -> int:
    """Parameters of k hidden layers of width m: (d_in + 1) m + (k - 1)(m + 1) m + (m + 1) d_out."""
    return (d_in + 1) * m + (k - 1) * (m + 1) * m + (m + 1) * d_out


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    epochs = common.QUICK_EPOCHS if quick else EPOCHS
    common.say(f"S2: seed {seed}; {'QUICK MODE (subset, few epochs)' if quick else 'full'}; "
               f"SGD lr {LR}, batch 64, no shuffle, {epochs} epochs")
    train, test = common.dataset("fashion-mnist", quick)
    previous = common.previous_runs(out_dir, quick, seed)
    runs, rows, series = {}, [], []
    for i, (key, structure, build, reported) in enumerate(CONFIGS):
        expected = models.PARAMETER_COUNTS[key]
        why = common.missing_layers(build)
        if why:
            common.say(f"S2: {key} unavailable: {why}")
            rows.append([key, structure, "unavailable", f"(studies.md: {expected:,})",
                         reported, "-", "-"])
            continue
        r = common.train_pair(key, build, ("sgd", LR), train, test, epochs, 64, False, seed,
                              use_torch, device, previous=previous)
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        check = "yes" if r["params"] == expected else f"NO (studies.md: {expected:,})"
        rows.append([key, structure, r["params"], check, reported,
                     common.outcome(r["tinynet"]), common.outcome(r["torch"])])
        h = r["tinynet"]
        series.append((h["epoch"], h["train_loss"], key, f"C{i % 3}{'-' if i < 3 else '--'}o"))
    table = f"## Test accuracy after {epochs} epochs (%) and exact parameter counts\n\n"
    table += common.md_table(["model", "structure", "parameters (tinynet)",
                              "= studies.md / PyTorch", "report", "tinynet", "PyTorch twin"],
                             rows)
    base = runs.get("base")
    if base:
        h, th = base["tinynet"], base["torch"]
        loss_rows = []
        for ep in (1, epochs):
            loss_rows.append([ep, REPORTED_BASE_LOSS.get(ep) if not quick or ep == 1 else None,
                              h["train_loss"][ep - 1] if len(h["train_loss"]) >= ep else None,
                              th["train_loss"][ep - 1] if th and len(th["train_loss"]) >= ep
                              else None])
        table += "\n## Base MLP train loss\n\n"
        table += common.md_table(["epoch", "report", "tinynet", "PyTorch twin"],
                                 [[str(r[0])] + [None if v is None else f"{v:.4f}"
                                                 for v in r[1:]] for r in loss_rows])
    formula_rows = []
    for m, k in ((512, 2), (1024, 2), (512, 3), (256, 4), (128, 8)):
        n = uniform_mlp_params(784, m, k)
        built = models.count_parameters(models.mlp(784, (m,) * k))
        formula_rows.append([str(k), str(m), n, built, "yes" if n == built else "NO"])
    table += ("\n## Report 004: parameters of k hidden layers of width m, "
              "(784+1)m + (k-1)(m+1)m + (m+1)10\n\n")
    table += common.md_table(["k", "m", "formula", "built model", "equal"], formula_rows)
    path = os.path.join(out_dir, "train_loss.png")
    common.line_plot(path, series, "epoch", "train cross-entropy loss",
                     "S2: train loss per epoch (solid: plain MLPs, dashed: BN MLPs)", quick=quick)
    summary = f"S2 test accuracy after {epochs} epochs: " + "; ".join(
        f"{k} {common.outcome(r['tinynet'])} ({r['params']:,} params)" for k, r in runs.items())
    return common.finish(out_dir, NAME, TITLE, table, runs, [path], summary, quick, seed,
                         time.perf_counter() - t0)
