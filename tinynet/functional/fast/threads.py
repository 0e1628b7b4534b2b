"""CPU threads for the fast kernels: split a kernel's samples over a few threads.

Why. NumPy runs every element-wise pass (ReLU, the im2col copy, col2im's additions,
pooling) on one core, and a convolution layer is mostly such passes plus products on
small blocks. Its samples are independent, so :func:`parallel_for` hands contiguous
ranges of the batch to ``get_num_threads()`` threads; NumPy releases the GIL inside its
ufuncs, copies and BLAS calls, so the ranges run at the same time.

How, with well-kept libraries only:

* the threads are a :class:`concurrent.futures.ThreadPoolExecutor`, made on first use;
* during a split call NumPy's BLAS is held at one thread with threadpoolctl's scoped
  ``limit`` (each range's product then runs in the thread that asked for it instead of
  OpenBLAS's own threads fighting ours), and given back its own count when the call
  returns: no tinynet call leaves the BLAS changed;
* one split call at a time (a lock): a second caller, or a call from inside a range,
  runs in its own thread, serially, as does everything when threadpoolctl is not
  installed (``pip install threadpoolctl``; ``make`` installs it) or for non-NumPy
  arrays (CuPy is parallel already).

Results do not depend on timing: the ranges depend only on the sizes and the thread
count, and every range writes its own part of the output.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy

__all__ = ["ELEMENT_GRAIN", "get_num_threads", "info", "parallel_for", "set_num_threads"]

# A range gets at least this many elements of work: below it, handing it to a thread
# (about 30 us) costs more than it saves.
ELEMENT_GRAIN = 1 << 17

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


def parallel_for(xp, n: int, fn: Callable[[int, int], Any], grain: int = 1) -> None:
    """Run ``fn(start, stop)`` over contiguous ranges covering ``[0, n)``, one per thread.

    Each range has at least ``grain`` items; ``fn`` writes only its own range's part of
    any shared output. Runs ``fn(0, n)`` once in the caller when it cannot split (see
    the module docstring).
    """
    global _executor
    if n <= 0:
        return
    if xp is not numpy or n < 2 * max(1, grain) or getattr(_local, "inside", False) \
            or not _lock.acquire(blocking=False):
        fn(0, n)
        return
    try:
        parts = min(get_num_threads(), n // max(1, grain))
        if parts <= 1:
            fn(0, n)
            return
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=_threads - 1, thread_name_prefix="tinynet")
        ranges = _split(n, parts)
        with _blas_controller().limit(limits=1):
            futures = [_executor.submit(_run_range, fn, s, e) for s, e in ranges[1:]]
            try:
                _run_range(fn, *ranges[0])
            finally:          # every range finishes before the outputs are handed back,
                _wait_all(futures)                      # even through Ctrl-C
            for f in futures:
                f.result()    # re-raise a range's exception here
    finally:
        _lock.release()


def info() -> str:
    """One line: the thread count of the fast kernels and why it is 1 when it is."""
    n = get_num_threads()
    if n == 1 and _why_serial:
        return f"tinynet threads: 1 ({_why_serial})"
    return f"tinynet threads: {n} (NumPy's BLAS held at 1 thread only inside split calls)"
