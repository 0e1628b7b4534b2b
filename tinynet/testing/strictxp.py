"""A strict CPU stand-in for CuPy: the array module the test suite runs every layer on.

Most sessions have no GPU, yet every layer must run unchanged on CuPy. The mistakes
that break a layer on CuPy are host-side ones: a stray ``numpy.`` call on the data, an
implicit ``numpy.asarray(x)`` (a hidden device-to-host copy), mixing a host array into
device arithmetic. NumPy accepts all of these silently; CuPy raises ``TypeError``. This
module raises the same errors on the CPU, so the tests catch them without a GPU.

How it works
------------
* :class:`StrictArray` wraps a ``numpy.ndarray`` (it is *not* a subclass, so NumPy
  cannot treat it as one). Its class attribute ``_tinynet_xp`` is this module, so
  ``tinynet.backend.get_array_module(x)`` returns this module for it, the way it returns
  ``cupy`` for a CuPy array.
* Attributes are delegated to the wrapped array: ``.shape``, ``.ndim``, ``.dtype``,
  ``.size`` pass through; array results (``.T``, ``.reshape()``, ``.sum()``,
  ``.astype()``...) come back wrapped. Reductions return 0-d arrays, not NumPy scalars,
  as in CuPy. Operators, indexing and assignment through an index all work and stay
  wrapped; in-place operators write into the wrapped buffer.
* ``__array_ufunc__`` and ``__array_function__`` are implemented as in CuPy, so
  ``numpy.exp(x)`` or ``numpy.concatenate([x, y])`` on stand-in arrays dispatch here and
  return stand-in arrays (NumPy's protocol; ``out=`` is honoured and returned).
* The host boundary is explicit, as in CuPy: ``x.get()`` and ``asnumpy(x)`` return a
  NumPy copy; ``asarray(np_array)`` / ``array(np_array)`` copy host data in;
  ``float(x)``, ``int(x)``, ``bool(x)`` and ``x.item()`` read one value of a size-1
  array. Everything else refuses:

  - ``numpy.asarray(x)`` (any implicit conversion) raises ``TypeError: Implicit
    conversion to a NumPy array is not allowed...`` (CuPy's message);
  - an operator, a ufunc or an ``xp.*`` call that mixes a stand-in array with a raw
    ``numpy.ndarray`` (or anything else exposing ``__array__``, e.g. a torch tensor)
    raises ``TypeError``. Python and NumPy scalars (``2.0``, ``numpy.float32(2)``) are
    fine, as in CuPy.
* The module itself mirrors the NumPy namespace through a module ``__getattr__``:
  ``strictxp.exp``, ``strictxp.matmul``, ``strictxp.zeros``... unwrap their arguments
  (including ``out=``), call NumPy and wrap array results; ufuncs keep ``.reduce``,
  ``.at``, ``.outer``...; dtypes, scalar types and constants (``float32``, ``pi``,
  ``newaxis``) pass through; sub-modules (``random``, ``linalg``, ``fft``) are wrapped
  the same way, and so are the random generators they return. ``ndarray`` is
  :class:`StrictArray`, so ``isinstance(x, xp.ndarray)`` holds. Extra: ``asarray``,
  ``asnumpy``, ``get_array_module``.

What it does not model: CuPy's dtype promotion quirks, streams and asynchrony, memory
pools, and functions NumPy has but CuPy lacks. It checks *where data lives*, not speed.

Use::

    from tinynet.testing import strictxp
    x = strictxp.asarray(np.ones((2, 3), np.float32))
    model._apply(strictxp.asarray)     # move a model's parameters and buffers "onto" it
    y = model(x)                       # any hidden host conversion raises TypeError
    np.testing.assert_allclose(strictxp.asnumpy(y), expected)
"""

from __future__ import annotations

import numbers
import sys
import types
from typing import Any

import numpy

__all__ = ["StrictArray", "array", "asarray", "asnumpy", "get_array_module", "ndarray"]

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")

# Attributes of numpy.ndarray that would hand out host memory or bypass the checks.
_BLOCKED = frozenset({"data", "ctypes", "tofile", "dump", "dumps", "tobytes", "base",
                      "flat", "__array_interface__", "__array_struct__"})


def _mixing_error(obj: Any) -> TypeError:
    return TypeError(
        f"strictxp: cannot mix a strict (device) array with {type(obj).__module__}."
        f"{type(obj).__name__} {getattr(obj, 'shape', '')}: move it with xp.asarray() "
        "first, as CuPy requires")


def _is_hostlike(obj: Any) -> bool:
    """A host array that CuPy would refuse: an ndarray, or anything with __array__."""
    if isinstance(obj, (StrictArray, numpy.generic)):
        return False
    return isinstance(obj, numpy.ndarray) or hasattr(type(obj), "__array__") \
        or hasattr(type(obj), "__array_interface__")


