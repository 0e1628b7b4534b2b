"""S3: gradient norms (report 001, Q1.6; report 003, 6.1.2 Q5).

Part 1: the global L2 norm of all parameter gradients at each of the first 100 SGD
steps (lr 0.01, batch 64, shuffled), base MLP vs BN MLP, one plot, tinynet and twin.

Part 2: vanishing gradients. A deep MLP (``DEPTH`` hidden Linear layers of width
``WIDTH``, PyTorch default init) with sigmoid vs ReLU, SGD lr 0.01, batch 64, trained on
the first ``N_DEEP`` Fashion-MNIST images for ``DEEP_EPOCHS`` epochs; per layer, the
mean |dL/dW| over the steps of each epoch. Plot: layer index vs mean gradient
magnitude (log scale), first and last epoch; and, before training, the L2 norm of
every layer's dL/dW for one batch read off ``tinynet.trace`` (deep_traced_grad_norms.png).
"""

from __future__ import annotations

import os
import time

import numpy as np

import tinynet
from tinynet import models
from tinynet.backend import to_numpy
from tinynet.data import DataLoader

from . import common

NAME = "s3"
TITLE = "Gradient norms: base vs BN MLP; vanishing gradients in a deep sigmoid vs ReLU MLP"
STEPS = 100
DEPTH, WIDTH = 100, 64
N_DEEP, DEEP_EPOCHS = 10_000, 3
REPORTED = {"base": "fluctuates in about 0.45-0.75", "bn": "falls from about 12-14 to about 4"}
DISCUSSION = """The BN MLP's gradient norm is an order of magnitude larger than the base
MLP's at the start (BatchNorm rescales each layer's input to unit variance, so the
gradient w.r.t. the weights is not damped by the small activations of the default
init). In the 100-layer nets the mean |dL/dW| falls by many orders of magnitude from the
last layer to the first with sigmoid (its slope is at most 1/4), the textbook vanishing
gradient; with ReLU and PyTorch's default init (variance 1/(3 fan_in), a gain below 1)
it also shrinks with depth, but far less; with He init (variance 2/fan_in, relu_he) the
gradient keeps its size through all 100 layers.

The BN MLP's twin agrees with tinynet to 1e-7 for the first 15 steps and then drifts by a
few percent: float32 rounding is amplified step after step (BatchNorm divides by the
batch's standard deviation, which is tiny for nearly dead ReLU units). Run in float64,
tinynet and PyTorch agree to 1e-12 over 40 steps, the relative gap growing about tenfold
every 5 steps, so the drift is rounding, not a difference in the formulas."""


DEEP_VARIANTS = [("sigmoid", "default"), ("relu", "default"), ("relu", "he")]


def he_init(model) -> None:
    """He (Kaiming) normal init for ReLU, zero biases: the fix for ReLU's shrinking signal."""
    for m in model.modules():
        if type(m).__name__ == "Linear":
            tinynet.init.kaiming_normal_(m.weight, nonlinearity="relu")
            tinynet.init.zeros_(m.bias)


def deep_mlp(act: str):
    return models.mlp(784, (WIDTH,) * DEPTH, act=act)


def _per_layer_grads(model, act: str, train, epochs: int, seed: int):
    """Mean |dL/dW| of every Linear weight, averaged over the steps of each epoch."""
    tinynet.manual_seed(seed)
    linears = [m for m in model.modules() if type(m).__name__ == "Linear"]
    opt = tinynet.SGD(model.parameters(), lr=0.01)
    loss_fn = tinynet.CrossEntropyLoss()
    loader = DataLoader(train[0], train[1], batch_size=64, shuffle=True, seed=seed)
    per_epoch, losses = [], []
    for epoch in range(epochs):
        sums = np.zeros(len(linears))
        steps = 0

        def cb(step, loss, m, sums=sums):
            nonlocal steps
            for i, lin in enumerate(linears):
                g = lin.weight.grad
                xp = tinynet.get_array_module(g)
                sums[i] += float(to_numpy(xp.abs(g).mean()))
            steps += 1
        h = tinynet.fit(model, loss_fn, opt, loader, None, epochs=1, progress=False,
                        callback=cb, log=None)
        per_epoch.append((sums / max(steps, 1)).tolist())
        losses.append(h["train_loss"][-1] if h["train_loss"] else float("nan"))
        common.say(f"[deep {act}] epoch {epoch + 1}: train loss {losses[-1]:.4f}, mean |dW| "
                   f"first layer {per_epoch[-1][0]:.3e}, last layer {per_epoch[-1][-1]:.3e}")
    return per_epoch, losses


