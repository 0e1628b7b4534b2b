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
nothing is ever imported. The NumPy names are *not* NumPy's own functions: every
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
import pickletools
import warnings

import numpy as np

from ..errors import DataError

# dtype codes a data pickle may hold: bool, signed/unsigned ints, floats. Never "O".
_DTYPE_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8",
                "?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d"}
_ENDIAN = {"<", ">", "|", "="}
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}
MAX_ARRAY_BYTES = 1 << 31  # a CIFAR batch is 30 MB; refuse arrays that claim 2 GiB


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
    __slots__ = ("array",)

    def __init__(self, array=None) -> None:
        self.array = array

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
                                  fortran_ok=type(fortran) in (bool, int) and fortran in (0, 1))


def _build_array(raw, dtype, shape, order: str, fortran_ok: bool = True) -> np.ndarray:
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

    def __init__(self, file, name: str = "<bytes>") -> None:
        super().__init__(file, encoding="bytes")
        self.name = name
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

    # --- the admitted callables ------------------------------------------------------

    def _reconstruct(self, cls=None, shape=None, typecode=None, *rest):
        if cls is not self._ndarray or rest:
            raise _Refused(f"_reconstruct called with {_short((cls, shape, typecode, *rest))}; "
                           f"only _reconstruct(numpy.ndarray, (0,), b'b') is accepted")
        return _Array()

    def _dtype(self, code=None, align=False, copy=False, *rest):
        code = _text(code, "dtype code")
        if code not in _DTYPE_CODES or rest or not isinstance(align, (bool, int)) \
                or not isinstance(copy, (bool, int)):
            raise _Refused(f"refused dtype {code!r}: only plain numeric dtypes are accepted")
        return _DType(code)

    def _frombuffer(self, buf=None, dtype=None, shape=None, order="C", *rest):
        if rest or order not in ("C", "F"):
            raise _Refused(f"_frombuffer called with order {_short(order)}")
        return _Array(_build_array(buf, dtype, shape, order))

    def _codecs_encode(self, obj=None, encoding="utf-8", errors="strict", *rest):
        if not isinstance(obj, str) or not isinstance(encoding, str) \
                or encoding.lower() not in _LATIN1 or errors != "strict" or rest:
            raise _Refused(f"_codecs.encode{_short((obj, encoding, errors))}: only "
                           f"encode(str, 'latin1') is accepted")
        try:
            return obj.encode("latin-1")
        except UnicodeEncodeError:
            raise _Refused("_codecs.encode: str has characters above U+00FF") from None

    def _bytes(self, *args):
        if not args:
            return b""
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return bytes(args[0])
        if len(args) == 2 and isinstance(args[0], str):
            return self._codecs_encode(args[0], args[1])
        raise _Refused(f"bytes{_short(args)}: only bytes(), bytes(bytes) and "
                       f"bytes(str, 'latin1') are accepted")

    def _bytearray(self, *args):
        return bytearray(self._bytes(*args))

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


def _finish(obj, name: str):
    """Replace the array placeholders in the unpickled containers by the arrays."""
    memo: dict[int, object] = {}

    def convert(value, depth: int):
        if depth > 64:
            raise _Refused("containers nested more than 64 deep")
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


def _prescan(data: bytes) -> None:
    """Walk the opcodes without running them; refuse memo indices and frames that lie.

    CPython's C unpickler sizes its memo table by the largest index a ``PUT`` names, so
    ``LONG_BINPUT 4294967295`` alone asks for 32 GiB. Real pickles number their memo
    entries 0, 1, 2, ...: an index beyond the number of opcodes seen is refused here.
    """
    limit = len(data)
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and \
                    (not isinstance(arg, int) or not 0 <= arg <= count):
                raise _Refused(f"memo index {_short(arg)} at opcode {count} (a pickle "
                               f"numbers its memo from 0)")
            if op.name == "FRAME" and arg > limit:
                raise _Refused(f"frame of {arg} bytes in a {limit}-byte pickle")
            if op.name == "STOP":
                return
    except _Refused:
        raise
    except Exception as e:  # noqa: BLE001 - genops on corrupt bytes: ValueError and kin
        raise DataError(f"corrupt pickle ({type(e).__name__}: {_short(str(e), 160)})") \
            from None


def loads(data: bytes, name: str = "<bytes>"):
    """Unpickle ``data`` (bytes of a file called ``name``) with :class:`RestrictedUnpickler`.

    Returns builtin containers holding NumPy arrays, bytes, str and numbers. Raises
    :class:`tinynet.DataError` naming ``name`` for a refused global, a malformed array
    and any truncated or corrupt pickle.
    """
    try:
        # a protocol-0 string with a bad escape makes the stdlib warn: it is just bad data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                _prescan(data)
            except DataError as e:
                raise DataError(f"{name}: {e}") from None
            obj = RestrictedUnpickler(io.BytesIO(data), name).load()
        return _finish(obj, name)
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
