"""S6: Normal vs Glorot initialisation on CIFAR-10 (report 002, Q2).

CIFAR-10 MLP 3072-784-256-10 (``cifar_mlp_small``), ReLU, SGD lr 0.01, batch 64, no
shuffling (the report is silent, PyTorch's DataLoader default), 20 epochs. Normal:
weights from N(0, 1), zero biases; Glorot: U(-d, d), d = sqrt(6 / (fan_in + fan_out)),
zero biases. One plot of both training losses, one of both accuracies.
"""

from __future__ import annotations

import os
import time

import tinynet
from tinynet import models

from . import common

NAME = "s6"
TITLE = "Normal vs Glorot initialisation, CIFAR-10 MLP 3072-784-256-10"
EPOCHS = 20
LR = 0.01
REPORTED = {"normal": "loss starts >= 2.30, ends near 2.05", "glorot":
            "loss starts near 1.8, ends near 1.2; better accuracy"}
DISCUSSION = """Glorot replicates the report: training loss 1.90 after the first epoch and
1.21 after the twentieth (report: about 1.8 and 1.2), 46.9% test accuracy, and the PyTorch
twin from the same weights and batches ends at the same loss to 1e-4 (47.1%). With N(0, 1)
weights a 3072-input layer makes pre-activations tens of units large and the logits
astronomically so (mean loss of tinynet's first epoch about 1.6e31); the first huge SGD
steps push every ReLU unit negative for all inputs, the network goes dead, its output no
longer depends on the input and the loss sits at log(10) = 2.3026 with 10% accuracy from
then on. The twin goes the other way out of the same start: at step 62 a float32 value
overflows and its loss becomes NaN (diverged). Both are the failure of that
initialisation; which way it fails depends on float32 rounding at values near 1e30. The
report's Normal run also started at >= 2.30 but crept down to 2.05, so some of its units
survived the first steps; which units die depends on the draw of the weights and the
first batches. Our data is the JPEG re-encoding of CIFAR-10, close to but not equal to the
official pixels."""


def normal_init(model) -> None:
    for m in model.modules():
        if type(m).__name__ == "Linear":
            tinynet.init.normal_(m.weight, 0.0, 1.0)
            tinynet.init.zeros_(m.bias)


def glorot_init(model) -> None:
    for m in model.modules():
        if type(m).__name__ == "Linear":
            tinynet.init.xavier_uniform_(m.weight)
            tinynet.init.zeros_(m.bias)


INITS = {"normal": normal_init, "glorot": glorot_init}


def _loss_text(loss: float) -> str:
    """Four decimals, or three significant digits for the astronomic losses of N(0, 1)."""
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.3g}"


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    epochs = common.QUICK_EPOCHS if quick else EPOCHS
    common.say(f"S6: seed {seed}; {'QUICK MODE (subset, few epochs)' if quick else 'full'}; "
               f"SGD lr {LR}, batch 64, no shuffle, {epochs} epochs")
    source = common.cifar_name()
    train, test = common.dataset("cifar10", quick)
    previous = common.previous_runs(out_dir, quick, seed)
    runs, rows, loss_series, acc_series = {}, [], [], []
    for i, (key, init) in enumerate(INITS.items()):
        r = common.train_pair(key, models.cifar_mlp_small, ("sgd", LR), train, test, epochs,
                              64, False, seed, use_torch, device, init=init,
                              previous=previous, config={"init": key},
                              checkpoint_dir=common.checkpoint_dir(out_dir))
        runs[key] = r
        common.save_partial(out_dir, NAME, runs, quick, seed)
        h, th = r["tinynet"], r["torch"]
        rows.append([key, REPORTED[key], _loss_text(h['train_loss'][0]),
                     _loss_text(h['train_loss'][-1]),
                     _loss_text(th['train_loss'][-1]) if th and th["train_loss"] else "-",
                     common.outcome(h), common.outcome(th),
                     f"{h['train_acc'][-1]:.2f}" if h["train_acc"] else "-"])
        loss_series.append((h["epoch"], h["train_loss"], f"{key} train", f"C{i}o-"))
        loss_series.append((h["epoch"], h["test_loss"], f"{key} test", f"C{i}s--"))
        acc_series.append((h["epoch"], h["train_acc"], f"{key} train", f"C{i}o-"))
        acc_series.append((h["epoch"], h["test_acc"], f"{key} test", f"C{i}s--"))
    files = [os.path.join(out_dir, "loss.png"), os.path.join(out_dir, "accuracy.png")]
    off = [f"{k} epoch 1: {r['tinynet']['train_loss'][0]:.3g}" for k, r in runs.items()
           if r["tinynet"]["train_loss"] and r["tinynet"]["train_loss"][0] > 3]
    common.line_plot(files[0], loss_series, "epoch", "cross-entropy loss",
                     "S6: loss, Normal N(0,1) vs Glorot uniform init" +
                     (f"\n(off the scale: {'; '.join(off)})" if off else ""),
                     hlines=[(2.302585, "log(10): chance")], ylim=(0.8, 2.6), quick=quick)
    common.line_plot(files[1], acc_series, "epoch", "accuracy (%)",
                     "S6: accuracy, Normal N(0,1) vs Glorot uniform init", quick=quick)
    table = f"## {epochs} epochs, {common.data_label(source)}\n\n"
    table += common.md_table(["init", "report", "tinynet train loss epoch 1",
                              f"tinynet train loss epoch {epochs}",
                              f"twin train loss epoch {epochs}", "tinynet test acc",
                              "twin test acc", "tinynet train acc"], rows)
    summary = "S6: " + "; ".join(
        f"{k}: train loss {_loss_text(r['tinynet']['train_loss'][0])} -> "
        f"{_loss_text(r['tinynet']['train_loss'][-1])}, test acc {common.outcome(r['tinynet'])}"
        for k, r in runs.items())
    return common.finish(out_dir, NAME, TITLE, table, runs, files, summary, quick, seed,
                         time.perf_counter() - t0)


if __name__ == "__main__":   # the same as: python -m experiments s6 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