def _traced_weight_grad_norms(model, batch) -> list[float]:
    """||dL/dW|| of every Linear weight for one batch, read off ``tinynet.trace``.

    The trace records the pass layer by layer; its ``param_grad_norms()`` are the
    per-parameter L2 norms (equal to PyTorch's to float64 round-off, tests/test_trace.py).
    """
    x, t = batch
    loss_fn = tinynet.CrossEntropyLoss()
    model.zero_grad()
    with tinynet.trace(model) as tr:
        loss_fn(model(x), t)
        model.backward(loss_fn.backward())
    norms = tr.param_grad_norms()
    model.zero_grad()
    return [v for k, v in norms.items() if k.endswith(".weight")]


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    steps = 20 if quick else STEPS
    common.say(f"S3: seed {seed}; {'QUICK MODE (subset, few steps)' if quick else 'full'}; "
               f"{steps} steps, SGD lr 0.01, batch 64, shuffled")
    train, _ = common.dataset("fashion-mnist", quick)
    previous = common.previous_runs(out_dir, quick, seed)
    runs, rows, series, files = {}, [], [], []
    for i, (key, build) in enumerate((("base", models.base_mlp), ("bn", models.bn_mlp))):
        why = common.missing_layers(build)
        if why:
            common.say(f"S3: {key} unavailable: {why}")
            rows.append([f"{key} MLP", REPORTED[key], "unavailable", "-", "-", "-"])
            continue
        r = common.train_pair(key, build, ("sgd", 0.01), train, None, 1, 64, True, seed,
                              use_torch, device, grad_norm_steps=steps, max_steps=steps,
                              previous=previous)
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        g = r["tinynet"]["grad_norm"]
        tg = r["torch"]["grad_norm"] if r["torch"] else None
        rows.append([f"{key} MLP", REPORTED[key], f"{g[0]:.3f} -> {g[-1]:.3f}",
                     f"{min(g):.3f}-{max(g):.3f}",
                     f"{tg[0]:.3f} -> {tg[-1]:.3f}" if tg else "-",
                     f"{max(abs(a - b) / b for a, b in zip(g, tg)):.1e}" if tg else "-"])
        series.append((list(range(1, len(g) + 1)), g, f"{key} MLP (tinynet)", f"C{i}-"))
        if tg:
            series.append((list(range(1, len(tg) + 1)), tg, f"{key} MLP (PyTorch twin)",
                           f"C{i}:"))
    path = os.path.join(out_dir, "grad_norms.png")
    common.line_plot(path, series, "SGD step", "global L2 norm of the gradient (log scale)",
                     f"S3: gradient norm, first {steps} steps", logy=True, quick=quick)
    files.append(path)
    table = f"## Global gradient norm over the first {steps} steps\n\n"
    table += common.md_table(["model", "report", "tinynet first -> last", "tinynet range",
                              "PyTorch twin first -> last", "max relative difference"], rows)

    n_deep = 512 if quick else N_DEEP
    depth_epochs = 1 if quick else DEEP_EPOCHS
    deep_train = (train[0][:n_deep], train[1][:n_deep])
    deep_rows, deep_series, traced_series = [], [], []
    probe = next(iter(DataLoader(deep_train[0], deep_train[1], batch_size=64)))
    for j, (act, variant) in enumerate(DEEP_VARIANTS):
        tinynet.manual_seed(seed)
        model = deep_mlp(act)
        if variant == "he":
            he_init(model)
            act = "relu_he"
        traced_before = _traced_weight_grad_norms(model, probe)
        per_epoch, losses = _per_layer_grads(model, act, deep_train, depth_epochs, seed)
        traced_series.append((list(range(1, len(traced_before) + 1)), traced_before,
                              f"{act}, before training", f"C{j}-"))
        runs[f"deep_{act}"] = {"label": f"deep_{act}", "depth": DEPTH, "width": WIDTH,
                               "mean_abs_grad_per_layer_per_epoch": per_epoch,
                               "train_loss": losses,
                               "traced_weight_grad_norm_before_training": traced_before}
        first, last = per_epoch[0], per_epoch[-1]
        ratio = (f"{np.log10(first[-1] / first[0]):.1f}" if first[0] > 0
                 else "first layer underflows to 0 in float32")
        deep_rows.append([act, f"{first[0]:.2e}", f"{first[len(first) // 2]:.2e}",
                          f"{first[-1]:.2e}", ratio, f"{losses[-1]:.4f}"])
        layers = list(range(1, len(first) + 1))
        deep_series.append((layers, first, f"{act}, epoch 1", f"C{j}-"))
        if len(per_epoch) > 1:
            deep_series.append((layers, last, f"{act}, epoch {len(per_epoch)}", f"C{j}--"))
    path = os.path.join(out_dir, "deep_layer_grads.png")
    common.line_plot(path, deep_series, "Linear layer (1 = next to the input)",
                     "mean |dL/dW| over the epoch (log scale)",
                     f"S3: {DEPTH} hidden layers of width {WIDTH}: sigmoid, ReLU, ReLU + He init",
                     logy=True, quick=quick)
    files.append(path)
    path = os.path.join(out_dir, "deep_traced_grad_norms.png")
    common.line_plot(path, traced_series, "Linear layer (1 = next to the input)",
                     "||dL/dW|| for one batch (log scale)",
                     f"S3: tinynet.trace of one batch, {DEPTH} hidden layers, at init",
                     logy=True, quick=quick)
    files.append(path)
    table += (f"\n## Mean |dL/dW| per layer, {DEPTH} hidden layers of width {WIDTH}, "
              f"epoch 1 ({n_deep} images, {depth_epochs} epoch(s))\n\n")
    table += common.md_table(["activation", "first layer", "middle layer", "last layer",
                              "log10(last / first)", f"train loss, epoch {depth_epochs}"], deep_rows)
    summary = "S3: " + "; ".join(f"{r[0]} grad norm {r[2]}" for r in rows) + "; deep nets " + \
        "; ".join(f"{r[0]}: first-layer {r[1]} vs last-layer {r[3]}" for r in deep_rows)
    return common.finish(out_dir, NAME, TITLE, table, runs, files, summary, quick, seed,
                         time.perf_counter() - t0)


if __name__ == "__main__":   # the same as: python -m experiments s3 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
