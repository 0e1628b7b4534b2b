"""The global seeded generator used by default initialisation and Dropout.

``tinynet.manual_seed(s)`` makes model construction and dropout masks repeat exactly
(as ``torch.manual_seed``). Every draw comes from a ``numpy.random.Generator``
(PCG64) on the host; arrays for the GPU are drawn on the host and copied, so a model
built with the same seed has the same weights on every device.
"""

from __future__ import annotations

from typing import Any

import numpy

_generator = numpy.random.default_rng(0)


def manual_seed(seed: int) -> numpy.random.Generator:
    """Reseed the global generator; returns it."""
    global _generator
    _generator = numpy.random.default_rng(int(seed))
    return _generator


def default_generator() -> numpy.random.Generator:
    return _generator


def as_generator(generator: Any = None) -> numpy.random.Generator:
    """``None`` -> the global generator; an int -> a new seeded generator; a Generator as is."""
    if generator is None:
        return _generator
    if isinstance(generator, numpy.random.Generator):
        return generator
    if isinstance(generator, (int, numpy.integer)):
        return numpy.random.default_rng(int(generator))
    raise TypeError(f"expected None, an int seed or a numpy.random.Generator, "
                    f"got {type(generator).__name__}")


def get_rng_state() -> dict:
    """The global generator's state (a JSON-able dict), for checkpoints."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _generator.bit_generator.state = state
