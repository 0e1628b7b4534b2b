"""A restricted unpickler for the NumPy-array pickles of CIFAR-10 (never ``pickle.load``).

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL``/``INST`` opcodes name any
importable callable (``os.system``, ``builtins.eval``, ...) and ``REDUCE`` calls it, so
unpickling a downloaded file with :func:`pickle.load` runs whatever its author wanted.
:class:`RestrictedUnpickler` overrides ``find_class`` -- the one place every global goes
through -- and admits only the names that a NumPy array inside builtin containers needs:

==========================================  ===========================================
global in the pickle                        what it is replaced by
==========================================  ===========================================
``numpy.core.multiarray._reconstruct``,      ``_reconstruct(ndarray, (0,), b"b")``: an
``numpy._core.multiarray._reconstruct``      empty array placeholder, filled by ``BUILD``
``numpy.ndarray``                            a marker only ``_reconstruct`` accepts
``numpy.dtype``                              a plain numeric dtype (no object, no fields)
``numpy.core.numeric._frombuffer`` (and      the protocol-5 form ``_frombuffer(buf,
``numpy._core.numeric._frombuffer``)         dtype, shape, order)``
``_codecs.encode``                           ``str.encode("latin-1")`` only: how Python 3
                                             writes ``bytes`` at protocols 0-2
``builtins``/``__builtin__`` ``bytes``,      the same constructors, but refusing the
``bytearray``, ``set``, ``frozenset``        integer-size forms (``bytes(10**12)``)
==========================================  ===========================================

Anything else raises :class:`tinynet.DataError` naming the file and the refused global;
nothing is ever imported. Before the unpickler runs, :mod:`tinynet.data.pickle_scan`
dry-runs the opcodes and refuses nesting deeper than the ``pickle_depth`` limit (a deep
tuple hashed as a dict key or set member would overflow the C stack) and more container
elements than ``pickle_items`` (:mod:`tinynet.data.limits`); the arrays and byte strings
the admitted callables build may not exceed twice the pickle's size. The NumPy names are *not* NumPy's own functions: every
argument and ``__setstate__`` tuple is checked here and the array is built with
``numpy.frombuffer`` from validated bytes, so a crafted or bit-flipped pickle never
reaches NumPy's C-level ``__setstate__`` (object dtypes, inconsistent flags, lengths
that do not match the shape). The callables handed to the unpickler are bound methods
of one unpickler instance, so a ``BUILD`` opcode aimed at them cannot modify anything
that outlives the load.

How the official ``cifar-10-python.tar.gz`` batches are written: Python 2 ``cPickle``
at protocol 2, a dict with ``str`` (= bytes) keys ``data`` (``numpy.core.multiarray.
_reconstruct`` + ``BUILD`` with the raw uint8 buffer as a Python 2 ``str``), ``labels``
(a list of ints), ``batch_label`` and ``filenames``. Python 3 reads them with
``encoding="bytes"``, which is what :func:`loads` uses. A Python 3 re-pickle at protocol
2 spells ``bytes`` as ``_codecs.encode(str, "latin1")`` and ``numpy._core``; at
protocols 3-4 as ``BINBYTES``; at 5 through ``_frombuffer``. All of these load.
"""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np

from ..errors import DataError
from . import limits, pickle_scan

# dtype codes a data pickle may hold: bool, signed/unsigned ints, floats. Never "O".
_DTYPE_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8",
                "?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d"}
_ENDIAN = {"<", ">", "|", "="}
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}
MAX_ARRAY_BYTES = 1 << 31  # a CIFAR batch is 30 MB; refuse arrays that claim 2 GiB
# Arrays and byte strings the admitted callables build may add up to at most this many
# times the pickle's own size (plus SLACK): in a real pickle every array's bytes are in
# the file once, and a latin-1 str decodes to at most as many bytes as it took. What is
# refused is one buffer turned into many arrays through the memo.
BUILT_PER_PICKLE_BYTE = 2
BUILT_SLACK = 1 << 20


class _Refused(Exception):
    """Raised inside the unpickler; :func:`loads` turns it into a DataError with the file."""