def _unwrap(obj: Any) -> Any:
    """StrictArray -> its ndarray; containers recursively; raw host arrays are refused."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_unwrap(o) for o in obj)
    if _is_hostlike(obj):
        raise _mixing_error(obj)
    return obj


def _unwrap_operand(obj: Any) -> Any:
    """An operand of a ufunc or an operator: a strict array, a scalar or None only."""
    if isinstance(obj, StrictArray):
        return obj._a
    if obj is None or isinstance(obj, (numbers.Number, numpy.generic)):
        return obj
    if _is_hostlike(obj):
        raise _mixing_error(obj)
    raise TypeError(f"strictxp: unsupported operand type {type(obj).__name__} "
                    "(CuPy takes arrays and scalars only)")


def _wrap(obj: Any, outs: dict | None = None) -> Any:
    """ndarray -> StrictArray (the ``out=`` wrapper itself when it is one); scalars -> 0-d."""
    if isinstance(obj, numpy.ndarray):
        if outs and id(obj) in outs:
            return outs[id(obj)]
        return StrictArray(obj)
    if isinstance(obj, numpy.generic):
        return StrictArray(numpy.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o, outs) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o, outs) for o in obj]
    if isinstance(obj, (numpy.random.Generator, numpy.random.RandomState)):
        return _Namespace(obj)  # its draws come back as stand-in arrays, as CuPy's do
    return obj


def _out_map(out: Any) -> dict:
    """{id(raw ndarray): wrapper} for the StrictArrays given as ``out=``."""
    outs = out if isinstance(out, tuple) else (out,)
    return {id(o._a): o for o in outs if isinstance(o, StrictArray)}


def _unwrap_key(key: Any) -> Any:
    """An index: strict arrays unwrapped; raw host index arrays refused (a host copy)."""
    if isinstance(key, tuple):
        return tuple(_unwrap_key(k) for k in key)
    if isinstance(key, StrictArray):
        return key._a
    if _is_hostlike(key):
        raise _mixing_error(key)
    return key


def _call(func, args: tuple, kwargs: dict) -> Any:
    outs = _out_map(kwargs["out"]) if "out" in kwargs else None
    result = func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
    return _wrap(result, outs)


class StrictArray:
    """A NumPy array behind a CuPy-like wall: no implicit conversion, no mixing.

    Holds ``numpy.ndarray`` ``_a``; see the module docstring for the rules.
    """

    __slots__ = ("_a",)
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, a: Any) -> None:
        if isinstance(a, StrictArray):
            a = a._a
        if not isinstance(a, numpy.ndarray):
            a = numpy.asarray(a)
        object.__setattr__(self, "_a", a)

    # ---------------------------------------------------------------- host boundary
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def get(self) -> numpy.ndarray:
        """An explicit host copy (``cupy.ndarray.get``)."""
        return self._a.copy()

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __complex__(self) -> complex:
        return complex(self._a)

    def __format__(self, spec: str) -> str:
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self) -> str:
        return "strict_" + repr(self._a)

    def __str__(self) -> str:
        return str(self._a)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        for row in self._a:
            yield _wrap(row)

    def __copy__(self) -> StrictArray:
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo) -> StrictArray:
        return StrictArray(self._a.copy())

    def __reduce__(self):
        return (StrictArray, (self._a,))

    # ---------------------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        outs, out = None, kwargs.pop("out", None)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        if out is not None:
            outs = _out_map(out)
            kwargs["out"] = tuple(_unwrap_operand(o) for o in out)
        args = [_unwrap_operand(i) for i in inputs[:1]]
        if method == "at" and len(inputs) > 1:  # ufunc.at(a, indices[, b]): an index
            args.append(_unwrap_key(inputs[1]))
            args += [_unwrap_operand(i) for i in inputs[2:]]
        elif method == "reduceat" and len(inputs) > 1:  # reduceat(a, indices)
            args.append(_unwrap(inputs[1]))
            args += [_unwrap_operand(i) for i in inputs[2:]]
        else:
            args += [_unwrap_operand(i) for i in inputs[1:]]
        result = getattr(ufunc, method)(*args, **kwargs)
        return _wrap(result, outs)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs)

    # ---------------------------------------------------------------- delegation
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in _BLOCKED:
            raise AttributeError(f"StrictArray has no attribute {name!r}")
        value = getattr(self._a, name)
        if callable(value):
            def method(*args, **kwargs):
                return _call(value, args, kwargs)
            method.__name__ = name
            return method
        return _wrap(value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "shape":  # a.shape = ... reshapes in place, as NumPy and CuPy allow
            self._a.shape = value
            return
        raise AttributeError(f"StrictArray attribute {name!r} is read-only")

    def __dir__(self):
        return sorted(set(dir(type(self))) | {n for n in dir(self._a) if not n.startswith("_")})

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_key(key)])

    def __setitem__(self, key, value) -> None:
        self._a[_unwrap_key(key)] = _unwrap_operand(value)

    # ---------------------------------------------------------------- operators
    def __neg__(self):
        return numpy.negative(self)

    def __pos__(self):
        return numpy.positive(self)

    def __abs__(self):
        return numpy.absolute(self)

    def __invert__(self):
        return numpy.invert(self)


def _binary(ufunc):
    def forward(self, other):
        return ufunc(self, other)

    def reflected(self, other):
        return ufunc(other, self)

    def inplace(self, other):
        return ufunc(self, other, out=(self,))

    return forward, reflected, inplace


for _name, _ufunc in [("add", numpy.add), ("sub", numpy.subtract), ("mul", numpy.multiply),
                      ("truediv", numpy.true_divide), ("floordiv", numpy.floor_divide),
                      ("mod", numpy.remainder), ("pow", numpy.power),
                      ("matmul", numpy.matmul), ("and", numpy.bitwise_and),
                      ("or", numpy.bitwise_or), ("xor", numpy.bitwise_xor),
                      ("lshift", numpy.left_shift), ("rshift", numpy.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(StrictArray, f"__{_name}__", _f)
    setattr(StrictArray, f"__r{_name}__", _r)
    setattr(StrictArray, f"__i{_name}__", _i)

for _name, _ufunc in [("eq", numpy.equal), ("ne", numpy.not_equal), ("lt", numpy.less),
                      ("le", numpy.less_equal), ("gt", numpy.greater),
                      ("ge", numpy.greater_equal)]:
    setattr(StrictArray, f"__{_name}__", _binary(_ufunc)[0])


def _divmod(self, other):
    return numpy.divmod(self, other)


StrictArray.__divmod__ = _divmod  # type: ignore[attr-defined]
StrictArray._tinynet_xp = sys.modules[__name__]  # type: ignore[attr-defined]
ndarray = StrictArray


# -------------------------------------------------------------------- the module namespace
class _Ufunc:
    """A NumPy ufunc seen through the stand-in: refuses host arrays, wraps results."""

    def __init__(self, ufunc: numpy.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__
        self.__doc__ = ufunc.__doc__

    def _method(self, method: str, args: tuple, kwargs: dict):
        if not any(isinstance(a, StrictArray) for a in args):
            # Only scalars (or lists): compute, then return a device array as CuPy does.
            for a in args:
                if _is_hostlike(a):
                    raise _mixing_error(a)
            return _wrap(getattr(self._ufunc, method)(*args, **kwargs))
        return getattr(self._ufunc, method)(*args, **kwargs)  # dispatches to StrictArray

    def __call__(self, *args, **kwargs):
        return self._method("__call__", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in ("reduce", "accumulate", "reduceat", "outer", "at"):
            return lambda *args, **kwargs: self._method(name, args, kwargs)
        return getattr(self._ufunc, name)

    def __repr__(self) -> str:
        return f"<strictxp ufunc {self.__name__!r}>"


def _function(func):
    def wrapped(*args, **kwargs):
        return _call(func, args, kwargs)
    wrapped.__name__ = getattr(func, "__name__", "function")
    wrapped.__doc__ = getattr(func, "__doc__", None)
    return wrapped


def _lookup(namespace: types.ModuleType, name: str) -> Any:
    value = getattr(namespace, name)
    if isinstance(value, numpy.ufunc):
        return _Ufunc(value)
    if isinstance(value, types.ModuleType):
        return _Namespace(value)
    if isinstance(value, type) or not callable(value):
        return value  # dtypes, scalar types, classes, constants
    return _function(value)


class _Namespace:
    """A NumPy sub-module (``random``, ``linalg``, ...) or a random generator, wrapped."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return _lookup(self._module, name)


