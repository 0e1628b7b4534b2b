"""The one place that knows about array modules: NumPy on the CPU, CuPy on the GPU.

Every kernel starts with ``xp = get_array_module(x)`` and uses ``xp.*`` only, so the
same code runs on NumPy arrays, CuPy arrays and the test suite's strict stand-in
(``tinynet.testing.strictxp``), whose arrays refuse implicit host conversion the way
CuPy's do. This is the only module that imports ``cupy``.
"""

from __future__ import annotations

import types
from typing import Any

import numpy

from .errors import DeviceError

try:  # CuPy is optional: `pip install cupy-cuda12x` (or -cuda13x) on a GPU machine.
    import cupy as _cupy  # type: ignore[import-not-found]
except Exception:  # ImportError, or a CUDA library missing at import time.
    _cupy = None


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def cupy_module() -> types.ModuleType | None:
    """The ``cupy`` module when it imported, else None (for code that builds GPU data)."""
    return _cupy


def get_array_module(*arrays: Any) -> types.ModuleType:
    """Return the array module (``numpy``, ``cupy`` or a stand-in) that owns ``arrays``.

    Arrays may carry their own module in a ``_tinynet_xp`` attribute (the strict
    CPU stand-in does); CuPy arrays are recognised by type; anything else is NumPy.
    """
    for a in arrays:
        xp = getattr(a, "_tinynet_xp", None)
        if xp is not None:
            return xp
        if _cupy is not None and isinstance(a, _cupy.ndarray):
            return _cupy
    return numpy


def device_of(array: Any) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise (the stand-in counts as cpu)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return "cuda"
    return "cpu"


def _check_device(device: str) -> str:
    device = str(device)
    if device.startswith("cuda"):
        if _cupy is None:
            raise DeviceError(
                "device 'cuda' needs CuPy, which is not installed: "
                "pip install cupy-cuda12x (or cupy-cuda13x)")
        if not cuda_available():
            raise DeviceError("device 'cuda' asked for, but CuPy sees no CUDA device")
        return "cuda"
    if device != "cpu":
        hint = f" (for a dtype: to(dtype={device!r}))" if device.startswith("float") else ""
        raise DeviceError(f"unknown device {device!r}: expected 'cpu' or 'cuda'{hint}")
    return "cpu"


def to_device(array: Any, device: str) -> Any:
    """Copy ``array`` to ``device`` ("cpu" or "cuda"); return it unchanged if already there."""
    device = _check_device(device)
    if device == "cuda":
        return _cupy.asarray(array)
    return to_numpy(array)


def to_numpy(array: Any) -> numpy.ndarray:
    """A host ``numpy.ndarray`` of ``array`` (explicit copy from the GPU or the stand-in)."""
    if isinstance(array, numpy.ndarray):
        return array
    get = getattr(array, "get", None)
    if get is not None:  # CuPy and the strict stand-in both spell the host copy .get()
        return get()
    if hasattr(array, "detach"):  # a torch tensor
        return array.detach().cpu().numpy()
    return numpy.asarray(array)


def synchronize(array: Any = None) -> None:
    """Wait for queued GPU work to finish (a no-op on the CPU). Time GPU code around this."""
    if _cupy is not None and (array is None or isinstance(array, _cupy.ndarray)):
        if cuda_available():
            _cupy.cuda.get_current_stream().synchronize()


def name() -> str:
    """Which array modules are usable here, e.g. ``"numpy 2.4.6 (cupy: not installed)"``."""
    if _cupy is None:
        gpu = "cupy: not installed"
    elif cuda_available():
        gpu = f"cupy {_cupy.__version__}: {_cupy.cuda.runtime.getDeviceCount()} GPU(s)"
    else:
        gpu = f"cupy {_cupy.__version__}: no GPU"
    return f"numpy {numpy.__version__} ({gpu})"
