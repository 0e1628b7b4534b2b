"""S9: a CNN on CIFAR-10, with and without BatchNorm, vs the best CIFAR MLP
(report 002, Q5; report 000, 3.5-3.10), with filter and feature-map pictures.

The CNN (width factor w = 1 on a GPU)::

    [Conv(3,64w,3,p1), ReLU, (BN), Conv(64w,64w,3,p1), ReLU, (BN), MaxPool2]
    [Conv(64w,128w,3,p1), ReLU, (BN), Conv(128w,128w,3,p1), ReLU, (BN), MaxPool2]
    [Conv(128w,256w,3,p1), ReLU, (BN), MaxPool2], Flatten, Linear(4096w, 512w), ReLU,
    Linear(512w, 10)

has 2,658,122 parameters at w = 1, of the order of the best CIFAR MLP's 3,709,194.
SGD lr 0.01, batch 64, no shuffling, 20 epochs for the MLP, the CNN and the CNN with
BatchNorm2d (report 002 ran the BN CNN for 80). Convolutions are GPU-scale work: on the
CPU the study runs at w = ``CPU_WIDTH`` (the largest width whose three runs finish in
about two hours on one core) and says so in its table, plots and summary; ``--device
cuda`` runs w = 1. The report 000 VGG16 runs (138M parameters) are not replicated. The
pictures are the trained BN CNN's first- and last-layer filters and their feature maps
on one test image.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tinynet import Flatten, Linear, ReLU, Sequential, models
from tinynet.backend import to_numpy
from tinynet.data import DataLoader

from . import common

NAME = "s9"
TITLE = "CIFAR-10 CNN with and without BatchNorm vs the best MLP; filters and feature maps"
EPOCHS = 20
CPU_WIDTH, QUICK_WIDTH = 0.5, 0.125
LR = 0.01
REPORTED = {"MLP best": "train < 60, below the CNN (20 epochs)",
            "CNN": "train > 80, validation above the MLP (20 epochs)",
            "CNN + BN": "better validation and a smaller train/validation gap than the "
                        "plain CNN (80 epochs)"}
DISCUSSION = """Report 002 found its CNN (fewer parameters than the best MLP) well ahead
of the MLP after 20 epochs (train accuracy above 80% against below 60%) and BatchNorm
narrowing the train/validation gap. The full CPU run here is at half width (w = 0.5, said
on the table and plots; `--device cuda` runs the full width), 20 epochs each at lr 0.01.
The CNN, with a sixth of the MLP's parameters (666,538 against 3,709,194), ends 14 points
ahead on test accuracy (57.26% against 43.07%; train 68.4% against 50.2%), after a slow
start (it is below the MLP for the first five epochs). With BatchNorm the same CNN reaches
72% test accuracy within 5 epochs and 75.93% after 20, 19 points above the plain CNN, but
it fits the training set completely (100% train accuracy; its test loss is lowest at epoch
4 and rises from there), so its train/test gap is larger, not smaller, than the plain
CNN's: at lr 0.01 and without augmentation, BatchNorm speeds up fitting more than it
regularises. The report's BN run used lr 0.001 and 80 epochs, which we did not run. The
filters of the first layer and the feature maps of the trained CNN + BN are plotted."""


def scale_text(width: float, device: str, short: bool = False) -> str:
    """How the table (and, ``short``, the plots) state the CNN's size."""
    if width == 1.0:
        return "full width (w = 1)"
    if short:
        return f"REDUCED WIDTH w = {width:g} ({device.upper()})"
    return (f"REDUCED WIDTH w = {width:g} on the {device.upper()} (the report's size is "
            f"w = 1: --device cuda)")


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


