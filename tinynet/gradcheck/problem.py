"""The problem a check works on: a private copy of the module, and ``L`` at any point."""

from __future__ import annotations

import copy

import numpy

from .. import random as _random
from ..backend import get_array_module, to_numpy
from ..module import Module
from .kinks import kink_pattern

__all__ = ["Problem", "host", "owner"]


class Problem:
    """A copy of the module and input in the check's dtype, and ``loss()`` on them."""

    def __init__(self, module: Module, x, target, loss_fn, dtype: str, seed: int) -> None:
        self.dtype = numpy.dtype(dtype)
        self.module = copy.deepcopy(module)
        self.module.to(dtype=self.dtype)
        xp = get_array_module(x)
        self.xp = xp
        self.x = x.astype(self.dtype) if x.dtype.kind == "f" else x.copy()
        self.target = target
        self.loss_fn = copy.deepcopy(loss_fn) if loss_fn is not None else None
        self.rng = numpy.random.default_rng(seed)
        self.buffers = [(m, name, copy.copy(b)) for _, m in self.module.named_modules()
                        for name, b in m.named_buffers(recurse=False)]
        self.masks = [(m, m.next_mask) for m in self.module.modules()
                      if getattr(m, "next_mask", None) is not None]
        self.rng_state = numpy.random.default_rng(seed + 7919).bit_generator.state
        self.g = None          # upstream gradient when there is no loss_fn (host, float64)
        self.forwards = 0

    def _reset(self) -> None:
        for m, name, b in self.buffers:
            m.register_buffer(name, copy.copy(b))
        for m, mask in self.masks:
            m.next_mask = mask
        _random.set_rng_state(self.rng_state)

    def loss(self) -> tuple[float, list]:
        """L at the current parameters and input, and the kink pattern of that forward."""
        self._reset()
        self.forwards += 1
        y = self.module(self.x)
        if self.loss_fn is not None:
            value = float(self.loss_fn(y, self.target))
        else:
            if self.g is None:
                self.g = self.rng.standard_normal(tuple(y.shape))
                self.g_dev = self.xp.asarray(self.g)
            value = float(self.xp.sum(y.astype(numpy.float64) * self.g_dev))
        self._y = y
        return value, kink_pattern(self.module)

    def upstream(self):
        """dL/dy for the last forward."""
        if self.loss_fn is not None:
            return self.loss_fn.backward()
        return self.g_dev.astype(self._y.dtype)


def host(a) -> numpy.ndarray:
    """A float64 host copy (never a view: gradients are accumulated into in place)."""
    return numpy.array(to_numpy(a), dtype=numpy.float64, copy=True)


def owner(module: Module, name: str) -> str:
    prefix = name.rpartition(".")[0]
    for mname, m in module.named_modules():
        if mname == prefix:
            return m.describe()
    return module.describe()
