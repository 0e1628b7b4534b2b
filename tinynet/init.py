"""Weight initialisers, named and defined as in ``torch.nn.init``.

Each fills a Parameter (or an array) in place and returns it. Draws come from a
seeded ``numpy.random.Generator``: pass ``generator=`` (a Generator or an int seed),
or leave it None to use the global one that ``tinynet.manual_seed`` sets.

Fans of a weight of shape ``(D_out, D_in)`` or ``(C_out, C_in, KH, KW)``:
``fan_in = D_in * KH * KW``, ``fan_out = D_out * KH * KW``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from .backend import get_array_module
from .parameter import Parameter
from .random import as_generator

__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "glorot_normal_",
    "glorot_uniform_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "pytorch_default_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]


def _fill(tensor: Any, host_values: numpy.ndarray) -> Any:
    """Write host-drawn values into ``tensor`` (a Parameter or an array) on its device."""
    target = tensor.data if isinstance(tensor, Parameter) else tensor
    xp = get_array_module(target)
    target[...] = xp.asarray(host_values.astype(target.dtype, copy=False))
    return tensor


def _shape(tensor: Any) -> tuple:
    return tuple((tensor.data if isinstance(tensor, Parameter) else tensor).shape)


def calculate_fan_in_and_fan_out(tensor: Any) -> tuple[int, int]:
    shape = _shape(tensor)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need at least 2 dims, got shape {shape}")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain, as ``torch.nn.init.calculate_gain``."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """U(a, b)."""
    return _fill(tensor, as_generator(generator).uniform(a, b, size=_shape(tensor)))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """N(mean, std^2). The S6 study's "Normal" init is ``normal_(w, 0, 1)``."""
    return _fill(tensor, as_generator(generator).normal(mean, std, size=_shape(tensor)))


def constant_(tensor, val: float):
    return _fill(tensor, numpy.full(_shape(tensor), val))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """Glorot uniform: U(-d, d), d = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """Glorot normal: N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


glorot_uniform_ = xavier_uniform_
glorot_normal_ = xavier_normal_


def _kaiming_std(tensor, a: float, mode: str, nonlinearity: str) -> float:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None):
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None):
    """He normal: N(0, s^2), s = gain / sqrt(fan)."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def pytorch_default_(weight, bias=None, generator=None):
    """What ``torch.nn.Linear`` and ``Conv2d`` do in ``reset_parameters()``.

    ``kaiming_uniform_(weight, a=sqrt(5))``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    then the bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Weight first, then bias,
    from the same generator.
    """
    generator = as_generator(generator)
    kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, generator)
    return weight