def _text(value, what: str) -> str:
    """A str from a str or (Python 2 pickle, ``encoding="bytes"``) ASCII bytes."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(f"{what} {value[:40]!r} is not ASCII") from None
    if isinstance(value, str):
        return value
    raise _Refused(f"{what} must be a string, got {type(value).__name__}")


class _DType:
    """Placeholder for ``numpy.dtype(code, align, copy)`` until its ``BUILD`` state arrives."""
    __slots__ = ("code", "endian")

    def __init__(self, code: str) -> None:
        self.code, self.endian = code, "="

    def __setstate__(self, state) -> None:
        # NumPy writes (version, endian, subarray, names, fields, elsize, alignment, flags);
        # a plain numeric dtype has version 3 (4 with metadata), None/None/None, -1, -1, 0.
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise _Refused(f"dtype state must be an 8-tuple, got {_short(state)}")
        version, endian, subarray, names, fields, elsize, alignment, flags = state[:8]
        endian = _text(endian, "dtype byte order")
        if version not in (3, 4) or endian not in _ENDIAN:
            raise _Refused(f"dtype state {_short(state)}: unknown version or byte order")
        if subarray is not None or names is not None or fields is not None:
            raise _Refused("structured or sub-array dtypes are not accepted, only plain "
                           "numeric ones")
        if elsize != -1 or alignment != -1 or flags != 0 or \
                (len(state) == 9 and state[8] is not None):
            raise _Refused(f"dtype state {_short(state)}: only plain numeric dtypes are "
                           f"accepted")
        self.endian = endian

    def numpy(self) -> np.dtype:
        dtype = np.dtype(self.code)
        if self.endian in "<>":
            dtype = dtype.newbyteorder(self.endian)
        return dtype


class _Array:
    """Placeholder for ``_reconstruct(ndarray, (0,), b"b")``; ``BUILD`` fills ``array``."""
    __slots__ = ("array", "spend")

    def __init__(self, array=None, spend=None) -> None:
        self.array, self.spend = array, spend

    def __setstate__(self, state) -> None:
        # ndarray.__reduce__ writes (version=1, shape, dtype, is_fortran, raw bytes);
        # NumPy also accepts the 4-tuple without the version.
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"array state must be a 5-tuple, got {_short(state)}")
        if self.array is not None:
            raise _Refused("array state given twice")
        if len(state) == 5:
            if state[0] != 1:
                raise _Refused(f"array state version {_short(state[0])}, expected 1")
            state = state[1:]
        shape, dtype, fortran, raw = state
        # is_fortran is a bool (0/1 in protocol-0/1 pickles of old NumPy versions)
        self.array = _build_array(raw, dtype, shape, "F" if fortran else "C",
                                  fortran_ok=type(fortran) in (bool, int) and fortran in (0, 1),
                                  spend=self.spend)


def _build_array(raw, dtype, shape, order: str, fortran_ok: bool = True,
                 spend=None) -> np.ndarray:
    if not fortran_ok:
        raise _Refused("array fortran flag must be True or False")
    if not isinstance(dtype, _DType):
        raise _Refused(f"array dtype must come from numpy.dtype, got {_short(dtype)}")
    if not isinstance(shape, tuple) or len(shape) > 32 or \
            not all(type(d) is int and d >= 0 for d in shape):
        raise _Refused(f"array shape must be a tuple of non-negative ints, got {_short(shape)}")
    if isinstance(raw, str):  # a Python 2 str read with encoding="latin1"
        try:
            raw = raw.encode("latin-1")
        except UnicodeEncodeError:
            raise _Refused("array data is a str with characters above U+00FF") from None
    if isinstance(raw, bytearray):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise _Refused(f"array data must be bytes, got {type(raw).__name__}")
    dt = dtype.numpy()
    count = 1
    for d in shape:
        count *= d
    if count * dt.itemsize > MAX_ARRAY_BYTES:
        raise _Refused(f"array of shape {shape} would need {count * dt.itemsize} bytes")
    if len(raw) != count * dt.itemsize:
        raise _Refused(f"array of shape {shape} and dtype {dt} needs "
                       f"{count * dt.itemsize} bytes, the pickle holds {len(raw)}")
    if spend is not None:
        spend(len(raw))
    return np.frombuffer(raw, dtype=dt, count=count).reshape(shape, order=order).copy()


def _short(value, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - repr of untrusted nesting may recurse too deep
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only NumPy arrays in containers.

    Use :func:`loads`; it converts the placeholders into real arrays and every failure
    into a :class:`tinynet.DataError` naming the file.
    """

    def __init__(self, file, name: str = "<bytes>", max_built: int | None = None) -> None:
        super().__init__(file, encoding="bytes")
        self.name = name
        self.max_built = max_built
        self.built = 0
        self._ndarray = _NDArrayMarker()
        self._allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): self._ndarray,
            ("numpy", "dtype"): self._dtype,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("_codecs", "encode"): self._codecs_encode,
        }
        for module in ("builtins", "__builtin__"):
            self._allowed[(module, "bytes")] = self._bytes
            self._allowed[(module, "bytearray")] = self._bytearray
            self._allowed[(module, "set")] = self._set
            self._allowed[(module, "frozenset")] = self._frozenset

    def find_class(self, module: str, name: str):
        key = (module, name)
        if key not in self._allowed:
            raise _Refused(f"refused global {module}.{name}: only NumPy arrays, builtin "
                           f"containers, bytes and str may appear in a data pickle")
        return self._allowed[key]

    def persistent_load(self, pid):
        raise _Refused("refused persistent id: data pickles have none")

    def _spend(self, nbytes: int) -> None:
        """Count bytes an admitted callable is about to allocate; refuse past the budget."""
        self.built += nbytes
        if self.max_built is not None and self.built > self.max_built:
            raise _Refused(f"its arrays and byte strings would take more than "
                           f"{self.max_built:,} bytes, {BUILT_PER_PICKLE_BYTE} times the "
                           f"pickle's size: one buffer is used for many objects")

    # --- the admitted callables ------------------------------------------------------

    def _reconstruct(self, cls=None, shape=None, typecode=None, *rest):
        if cls is not self._ndarray or rest:
            raise _Refused(f"_reconstruct called with {_short((cls, shape, typecode, *rest))}; "
                           f"only _reconstruct(numpy.ndarray, (0,), b'b') is accepted")
        return _Array(spend=self._spend)

    def _dtype(self, code=None, align=False, copy=False, *rest):
        code = _text(code, "dtype code")
        if code not in _DTYPE_CODES or rest or not isinstance(align, (bool, int)) \
                or not isinstance(copy, (bool, int)):
            raise _Refused(f"refused dtype {code!r}: only plain numeric dtypes are accepted")
        return _DType(code)

    def _frombuffer(self, buf=None, dtype=None, shape=None, order="C", *rest):
        if rest or order not in ("C", "F"):
            raise _Refused(f"_frombuffer called with order {_short(order)}")
        return _Array(_build_array(buf, dtype, shape, order, spend=self._spend))

    def _codecs_encode(self, obj=None, encoding="utf-8", errors="strict", *rest):
        if not isinstance(obj, str) or not isinstance(encoding, str) \
                or encoding.lower() not in _LATIN1 or errors != "strict" or rest:
            raise _Refused(f"_codecs.encode{_short((obj, encoding, errors))}: only "
                           f"encode(str, 'latin1') is accepted")
        self._spend(len(obj))
        try:
            return obj.encode("latin-1")
        except UnicodeEncodeError:
            raise _Refused("_codecs.encode: str has characters above U+00FF") from None

    def _bytes(self, *args):
        if not args:
            return b""
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            if isinstance(args[0], bytearray):  # bytes(bytes) is the same object, no copy
                self._spend(len(args[0]))
            return bytes(args[0])
        if len(args) == 2 and isinstance(args[0], str):
            return self._codecs_encode(args[0], args[1])
        raise _Refused(f"bytes{_short(args)}: only bytes(), bytes(bytes) and "
                       f"bytes(str, 'latin1') are accepted")

    def _bytearray(self, *args):
        data = self._bytes(*args)
        self._spend(len(data))
        return bytearray(data)

    def _set(self, items=()):
        return set(self._items(items, "set"))

    def _frozenset(self, items=()):
        return frozenset(self._items(items, "frozenset"))

    @staticmethod
    def _items(items, what: str):
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise _Refused(f"{what}() of a {type(items).__name__}: only lists and tuples")
        return items


