"""Intra-op parallelism on the CPU: tinynet's own threads, as ``torch.set_num_threads``.

Why. NumPy runs every element-wise pass (ReLU, pooling, the im2col copy, col2im's
additions) on one core, and its BLAS (OpenBLAS) threads only the matrix products, whose
idle threads then spin for about 0.1 s on the other cores, slowing the next one-core pass
(measured on a 2-core Xeon: a ReLU backward on 64x32x28x28 took 3.7 ms right after a
product with two BLAS threads, 2.3 ms with one). So tinynet splits a layer's work itself,
as PyTorch's ``at::parallel_for`` does: each of ``get_num_threads()`` threads takes one
contiguous range of the batch (or of the rows of a product), and since NumPy releases
the GIL inside its ufuncs, copies and BLAS calls, the ranges run at the same time. While
tinynet's threads are on, NumPy's BLAS is set to one thread, so each range's product runs
in the thread that asked for it and no BLAS thread spins. (Two ranges of one product run
as fast as one product on two BLAS threads: 4.1 vs 4.4 ms for (12544, 288) @ (288, 64).)

* ``set_num_threads(n)`` / ``get_num_threads()``: the default is the number of cores this
  process may use (``os.sched_getaffinity``), or ``TINYNET_NUM_THREADS`` when set.
  ``set_num_threads(1)`` turns the threads off and gives the BLAS back its thread count.
* The threads are on only where tinynet can set NumPy's BLAS to one thread (OpenBLAS,
  NumPy's own or a system one, and MKL); otherwise everything runs in the caller, as
  before. ``info()`` says which.
* Results do not depend on timing: the ranges depend only on the sizes and the thread
  count, and every range writes its own part of the output.
* Arrays that are not NumPy's (CuPy, the test suite's strict stand-in) always run as one
  range in the caller: the GPU is parallel already. That one range is the same code, so
  the CPU and GPU paths stay one.

With the default thread count the BLAS is set to one thread at the first parallel call,
not at import; ``set_num_threads(n > 1)`` does it at once.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from typing import Any, Callable

import numpy

__all__ = ["get_num_threads", "set_num_threads", "parallel_for", "matmul", "column_sums",
           "info"]

# A product is split only when it has at least this many multiply-adds per range: below
# it, handing work to a thread (about 20-40 us) costs more than it saves (measured on the
# BN MLP's small layers at batch 64: 1M multiply-adds per range was slower than one call).
MATMUL_GRAIN = 1 << 22
# The same for a pass over memory: at least this many elements per range.
ELEMENT_GRAIN = 1 << 17


# --------------------------------------------------------------------- the BLAS lever
class _Blas:
    """Get and set the thread count of the BLAS NumPy uses, through its C functions.

    NumPy's build configuration names the BLAS; the loaded library is found in
    ``/proc/self/maps`` (Linux) or next to NumPy (its wheels ship it in ``numpy.libs`` or
    ``numpy/.dylibs``). ``threadpoolctl`` does the same more generally; it is not a
    run-time dependency, and the tests check this against it.
    """

    # (file name fragment, [(setter, getter)]) per BLAS name in NumPy's build config.
    _KNOWN = {
        "scipy-openblas": ("scipy_openblas", [
            ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads")]),
        "openblas": ("openblas", [
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads")]),
        "mkl": ("mkl_rt", [("MKL_Set_Num_Threads", "MKL_Get_Max_Threads")]),
    }

    def __init__(self) -> None:
        self.name = "unknown"
        self.path: str | None = None
        self.why = ""
        self._set = self._get = None
        try:
            self._find()
        except Exception as exc:  # never let the lever break an import
            self._set = self._get = None
            self.why = f"could not reach NumPy's BLAS: {exc}"

    def _find(self) -> None:
        try:
            blas = numpy.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
        except Exception:
            blas = "unknown"
        self.name = str(blas)
        key = next((k for k in self._KNOWN if self.name.lower().startswith(k)), None)
        if key is None:
            self.why = f"NumPy's BLAS is {self.name!r}, whose threads tinynet cannot set"
            return
        fragment, symbols = self._KNOWN[key]
        for path in self._candidates(fragment):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for setter, getter in symbols:
                fset, fget = getattr(lib, setter, None), getattr(lib, getter, None)
                if fset is not None and fget is not None:
                    fset.argtypes, fset.restype = [ctypes.c_int], None
                    fget.argtypes, fget.restype = [], ctypes.c_int
                    self._set, self._get, self.path = fset, fget, path
                    return
        self.why = f"NumPy's BLAS ({self.name}) library was not found among the loaded ones"

    @staticmethod
    def _candidates(fragment: str) -> list[str]:
        """NumPy's own copy first (its wheels ship one; SciPy's wheels ship another, which
        must not be the one set), then the loaded libraries (a system NumPy's BLAS)."""
        found = []
        here = os.path.dirname(os.path.abspath(numpy.__file__))
        for folder in (here + ".libs", os.path.join(here, ".dylibs")):
            if os.path.isdir(folder):
                found += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                          if fragment in f]
        try:
            with open("/proc/self/maps") as f:
                for line in f:
                    path = line.rsplit(None, 1)[-1] if "/" in line else ""
                    if fragment in os.path.basename(path) and path not in found:
                        found.append(path)
        except OSError:
            pass
        return found

    @property
    def usable(self) -> bool:
        return self._set is not None

    def get(self) -> int:
        return int(self._get()) if self._get is not None else 0

    def set(self, n: int) -> None:
        if self._set is not None:
            self._set(int(n))


