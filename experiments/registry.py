"""Which module holds which study, and loading them without crashing on a missing one."""

from __future__ import annotations

import importlib
import importlib.util

# study name -> module under experiments/ (S8 is written by the gradcheck engineer)
STUDIES: dict[str, str] = {
    "s1": "s01_lr",
    "s2": "s02_width_depth",
    "s3": "s03_grad_norms",
    "s4": "s04_cnn_mlp",
    "s5": "s05_mnist_sweeps",
    "s6": "s06_init",
    "s7": "s07_grid",
    "s8": "s08_fd",
    "s9": "s09_cifar_cnn",
    "s10": "s10_autoencoder",
    "s11": "s11_perceptron",
}

# the order of `python -m experiments all` (cheap and accepted studies first)
ORDER = ["s1", "s2", "s4", "s6", "s7", "s3", "s5", "s8", "s10", "s11", "s9"]


def resolve(name: str) -> str:
    """``"S1"``, ``"s01"``, ``"1"`` or ``"s01_lr"`` -> ``"s1"``; ValueError otherwise."""
    key = name.strip().lower()
    for study, module in STUDIES.items():
        if key == module:
            return study
    key = key.removeprefix("s")
    if key.isdigit() and f"s{int(key)}" in STUDIES:
        return f"s{int(key)}"
    raise ValueError(f"unknown study {name!r}: expected one of {', '.join(STUDIES)} or 'all'")


def load_study(study: str):
    """The study's module, or None when its file does not exist (yet)."""
    module = STUDIES[resolve(study)]
    if importlib.util.find_spec(f"experiments.{module}") is None:
        return None
    return importlib.import_module(f"experiments.{module}")
