"""S11: a single-layer perceptron, 3 epochs at lr 0.001, with its decision plot (report 000, 1.1.d).

The report's "provided data" is not in the report, so the data here is ours: two
Gaussian blobs in 2-D (``N_POINTS`` points, seeded), labels y in {-1, +1}. The
perceptron is a tinynet ``Linear(2, 1)``, s = w . x + b, trained with SGD lr 0.001,
batch 1 (the online rule), shuffled, 3 epochs, on the perceptron criterion

    L = max(0, -y s),   dL/ds = -y if y s <= 0 else 0,

whose SGD step is Rosenblatt's rule: on a mistake, w += lr y x and b += lr y. Weights
start at zero, as Rosenblatt's; then every w and b is lr times what it would be with
lr = 1, so the boundary, and the plot, do not depend on lr. The twin
trains ``torch.nn.Linear(2, 1)`` with the same loss and the same samples in the same order.
"""

from __future__ import annotations

import os
import time

import numpy as np

import tinynet
from tinynet import Linear
from tinynet.backend import get_array_module, to_numpy
from tinynet.data import DataLoader

from . import common

NAME = "s11"
TITLE = "Single-layer perceptron, 3 epochs at lr 0.001, decision plot"
N_POINTS = 200
EPOCHS = 3
LR = 0.001
DISCUSSION = """On (nearly) linearly separable data the perceptron rule makes fewer
updates each epoch as more points fall on the right side. Starting from w = 0 the
learning rate only scales w and b, so 0.001 draws the same boundary as 1 would."""


class PerceptronLoss:
    """L = mean_n max(0, -y_n s_n) for scores s ``(N, 1)`` and labels y ``(N,)`` in {-1, +1}.

    Backward: dL/ds_n = -y_n / N where y_n s_n <= 0 (a mistake, or on the boundary),
    0 elsewhere.
    """

    def __call__(self, s, y) -> float:
        xp = get_array_module(s)
        ys = y.astype(s.dtype)[:, None]
        margin = ys * s
        self._cache = (ys, margin <= 0)
        return float(xp.maximum(-margin, 0).mean())

    def backward(self):
        ys, wrong = self._cache
        return (-ys * wrong.astype(ys.dtype)) / ys.dtype.type(ys.shape[0])


def blobs(n: int, seed: int):
    """Two Gaussian blobs, centres (-1, -1) and (1.5, 1), std 0.6; float32 x (n, 2), y in {-1, 1}."""
    rng = np.random.default_rng(seed)
    half = n // 2
    x = np.concatenate([rng.normal((-1.0, -1.0), 0.6, size=(half, 2)),
                        rng.normal((1.5, 1.0), 0.6, size=(n - half, 2))]).astype(np.float32)
    y = np.concatenate([-np.ones(half), np.ones(n - half)]).astype(np.int64)
    return x, y


