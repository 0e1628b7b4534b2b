"""Opt-in input checks that cost time, off by default in the hot path.

``set_checks(True)`` (or ``tinynet train --check``) makes every layer reject NaN or
inf in its input and in the gradient it receives, naming the layer. Shape, dtype and
label checks are always on: they are cheap.
"""

from __future__ import annotations

from contextlib import contextmanager

from .errors import NonFiniteError

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