def asarray(a: Any, dtype: Any = None, order: Any = None) -> StrictArray:
    """Host data (NumPy array, list, scalar) -> a stand-in array (``cupy.asarray``).

    The explicit host-to-device copy: the one place a raw ``numpy.ndarray`` is accepted.
    A stand-in array is returned as is (cast when ``dtype`` differs).
    """
    if isinstance(a, StrictArray):
        return StrictArray(numpy.asarray(a._a, dtype=dtype, order=order)) \
            if dtype is not None or order is not None else a
    if hasattr(a, "detach"):
        raise _mixing_error(a)
    return StrictArray(numpy.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a: Any, dtype: Any = None, copy: bool = True, **kwargs) -> StrictArray:
    """Like ``cupy.array``: a copy of host or stand-in data as a stand-in array."""
    if isinstance(a, StrictArray):
        return StrictArray(numpy.array(a._a, dtype=dtype, copy=copy, **kwargs))
    if hasattr(a, "detach"):
        raise _mixing_error(a)
    return StrictArray(numpy.array(a, dtype=dtype, copy=True, **kwargs))


def asnumpy(a: Any) -> numpy.ndarray:
    """A NumPy copy of a stand-in array (``cupy.asnumpy``); NumPy input is returned as is."""
    if isinstance(a, StrictArray):
        return a._a.copy()
    return numpy.asarray(a)


def get_array_module(*arrays: Any) -> types.ModuleType:
    """This module if any argument is a stand-in array, else ``numpy`` (``cupy.get_array_module``)."""
    for a in arrays:
        if isinstance(a, StrictArray):
            return sys.modules[__name__]
    return numpy


def __getattr__(name: str) -> Any:  # PEP 562: the rest of the NumPy namespace
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return _lookup(numpy, name)
    except AttributeError:
        raise AttributeError(f"module 'strictxp' (NumPy stand-in) has no attribute "
                             f"{name!r}") from None