class _NDArrayMarker:
    """Stands for ``numpy.ndarray`` as ``_reconstruct``'s first argument; nothing else."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"


def _finish(obj, name: str, max_depth: int):
    """Replace the array placeholders in the unpickled containers by the arrays."""
    memo: dict[int, object] = {}

    def convert(value, depth: int):
        if depth > max_depth:
            raise _Refused(f"containers nested more than "
                           f"{limits.over('pickle_depth', max_depth)}")
        if isinstance(value, _Array):
            if value.array is None:
                raise _Refused("an array was created but its data never given (no BUILD)")
            return value.array
        if isinstance(value, _DType):
            return value.numpy()
        if isinstance(value, _NDArrayMarker):
            raise _Refused("numpy.ndarray used outside _reconstruct")
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            key = id(value)
            if key in memo:  # shared references: convert once (no exponential walks)
                return memo[key]
            if isinstance(value, dict):
                out = {}
                memo[key] = out
                for k, v in value.items():
                    out[convert(k, depth + 1)] = convert(v, depth + 1)
            elif isinstance(value, list):
                out = []
                memo[key] = out
                out.extend(convert(v, depth + 1) for v in value)
            else:
                out = type(value)(convert(v, depth + 1) for v in value)
                memo[key] = out
            return out
        return value

    return convert(obj, 0)


def loads(data: bytes, name: str = "<bytes>", max_depth: int | None = None,
          max_items: int | None = None):
    """Unpickle ``data`` (bytes of a file called ``name``) with :class:`RestrictedUnpickler`.

    Returns builtin containers holding NumPy arrays, bytes, str and numbers. Raises
    :class:`tinynet.DataError` naming ``name`` for a refused global, a malformed array,
    containers nested deeper than ``max_depth`` or holding more than ``max_items``
    elements (the ``pickle_depth`` and ``pickle_items`` limits of
    :mod:`tinynet.data.limits`, checked by a dry run of the opcodes before anything is
    built), and any truncated or corrupt pickle.
    """
    max_depth = limits.get("pickle_depth", max_depth)
    max_items = limits.get("pickle_items", max_items)
    try:
        # a protocol-0 string with a bad escape makes the stdlib warn: it is just bad data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                pickle_scan.scan(data, max_depth, max_items)
            except pickle_scan.Corrupt as e:
                text = str(e) if len(str(e)) <= 160 else str(e)[:160] + "..."
                raise DataError(f"{name}: corrupt pickle ({text})") from None
            except pickle_scan.Refused as e:
                raise _Refused(str(e)) from None
            budget = BUILT_PER_PICKLE_BYTE * len(data) + BUILT_SLACK
            obj = RestrictedUnpickler(io.BytesIO(data), name, max_built=budget).load()
        return _finish(obj, name, max_depth)
    except _Refused as e:
        raise DataError(f"{name}: unsafe or malformed pickle: {e}") from None
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{name}: corrupt pickle: nested too deep") from None
    except MemoryError:
        raise DataError(f"{name}: corrupt pickle: asks for more memory than available") \
            from None
    except Exception as e:  # noqa: BLE001 - any failure of the pickle machine on bad bytes
        # (UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
        # UnicodeDecodeError, AttributeError from BUILD on a builtin, ...) means the file
        # is corrupt; only our own callables could have run, so nothing else happened.
        raise DataError(f"{name}: corrupt or truncated pickle "
                        f"({type(e).__name__}: {_short(str(e), 160)})") from None


__all__ = ["RestrictedUnpickler", "loads"]