def _pictures(out_dir: str, model, image, scale: str, quick: bool = False) -> list:
    """First/last conv filters and their feature maps on ``image`` (uint8 (32, 32, 3))."""
    from tinynet.plot import figure

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
    fig, axes = figure(4, 8, figsize=(8, 4.4))
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            f = w[k].transpose(1, 2, 0)
            ax.imshow((f - f.min()) / (np.ptp(f) + 1e-12), interpolation="nearest")
            ax.set_title(str(k), fontsize=6)
    fig.suptitle(f"S9: first conv layer filters (3x3 RGB, each scaled to [0, 1])\n{scale}",
                 fontsize=9)
    files.append(common.save_plot(fig, os.path.join(out_dir, "filters_first.png"), quick))
    wl = to_numpy(model[last].weight.data)                    # (C_out, C_in, 3, 3)
    fig, axes = figure(4, 8, figsize=(8, 4.4))
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < min(32, wl.shape[0]):
            ax.imshow(wl[k].mean(0), cmap="RdBu_r", interpolation="nearest")
            ax.set_title(str(k), fontsize=6)
    fig.suptitle(f"S9: last conv layer filters (3x3, mean over input channels)\n{scale}",
                 fontsize=9)
    files.append(common.save_plot(fig, os.path.join(out_dir, "filters_last.png"), quick))
    for tag, idx in (("first", first), ("last", last)):
        fm = maps[idx]
        shown = min(35, fm.shape[0])
        nrows = (shown + 1 + 8) // 9
        fig, axes = figure(nrows, 9, figsize=(9, 1.1 * nrows + 0.5), squeeze=False)
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("input", fontsize=6)
        for k, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if 1 <= k <= shown:
                ax.imshow(fm[k - 1], cmap="viridis")
                ax.set_title(str(k - 1), fontsize=6)
        fig.suptitle(f"S9: feature maps of the {tag} conv layer ({fm.shape[1]}x{fm.shape[2]}) "
                     f"on one test image\n{scale}", fontsize=9)
        files.append(common.save_plot(fig, os.path.join(out_dir, f"feature_maps_{tag}.png"),
                                       quick))
    return files


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    width = 1.0 if device == "cuda" else (QUICK_WIDTH if quick else CPU_WIDTH)
    epochs = 1 if quick else EPOCHS
    scale = scale_text(width, device)
    short = scale_text(width, device, short=True)
    common.say(f"S9: seed {seed}; {'QUICK MODE (subset, 1 epoch)' if quick else 'full'}; "
               f"{scale}; {epochs} epochs, SGD lr {LR}, batch 64, no shuffle")
    source = common.cifar_name()
    train, test = common.dataset("cifar10", quick)
    previous = common.previous_runs(out_dir, quick, seed)
    configs = [("MLP best", models.cifar_mlp_best),
               ("CNN", lambda: cnn(width, False)),
               ("CNN + BN", lambda: cnn(width, True))]
    runs, rows, acc_series, loss_series = {}, [], [], []
    trained = None
    for i, (key, build) in enumerate(configs):
        why = common.missing_layers(build)
        if why:
            rows.append([key, REPORTED[key], "unavailable", "-", "-", "-", "-"])
            continue
        r = common.train_pair(key, build, ("sgd", LR), train, test, epochs, 64, False, seed,
                              use_torch, device, previous=previous,
                              config={"width": width if key != "MLP best" else 1.0},
                              keep_model=key == "CNN + BN",
                              checkpoint_dir=common.checkpoint_dir(out_dir))
        if key == "CNN + BN":
            trained = r.pop("_model", None)
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        h = r["tinynet"]
        rows.append([key, REPORTED[key], common.outcome(h), f"{h['train_acc'][-1]:.2f}",
                     common.outcome(r["torch"]) if r["torch"] else "not run",
                     r["params"], common.hms(h["total_seconds"])])
        acc_series.append((h["epoch"], h["test_acc"], f"{key} test", f"C{i}o-"))
        acc_series.append((h["epoch"], h["train_acc"], f"{key} train", f"C{i}--"))
        loss_series.append((h["epoch"], h["test_loss"], f"{key} test", f"C{i}o-"))
        loss_series.append((h["epoch"], h["train_loss"], f"{key} train", f"C{i}--"))
    files = []
    path = os.path.join(out_dir, "test_accuracy.png")
    common.line_plot(path, acc_series, "epoch", "accuracy (%)",
                     f"S9: {common.data_label(source)}, test (solid) and train (dashed)\n"
                     f"CNNs at {short}", quick=quick)
    files.append(path)
    path = os.path.join(out_dir, "loss.png")
    common.line_plot(path, loss_series, "epoch", "cross-entropy loss",
                     f"S9: {common.data_label(source)}, test (solid) and train (dashed)\n"
                     f"CNNs at {short}",
                     quick=quick)
    files.append(path)
    table = (f"## {common.data_label(source)}, {epochs} epoch(s), CNNs at {scale}\n\n")
    table += common.md_table(["model", "report", "tinynet test acc",
                              f"tinynet train acc (epoch {epochs})", "twin test acc",
                              "parameters", "tinynet train time"], rows)
    if not use_torch:
        table += "\nThe PyTorch twin was not run (--no-torch).\n"
    if "CNN + BN" in runs:
        if trained is None:
            table += ("\nNo pictures: the BN CNN's run was reused and its final weights "
                      f"are not in {common.checkpoint_dir(out_dir)}.\n")
        else:
            files += _pictures(out_dir, trained.to("cpu"), test[0][0], short, quick)
            table += (f"\nFilters and feature maps: the trained CNN + BN above "
                      f"({scale}).\n")
    summary = f"S9 (CNNs at {short}, {epochs} epoch(s)): " + "; ".join(
        f"{k} test {common.outcome(r['tinynet'])}, train {r['tinynet']['train_acc'][-1]:.2f}"
        for k, r in runs.items())
    return common.finish(out_dir, NAME, TITLE, table, runs, files, summary, quick, seed,
                         time.perf_counter() - t0)


if __name__ == "__main__":   # the same as: python -m experiments s9 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
