"""CPU threads for the fast kernels: split a kernel's samples over a few threads.

Why. NumPy runs every element-wise pass (the im2col copy, col2im's additions, pooling,
BatchNorm) on one core, and a convolutional network's step is mostly such passes plus
products on small blocks. Samples are independent, so :func:`parallel_for` hands
contiguous ranges of the batch to ``get_num_threads()`` threads; NumPy releases the GIL
inside its ufuncs, copies and BLAS calls, so the ranges run at the same time.

When. Only inside a *threaded region*: the forward or the backward of a model
(``Sequential``) that holds a layer whose fast kernel splits (``Layer.splits``: Conv2d,
MaxPool2d, BatchNorm2d), with the fast kernels in force and more than one thread. For
the whole region NumPy's BLAS is held at one thread (threadpoolctl's scoped ``limit``)
and given back its own count when the region ends: OpenBLAS's idle threads spin for
about 0.1 s after each call and would take the core a range needs (measured: SimpleCNN's
step 2.1x PyTorch with the BLAS released between split calls, against 1.7x without
threads at all). An MLP never enters a region: its products keep the BLAS's own threads.

How, with well-kept libraries only: the threads are a
:class:`concurrent.futures.ThreadPoolExecutor` made on first use; the BLAS limit is
threadpoolctl's; one region at a time (a lock): a second caller runs serially, as does
everything when threadpoolctl is not installed (``pip install threadpoolctl``; ``make``
installs it) or for non-NumPy arrays (CuPy is parallel already). No tinynet call leaves
the BLAS's thread count changed.

Results do not depend on timing: the ranges depend only on the sizes and the thread
count, and every range writes its own part of the output.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy

from ...backend import get_array_module

__all__ = ["ELEMENT_GRAIN", "MATMUL_GRAIN", "column_sums", "get_num_threads", "info", "matmul",
           "parallel_for", "region", "set_num_threads", "sum_over_ranges"]

# A range gets at least this many elements of work: below it, handing it to a thread
# (about 30 us) costs more than it saves.
ELEMENT_GRAIN = 1 << 17
# A product is split only when each range gets at least this many multiply-adds.
MATMUL_GRAIN = 1 << 22

_lock = threading.Lock()
_local = threading.local()
_threads: int | None = None
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_blas: Any = None            # threadpoolctl's view of the loaded BLAS, made on first use
_why_serial = ""


def _default_threads() -> int:
    env = os.environ.get("TINYNET_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TINYNET_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries, or None without it."""
    global _blas, _why_serial
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _why_serial = "threadpoolctl is not installed (pip install threadpoolctl)"
            _blas = False
        else:
            _blas = ThreadpoolController().select(user_api="blas")
    return _blas or None


