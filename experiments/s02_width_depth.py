"""S2: wider vs deeper MLPs on Fashion-MNIST (report 001, Q1.5; report 004, Problems 1-4).

SGD lr 0.01, batch 64, no shuffling (report 001's DataLoader), 20 epochs. Table:
structure, exact parameter count (tinynet's, checked against docs/studies.md), test
accuracy (report / tinynet / twin); one plot of train loss per epoch. Report 004's
formula for the parameter count of k hidden layers of width m is printed and checked
against the models. (Report 004's equal-budget shapes with L2 and dropout are not run.)
"""

from __future__ import annotations

import itertools
import os
import time

import tinynet
from tinynet import Dropout, Flatten, Linear, ReLU, Sequential, models

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
BUDGET = 200_000
SHAPES = {"uniform": (1, 1, 1), "decreasing": (4, 2, 1), "increasing": (1, 2, 4)}
REGULARISERS = {"none": {}, "L2 5e-4": {"weight_decay": 5e-4}, "dropout 0.2": {"dropout": 0.2}}
BUDGET_LR, BUDGET_EPOCHS = 0.1, 20
REPORTED_SHAPES = {"uniform": "stable, not the lowest test loss",
                   "decreasing": "test loss falls most (best)",
                   "increasing": "overfits as training goes on"}
DISCUSSION = """Parameter counts equal docs/studies.md (PyTorch's) exactly. Report 004's
formula for k hidden layers of width m leaves out the first hidden layer's m biases (its
counts are m short); the corrected formula equals count_parameters and PyTorch for every
(k, m) tried. Width and depth move a plain MLP's accuracy by well under a point (85.72 /
85.98 / 86.05 against the report's 85.51 / 85.51 / 85.88), and the PyTorch twin is within
0.07 points of tinynet for the three plain nets; the base MLP's train loss after epoch 1
and 20 (1.2831, 0.3527) is within 0.01 of the report's. The BN nets are 0.1 to 1.7 points
from the report and their twins 1.1 to 1.3 points below tinynet: BatchNorm amplifies
float32 rounding into a different run (see S1's seeds and S3), so these gaps are run-to-run
noise. Report 004's budget study (200,000 parameters, three hidden layers, MNIST): all
three shapes reach 97.9-98.3%; the increasing shape (106-212-424) overfits most (highest
final test loss, 0.090, up from 0.078 at epoch 13), as the report found, but here the
uniform shape, not the decreasing one, reaches the lowest test loss (0.067 against 0.074).
L2 weight decay (5e-4) and dropout (0.2) both remove the late rise of the test loss (the
lowest is at epoch 19 or 20) and lower the final test loss of every shape (0.063-0.075
against 0.076-0.090), with accuracies within 0.4 points of the unregularised runs."""


def uniform_mlp_params(d_in: int, m: int, k: int, d_out: int = 10) -> int:
    """Parameters of k hidden layers of width m: (d_in + 1) m + (k - 1)(m + 1) m + (m + 1) d_out."""
    return (d_in + 1) * m + (k - 1) * (m + 1) * m + (m + 1) * d_out


def report_004_params(d_in: int, m: int, k: int, d_out: int = 10) -> int:
    """Report 004's formula as printed: d_in m + d_out + (k - 1) m (m + 1) + m d_out.

    It leaves out the m biases of the first hidden layer, so it is m short.
    """
    return d_in * m + d_out + (k - 1) * m * (m + 1) + m * d_out


def mlp_params(widths: tuple, d_in: int = 784, d_out: int = 10) -> int:
    """Parameters of an MLP with these hidden widths (weights and biases)."""
    sizes = (d_in, *widths, d_out)
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def widths_for_budget(ratios: tuple, budget: int) -> tuple:
    """Hidden widths ``a * ratios`` with the integer ``a`` whose count is nearest ``budget``."""
    best, a = None, 1
    while True:
        widths = tuple(a * r for r in ratios)
        n = mlp_params(widths)
        if best is None or abs(n - budget) < abs(mlp_params(best) - budget):
            best = widths
        if n > budget:
            return best
        a += 1


def budget_mlp(widths: tuple, dropout: float = 0.0) -> Sequential:
    """Flatten, then Linear, ReLU[, Dropout] per hidden width, then Linear to 10."""
    layers, prev = [Flatten()], 784
    for w in widths:
        layers += [Linear(prev, w), ReLU()] + ([Dropout(dropout)] if dropout else [])
        prev = w
    return Sequential(*layers, Linear(prev, 10))


