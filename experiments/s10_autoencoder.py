"""S10: MNIST auto-encoders (report 004, Problems 10-11).

Auto-encoder 784 -> 256 -> d -> 256 -> 784 (ReLU; Sigmoid output, pixels in [0, 1]),
MSELoss against the input, Adam lr 1e-3, batch 128, shuffled, ``EPOCHS`` epochs, for
latent dimensions d in ``LATENTS``: test reconstruction loss vs d (tinynet and twin),
and a picture of reconstructions. Then, with the d = ``HEAD_LATENT`` encoder frozen, a
linear softmax head (Linear(d, 10)) vs a plain linear softmax model on the pixels
(Linear(784, 10)), both tuned the same way: SGD, batch 64, shuffled, trained on the
first 50,000 training images for up to ``HEAD_MAX_EPOCHS`` epochs at each learning rate
of ``HEAD_LRS``; the learning rate and the epoch with the best accuracy on the last
10,000 training images (the validation split) are chosen, and the test accuracy of that
epoch is reported. The report gives no numbers to compare with; these settings are ours.
"""

from __future__ import annotations

import os
import time

import numpy as np

import tinynet
from tinynet import Flatten, Linear, ReLU, Sequential, Sigmoid
from tinynet.backend import to_numpy
from tinynet.data import DataLoader
from tinynet.train import evaluate

from . import common

NAME = "s10"
TITLE = "MNIST auto-encoders: reconstruction vs latent size; frozen encoder + linear head"
LATENTS = [2, 8, 16, 32, 64]
EPOCHS = 5
HEAD_LATENT = 32
HEAD_LRS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
HEAD_MAX_EPOCHS = 20
N_VAL = 10_000
DISCUSSION = """The reconstruction error falls steadily with the latent size (test MSE
0.057 at d = 2, 0.012 at d = 32, 0.008 at d = 64) and the twin agrees to the fourth
digit. Both linear classifiers were tuned the same way (lr from 1 to 0.001, up to 20
epochs, chosen on a validation split of 10,000): the head on the frozen 32-dimensional
code reaches 88.84% test accuracy (lr 0.003, epoch 10) against 92.55% for a linear model
on the raw pixels (lr 0.3, epoch 17). The code is competitive with 330 parameters against
7,850 but not better: the auto-encoder was trained to reconstruct, not to separate
classes. The head wants a small lr (its codes are tens of units large; at lr 0.1 and
above its validation accuracy swings by several points from epoch to epoch), which is
why the earlier untuned head at lr 0.1 gave 74%."""


def autoencoder(d: int) -> Sequential:
    """Layers 0-3 are the encoder (Flatten, Linear, ReLU, Linear), 4-7 the decoder."""
    return Sequential(Flatten(), Linear(784, 256), ReLU(), Linear(256, d), ReLU(),
                      Linear(d, 256), ReLU(), Linear(256, 784), Sigmoid())


def fit_autoencoder(model, train, test, epochs: int, seed: int, label: str) -> dict:
    """Adam lr 1e-3, batch 128, shuffled; MSE between the output and the flattened input."""
    opt = tinynet.Adam(model.parameters(), lr=1e-3)
    loss_fn = tinynet.MSELoss()
    loader = DataLoader(train[0], train[1], batch_size=128, shuffle=True, seed=seed)
    h = {"epoch": [], "train_loss": [], "test_loss": [], "seconds": [], "steps": []}
    start_all = time.perf_counter()
    for epoch in range(1, epochs + 1):
        start, total, count = time.perf_counter(), 0.0, 0
        for x, _ in loader:
            target = x.reshape(x.shape[0], -1)
            loss = loss_fn(model(x), target)
            opt.zero_grad()
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            total += loss * x.shape[0]
            count += x.shape[0]
            h["steps"].append(loss)
        h["epoch"].append(epoch)
        h["train_loss"].append(total / count)
        h["seconds"].append(time.perf_counter() - start)
        h["test_loss"].append(reconstruction_loss(model, test))
        common.say(f"[{label}] tinynet epoch {epoch}: train MSE {h['train_loss'][-1]:.5f}, "
                   f"test MSE {h['test_loss'][-1]:.5f}")
    h["total_seconds"] = time.perf_counter() - start_all
    return h


def reconstruction_loss(model, data) -> float:
    model.eval()
    loss_fn, total, count = tinynet.MSELoss(), 0.0, 0
    for x, _ in DataLoader(data[0], data[1], batch_size=1000):
        total += loss_fn(model(x), x.reshape(x.shape[0], -1)) * x.shape[0]
        count += x.shape[0]
    model.train()
    return total / count


