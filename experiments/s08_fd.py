"""S8: finite-difference gradient validation, error against eps (report 002, Q4).

Train the base MLP briefly on Fashion-MNIST (SGD lr 0.1, batch 64, no shuffling: S1's
settings), take one sample (the first test image), and for the first p = 100 weights
of the second Linear layer (state_dict key ``3.weight``, row 0, columns 0..99) compare
the textbook central difference::

    FD_i = (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps),   eps = 1/N,
    N in {k * 10^i : i = 0..5, k = 1..5}

with backprop's dL/dtheta_i in the same dtype, in float32 and in float64. The error
max_i |FD_i - backprop_i| is the sum of two arms:

* truncation: the Taylor remainder eps^2 |L'''| / 6, falling as eps^2 (slope 2 on
  log-log axes; for large eps also ReLU kinks crossed by the step);
* round-off: each L carries a rounding error ~u |L| (u = 6e-8 in float32, 1.1e-16 in
  float64), divided by 2 eps: rising as 1/eps (slope -1).

Their sum is a V with its minimum near eps ~ (3 u)^(1/3): ~6e-3 in float32 and ~7e-6 in
float64, so the float32 minimum sits at a larger eps. The report got a broken curve
(float32 only, too few eps); here both dtypes are on one plot with the two guide slopes.
The PyTorch twin (when torch is installed) gives a third value of the same 100 gradients
in float64, so backprop itself is checked independently of any eps.

Run on its own: ``python -m experiments.s08_fd [--quick]`` (into ``runs/experiments/s8``).
"""

from __future__ import annotations

import copy
import math
import os
import time

import numpy as np

import tinynet
from tinynet import models
from tinynet.backend import to_numpy
from tinynet.data.loader import to_float

from . import common

NAME = "s8"
TITLE = "Finite-difference gradient validation: error against eps, float32 and float64"

NS = [k * 10 ** i for i in range(6) for k in range(1, 6)]   # 1, 2, ..., 500000
P = 100                                                      # weights checked
LAYER = "3"                                                  # the second Linear
STEPS_QUICK = 300
STEPS_FULL = 938                                             # one epoch at batch 64
DTYPES = ("float32", "float64")


def _loss(model, x, t, loss_fn) -> float:
    return loss_fn(model(x), t)


def fd_errors(model, x, t, dtype: str, ns=NS, p: int = P) -> dict:
    """max_i |FD_i - backprop_i| over the first ``p`` weights of ``model[3].weight``, per N.

    ``model`` is copied and cast to ``dtype``; the perturbation ``theta_i +- eps`` and
    every forward are done in that dtype, with the textbook denominator ``2 eps``.
    Returns ``{"backprop": [p values], "errors": {N: max error}, "fd": {N: [p values]}}``.
    """
    m = copy.deepcopy(model)
    m.to(dtype=dtype)
    m.eval()
    x = x.astype(dtype)
    loss_fn = tinynet.CrossEntropyLoss()
    layer = m[int(LAYER)]
    m.zero_grad()
    _loss(m, x, t, loss_fn)
    m.backward(loss_fn.backward())
    backprop = to_numpy(layer.weight.grad).reshape(-1)[:p].astype(np.float64)
    flat = layer.weight.data.reshape(-1)          # a view: writes go into the weight
    errors, fds = {}, {}
    for n in ns:
        eps = 1.0 / n
        fd = np.empty(p)
        for i in range(p):
            orig = flat[i].copy()
            flat[i] = orig + eps
            lp = _loss(m, x, t, loss_fn)
            flat[i] = orig - eps
            lm = _loss(m, x, t, loss_fn)
            flat[i] = orig
            fd[i] = (lp - lm) / (2 * eps)
        errors[n] = float(np.max(np.abs(fd - backprop)))
        fds[n] = fd.tolist()
    return {"backprop": backprop.tolist(), "errors": errors, "fd": fds}


def pick_sample(model, test, limit: int = 1000) -> tuple[int, int]:
    """The first test image whose gradients on the P weights are not all zero.

    ``dL/dW[0, j] = delta_0 * h1[j]``: when unit 0 of the second hidden layer is off
    (ReLU pre-activation <= 0) for a sample, delta_0 = 0 and all P gradients and all
    small-eps differences are exactly 0, so the error curve degenerates (one way to get
    the report's broken curve). Returns (index, how many were passed over).
    """
    x = to_float(test[0][:limit])
    h = model[2](model[1](model[0](x)))       # Flatten, Linear, ReLU
    pre = model[3](h)[:, 0]                   # unit 0 of the second Linear
    live = (pre > 0) & (np.abs(h[:, :P]).max(axis=1) > 0)
    hits = np.flatnonzero(to_numpy(live))
    if hits.size == 0:
        raise RuntimeError(f"S8: unit 0 of layer {LAYER} is dead on the first {limit} test "
                           f"images; no sample has non-zero gradients on its weights")
    return int(hits[0]), int(hits[0])


