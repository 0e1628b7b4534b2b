"""Opt-in input checks that cost time, off by default in the hot path.

``set_checks(True)`` (or ``tinynet train --check``) makes every layer reject NaN or
inf in its input and in the gradient it receives, naming the layer. Shape, dtype and
label checks are always on: they are cheap; ``check_size`` is the one for sizes
(features, channels, batch sizes) that layers and loaders share.
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager

from .errors import ArgumentError, NonFiniteError

_enabled = False


def set_checks(enabled: bool) -> None:
    """Turn the non-finite checks on or off for every layer."""
    global _enabled
    _enabled = bool(enabled)


def checks_enabled() -> bool:
    return _enabled


@contextmanager
def checking(enabled: bool = True):
    """``with tinynet.checking(): ...`` runs the block with the checks on."""
    global _enabled
    old, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = old


def check_finite(array, where: str, what: str = "input") -> None:
    """Raise NonFiniteError if ``array`` holds NaN or inf (call only when checks are on)."""
    from .backend import get_array_module
    xp = get_array_module(array)
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        n_nan = int(xp.isnan(array).sum())
        n_inf = int(xp.isinf(array).sum())
        raise NonFiniteError(
            f"{where}: {what} of shape {tuple(array.shape)} holds {n_nan} NaN and "
            f"{n_inf} inf values; expected finite numbers")


def check_size(value, name: str) -> int:
    """``value`` as an int >= 1 (a size: features, channels, groups), else an
    ArgumentError naming ``name``. Whole numbers only, as PyTorch's shapes: ``2.5``, ``"3"``
    and ``True`` are refused rather than truncated or passed on to NumPy."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ArgumentError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)