# --------------------------------------------------------------------- the thread pool
class _Pool:
    """``workers`` daemon threads that each run one ``fn(start, stop)`` per call of
    ``run``; the caller runs the first range itself and waits for the others. Blocking
    queues, no spinning, so an idle pool costs no CPU."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._tasks = [queue.SimpleQueue() for _ in range(workers)]
        self._threads = [threading.Thread(target=self._work, args=(q,), daemon=True,
                                          name=f"tinynet-{i + 1}")
                         for i, q in enumerate(self._tasks)]
        for t in self._threads:
            t.start()

    def _work(self, tasks: queue.SimpleQueue) -> None:
        _local.inside = True        # a nested parallel call runs serially in this thread
        while True:
            item = tasks.get()
            if item is None:
                return
            fn, start, stop, done = item
            try:
                fn(start, stop)
                done.put(None)
            except BaseException as exc:  # handed to the caller, raised there
                done.put(exc)
            del item, fn, done            # do not keep the task's arrays alive while idle

    def run(self, fn: Callable[[int, int], Any], ranges: list[tuple[int, int]]) -> None:
        # A queue per call: if the caller is interrupted (Ctrl-C) while it waits, the
        # late results land in this call's queue, never in a later call's.
        if len(ranges) > self.workers + 1:
            raise RuntimeError(f"{len(ranges)} ranges for {self.workers} worker(s) and the caller")
        done: queue.SimpleQueue = queue.SimpleQueue()
        for tasks, (start, stop) in zip(self._tasks, ranges[1:]):
            tasks.put((fn, start, stop, done))
        error = None
        _local.inside = True
        try:
            fn(*ranges[0])
        except BaseException as exc:
            error = exc
        finally:
            _local.inside = False
            pending = len(ranges) - 1
            while pending:             # always collect every range before returning, even
                try:                   # through Ctrl-C: the workers write into the outputs
                    result = done.get()
                except KeyboardInterrupt as exc:
                    error = exc
                    continue
                pending -= 1
                if error is None and result is not None:
                    error = result
        if error is not None:
            raise error

    def close(self) -> None:
        for tasks in self._tasks:
            tasks.put(None)


_local = threading.local()
_lock = threading.Lock()         # one parallel call at a time; others run serially
_blas: _Blas | None = None
_pool: _Pool | None = None
_blas_saved: int | None = None   # the BLAS's own thread count while tinynet holds it at 1


def _default_threads() -> int:
    env = os.environ.get("TINYNET_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"TINYNET_NUM_THREADS must be a positive integer, "
                             f"got {env!r}") from None
        if value < 1:
            raise ValueError(f"TINYNET_NUM_THREADS must be a positive integer, got {env!r}")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_threads: int | None = None      # as asked for; None until first asked or set


def _get_blas() -> _Blas:
    global _blas
    if _blas is None:
        _blas = _Blas()
    return _blas


def get_num_threads() -> int:
    """The number of threads tinynet's CPU kernels use (1 when they cannot be used)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads if _threads > 1 and _get_blas().usable else 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in tinynet's CPU kernels (1: none; NumPy's BLAS gets back its
    own thread count). Like ``torch.set_num_threads``, for the whole process."""
    global _threads, _pool, _blas_saved
    if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    if getattr(_local, "inside", False):
        raise RuntimeError("set_num_threads called inside a parallel range; call it "
                           "between tinynet operations")
    with _lock:
        _threads = int(n)
        if _pool is not None and _pool.workers != _threads - 1:
            _pool.close()
            _pool = None
        if _threads == 1 and _blas_saved is not None:
            _get_blas().set(_blas_saved)
            _blas_saved = None
        elif get_num_threads() > 1:
            _activate()


def _activate() -> _Pool:
    """The pool for the current thread count; the BLAS at one thread from now on."""
    global _pool, _blas_saved
    if _blas_saved is None:
        blas = _get_blas()
        _blas_saved = max(1, blas.get())
        blas.set(1)
    if _pool is None:
        _pool = _Pool(get_num_threads() - 1)
    return _pool


def _reset_after_fork() -> None:   # a forked child has none of the parent's threads
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` as ``parts`` contiguous ranges whose sizes differ by at most one."""
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def parallel_for(xp, n: int, fn: Callable[[int, int], Any], grain: int = 1) -> None:
    """Run ``fn(start, stop)`` over contiguous ranges covering ``[0, n)``, one per thread.

    Each range has at least ``grain`` items; ``fn`` must write only its own range's part
    of any shared output. ``xp`` is the array module of the data: for anything but NumPy
    (and with one thread, or inside another parallel call) ``fn(0, n)`` runs once in the
    caller.
    """
    if n <= 0:
        return
    if xp is not numpy or n < 2 * max(1, grain) or getattr(_local, "inside", False) \
            or not _lock.acquire(blocking=False):
        fn(0, n)
        return
    try:   # the thread count is read under the lock: set_num_threads may not change it now
        parts = min(get_num_threads(), n // max(1, grain))
        if parts <= 1:
            fn(0, n)
            return
        pool = _activate()
        parts_run = min(parts, pool.workers + 1)
        pool.run(fn, split(n, parts_run))
    finally:
        _lock.release()


def matmul(a, b, out=None):
    """``a @ b`` for 2-D ``a (M, K)`` and ``b (K, P)``, split over the threads.

    The rows of a are split when M >= P or M >= 256, else the columns of b (measured the
    faster choice for the study models' products on a 2-core Xeon), each range one BLAS
    call writing its own block of ``out`` (allocated ``(M, P)`` C-contiguous when None).
    When K is at least 4 times both M and P (a weight gradient summed over the batch)
    the K axis is split instead and the partial products are added. Small products (under
    ``MATMUL_GRAIN`` multiply-adds per range) run as one call.
    """
    from .backend import get_array_module  # backend imports nothing from here
    xp = get_array_module(a, b)
    m, k = a.shape
    p = b.shape[1]
    if out is None:
        out = xp.empty((m, p), dtype=numpy.result_type(a.dtype, b.dtype))
    if xp is not numpy or get_num_threads() == 1 or 0 in (m, k, p):
        return xp.matmul(a, b, out=out)     # (NumPy writes zeros for an empty K)
    if k >= 4 * max(m, p):
        # A long inner dimension (a weight gradient, X^T @ dY, summed over the batch):
        # each thread multiplies its own rows of the batch into a partial (M, P) product,
        # reading its half of both operands once; the partials are added in range order.
        xp.copyto(out, _sum_over_ranges(xp, k, lambda s, e: xp.matmul(a[:, s:e], b[s:e]),
                                        grain=max(1, MATMUL_GRAIN // max(1, m * p))))
        return out
    grain = max(1, MATMUL_GRAIN // max(1, k * min(m, p)))
    if m >= p or m >= 256:
        parallel_for(xp, m, lambda s, e: xp.matmul(a[s:e], b, out=out[s:e]), grain)
    else:
        parallel_for(xp, p, lambda s, e: xp.matmul(a, b[:, s:e], out=out[:, s:e]), grain)
    return out


def column_sums(a):
    """``a.sum(axis=0)`` for 2-D ``a (M, P)``, as ``ones(M) @ a`` per range of rows.

    A matrix-vector product: measured ~10x faster than NumPy's axis-0 reduction of a
    tall matrix. Each thread sums its own rows; the partial sums are added in range
    order, so the result depends only on the sizes and the thread count.
    """
    from .backend import get_array_module
    xp = get_array_module(a)
    m, p = a.shape
    if m == 0:
        return xp.zeros((p,), dtype=a.dtype)
    return _sum_over_ranges(
        xp, m, lambda s, e: xp.matmul(xp.ones((e - s,), dtype=a.dtype), a[s:e]),
        grain=max(1, ELEMENT_GRAIN // max(1, p)))


def _sum_over_ranges(xp, n: int, fn: Callable[[int, int], Any], grain: int):
    """``fn(start, stop)`` per thread's range of ``[0, n)`` (n > 0), the results added
    in range order, so the sum depends only on the sizes and the thread count."""
    partials: dict[int, Any] = {}

    def run(start: int, stop: int) -> None:
        partials[start] = fn(start, stop)

    parallel_for(xp, n, run, grain)
    parts = [partials[s] for s in sorted(partials)]
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def info() -> str:
    """One line: the thread count and how NumPy's BLAS is handled."""
    blas = _get_blas()
    n = get_num_threads()
    if not blas.usable:
        return f"tinynet threads: 1 ({blas.why})"
    state = "held at 1 thread" if _blas_saved is not None else "not yet touched"
    return f"tinynet threads: {n}; NumPy's BLAS {blas.name} ({os.path.basename(blas.path)}) {state}"

