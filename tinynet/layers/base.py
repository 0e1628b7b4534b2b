"""What every layer shares: dtype/device arguments, input and gradient checks, the
kernel set a forward ran on, and unbatched inputs.

A layer's ``forward`` checks its input (shape, dtype), calls a kernel pair from the
kernel set in force (``tinynet.kernels.ops()``: the reference or the fast functions of
:mod:`tinynet.functional`), and keeps the cache; its ``backward`` checks dy and calls
the backward of the *same* set with that cache.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..backend import to_device
from ..checks import check_finite, check_size, checks_enabled  # noqa: F401 (re-exported)
from ..errors import ArgumentError, DTypeError, ShapeError
from ..module import Module
from ..parameter import Parameter

FLOAT_DTYPES = ("float16", "float32", "float64")


def resolve_dtype(dtype) -> numpy.dtype:
    """``None`` (float32), ``"float64"``, ``numpy.float64`` or ``torch.float64`` -> a NumPy dtype."""
    if dtype is None:
        return numpy.dtype("float32")
    try:
        resolved = numpy.dtype(dtype)
    except TypeError:                                     # torch.float64 and the like
        try:
            resolved = numpy.dtype(str(dtype).replace("torch.", ""))
        except TypeError:
            resolved = None
    if resolved is None or resolved.name not in FLOAT_DTYPES:
        raise DTypeError(f"dtype must be a floating-point type ({', '.join(FLOAT_DTYPES)}), "
                         f"got {dtype!r}")
    return resolved


def check_probability(p, name: str) -> float:
    """``p`` as a float in [0, 1], else an ArgumentError naming ``name``."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be a probability in [0, 1], got {p!r}") from None
    if not 0.0 <= value <= 1.0:                  # also refuses NaN
        raise ArgumentError(f"{name} must be a probability in [0, 1], got {p!r}")
    return value


def check_choice(value, name: str, choices: tuple):
    """``value`` if it is one of ``choices``, else an ArgumentError listing them."""
    if value not in choices:
        raise ArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                            f"got {value!r}")
    return value


def new_parameter(shape: tuple, dtype=None, device=None, fill: float | None = None) -> Parameter:
    """A Parameter of ``shape`` (uninitialised, or filled with ``fill``) on ``device``."""
    dt = resolve_dtype(dtype)
    data = numpy.empty(shape, dtype=dt) if fill is None else numpy.full(shape, fill, dtype=dt)
    return Parameter(data if device is None else to_device(data, str(device)))


def new_buffer(array: numpy.ndarray, device=None):
    """A buffer array (running statistics) on ``device``."""
    return array if device is None else to_device(array, str(device))


class Layer(Module):
    """A Module with the checks and the kernel bookkeeping every layer needs.

    ``splits``: whether its fast kernels split a batch over CPU threads (a model holding
    such a layer runs its forward and backward in a threaded region,
    :mod:`tinynet.functional.fast.threads`).
    """

    splits = False

    def __init__(self) -> None:
        super().__init__()
        self._kernels = None      # "reference" or "fast": the set the last forward ran on

    # ------------------------------------------------------------- kernels
    def _forward_ops(self):
        """The kernel set in force, remembered for this forward's backward."""
        self._kernels = kernels.get_kernels()
        return kernels.ops(self._kernels)

    def _backward_ops(self):
        if self._kernels is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        return kernels.ops(self._kernels)

    # ------------------------------------------------------------- checks
    def _check_input(self, x, dtype=None, ndims: tuple | None = None, expected: str = ""):
        """x must be a floating-point array (of ``dtype`` when given, the layer's) with
        one of ``ndims`` dimensions; with ``tinynet.set_checks(True)``, finite."""
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise ShapeError(f"{self.describe()}: expected an array of shape "
                             f"{expected or 'any'}, got {type(x).__name__}")
        if ndims is not None and len(shape) not in ndims:
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(shape)}, "
                             f"expected {expected}")
        if dtype is not None and x.dtype != dtype:
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected {dtype} "
                             f"(the layer's dtype; cast the input or the model)")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected a "
                             f"floating-point dtype (float32 or float64)")
        if checks_enabled():
            check_finite(x, self.describe())

    def _check_grad(self, dy, shape: tuple, dtype=None):
        """dy must be a real floating-point array of the last forward's output shape."""
        got = tuple(getattr(dy, "shape", ()))
        if not hasattr(dy, "dtype") or got != tuple(shape):
            raise ShapeError(f"{self.describe()}: got gradient of shape {got}, expected "
                             f"{tuple(shape)} (the shape of the last forward's output)")
        if dy.dtype.kind != "f" or (dtype is not None and dy.dtype != dtype):
            raise DTypeError(f"{self.describe()}: got a {dy.dtype} gradient, expected "
                             f"{dtype or 'a real floating-point dtype'} (the output's dtype)")
        if checks_enabled():
            check_finite(dy, self.describe(), "gradient")

    def _accumulate(self, param: Parameter | None, grad) -> None:
        """Add a kernel's gradient into ``param.grad`` (skipped for a missing parameter)."""
        if param is not None and grad is not None:
            param.accumulate(grad)


def add_batch_axis(x, batched_ndim: int):
    """``(x[None], True)`` for an unbatched input (one axis short), else ``(x, False)``."""
    if getattr(x, "ndim", None) == batched_ndim - 1:
        return x[None], True
    return x, False
