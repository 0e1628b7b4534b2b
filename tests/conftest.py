"""Shared fixtures: ``xp`` (every backend), ``shared_data`` and ``torch``.

Fixture names are a contract other test files rely on; keep them stable.

* ``xp``: parametrised over ``"numpy"``, ``"strict"`` (the CPU stand-in for CuPy,
  :mod:`tinynet.testing.strictxp`) and ``"cupy"`` (skipped unless a GPU is usable). The
  value is a :class:`Backend` with ``.xp``, ``.name``, ``.asarray(np_array)``,
  ``.asnumpy(array)`` and ``.to(model)``.
* ``shared_data``: the folder holding ``mnist/`` and ``cifar10-jpeg/``, ``$TINYNET_DATA``
  only (``make test`` exports it); the test is skipped when it is unset or absent.
* ``torch``: the ``torch`` module, or a skip when it is not installed.
* ``kernels``: parametrised over ``"reference"`` and ``"fast"``; the test body runs with
  that kernel set in force (``tinynet.use_kernels``), and the fixture's value is its name.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from tinynet import backend
from tinynet.testing import strictxp


class Backend:
    """One array backend as the tests see it.

    Attributes:
        name: ``"numpy"``, ``"strict"`` or ``"cupy"``.
        xp: the array module (``numpy``, ``tinynet.testing.strictxp`` or ``cupy``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "numpy":
            self.xp = np
        elif name == "strict":
            self.xp = strictxp
        else:
            import cupy  # type: ignore[import-not-found]
            self.xp = cupy

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Host NumPy data -> an array of this backend (always a copy)."""
        if self.name == "numpy":
            return np.array(a, dtype=dtype, copy=True)
        return self.xp.asarray(np.asarray(a, dtype=dtype))

    def asnumpy(self, a: Any) -> np.ndarray:
        """An array of this backend (or NumPy) -> a host NumPy array."""
        if self.name == "numpy":
            if not isinstance(a, np.ndarray) and not np.isscalar(a):
                raise TypeError(f"expected a numpy.ndarray from the numpy backend, "
                                     f"got {type(a).__name__}")
            return np.asarray(a)
        if isinstance(a, np.ndarray):
            raise TypeError(f"the {self.name} backend returned a host numpy.ndarray")
        return self.xp.asnumpy(a)

    def to(self, model):
        """Move ``model``'s parameters and buffers to this backend; returns the model."""
        if self.name == "numpy":
            return model.to("cpu")
        if self.name == "strict":
            return model._apply(strictxp.asarray)
        return model.to("cuda")

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


def _cupy_skip_reason() -> str | None:
    if backend.cuda_available():
        return None
    try:
        import cupy  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "CuPy is not installed (the 'strict' stand-in covers the xp path on CPU)"
    return "CuPy is installed but sees no CUDA device"


_CUPY_SKIP = _cupy_skip_reason()


@pytest.fixture(params=[
    "numpy",
    "strict",
    pytest.param("cupy", marks=pytest.mark.skipif(_CUPY_SKIP is not None,
                                                  reason=_CUPY_SKIP or "")),
])
def xp(request) -> Backend:
    """The array backend to run a test on: numpy, the strict stand-in, or cupy."""
    return Backend(request.param)


@pytest.fixture(params=[
    "strict",
    pytest.param("cupy", marks=pytest.mark.skipif(_CUPY_SKIP is not None,
                                                  reason=_CUPY_SKIP or "")),
])
def device_xp(request) -> Backend:
    """The array backends other than NumPy (the strict stand-in, CuPy when present), for
    tests that compare a run there with the same run on NumPy."""
    return Backend(request.param)


# Read once at import: tests that isolate themselves delete TINYNET_DATA with monkeypatch,
# possibly before this fixture runs, and must still find the shared files. Only the
# variable is read: no fallback to a folder outside the checkout.
_SHARED_DATA = os.environ.get("TINYNET_DATA") or None


@pytest.fixture
def shared_data() -> str:
    """The shared data folder: ``$TINYNET_DATA`` as it was at start-up."""
    if _SHARED_DATA is None:
        pytest.skip("TINYNET_DATA is not set: set it to the folder holding mnist/ and "
                    "cifar10-jpeg/ (make test sets it)")
    folder = os.path.abspath(_SHARED_DATA)
    if not os.path.isdir(folder):
        pytest.skip(f"TINYNET_DATA={_SHARED_DATA!r}: folder {folder} not found")
    return folder


@pytest.fixture
def tiny_data(monkeypatch) -> list:
    """A registered data set ``tiny`` (48 train, 16 test 28x28 images whose label is
    read off the pixels) the train command can load; the list records every read."""
    from tinynet.data import datasets
    reads = []

    def reader(folder, split):
        reads.append(split)
        rng = np.random.default_rng(0 if split == "train" else 1)
        images = rng.integers(0, 256, (48 if split == "train" else 16, 28, 28), np.uint8)
        return images, (images[:, 14, :10].argmax(axis=1)).astype(np.int64)

    monkeypatch.setitem(datasets.DATASETS, "tiny", datasets.DatasetInfo(
        name="tiny", files={"train": [], "test": []}, md5={}, mirrors=[], reader=reader))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return reads


@pytest.fixture(params=["reference", "fast"])
def kernels(request):
    """Run the test on the reference kernels, then on the fast ones."""
    import tinynet
    with tinynet.use_kernels(request.param):
        yield request.param


def recording_kernels(monkeypatch) -> list:
    """Every Tanh forward appends the kernel set in force to the returned list."""
    import tinynet
    from tinynet.layers import activation
    seen = []
    original = activation.Tanh.forward

    def forward(self, x):
        seen.append(tinynet.get_kernels())
        return original(self, x)

    monkeypatch.setattr(activation.Tanh, "forward", forward)
    return seen


@pytest.fixture
def torch():
    """The torch module; the test is skipped when torch is not installed."""
    return pytest.importorskip("torch", reason="torch is needed to compare with PyTorch")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per skip reason (with its count) instead of one line per skipped test."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 \
            else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminalreporter.write_sep("-", "skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"{count:5d} skipped: {reason}")
