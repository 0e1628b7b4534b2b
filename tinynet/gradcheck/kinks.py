"""Kinks: where a layer is not differentiable, and how a probe knows it crossed one.

ReLU at 0, LeakyReLU/ELU at 0 and ties in max pooling. :func:`kink_pattern` reads the
activation pattern of every kinked layer after a forward; two forwards with equal
patterns took the same linear piece of every kinked layer (:func:`patterns_equal`).
"""

from __future__ import annotations

from ..backend import get_array_module
from ..module import Module

__all__ = ["kink_pattern", "patterns_equal"]


def kink_pattern(module: Module) -> list:
    """The activation patterns of the kinked layers inside ``module`` after a forward.

    Every module with a ``kink_pattern()`` method contributes what it returns: ReLU,
    LeakyReLU and ELU ``x > 0``, MaxPool2d each window's arg-max (the layers know their
    own caches). Two forwards whose patterns are equal took the same linear piece of
    every kinked layer.
    """
    out = []
    for _, m in module.named_modules():
        hook = getattr(type(m), "kink_pattern", None)
        if callable(hook):
            pattern = m.kink_pattern()
            if pattern is not None:
                out.append(pattern)
    return out


def patterns_equal(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for u, v in zip(a, b):
        if isinstance(u, tuple):
            if not patterns_equal(list(u), list(v)):
                return False
            continue
        if not hasattr(u, "shape"):
            if u is not v and u != v:
                return False
            continue
        if tuple(u.shape) != tuple(v.shape):
            return False
        xp = get_array_module(u)
        if not bool(xp.all(u == v)):
            return False
    return True
