"""S9: a CNN on CIFAR-10, with and without BatchNorm, vs the best CIFAR MLP
(report 002, Q5; report 000, 3.5-3.10), with filter and feature-map pictures.

The CNN (width factor w = 1 on a GPU)::

    [Conv(3,64w,3,p1), ReLU, (BN), Conv(64w,64w,3,p1), ReLU, (BN), MaxPool2]
    [Conv(64w,128w,3,p1), ReLU, (BN), Conv(128w,128w,3,p1), ReLU, (BN), MaxPool2]
    [Conv(128w,256w,3,p1), ReLU, (BN), MaxPool2], Flatten, Linear(4096w, 512w), ReLU,
    Linear(512w, 10)

has 2,663,178 parameters at w = 1, of the order of the best CIFAR MLP's 3,709,194.
SGD lr 0.01, batch 64, no shuffling, 20 epochs (report 002 ran the BN CNN for 80). This
is GPU-scale: on the CPU the study runs at w = 1/4 for ``CPU_EPOCHS`` epochs and says so
in its output; ``--device cuda`` runs w = 1 for 20 epochs. The report 000 VGG16 runs
(138M parameters) are not replicated. The pictures are the trained BN CNN's first- and
last-layer filters and their feature maps on one test image.
"""

from __future__ import annotations

import os
import time

import numpy as np

import tinynet
from tinynet import Flatten, Linear, ReLU, Sequential, models
from tinynet.backend import to_numpy
from tinynet.data import DataLoader

from . import common

NAME = "s9"
TITLE = "CIFAR-10 CNN with and without BatchNorm vs the best MLP; filters and feature maps"
GPU_EPOCHS, CPU_EPOCHS = 20, 5
CPU_WIDTH = 0.25
LR = 0.01
REPORTED = {"MLP best": "train < 60 after 20 epochs", "CNN": "train > 80 after 20 epochs",
            "CNN + BN": "better validation than the plain CNN (80 epochs)"}
DISCUSSION = """Report 002 found its CNN (fewer parameters than the best MLP) well ahead of
the MLP after 20 epochs (train accuracy above 80% against below 60%) and BatchNorm plus
regularisation narrowing the train/validation gap. Here only a QUICK run at 1/8 width was
afforded; the pictures show the filters and feature maps of that small, briefly trained
net. `--device cuda` runs the full width for 20 epochs."""


def cnn(width: float = 1.0, batchnorm: bool = False) -> Sequential:
    from tinynet.layers import BatchNorm2d, Conv2d, MaxPool2d
    c = [max(1, round(k * width)) for k in (64, 64, 128, 128, 256)]
    layers, prev = [], 3
    for i, ch in enumerate(c):
        layers += [Conv2d(prev, ch, 3, 1, 1), ReLU()]
        if batchnorm:
            layers.append(BatchNorm2d(ch))
        if i in (1, 3, 4):
            layers.append(MaxPool2d(2, 2))
        prev = ch
    hidden = max(1, round(512 * width))
    layers += [Flatten(), Linear(prev * 4 * 4, hidden), ReLU(), Linear(hidden, 10)]
    return Sequential(*layers)


def _conv_indices(model) -> list:
    return [i for i, m in enumerate(model) if type(m).__name__ == "Conv2d"]