def tune_head(label: str, build, train, val, test, lrs, max_epochs: int, seed: int) -> dict:
    """Train ``build()`` with SGD at each lr for ``max_epochs`` epochs, recording the
    validation and test accuracy after every epoch; the best (lr, epoch) is the one with
    the highest validation accuracy (the earliest of equals). Float inputs (codes) are
    used as they are, uint8 images scaled to [0, 1]."""
    float_input = train[0].dtype != np.uint8
    kw = {"transform": None} if float_input else {}
    grid, params = {}, None
    for lr in lrs:
        tinynet.manual_seed(seed)
        model = build()
        params = tinynet.count_parameters(model)
        opt = tinynet.SGD(model.parameters(), lr=lr)
        loss_fn = tinynet.CrossEntropyLoss()
        loader = DataLoader(train[0], train[1], batch_size=64, shuffle=True, seed=seed, **kw)
        val_loader = DataLoader(val[0], val[1], batch_size=1000, **kw)
        test_loader = DataLoader(test[0], test[1], batch_size=1000, **kw)
        g = {"epoch": [], "train_loss": [], "train_acc": [], "val_acc": [], "test_acc": [],
             "test_loss": [], "seconds": [], "stopped": None}
        start = time.perf_counter()
        for epoch in range(1, max_epochs + 1):
            h = tinynet.fit(model, loss_fn, opt, loader, val_loader, epochs=1, progress=False,
                            log=None)
            if h["stopped"] or not h["epoch"]:
                g["stopped"] = h["stopped"]
                break
            tl, ta = evaluate(model, loss_fn, test_loader)
            g["epoch"].append(epoch)
            g["train_loss"].append(h["train_loss"][0])
            g["train_acc"].append(h["train_acc"][0])
            g["val_acc"].append(h["test_acc"][0])
            g["test_acc"].append(ta)
            g["test_loss"].append(tl)
            g["seconds"].append(h["seconds"][0])
        g["total_seconds"] = time.perf_counter() - start
        grid[str(lr)] = g
        best_here = max(g["val_acc"]) if g["val_acc"] else float("nan")
        common.say(f"[{label}] lr {lr:g}: best validation accuracy {best_here:.2f}%"
                   + (f" (stopped: {g['stopped']})" if g["stopped"] else ""))
    best = None
    for lr in lrs:
        g = grid[str(lr)]
        for j, acc in enumerate(g["val_acc"]):
            if best is None or acc > best["val_acc"]:
                best = {"lr": lr, "epoch": g["epoch"][j], "val_acc": acc,
                        "test_acc": g["test_acc"][j], "train_acc": g["train_acc"][j]}
    return {"grid": grid, "best": best, "params": params}


def codes(model, images) -> np.ndarray:
    """The encoder's output (N, d) for uint8 images, computed in batches."""
    enc = model[0:4]
    out = []
    for x, _ in DataLoader(images, np.zeros(len(images), dtype=np.int64), batch_size=1000):
        out.append(to_numpy(enc(x)))
    return np.concatenate(out).astype(np.float32)


