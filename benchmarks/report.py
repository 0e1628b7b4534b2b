"""The machine header, the markdown table, the JSON file and the PNG chart of ratios."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re

from tinynet.io import atomic_write


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "no GPU"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def scheduling() -> str:
    """The process's CPU scheduling policy, e.g. ``SCHED_FIFO priority 10`` under ``chrt -f 10``."""
    try:
        policy = os.sched_getscheduler(0)
        prio = os.sched_getparam(0).sched_priority
    except (AttributeError, OSError):
        return "unknown"
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH",
                                         "SCHED_IDLE") if hasattr(os, n)}
    name = names.get(policy, str(policy))
    if name == "SCHED_OTHER":
        return f"SCHED_OTHER nice {os.nice(0)}"
    return f"{name} priority {prio}"


def plural(n: int, word: str) -> str:
    """``1 case``, ``2 cases``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def machine_header(device: str, threads, timer, repeats: int) -> dict:
    """Everything a reader needs to judge the numbers: machine, versions, settings."""
    import numpy
    import torch

    import tinynet
    from tinynet import backend
    head = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "tinynet": getattr(tinynet, "__version__", "dev"),
        "backend": backend.name(),
        "device": device,
        "threads": threads.count,
        "threads_how": threads.how,
        "numpy_blas": threads.blas,
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "not MKL",
        "pause_s": timer.pause,
        "min_block_s": timer.min_block,
        "rewarm_s": timer.rewarm,
        "repeats": repeats,
        "load_average_start": load_average(),
        "cores_in_use_start": cores_in_use(),
        "scheduling": scheduling(),
        "method": (f"tinynet and PyTorch in one process, interleaved (order reversed every "
                   f"repeat), each after its own warm-up; every timed block starts after a "
                   f"{timer.pause:g} s pause so the other side's BLAS/OpenMP threads stop "
                   f"spinning"
                   + (f", then the side runs untimed for {timer.rewarm:g} s (at least two "
                      f"calls) so its own threads and virtual CPUs are awake again"
                      if timer.rewarm > 0 else ", with no re-warm after it")
                   + f"; a block runs the callable back to back for about "
                   f"{timer.min_block:g} s; median over {plural(repeats, 'block')}, spread = "
                   f"(max - min) / median."),
    }
    if device == "cuda":
        head["gpu"] = _gpu_name()
        head["tf32"] = "disabled on both sides (CUPY_TF32=0; torch allow_tf32=False)"
        head["method"] += " The device is synchronised before and after every timed block."
    return head


def cores_in_use(seconds: float = 0.5) -> float | None:
    """How many cores other processes kept busy over ``seconds`` while this one slept
    (from ``/proc/stat``; None where there is none). Unlike the load average, which
    decays over minutes, this is the machine now."""
    import time

    def read():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)
    try:
        total0, idle0 = read()
        time.sleep(seconds)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round((1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1), 2)


def busy_warning(head: dict) -> str:
    """A warning when other processes were running at the start: the cores they kept busy
    (``cores_in_use``, measured before the suite's own threads run), else the 1-minute
    load average, above the core count minus a half."""
    load = head.get("cores_in_use_start")
    what = "cores busy with other processes"
    if load is None:
        what = "load average"
        try:
            load = float(str(head.get("load_average_start", "")).split()[0])
        except (ValueError, IndexError):
            return ""
    cores = head.get("cores") or 1
    if load <= cores - 0.5:
        return ""
    if str(head.get("scheduling", "")).startswith(("SCHED_FIFO", "SCHED_RR")):
        return (f"other processes were running ({what} {load:.1f} of {cores} at "
                f"the start); the suite ran under real-time scheduling, so its timed blocks "
                f"had the cores and the others ran during the pauses; the spreads show what "
                f"noise is left")
    threads = head.get("threads") or 1
    if threads + load <= cores + 0.5:
        return (f"other processes were running ({what} {load:.1f} of {cores} at "
                f"the start), leaving a core to each of the suite's {threads} thread(s)")
    return (f"the machine was busy ({what} {load:.1f} of {cores} at the start, "
            f"{threads} threads here): other processes took CPU time, a multi-threaded BLAS "
            f"waits for its descheduled threads, and these numbers are noise")


def machine_tag(head: dict) -> str:
    """A folder name for the machine, e.g. ``cpu-intel-xeon-platinum-8481c-2c``."""
    if head["device"] == "cuda":
        base = f"cuda-{head.get('gpu', 'gpu')}"
    else:
        cpu = re.sub(r"\(r\)|\(tm\)|cpu|@.*$", "", head["cpu"].lower())
        base = f"cpu-{cpu}-{head['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def output_folder(head: dict, out: str | None, record: bool) -> str:
    """Where results go: ``out`` when given; with ``record`` the committed
    ``benchmarks/results/<machine>/``; otherwise ``runs/benchmarks/<machine>/`` (ignored by
    git), so running a benchmark never rewrites a committed result by accident."""
    if out:
        return out
    if record:
        return os.path.join(REPO, "benchmarks", "results", machine_tag(head))
    return os.path.join("runs", "benchmarks", machine_tag(head))


def header_lines(head: dict) -> list[str]:
    """The machine, versions, threads, date and method as markdown bullet lines."""
    lines = [f"- machine: {head['cpu']}, {head['cores']} cores"
             + (f"; GPU {head['gpu']}" if head.get("gpu") else "") + f"; {head['os']}",
             (f"- versions: Python {head['python']}, NumPy {head['numpy']}, torch "
              f"{head['torch']} ({head['torch_blas']}), {_cupy(head)}"),
             f"- NumPy BLAS: {'; '.join(head['numpy_blas']) or 'unknown'}",
             f"- threads: {head['threads']} on both sides ({head['threads_how']})",
             (f"- date (UTC): {head['date_utc']}; cores busy with other processes at start "
              f"{head.get('cores_in_use_start', 'n/a')}; load average at start "
              f"{head['load_average_start']}, at end {head.get('load_average_end', 'n/a')}; "
              f"scheduling {head.get('scheduling', 'unknown')}"),
             f"- method: {head['method']}"]
    if head.get("tf32"):
        lines.append(f"- TF32: {head['tf32']}")
    busy = busy_warning(head)
    if busy:
        lines.append(f"- **{busy}**")
    return lines


def _cupy(head: dict) -> str:
    """CuPy's part of ``tinynet.backend.name()`` ("numpy 2.4.6 (cupy: not installed)"),
    whose NumPy version the versions line already gives: "CuPy: not installed"."""
    backend = str(head.get("backend", ""))
    prefix = f"numpy {head.get('numpy')} ("
    if backend.startswith(prefix) and backend.endswith(")"):
        inner = backend[len(prefix):-1]
        return "CuPy" + inner[4:] if inner.startswith("cupy") else inner
    return backend


def quick_description(head: dict, rows: list[dict]) -> str:
    """What a --quick run timed, from its rows (an --only run is a part of the set):
    e.g. "4 training steps at batch 64 and 6 layer cases, 3 repeats", or "1 training step
    at batch 64, 1 repeat; --only base"."""
    steps = [r for r in rows if r["group"] == "step"]
    layers = [r for r in rows if r["group"] != "step"]
    parts = []
    if steps:
        batches = ", ".join(str(b) for b in sorted({r["batch"] for r in steps}))
        parts.append(f"{plural(len(steps), 'training step')} at batch {batches}")
    if layers:
        parts.append(plural(len(layers), "layer case"))
    text = f"{' and '.join(parts) or 'no case'}, {plural(int(head['repeats']), 'repeat')}"
    if head.get("only"):
        text += "; --only " + " --only ".join(head["only"])
    return text


def _ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def _cell(stat: dict) -> str:
    return f"{_ms(stat['median'])} ±{100 * stat['spread'] / 2:.0f}%"


def verdict(row: dict) -> str:
    t = row.get("target")
    if not t:
        return ""
    parts = []
    if "ratio" in t:
        ok = row["ratio"] <= t["ratio"]
        parts.append(f"{'met' if ok else 'MISSED'} (<= {t['ratio']}x)")
    if "floor" in t and row.get("floor_ratio") is not None:
        ok = row["floor_ratio"] <= t["floor"]
        parts.append(f"floor {'met' if ok else 'MISSED'} (<= {t['floor']}x)")
    return "; ".join(parts)


def markdown(head: dict, rows: list[dict]) -> str:
    """The header and two tables (steps, layers) in GitHub markdown."""
    side = "CuPy" if head["device"] == "cuda" else "tinynet (NumPy)"
    other = "torch CUDA" if head["device"] == "cuda" else "PyTorch"
    lines = [f"# tinynet vs PyTorch, {head['device']}", "", *header_lines(head)]
    if head.get("quick"):
        lines.append(f"- **QUICK run** ({quick_description(head, rows)}): a smoke test, "
                     f"not the figures of record")
    lines.append("")
    steps = [r for r in rows if r["group"] == "step"]
    if steps:
        lines += ["## Training steps (forward, loss, backward, SGD update)", "",
                  ("ratio = tinynet / PyTorch (median times; < 1 means tinynet is faster). "
                  "GEMM floor = the step's matrix products alone with NumPy's BLAS "
                  "(torch's BLAS in brackets); GFLOP/s = those products' FLOPs / the whole "
                  "step's time; step/floor = how far the step is from its own products."), "",
                  ("target: the most tinynet/PyTorch may be on this device. MISSED means "
                   "tinynet was slower than that in this run: a speed goal, not a test, so "
                   "the command still exits 0."), "",
                  (f"| case | batch | {side} ms | {other} ms | ratio | GEMM floor ms | "
                  f"GFLOP/s | step/floor | target |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in steps:
            floor = (f"{_ms(r['gemm']['median'])} ({_ms(r['gemm_torch']['median'])})"
                     if r.get("gemm") else "")
            gf = f"{r['gflops']:.1f}" if r.get("gflops") else ""
            fr = f"{r['floor_ratio']:.2f}x" if r.get("floor_ratio") else ""
            lines.append(f"| {r['title']} | {r['batch']} | {_cell(r['tinynet'])} | "
                         f"{_cell(r['torch'])} | **{r['ratio']:.2f}** | {floor} | {gf} | "
                         f"{fr} | {verdict(r)} |")
        lines.append("")
    layers = [r for r in rows if r["group"] == "layer"]
    if layers:
        lines += ["## Layers", "", f"| case | {side} ms | {other} ms | ratio |",
                  "|---|---:|---:|---:|"]
        for r in layers:
            lines.append(f"| {r['title']} | {_cell(r['tinynet'])} | {_cell(r['torch'])} | "
                         f"**{r['ratio']:.2f}** |")
        lines.append("")
    return "\n".join(lines)


def write_json(path: str, head: dict, rows: list[dict]) -> str:
    text = json.dumps({"header": head, "results": rows}, indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def write_markdown(path: str, text: str) -> str:
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def write_png(path: str, head: dict, rows: list[dict]) -> str:
    """Horizontal bars of tinynet/torch per case, a line at 1 and each target marked."""
    from matplotlib.patches import Patch

    from tinynet.plot import figure, save_figure
    rows = list(rows)
    height = max(3.0, 0.28 * len(rows) + 1.8)
    fig, ax = figure(figsize=(9, height))
    labels = [r["title"] + (f" N={r['batch']}" if r["group"] == "step" else "") for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = []
    for r in rows:
        t = (r.get("target") or {}).get("ratio")
        colors.append("tab:gray" if t is None else
                      ("tab:green" if r["ratio"] <= t else "tab:red"))
    ys = range(len(rows))
    ax.barh(list(ys), ratios, color=colors)
    for y, r in zip(ys, rows):
        t = (r.get("target") or {}).get("ratio")
        if t is not None:
            ax.plot([t, t], [y - 0.4, y + 0.4], color="black", lw=1.5)
        ax.text(r["ratio"], y, f" {r['ratio']:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="black", ls="--", lw=0.8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio tinynet / PyTorch (lower is better; dashed: equal speed)")
    ax.legend(handles=[Patch(color="tab:green", label="step within its target (black tick)"),
                       Patch(color="tab:red", label="step slower than its target"),
                       Patch(color="tab:gray", label="layer (no target)")],
              fontsize=7, loc="lower right")
    dev = head.get("gpu") if head["device"] == "cuda" else head["cpu"]
    title = (f"tinynet vs PyTorch, {head['device']}: {dev}, {head['threads']} threads, "
             f"{head['date_utc']} UTC")
    if head.get("quick"):
        title = "QUICK run: " + title
    ax.set_title(title, fontsize=8)
    save_figure(fig, path, dpi=110)
    return path