def torch_gradient(model, x, t, p: int = P):
    """The same p gradients from the PyTorch twin in float64 (autograd)."""
    import torch
    twin = common.to_torch(model).double()
    out = twin(torch.from_numpy(x.astype(np.float64)))
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(t))
    loss.backward()
    return twin[int(LAYER)].weight.grad.reshape(-1)[:p].numpy().copy()


def minimum(errors: dict) -> tuple[int, float]:
    """(N, error) at the smallest error."""
    n = min(errors, key=lambda k: errors[k])
    return n, errors[n]


def plot(path: str, results: dict, title: str, quick: bool = False) -> str:
    from tinynet.plot import figure

    fig, ax = figure(figsize=(8, 5.5))
    eps = np.array([1.0 / n for n in NS])
    colours = {"float32": "C0", "float64": "C3"}
    lo = min(min(v for v in r["errors"].values() if v > 0) for r in results.values())
    hi = max(max(r["errors"].values()) for r in results.values())
    for dtype, r in results.items():
        err = np.array([r["errors"][n] for n in NS])
        ax.loglog(eps, np.maximum(err, 1e-300), "o-", color=colours[dtype], ms=4,
                  label=f"{dtype}: max |FD - backprop|")
        n_min, e_min = minimum(r["errors"])
        ax.loglog([1.0 / n_min], [e_min], "*", color=colours[dtype], ms=16,
                  markeredgecolor="k", label=f"{dtype} minimum: eps = 1/{n_min:,}")
        # round-off guide ~ u / eps, through the smallest-eps point
        u = float(np.finfo(dtype).eps) / 2
        c = err[-1] * eps[-1]
        ax.loglog(eps, c / eps, ":", color=colours[dtype], lw=1.2,
                  label=f"round-off O(u/eps), u = {u:.1e} ({dtype})")
        ax.axvline((3 * u) ** (1 / 3), color=colours[dtype], lw=0.6, alpha=0.5,
                   label=f"theory optimum (3u)^(1/3) = {(3 * u) ** (1 / 3):.0e} ({dtype})")
    # truncation guide ~ eps^2, through the float64 point at eps = 1e-2
    r64 = results["float64"]["errors"]
    anchor = 100
    ax.loglog(eps, r64[anchor] * (eps * anchor) ** 2, "--", color="k", lw=1.2,
              label="truncation O(eps^2)")
    ax.set_ylim(lo / 10, hi * 10)
    ax.set_xlabel("eps = 1/N")
    ax.set_ylabel(f"max over {P} weights of |FD - backprop|")
    def inverse(v):
        return 1.0 / np.maximum(v, 1e-300)
    top = ax.secondary_xaxis("top", functions=(inverse, inverse))
    top.set_xlabel("N")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    return common.save_plot(fig, path, quick)


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    steps = STEPS_QUICK if quick else STEPS_FULL
    if device != "cpu":
        common.say("S8: finite differences run on the CPU (one sample; the GPU gains nothing)")
    common.say(f"S8: seed {seed}; {'QUICK MODE' if quick else 'full'}: base MLP, "
               f"{steps} SGD steps (lr 0.1, batch 64, no shuffling) on Fashion-MNIST")
    train, test = common.dataset("fashion-mnist", quick)
    tinynet.manual_seed(seed)
    model = models.base_mlp()
    loader = tinynet.data.DataLoader(train[0], train[1], batch_size=64, shuffle=False)
    epochs = math.ceil(steps / len(loader))
    history = tinynet.fit(model, tinynet.CrossEntropyLoss(), tinynet.SGD(model.parameters(),
                          lr=0.1), loader, None, epochs=epochs, max_steps=steps,
                          progress=False, log=None)
    test_loss, test_acc = tinynet.evaluate(model, tinynet.CrossEntropyLoss(), test)
    common.say(f"S8: trained {len(history['steps'])} steps; last train loss "
               f"{history['steps'][-1]:.4f}; test accuracy {test_acc:.2f}%")
    index, skipped = pick_sample(model, test)
    x = to_float(test[0][index:index + 1])     # one sample, (1, 1, 28, 28)
    t = np.asarray(test[1][index:index + 1], dtype=np.int64)
    common.say(f"S8: sample: test image {index} (label {int(t[0])}); {skipped} earlier test "
               f"image(s) leave unit 0 of the second hidden layer inactive, which makes all "
               f"{P} gradients exactly 0")

    results = {}
    for dtype in DTYPES:
        start = time.perf_counter()
        results[dtype] = fd_errors(model, x, t, dtype)
        results[dtype]["seconds"] = time.perf_counter() - start
        n_min, e_min = minimum(results[dtype]["errors"])
        common.say(f"S8: {dtype}: minimum error {e_min:.3e} at eps = 1/{n_min} "
                   f"({results[dtype]['seconds']:.1f} s)")
    twin_diff = None
    if use_torch and common.torch_available():
        g_torch = torch_gradient(model, x, t)
        twin_diff = float(np.max(np.abs(np.array(results["float64"]["backprop"]) - g_torch)))
        common.say(f"S8: PyTorch twin: max |backprop_tinynet - autograd_torch| over the "
                   f"{P} weights, float64: {twin_diff:.3e}")

    rows = [[f"{n:,}", f"{1.0 / n:.1e}", f"{results['float32']['errors'][n]:.3e}",
             f"{results['float64']['errors'][n]:.3e}"] for n in NS]
    table = (f"Base MLP trained {steps} steps (test accuracy {test_acc:.2f}%); one sample "
             f"(test image {index}, label {int(t[0])}: the first whose {P} gradients are "
             f"not all zero); first {P} weights of `{LAYER}.weight`. "
             f"max_i |FD_i - backprop_i|:\n\n")
    table += common.md_table(["N", "eps = 1/N", "float32", "float64"], rows)
    mins = {}
    table += "\n| dtype | minimising eps | N | min error | theory (3u)^(1/3) |\n|---|---|---|---|---|\n"
    for dtype in DTYPES:
        n_min, e_min = minimum(results[dtype]["errors"])
        u = float(np.finfo(dtype).eps) / 2
        mins[dtype] = (n_min, e_min)
        table += (f"| {dtype} | {1.0 / n_min:.1e} | {n_min:,} | {e_min:.3e} | "
                  f"{(3 * u) ** (1 / 3):.1e} |\n")
    larger = 1.0 / mins["float32"][0] > 1.0 / mins["float64"][0]
    notes = (f"float32 minimum at a larger eps than float64: {'yes' if larger else 'NO'}. "
             "Left of each minimum round-off (~u|L|/eps) dominates, right of it truncation "
             "(~eps^2 L'''/6, plus ReLU kinks crossed by large steps).")
    if twin_diff is not None:
        notes += (f"\n\nPyTorch twin (autograd, float64) vs tinynet backprop on the same {P} "
                  f"weights: max abs difference {twin_diff:.2e}.")
    title = (f"S8: central differences vs backprop, base MLP ({steps} steps), "
             f"{P} weights of {LAYER}.weight")
    png = plot(os.path.join(out_dir, "fd_error.png"), results, title, quick)
    summary = (f"S8: the error of central differences is a V in both dtypes, smallest at "
               f"eps = {1.0 / mins['float32'][0]:.0e} in float32 ({mins['float32'][1]:.1e}) and "
               f"at eps = {1.0 / mins['float64'][0]:.0e} in float64 ({mins['float64'][1]:.1e})"
               + ("" if larger else " (UNEXPECTED: float32 minimum not at the larger eps)")
               + ".")
    runs = {"fd": {"ns": NS, "steps": steps, "test_acc": test_acc, "test_loss": test_loss,
                   "sample_index": index, "sample_label": int(t[0]), "torch_max_abs_diff": twin_diff,
                   "minimum": {d: {"N": mins[d][0], "eps": 1.0 / mins[d][0],
                                   "error": mins[d][1]} for d in DTYPES},
                   "float32_minimum_at_larger_eps": larger,
                   "results": {d: {"errors": {str(k): v for k, v in r["errors"].items()},
                                   "backprop": r["backprop"], "seconds": r["seconds"]}
                               for d, r in results.items()}}}
    return common.finish(out_dir, NAME, TITLE, table, runs, [png], summary, quick, seed,
                         time.perf_counter() - t0, notes)


if __name__ == "__main__":   # the same as: python -m experiments s8 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