def _picture(path: str, test, recon: dict, quick: bool = False) -> str:
    from tinynet.plot import figure

    n = 8
    rows = 1 + len(recon)
    fig, axes = figure(rows, n, figsize=(n * 1.1, rows * 1.2))
    for j in range(n):
        axes[0, j].imshow(test[0][j], cmap="gray")
    for i, (d, images) in enumerate(recon.items(), start=1):
        for j in range(n):
            axes[i, j].imshow(images[j].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    for i, name in enumerate(["input"] + [f"d = {d}" for d in recon]):
        axes[i, 0].set_ylabel(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("S10: test digits (top) and their reconstructions by latent size d")
    return common.save_plot(fig, path, quick)


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    epochs = 1 if quick else EPOCHS
    latents = [2, HEAD_LATENT] if quick else LATENTS
    common.say(f"S10: seed {seed}; {'QUICK MODE (subset, 1 epoch)' if quick else 'full'}; "
               f"latent sizes {latents}, {epochs} epochs each")
    train, test = common.dataset("mnist", quick)
    runs, rows, recon, files = {}, [], {}, []
    ae_keep = None
    for d in latents:
        key = f"ae_d{d}"
        tinynet.manual_seed(seed)
        model = autoencoder(d)
        twin = common.to_torch(model) if use_torch else None
        h = fit_autoencoder(model, train, test, epochs, seed, key)
        th = None
        if twin is not None:
            th = common.torch_fit(twin, ("adam", 1e-3), train, test, epochs, 128, True, seed,
                                  loss_kind="mse")
        runs[key] = {"label": key, "params": tinynet.count_parameters(model), "tinynet": h,
                     "torch": th}
        rows.append([str(d), runs[key]["params"], f"{h['train_loss'][-1]:.5f}",
                     f"{h['test_loss'][-1]:.5f}",
                     f"{th['test_loss'][-1]:.5f}" if th else "-"])
        model.eval()
        x0, _ = next(iter(DataLoader(test[0][:8], test[1][:8], batch_size=8)))
        recon[d] = to_numpy(model(x0))
        model.train()
        if d == HEAD_LATENT:
            ae_keep = model
    table = f"## Test reconstruction MSE after {epochs} epochs\n\n"
    table += common.md_table(["latent d", "parameters", "tinynet train MSE",
                              "tinynet test MSE", "PyTorch twin test MSE"], rows)
    path = os.path.join(out_dir, "reconstruction_vs_latent.png")
    series = [(latents, [runs[f"ae_d{d}"]["tinynet"]["test_loss"][-1] for d in latents],
               "tinynet", "C0o-")]
    if use_torch:
        series.append((latents, [runs[f"ae_d{d}"]["torch"]["test_loss"][-1] for d in latents],
                       "PyTorch twin", "C1s--"))
    common.line_plot(path, series, "latent dimension d", "test reconstruction MSE (log scale)",
                     "S10: reconstruction error vs latent size", logy=True, logx=True, quick=quick)
    files.append(path)
    files.append(_picture(os.path.join(out_dir, "reconstructions.png"), test, recon, quick))

    # frozen encoder + linear head vs a linear model on the pixels, tuned alike
    lrs = HEAD_LRS[1:4:2] if quick else HEAD_LRS
    max_epochs = 2 if quick else HEAD_MAX_EPOCHS
    n_val = len(train[1]) // 4 if quick else N_VAL
    n_fit = len(train[1]) - n_val
    feats_tr, feats_te = codes(ae_keep, train[0]), codes(ae_keep, test[0])
    head_rows, acc_series, grid_rows = [], [], []
    for i, (key, build, tr_images, te_images) in enumerate((
            (f"frozen encoder + Linear({HEAD_LATENT}, 10)",
             lambda: Sequential(Linear(HEAD_LATENT, 10)), feats_tr, feats_te),
            ("Linear(784, 10) on pixels", lambda: Sequential(Flatten(), Linear(784, 10)),
             train[0], test[0]))):
        splits = ((tr_images[:n_fit], train[1][:n_fit]), (tr_images[n_fit:], train[1][n_fit:]),
                  (te_images, test[1]))
        tuned = tune_head(key, build, *splits, lrs, max_epochs, seed)
        best = tuned["best"]
        runs[f"head_{i}"] = {"label": key, "params": tuned["params"], "grid": tuned["grid"],
                             "best": best, "tinynet": tuned["grid"][str(best["lr"])],
                             "torch": None}
        head_rows.append([key, tuned["params"], f"{best['lr']:g}", str(best["epoch"]),
                          f"{best['val_acc']:.2f}", f"{best['test_acc']:.2f}",
                          f"{best['train_acc']:.2f}"])
        for lr in lrs:
            g = tuned["grid"][str(lr)]
            grid_rows.append([key, f"{lr:g}", f"{max(g['val_acc']):.2f}",
                              str(g["epoch"][int(np.argmax(g["val_acc"]))]),
                              f"{g['val_acc'][-1]:.2f}", "diverged" if g["stopped"] else ""])
        g = tuned["grid"][str(best["lr"])]
        acc_series.append((g["epoch"], g["val_acc"], f"{key}, lr {best['lr']:g}: validation",
                           f"C{i}o-"))
        acc_series.append((g["epoch"], g["test_acc"], f"{key}, lr {best['lr']:g}: test",
                           f"C{i}s--"))
    path = os.path.join(out_dir, "linear_heads.png")
    common.line_plot(path, acc_series, "epoch", "accuracy (%)",
                     "S10: linear softmax on frozen codes vs on pixels, each at its best lr",
                     quick=quick)
    files.append(path)
    table += (f"\n## Linear softmax classifiers at their best (SGD, batch 64, shuffled; lr and "
              f"epochs chosen on a validation split of {n_val:,}; tinynet only)\n\n")
    table += common.md_table(["model", "trainable parameters", "chosen lr", "chosen epoch",
                              "validation acc", "test acc", "train acc"], head_rows)
    table += (f"\nThe grid: each lr trained for {max_epochs} epochs on {n_fit:,} images; "
              "best validation accuracy and its epoch, and the last epoch's:\n\n")
    table += common.md_table(["model", "lr", "best validation acc", "at epoch",
                              f"validation acc, epoch {max_epochs}", "note"], grid_rows)
    summary = ("S10 test MSE by latent size: " + ", ".join(
        f"d={r[0]}: {r[3]}" for r in rows) + "; linear heads: " +
        "; ".join(f"{r[0]} test {r[5]}% (lr {r[2]}, epoch {r[3]}, validation {r[4]}%)"
                  for r in head_rows))
    return common.finish(out_dir, NAME, TITLE, table, runs, files, summary, quick, seed,
                         time.perf_counter() - t0)


if __name__ == "__main__":   # the same as: python -m experiments s10 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
