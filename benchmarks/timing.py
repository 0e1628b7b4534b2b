"""Fair timing of two callables side by side: threads, pauses, interleaving, repeats.

Why the pause. OpenBLAS (NumPy's BLAS) and the OpenMP pool of PyTorch keep their worker
threads spinning for about 0.1 s after each parallel call. Timed back to back in one
process, the side that runs second finds the cores taken by the first side's spinning
threads, which skews a ratio by 2-4x either way. So every timed block starts after a
``pause`` (0.25 s by default) in which those threads go to sleep, the sides alternate
(tinynet, torch, torch, tinynet, ...) so a slow drift of the machine hits both alike,
and each side gets the same number of repeats after its own warm-up.

Why the re-warm. After the pause, each side first runs untimed for ``rewarm`` seconds
(at least two calls), then its block is timed. On a VM an idle virtual CPU is halted by
the host, and waking it takes far longer than a thread hand-off; the host shortens its
wake-up path again only after a few quick wake-ups. tinynet's worker threads sleep when
idle, PyTorch's OpenMP threads spin, so only tinynet paid this after each pause: on the
2-core Xeon VM (2026-12-02) the first SimpleCNN step after a 0.25 s pause took 1.7x and
the second 1.2x a steady step, while PyTorch's first step took 1.1x. Blocks of 0.1 s are
four such steps, so SimpleCNN read 1.74x PyTorch without the re-warm and 1.44x with it
(the base MLP 1.16x both ways). A training loop runs its steps back to back, so the
steady state is the figure to compare; the pause still keeps each side's timed block
free of the other side's spinning threads.

A block runs a callable ``number`` times back to back (``number`` is calibrated so a
block lasts about ``min_block`` seconds) and yields the mean seconds per call; the
median over the repeats is the figure reported, and the spread is ``(max - min) /
median`` over the repeats. On the GPU the device is synchronised (CuPy's stream and
``torch.cuda.synchronize()``) before the clock starts and before it stops, so the time
covers the queued work and nothing else.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_LIMITERS: list = []  # threadpoolctl limiters, kept alive for the life of the process


@dataclass
class Threads:
    """The thread counts both sides run with and how they were set."""

    count: int
    how: str
    blas: list = field(default_factory=list)


def set_threads(count: int | None) -> Threads:
    """Use ``count`` threads (default: every core) in tinynet, NumPy's BLAS and PyTorch.

    PyTorch: ``torch.set_num_threads``; tinynet: ``tinynet.set_num_threads`` (the threads
    its fast kernels split a batch over). NumPy: ``threadpoolctl.threadpool_limits`` on
    every BLAS library loaded (and OpenMP, which NumPy itself does not use). Without
    threadpoolctl the environment variables are the only lever, and they only work when
    set before NumPy is imported, which the returned ``how`` says.
    """
    count = int(count or os.cpu_count() or 1)
    if count <= 0:
        raise ValueError(f"--threads must be positive, got {count}")
    try:
        import torch
        torch.set_num_threads(count)
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(count)
        return Threads(count, "environment variables (threadpoolctl missing: they only "
                              "take effect if set before numpy was imported)")
    _LIMITERS.append(threadpool_limits(limits=count, user_api="blas"))
    import tinynet
    from tinynet.functional.fast import threads as tinynet_threads
    tinynet.set_num_threads(count)
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
            f"{os.path.basename(i.get('filepath', ''))})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return Threads(count, "torch.set_num_threads + tinynet.set_num_threads + "
                          "threadpoolctl.threadpool_limits", blas + [tinynet_threads.info()])


def make_sync(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device != "cuda":
        return lambda: None
    import torch

    from tinynet.backend import synchronize

    def sync() -> None:
        synchronize()
        torch.cuda.synchronize()
    return sync


@dataclass
class Timer:
    """Times callables in paused, synchronised blocks (see the module docstring)."""

    pause: float = 0.25
    min_block: float = 0.1
    rewarm: float = 0.05
    warmup: float = 0.2
    device: str = "cpu"
    max_number: int = 10_000

    def __post_init__(self) -> None:
        self.sync = make_sync(self.device)

    def block(self, fn: Callable[[], object], number: int, rewarm_calls: int = 0) -> float:
        """Mean seconds per call of ``number`` back-to-back calls, after the pause and
        ``rewarm_calls`` untimed calls."""
        if self.pause > 0:
            time.sleep(self.pause)
        for _ in range(rewarm_calls):
            fn()
        self.sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / number

    def calibrate(self, fn: Callable[[], object]) -> tuple[int, int]:
        """Warm ``fn`` up (at least 2 calls and ``warmup`` seconds); return its ``number``
        (calls per timed block) and its re-warm calls (none when ``rewarm`` is 0, else
        enough for ``rewarm`` seconds and at least 2)."""
        fn()
        self.sync()
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            self.sync()
            spent = time.perf_counter() - t0
            if calls >= 2 and spent >= self.warmup or spent >= 4 * max(self.warmup, 0.05):
                break
        per_call = max(spent / calls, 1e-9)
        number = max(1, min(self.max_number, math.ceil(self.min_block / per_call)))
        rewarm = 0 if self.rewarm <= 0 else max(2, min(self.max_number,
                                                       math.ceil(self.rewarm / per_call)))
        return number, rewarm

    def compare(self, sides: dict[str, Callable[[], object]], repeats: int,
                setups: dict[str, Callable[[], object]] | None = None) -> dict[str, list]:
        """Interleaved repeats of every side: ``{name: [seconds per call, ...]}``.

        Each side is warmed up and calibrated first; then repeat r runs the sides in
        order when r is even and in reverse when odd, each block after the pause and
        the side's re-warm.
        ``setups[name]``, when given, runs untimed before each of that side's blocks (and
        its warm-up): e.g. setting a thread count.
        """
        setups = setups or {}

        def prepare(name: str) -> None:
            if name in setups:
                setups[name]()

        numbers, rewarms = {}, {}
        for name, fn in sides.items():
            prepare(name)
            numbers[name], rewarms[name] = self.calibrate(fn)
        times: dict[str, list] = {name: [] for name in sides}
        names = list(sides)
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                prepare(name)
                times[name].append(self.block(sides[name], numbers[name], rewarms[name]))
        return times


def summary(times: list[float]) -> dict:
    """Median, min, max and spread ``(max - min) / median`` of per-call seconds."""
    med = statistics.median(times)
    return {"median": med, "min": min(times), "max": max(times),
            "spread": (max(times) - min(times)) / med if med > 0 else 0.0,
            "repeats": len(times), "all": list(times)}


def add_arguments(p, min_block: float | None = 0.1,
                  min_block_default: str = "0.1") -> None:
    """The options every benchmark command shares: ``--threads``, ``--pause``,
    ``--rewarm``, ``--min-block`` (how it times) and ``--record``, ``--out`` (where the
    results go)."""
    from tinynet.cliargs import RATE, WHOLE_1
    p.add_argument("--threads", type=WHOLE_1, default=None,
                   help="threads for tinynet, NumPy's BLAS and torch (default: all cores)")
    p.add_argument("--pause", type=RATE, default=0.25,
                   help="seconds of sleep before each timed block (default 0.25)")
    p.add_argument("--rewarm", type=RATE, default=0.05,
                   help="seconds of untimed calls after each pause, at least two (default "
                        "0.05; 0: none): wakes the side's own threads after the pause")
    p.add_argument("--min-block", type=RATE, default=min_block,
                   help=f"seconds each timed block lasts at least (default "
                        f"{min_block_default})")
    p.add_argument("--record", action="store_true",
                   help="write into the committed benchmarks/results/<machine>/ instead of "
                        "runs/benchmarks/<machine>/ (ignored by git)")
    p.add_argument("--out", default=None,
                   help="output folder (overrides --record)")


def start(p, args, what: str):
    """Check ``--out`` and PyTorch, set the threads and print what runs where; return
    ``(threads, timer, head)`` for a CPU command that took :func:`add_arguments`."""
    from tinynet.cliargs import writable_folder

    from .cases import require_torch
    from .report import machine_header
    writable_folder(p, args.out, "--out")
    require_torch()
    threads = set_threads(args.threads)
    timer = Timer(pause=args.pause, min_block=args.min_block, rewarm=args.rewarm)
    head = machine_header("cpu", threads, timer, args.repeats)
    print(f"# {what} on {head['cpu']}, {threads.count} threads", flush=True)
    return threads, timer, head


def finish(head: dict, t0: float, args, name: str, render: Callable[[dict], str],
           rows: list) -> int:
    """End of a command :func:`start` began: the time taken and the load into ``head``,
    ``<name>.md`` (``render(head)``) and ``<name>.json`` written where ``--out`` /
    ``--record`` say, the table printed. Returns the exit status, 0."""
    from .report import load_average, output_folder, write_json, write_markdown
    head["seconds"] = round(time.perf_counter() - t0, 1)
    head["load_average_end"] = load_average()
    text = render(head)
    out = output_folder(head, args.out, args.record)
    paths = [write_markdown(os.path.join(out, name + ".md"), text),
             write_json(os.path.join(out, name + ".json"), head, rows)]
    print()
    print(text)
    print("written: " + ", ".join(paths))
    return 0
