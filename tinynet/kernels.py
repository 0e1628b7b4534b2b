"""Which kernels the layers run: the readable reference ones or the fast ones.

Every layer's maths is a pair of stateless functions in :mod:`tinynet.functional`
(``linear_forward`` / ``linear_backward``, ...). Each exists twice:

* ``"reference"``: :mod:`tinynet.functional` itself, plain array code written to be read,
  the derivation and the shapes beside every line (the version a textbook would print);
* ``"fast"`` (the default): :mod:`tinynet.functional.fast`, the same functions with the
  same arguments and results, each faster version kept apart from its reference, tested
  against it and justified by a measurement. Where no faster version paid its way the
  fast set simply re-exports the reference one.

Switching::

    tinynet.set_kernels("reference")          # for the whole process (default "fast")
    with tinynet.reference_kernels():         # for a block, in this thread / context
        model(x); model.backward(dy)
    with tinynet.use_kernels("fast"): ...

A layer remembers which set ran its forward and runs the backward of that same set, so
a switch between the two calls cannot mix one set's cache with the other's backward.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from types import ModuleType

__all__ = ["KINDS", "get_kernels", "ops", "reference_kernels", "set_kernels", "use_kernels"]

KINDS = ("reference", "fast")

_default = "fast"
# A ``with`` block's choice, local to the thread (and asyncio task) that entered it.
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tinynet_kernels", default=None)


def _check(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kernels must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    return kind


def set_kernels(kind: str) -> None:
    """Run every layer on the ``"reference"`` or the ``"fast"`` kernels from now on."""
    global _default
    _default = _check(kind)


def get_kernels() -> str:
    """``"reference"`` or ``"fast"``: the set a forward started now would use."""
    override = _override.get()
    return _default if override is None else override


@contextlib.contextmanager
def use_kernels(kind: str) -> Iterator[None]:
    """Run the block on the given kernel set, then restore whatever was in force."""
    token = _override.set(_check(kind))
    try:
        yield
    finally:
        _override.reset(token)


def reference_kernels() -> contextlib.AbstractContextManager[None]:
    """``with tinynet.reference_kernels():`` runs the block on the readable kernels."""
    return use_kernels("reference")


def ops(kind: str | None = None) -> ModuleType:
    """The namespace of a kernel set (default: the one in force): ``tinynet.functional``
    for "reference", ``tinynet.functional.fast`` for "fast"."""
    if (kind or get_kernels()) == "fast":
        from .functional import fast
        return fast
    from . import functional
    return functional