def accuracy(w, b, x, y) -> float:
    return 100.0 * float(np.mean(np.where(x @ w + b > 0, 1, -1) == y))


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    n = 60 if quick else N_POINTS
    common.say(f"S11: seed {seed}; {'QUICK MODE (fewer points)' if quick else 'full'}; "
               f"{n} points, {EPOCHS} epochs, lr {LR}, batch 1")
    x, y = blobs(n, seed)
    tinynet.manual_seed(seed)
    model = Linear(2, 1)
    tinynet.init.zeros_(model.weight)   # Rosenblatt's perceptron starts at w = 0, b = 0
    tinynet.init.zeros_(model.bias)
    twin = common.to_torch(tinynet.Sequential(model)) if use_torch else None
    opt = tinynet.SGD(model.parameters(), lr=LR)
    loss_fn = PerceptronLoss()
    loader = DataLoader(x, y, batch_size=1, shuffle=True, seed=seed, transform=None)
    history = {"epoch": [], "train_loss": [], "train_acc": [], "mistakes": [], "w": []}
    w0 = (to_numpy(model.weight.data).ravel().tolist(), float(to_numpy(model.bias.data)[0]))
    for epoch in range(1, EPOCHS + 1):
        total, mistakes = 0.0, 0
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            mistakes += int(loss_fn._cache[1].sum())
            opt.zero_grad()
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            total += loss
        w = to_numpy(model.weight.data).ravel()
        b = float(to_numpy(model.bias.data)[0])
        history["epoch"].append(epoch)
        history["train_loss"].append(total / n)
        history["train_acc"].append(accuracy(w, b, x, y))
        history["mistakes"].append(mistakes)
        history["w"].append([float(w[0]), float(w[1]), b])
        common.say(f"[perceptron] epoch {epoch}: {mistakes} updates, loss {total / n:.5f}, "
                   f"accuracy {history['train_acc'][-1]:.1f}%")
    th = None
    if twin is not None:
        import torch
        topt = torch.optim.SGD(twin.parameters(), lr=LR)
        th = {"epoch": [], "train_acc": [], "w": []}
        tloader = DataLoader(x, y, batch_size=1, shuffle=True, seed=seed, transform=None)
        for epoch in range(1, EPOCHS + 1):
            for xb, yb in tloader:
                s = twin(torch.from_numpy(xb))
                ys = torch.from_numpy(yb).float()[:, None]
                loss = torch.clamp(-ys * s, min=0).mean()
                topt.zero_grad()
                loss.backward()
                topt.step()
            tw = twin[0].weight.detach().numpy().ravel()
            tb = float(twin[0].bias.detach().numpy()[0])
            th["epoch"].append(epoch)
            th["train_acc"].append(accuracy(tw, tb, x, y))
            th["w"].append([float(tw[0]), float(tw[1]), tb])
    rows = [[str(e), history["mistakes"][i], f"{history['train_acc'][i]:.1f}",
             f"{th['train_acc'][i]:.1f}" if th else "-",
             "({:.4f}, {:.4f}), {:.4f}".format(*history["w"][i]),
             "({:.4f}, {:.4f}), {:.4f}".format(*th["w"][i]) if th else "-"]
            for i, e in enumerate(history["epoch"])]
    table = (f"## Perceptron on {n} 2-D points (initial w = ({w0[0][0]:.4f}, {w0[0][1]:.4f}), "
             f"b = {w0[1]:.4f})\n\n")
    table += common.md_table(["epoch", "updates (mistakes)", "tinynet accuracy",
                              "twin accuracy", "tinynet w, b", "twin w, b"], rows)
    path = os.path.join(out_dir, "decision.png")
    _decision_plot(path, x, y, history["w"][-1], w0, quick)
    runs = {"perceptron": {"label": "perceptron", "tinynet": history, "torch": th,
                           "initial": {"w": w0[0], "b": w0[1]}}}
    summary = (f"S11: after {EPOCHS} epochs the perceptron classifies "
               f"{history['train_acc'][-1]:.1f}% of the {n} points correctly "
               f"({history['mistakes'][-1]} updates in the last epoch)")
    return common.finish(out_dir, NAME, TITLE, table, runs, [path], summary, quick, seed,
                         time.perf_counter() - t0)


def _decision_plot(path: str, x, y, wb, w0, quick: bool = False) -> str:
    from tinynet.plot import figure

    fig, ax = figure(figsize=(6, 5))
    lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    z = gx * wb[0] + gy * wb[1] + wb[2]
    ax.contourf(gx, gy, (z > 0).astype(float), levels=[-0.5, 0.5, 1.5],
                colors=["#fbb4ae", "#b3cde3"], alpha=0.6)
    ax.scatter(*x[y < 0].T, c="C3", s=12, label="class -1")
    ax.scatter(*x[y > 0].T, c="C0", s=12, label="class +1")
    xs = np.linspace(lo[0], hi[0], 2)
    for (w, b), style, label in (((wb[:2], wb[2]), "k-", "boundary after training"),
                                 ((w0[0], w0[1]), "k:", "boundary at init")):
        if abs(w[1]) > 1e-12:
            ax.plot(xs, -(w[0] * xs + b) / w[1], style, label=label)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title("S11: perceptron decision regions (3 epochs, lr 0.001)")
    ax.legend(fontsize=8)
    return common.save_plot(fig, path, quick)


if __name__ == "__main__":   # the same as: python -m experiments s11 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