def _pictures(out_dir: str, model, image) -> list:
    """First/last conv filters and their feature maps on ``image`` (uint8 (32, 32, 3))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinynet.plot import save_figure
    convs = _conv_indices(model)
    model.eval()
    x, _ = next(iter(DataLoader(image[None], np.zeros(1, dtype=np.int64), batch_size=1)))
    maps = {}
    h = x
    for i, layer in enumerate(model):
        h = layer(h)
        if i - 1 in convs and type(layer).__name__ == "ReLU":  # the conv's output after ReLU
            maps[i - 1] = to_numpy(h)[0]
    model.train()
    files = []
    first, last = convs[0], convs[-1]
    w = to_numpy(model[first].weight.data)                     # (C_out, 3, 3, 3)
    n = min(32, w.shape[0])
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            f = w[k].transpose(1, 2, 0)
            ax.imshow((f - f.min()) / (np.ptp(f) + 1e-12), interpolation="nearest")
            ax.set_title(str(k), fontsize=6)
    fig.suptitle("S9: first conv layer filters (3x3 RGB, each scaled to [0, 1])")
    files.append(save_figure(fig, os.path.join(out_dir, "filters_first.png")))
    wl = to_numpy(model[last].weight.data)                    # (C_out, C_in, 3, 3)
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < min(32, wl.shape[0]):
            ax.imshow(wl[k].mean(0), cmap="RdBu_r", interpolation="nearest")
            ax.set_title(str(k), fontsize=6)
    fig.suptitle("S9: last conv layer filters (3x3, mean over input channels)")
    files.append(save_figure(fig, os.path.join(out_dir, "filters_last.png")))
    for tag, idx in (("first", first), ("last", last)):
        fm = maps[idx]
        shown = min(35, fm.shape[0])
        nrows = (shown + 1 + 8) // 9
        fig, axes = plt.subplots(nrows, 9, figsize=(9, 1.1 * nrows + 0.5), squeeze=False)
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("input", fontsize=6)
        for k, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if 1 <= k <= shown:
                ax.imshow(fm[k - 1], cmap="viridis")
                ax.set_title(str(k - 1), fontsize=6)
        fig.suptitle(f"S9: feature maps of the {tag} conv layer ({fm.shape[1]}x{fm.shape[2]}) "
                     "on one test image")
        files.append(save_figure(fig, os.path.join(out_dir, f"feature_maps_{tag}.png")))
    return files


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    gpu = device == "cuda"
    width = 1.0 if gpu else (0.125 if quick else CPU_WIDTH)
    epochs = 1 if quick else (GPU_EPOCHS if gpu else CPU_EPOCHS)
    mode = "QUICK MODE (subset, 1 epoch)" if quick else "full"
    scale = "full width (GPU)" if gpu else (f"REDUCED WIDTH x{width:g} on the CPU (use "
                                            f"--device cuda for the real size)")
    common.say(f"S9: seed {seed}; {mode}; {scale}; {epochs} epochs, SGD lr {LR}, batch 64")
    train, test = common.dataset("cifar10-jpeg", quick)
    previous = common.previous_runs(out_dir, quick, seed)
    configs = [("MLP best", models.cifar_mlp_best),
               ("CNN", lambda: cnn(width, False)),
               ("CNN + BN", lambda: cnn(width, True))]
    runs, rows, series = {}, [], []
    trained = None
    for i, (key, build) in enumerate(configs):
        why = common.missing_layers(build)
        if why:
            rows.append([key, REPORTED[key], "unavailable", "-", "-", "-"])
            continue
        r = common.train_pair(key, build, ("sgd", LR), train, test, epochs, 64, False, seed,
                              use_torch, device, previous=previous,
                              config={"width": width if key != "MLP best" else 1.0},
                              keep_model=key == "CNN + BN")
        trained = r.pop("_model", None) or trained
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        rows.append([key, REPORTED[key], common.outcome(r["tinynet"]),
                     common.outcome(r["torch"]), r["params"],
                     f"{sum(r['tinynet']['seconds']):.0f}"])
        h = r["tinynet"]
        series.append((h["epoch"], h["test_acc"], key, f"C{i}o-"))
    files = []
    path = os.path.join(out_dir, "test_accuracy.png")
    common.line_plot(path, series, "epoch", "test accuracy (%)",
                     f"S9: CIFAR-10 test accuracy ({scale})")
    files.append(path)
    table = f"## CIFAR-10 (JPEG copy), {epochs} epochs, {scale}\n\n"
    table += common.md_table(["model", "report", "tinynet test acc", "twin test acc",
                              "parameters", "tinynet train s"], rows)
    if "CNN + BN" in runs:
        note = "the trained BN CNN above"
        if trained is None:  # its run was reused from histories.json: train one epoch
            tinynet.manual_seed(seed)
            trained = cnn(width, True)
            opt = tinynet.SGD(trained.parameters(), lr=LR)
            tinynet.fit(trained, tinynet.CrossEntropyLoss(), opt, train, None,
                        epochs=1, progress=False, log=None)
            note = "the BN CNN after one epoch (its full run was reused, not retrained)"
        files += _pictures(out_dir, trained.to("cpu"), test[0][0])
        table += f"\nFilters and feature maps ({scale}): {note}.\n"
    summary = f"S9 ({scale}, {epochs} epochs): " + "; ".join(
        f"{k} {common.outcome(r['tinynet'])}" for k, r in runs.items())
    return common.finish(out_dir, NAME, TITLE, table, runs, files, summary, quick, seed,
                         time.perf_counter() - t0)
