"""Plots of training histories (matplotlib, headless, written atomically as PNG)."""

from __future__ import annotations

import io
import os

from .io import atomic_write


def figure(*args, **kwargs):
    """``(fig, axes)`` as ``pyplot.subplots(*args, **kwargs)`` would give, but a bare
    ``matplotlib.figure.Figure``: no pyplot, no backend switch, nothing global touched
    (a notebook's backend stays as the user set it)."""
    from matplotlib.figure import Figure
    subplot_kw = {k: kwargs.pop(k) for k in ("sharex", "sharey", "squeeze",
                                             "subplot_kw", "gridspec_kw") if k in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(*args, **subplot_kw)


def save_figure(fig, path: str, dpi: int = 120) -> str:
    """Render ``fig`` to PNG in memory, then write it atomically to ``path``.

    A figure made by pyplot is closed afterwards (so scripts do not leak figures)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    if getattr(fig.canvas, "manager", None) is not None:
        import matplotlib.pyplot as plt
        plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return os.path.abspath(path)


def plot_history(history: dict, path: str, title: str = "") -> str:
    """Loss (train and test) and accuracy per epoch, side by side; per-step loss when
    the run is a single epoch. Returns the PNG's absolute path."""
    fig, (ax_loss, ax_acc) = figure(1, 2, figsize=(10, 4))
    epochs = history["epoch"]
    if len(epochs) >= 2:
        ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
        ax_loss.plot(epochs, history["test_loss"], "s-", label="test")
        ax_loss.set_xlabel("epoch")
    else:
        ax_loss.plot(range(1, len(history["steps"]) + 1), history["steps"], lw=0.7,
                     label="train (per step)")
        if history["test_loss"]:
            ax_loss.axhline(history["test_loss"][-1], color="C1", ls="--", label="test (end)")
        ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_loss.set_title("loss")
    if len(epochs) >= 2:
        ax_acc.plot(epochs, history["train_acc"], "o-", label="train")
        ax_acc.plot(epochs, history["test_acc"], "s-", label="test")
        ax_acc.set_xlabel("epoch")
        ax_acc.legend()
    elif epochs:  # one epoch: two labelled bars read better than two lone points
        values = [history["train_acc"][-1], history["test_acc"][-1]]
        bars = ax_acc.bar(["train (mean over epoch)", "test (end of epoch)"], values,
                          color=["C0", "C1"])
        for bar, v in zip(bars, values):
            ax_acc.annotate(f"{v:.2f}%", (bar.get_x() + bar.get_width() / 2, v),
                            ha="center", va="bottom")
        ax_acc.set_ylim(0, 100)
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("accuracy")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