def _torch_count(model) -> int | None:
    if not common.torch_available():
        return None
    return sum(p.numel() for p in common.to_torch(model).parameters())


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
            rows.append([key, structure, "unavailable", f"(docs/studies.md: {expected:,})",
                         reported, "-", "-"])
            continue
        r = common.train_pair(key, build, ("sgd", LR), train, test, epochs, 64, False, seed,
                              use_torch, device, previous=previous,
                              checkpoint_dir=common.checkpoint_dir(out_dir))
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        check = "yes" if r["params"] == expected else f"NO (docs/studies.md: {expected:,})"
        rows.append([key, structure, r["params"], check, reported,
                     common.outcome(r["tinynet"]), common.outcome(r["torch"])])
        h = r["tinynet"]
        series.append((h["epoch"], h["train_loss"], key, f"C{i % 3}{'-' if i < 3 else '--'}o"))
    table = f"## Test accuracy after {epochs} epochs (%) and exact parameter counts\n\n"
    table += common.md_table(["model", "structure", "parameters (tinynet)",
                              "= docs/studies.md / PyTorch", "report", "tinynet", "PyTorch twin"],
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
        built = models.mlp(784, (m,) * k)
        count = tinynet.count_parameters(built)
        theirs = report_004_params(784, m, k)
        formula_rows.append([str(k), str(m), n, count, _torch_count(built),
                             "yes" if n == count else "NO", theirs, theirs - count])
    table += ("\n## Report 004: parameters of k hidden layers of width m\n\n"
              "Params(k, m) = (784 + 1) m + (k - 1)(m + 1) m + (m + 1) 10. Report 004 printed "
              "784 m + 10 + (k - 1) m (m + 1) + 10 m, which leaves out the m biases of the "
              "first hidden layer.\n\n")
    table += common.md_table(["k", "m", "formula", "count_parameters", "PyTorch",
                              "formula = count", "report 004's formula", "its error"],
                             formula_rows)
    budget_table, budget_files = _budget_study(out_dir, quick, seed, use_torch, device, runs,
                                               previous)
    table += budget_table
    path = os.path.join(out_dir, "train_loss.png")
    common.line_plot(path, series, "epoch", "train cross-entropy loss",
                     "S2: train loss per epoch (solid: plain MLPs, dashed: BN MLPs)", quick=quick)
    main = [k for k, *_ in CONFIGS if k in runs]
    summary = f"S2 test accuracy after {epochs} epochs: " + "; ".join(
        f"{k} {common.outcome(runs[k]['tinynet'])} ({runs[k]['params']:,} params)" for k in main)
    summary += "; budget shapes: " + "; ".join(
        f"{k.removeprefix('budget ')} {common.outcome(r['tinynet'])}" for k, r in runs.items()
        if k.startswith("budget "))
    return common.finish(out_dir, NAME, TITLE, table, runs, [path] + budget_files, summary,
                         quick, seed, time.perf_counter() - t0)


def _budget_study(out_dir, quick, seed, use_torch, device, runs, previous):
    """Report 004, Problem 4: shapes of one parameter budget, plain, with L2, with dropout."""
    epochs = common.QUICK_EPOCHS if quick else BUDGET_EPOCHS
    train, test = common.dataset("mnist", quick)
    common.say(f"S2 budget: {BUDGET:,} parameters, 3 hidden layers, MNIST, SGD lr "
               f"{BUDGET_LR}, batch 64, shuffled, {epochs} epochs")
    rows, panels = [], []
    for reg, kw in REGULARISERS.items():
        series = []
        for i, (shape, ratios) in enumerate(SHAPES.items()):
            widths = widths_for_budget(ratios, BUDGET)
            key = f"budget {shape} {reg}"
            opt = ("sgd", BUDGET_LR, {"weight_decay": kw["weight_decay"]}) \
                if "weight_decay" in kw else ("sgd", BUDGET_LR)
            p = kw.get("dropout", 0.0)
            r = common.train_pair(
                key, lambda widths=widths, p=p: budget_mlp(widths, p),
                opt, train, test, epochs, 64, True, seed, use_torch, device,
                previous=previous, config={"widths": list(widths), "regulariser": reg},
                checkpoint_dir=common.checkpoint_dir(out_dir))
            runs[key] = r
            common.save_partial(out_dir, NAME, runs, quick, seed)
            h, th = r["tinynet"], r["torch"]
            best = min(range(len(h["test_loss"])), key=lambda j: h["test_loss"][j])
            twin = common.outcome(th)
            if th and "dropout" in kw:
                twin += " (own masks)"
            rows.append([shape, "-".join(map(str, widths)), r["params"], reg,
                         REPORTED_SHAPES[shape] if reg == "none" else "-",
                         f"{h['train_loss'][-1]:.4f}",
                         f"{h['test_loss'][best]:.4f} (epoch {h['epoch'][best]})",
                         f"{h['test_loss'][-1]:.4f}", common.outcome(h), twin])
            series.append((h["epoch"], h["test_loss"], f"{shape} test", f"C{i}o-"))
            series.append((h["epoch"], h["train_loss"], f"{shape} train", f"C{i}--"))
        panels.append((f"{reg}", series))
    path = os.path.join(out_dir, "budget_loss.png")
    common.panels_plot(path, panels, "epoch", "cross-entropy loss (log scale)",
                       f"S2: MNIST, {BUDGET:,}-parameter MLPs of three shapes: test (solid) "
                       "and train (dashed) loss", logy=True, quick=quick)
    table = (f"\n## Report 004: one budget of {BUDGET:,} parameters, three hidden layers, "
             f"MNIST, {epochs} epochs (SGD lr {BUDGET_LR}, batch 64, shuffled)\n\n")
    table += common.md_table(["shape", "widths", "parameters", "regulariser", "report 004",
                              "tinynet final train loss", "tinynet lowest test loss",
                              "tinynet final test loss", "tinynet test acc",
                              "PyTorch twin test acc"], rows)
    table += ("\nDropout draws its masks from each framework's own generator, so with "
              "dropout the twin is a second run from the same initial weights rather than "
              "a copy.\n")
    return table, [path]


if __name__ == "__main__":   # the same as: python -m experiments s2 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