def get_num_threads() -> int:
    """The threads the fast CPU kernels split a batch over (1 when they cannot split)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads if _threads > 1 and _blas_controller() is not None else 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in the fast CPU kernels (1: none). Like ``torch.set_num_threads``,
    for the whole process; the default is the cores this process may use, or
    ``TINYNET_NUM_THREADS``. NumPy's BLAS is not touched outside a split call."""
    global _threads, _executor
    if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    if getattr(_local, "depth", 0):
        raise RuntimeError("set_num_threads called inside a model's forward or backward; "
                           "call it between steps")
    with _lock:
        _threads = int(n)
        if _executor is not None:
            _executor.shutdown(wait=True)
            _executor = None


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` as ``parts`` contiguous ranges whose sizes differ by at most one."""
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def _run_range(fn: Callable[[int, int], Any], start: int, stop: int) -> None:
    _local.inside = True
    try:
        fn(start, stop)
    finally:
        _local.inside = False


def _wait_all(futures) -> None:
    interrupted = None
    while True:
        try:
            concurrent.futures.wait(futures)
            break
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _wants_threads(model) -> bool:
    from ...kernels import get_kernels
    if not (get_kernels() == "fast" and get_num_threads() > 1 and model.splits):
        return False
    first = next(model.parameters(), None)       # a GPU model is parallel already
    return first is None or get_array_module(first.data) is numpy


@contextlib.contextmanager
def region(model):
    """The threaded region of one forward or backward of ``model`` (see the module
    docstring); a no-op when ``model`` has no splitting layer, inside another region,
    while another thread holds one, or with one thread."""
    if getattr(_local, "depth", 0) or not _wants_threads(model) \
            or not _lock.acquire(blocking=False):
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            yield
        finally:
            _local.depth -= 1
        return
    try:
        with _blas_controller().limit(limits=1):
            _local.active = True
            _local.depth = 1
            try:
                yield
            finally:
                _local.active = False
                _local.depth = 0
    finally:
        _lock.release()


def parallel_for(xp, n: int, fn: Callable[[int, int], Any], grain: int = 1) -> None:
    """Run ``fn(start, stop)`` over contiguous ranges covering ``[0, n)``, one per thread.

    Each range has at least ``grain`` items; ``fn`` writes only its own range's part of
    any shared output. Outside a threaded region (or for non-NumPy arrays, or when the
    ranges would be too small) ``fn(0, n)`` runs once in the caller.
    """
    global _executor
    if n <= 0:
        return
    parts = min(get_num_threads(), n // max(1, grain))
    if xp is not numpy or parts <= 1 or not getattr(_local, "active", False) \
            or getattr(_local, "inside", False):
        fn(0, n)
        return
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=_threads - 1, thread_name_prefix="tinynet")
    ranges = _split(n, parts)
    futures = [_executor.submit(_run_range, fn, s, e) for s, e in ranges[1:]]
    try:
        _run_range(fn, *ranges[0])
    finally:          # every range finishes before the outputs are handed back,
        _wait_all(futures)                      # even through Ctrl-C
    for f in futures:
        f.result()    # re-raise a range's exception here


def in_region() -> bool:
    """True inside a threaded region, in the thread that entered it."""
    return bool(getattr(_local, "active", False)) and not getattr(_local, "inside", False)


def column_sums(a):
    """``a.sum(axis=0)`` of a 2-D ``a (M, P)`` as ``ones(M) @ a`` (a matrix-vector product,
    measured ~10x faster than NumPy's axis-0 reduction of a tall matrix), per range of
    rows inside a region, the partial sums added in range order."""
    xp = get_array_module(a)
    m, p = a.shape
    if m == 0:
        return xp.zeros((p,), dtype=a.dtype)
    return sum_over_ranges(xp, m, lambda s, e: xp.ones((e - s,), dtype=a.dtype) @ a[s:e],
                           grain=max(1, ELEMENT_GRAIN // max(1, p)))


def sum_over_ranges(xp, n: int, fn: Callable[[int, int], Any], grain: int):
    """``fn(start, stop)`` per range of ``[0, n)`` (n > 0), the results (an array, or a
    tuple of arrays and Nones) added in range order, so the sum depends only on the sizes
    and the thread count."""
    partials: dict[int, Any] = {}

    def run(start: int, stop: int) -> None:
        partials[start] = fn(start, stop)

    parallel_for(xp, n, run, grain)
    parts = [partials[s] for s in sorted(partials)]
    total = parts[0]
    for part in parts[1:]:
        total = _add(total, part)
    return total


def _add(a, b):
    if isinstance(a, tuple):
        return tuple(_add(u, v) for u, v in zip(a, b, strict=True))
    return None if a is None else a + b


def matmul(a, b):
    """``a @ b`` for 2-D ``a (M, K)`` and ``b (K, P)``, split over the threads in a region.

    Outside a region (an MLP, a GPU array) this is one ``a @ b`` with the BLAS's own
    threads. Inside one, where the BLAS is held at one thread: the rows of a are split
    when M >= P or M >= 256, else the columns of b; when K is at least 4 times both M and
    P (a weight gradient summed over the batch) the K axis is split and the partial
    products added in range order. Small products (under ``MATMUL_GRAIN`` multiply-adds
    per range) run as one call.
    """
    xp = get_array_module(a, b)
    m, k = a.shape
    p = b.shape[1]
    if xp is not numpy or not in_region() or 0 in (m, k, p):
        return a @ b
    if k >= 4 * max(m, p):
        return sum_over_ranges(xp, k, lambda s, e: a[:, s:e] @ b[s:e],
                               grain=max(1, MATMUL_GRAIN // max(1, m * p)))
    out = xp.empty((m, p), dtype=numpy.result_type(a.dtype, b.dtype))
    grain = max(1, MATMUL_GRAIN // max(1, k * min(m, p)))
    if m >= p or m >= 256:
        parallel_for(xp, m, lambda s, e: xp.matmul(a[s:e], b, out=out[s:e]), grain)
    else:
        parallel_for(xp, p, lambda s, e: xp.matmul(a, b[:, s:e], out=out[:, s:e]), grain)
    return out


def info() -> str:
    """One line: the thread count of the fast kernels and why it is 1 when it is."""
    n = get_num_threads()
    if n == 1 and _why_serial:
        return f"tinynet threads: 1 ({_why_serial})"
    return (f"tinynet threads: {n} (convolutional models' forward and backward; NumPy's "
            f"BLAS held at 1 thread only inside them)")
