"""Watch backprop happen: ``with tinynet.trace(model) as tr:`` records every layer call.

For each call of a leaf layer (a module without children: Linear, ReLU, Conv2d, ...) in
the forward and in the backward pass, one record holds:

* ``layer`` (the state_dict prefix, e.g. ``"1"``; ``module._name``) and ``type``;
* ``phase``: ``"forward"`` or ``"backward"``, and ``call`` (0, 1, ... in call order);
* ``in_shape``, ``out_shape``, ``dtype`` of what went in and came out;
* statistics of what flowed *out* of the call: ``mean``, ``std``, ``min``, ``max``,
  ``norm`` (L2 norm) and ``zeros`` (fraction of exact zeros: dead ReLUs show up here),
  plus ``in_norm``, the L2 norm of what came in. In the forward pass "out" is the
  activation ``y``; in the backward pass it is ``dL/dx``. When a backward is asked not
  to compute ``dL/dx`` (``input_grad=False``, the first layer of a network), the
  statistics are those of the incoming ``dL/dy`` and ``stats_of`` says so;
* ``seconds`` spent inside the layer's own method (statistics are not counted);
* ``kernels``: the kernel set that ran the call, ``"reference"`` or ``"fast"``
  (``tinynet.set_kernels``); the table's first line names it.

How it works: entering the block sets ``forward`` and ``backward`` *instance*
attributes on each leaf layer that wrap the class methods (``Module.__call__`` calls
``self.forward``; ``Sequential.backward`` calls ``layer.backward(dy[, input_grad])``,
and an instance attribute shadows the class's method). Leaving the block deletes them,
so outside the block nothing is recorded and nothing costs: ``layer.forward`` is the
class method again.

Example::

    with tinynet.trace(model) as tr:
        loss = loss_fn(model(x), t)
        model.backward(loss_fn.backward())
    print(tr.table())
    print(tr.param_grad_norms())      # {"1.weight": 0.53, "1.bias": 0.07, ...}
    tr.plot("norms.png")

The command ``tinynet trace --model base --batch 64`` prints the table for one batch of
Fashion-MNIST (``--random`` for random data).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from .backend import get_array_module, synchronize
from .cliargs import WHOLE_0, WHOLE_1, OneLineParser, writable_file
from .kernels import get_kernels
from .module import Module
from .textable import format_table

_MISSING = object()

COLUMNS = ("layer", "type", "phase", "in_shape", "out_shape", "dtype", "mean", "std",
           "min", "max", "norm", "zeros", "seconds")


def _stats(a) -> dict:
    """mean, std, min, max, L2 norm (accumulated in float64) and fraction of exact zeros."""
    if a is None or not hasattr(a, "shape"):
        return {"mean": None, "std": None, "min": None, "max": None, "norm": None, "zeros": None}
    xp = get_array_module(a)
    if a.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "norm": 0.0, "zeros": None}
    a64 = a.astype(xp.float64, copy=False)
    return {"mean": float(a64.mean()), "std": float(a64.std()), "min": float(a64.min()),
                "max": float(a64.max()), "norm": float(xp.sqrt(xp.vdot(a64.ravel(), a64.ravel()))),
                "zeros": float(xp.count_nonzero(a == 0)) / a.size}


def _norm(a) -> float | None:
    if a is None or not hasattr(a, "shape"):
        return None
    xp = get_array_module(a)
    a64 = a.astype(xp.float64, copy=False).ravel()
    return float(xp.sqrt(xp.vdot(a64, a64)))


def _shape(a):
    return tuple(int(s) for s in a.shape) if hasattr(a, "shape") else None


class Trace:
    """The recorder returned by :func:`trace`; a context manager.

    Args:
        model: the module to watch. Every leaf module in ``model.named_modules()``
            (and ``model`` itself when it has no children) is wrapped.
        sync: call ``backend.synchronize`` around each timed call so GPU times are real.
    """

    def __init__(self, model: Module, sync: bool = True) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"trace needs a tinynet Module, got {type(model).__name__}")
        self.model = model
        self.sync = bool(sync)
        self._rows: list[dict] = []
        self._saved: list[tuple[Module, Any, Any]] = []
        self._active = False

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Trace:
        if self._active:
            raise RuntimeError("this trace is already active; use a new tinynet.trace(model)")
        self._active = True
        for name, m in self.model.named_modules():
            if next(m.children(), None) is not None:
                continue  # containers: their leaves are recorded instead
            d = m.__dict__
            self._saved.append((m, d.get("forward", _MISSING), d.get("backward", _MISSING)))
            object.__setattr__(m, "forward", self._wrap_forward(m, m.forward))
            object.__setattr__(m, "backward", self._wrap_backward(m, m.backward))
        return self

    def __exit__(self, *exc) -> None:
        for m, fwd, bwd in reversed(self._saved):
            for attr, old in (("forward", fwd), ("backward", bwd)):
                if old is _MISSING:
                    m.__dict__.pop(attr, None)
                else:  # an outer trace (or the user) had set it: put it back
                    object.__setattr__(m, attr, old)
        self._saved.clear()
        self._active = False

    # ------------------------------------------------------------------ wrappers
    def _timed(self, fn, *args, **kwargs):
        if self.sync:
            synchronize()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        if self.sync:
            synchronize()
        return out, time.perf_counter() - t0

    def _record(self, m: Module, phase: str, inp, out, seconds: float) -> None:
        stats_of = "output"
        source = out
        if out is None:  # backward(dy, input_grad=False): describe the dy that came in
            stats_of, source = "input", inp
        row = {"layer": m._name or type(m).__name__, "type": type(m).__name__, "phase": phase,
                   "call": len(self._rows), "in_shape": _shape(inp), "out_shape": _shape(out),
                   "dtype": str(getattr(source, "dtype", "")), "stats_of": stats_of,
                   "in_norm": _norm(inp)}
        row.update(_stats(source))
        row["seconds"] = seconds
        row["kernels"] = getattr(m, "_kernels", None) or get_kernels()
        self._rows.append(row)

    def _wrap_forward(self, m: Module, method):
        def forward(x):
            y, dt = self._timed(method, x)
            self._record(m, "forward", x, y, dt)
            return y
        forward.__wrapped__ = method
        return forward

    def _wrap_backward(self, m: Module, method):
        def backward(dy, *args, **kwargs):
            dx, dt = self._timed(method, dy, *args, **kwargs)
            self._record(m, "backward", dy, dx, dt)
            return dx
        backward.__wrapped__ = method
        return backward

    # ------------------------------------------------------------------ results
    def rows(self, phase: str | None = None) -> list[dict]:
        """The records as a list of dicts (copies), optionally of one phase only."""
        if phase not in (None, "forward", "backward"):
            raise ValueError(f"phase must be None, 'forward' or 'backward', got {phase!r}")
        return [dict(r) for r in self._rows if phase is None or r["phase"] == phase]

    def clear(self) -> None:
        """Forget the records so far (e.g. between training steps)."""
        self._rows.clear()

    def param_grad_norms(self) -> dict[str, float]:
        """``{parameter name: L2 norm of .grad}`` for every parameter that has a grad,
        in ``named_parameters()`` order (norms accumulated in float64)."""
        out = {}
        for name, p in self.model.named_parameters():
            if p.grad is not None:
                out[name] = _norm(p.grad)
        return out

    def table(self, phase: str | None = None, batch: int | None = None) -> str:
        """The records as a text table, one line per layer call (``rows()`` has every field).

        Columns: the layer (state_dict prefix and type), the pass (``fwd``/``bwd``), the
        shapes in and out, then statistics of what flowed out: mean, std, the largest
        magnitude ``max|v|``, the L2 norm, the share of exact zeros, and the milliseconds.
        The dtype goes on the first line when every call had the same one (else a column).
        The width follows the values (milliseconds take at most five characters below
        10 s). With ``batch`` (the batch size the model was given) and every shape
        starting with it, shapes print as ``Nx32x28x28`` and the first line says
        ``N = 64``, so the width does not grow with the batch (``tinynet trace`` does this).
        """
        rows = self.rows(phase)
        dtypes = sorted({r["dtype"] for r in rows})
        if batch is not None and not all(
                len(s) and s[0] == batch for r in rows
                for s in (r["in_shape"], r["out_shape"]) if s is not None):
            batch = None
        header = ["layer", "pass", "in", "out"] + (["dtype"] if len(dtypes) > 1 else []) + \
            ["mean", "std", "max|v|", "L2 norm", "zeros", "ms"]
        lines = []
        for r in rows:
            star = "*" if r["stats_of"] == "input" else ""
            big = None if r["min"] is None else max(abs(r["min"]), abs(r["max"]))
            lines.append([f"{r['layer']} {r['type']}", r["phase"][0] + "wd",
                          _fmt_shape(r["in_shape"], batch), _fmt_shape(r["out_shape"], batch)]
                         + ([r["dtype"]] if len(dtypes) > 1 else [])
                         + [_fmt(r["mean"]), _fmt(r["std"]), _fmt(big), _fmt(r["norm"]) + star,
                            "-" if r["zeros"] is None else f"{100 * r['zeros']:.1f}%",
                            _fmt_ms(r["seconds"])])
        used = sorted({r["kernels"] for r in self._rows}) or [get_kernels()]
        first = f"{' and '.join(used)} kernels (tinynet.set_kernels)"
        if len(dtypes) == 1:
            first += f", {dtypes[0]}"
        if batch is not None:
            first += f", N = {batch}"
        out = [first, format_table(header, lines, align="<<<<" + ">" * (len(header) - 4))]
        if any(r["stats_of"] == "input" for r in self._rows):
            out.append("* backward without dL/dx (input_grad=False): statistics of the "
                       "incoming dL/dy")
        return "\n".join(out)

    def plot(self, path: str, title: str = "") -> str:
        """PNG of the L2 norm per layer: forward activations and backward gradients
        (dL/dx; and each parameter's .grad), on a log scale. The last call of each layer
        in each phase is drawn. Returns the absolute path."""
        from .plot import figure, save_figure
        fwd = _last_per_layer(self.rows("forward"))
        bwd = _last_per_layer(self.rows("backward"))
        grads = self.param_grad_norms()
        fig, (ax_a, ax_g) = figure(1, 2, figsize=(11, 4))
        labels = [f"{k} {v['type']}" for k, v in fwd.items()]
        ax_a.semilogy(range(len(fwd)), [_pos(v["norm"]) for v in fwd.values()], "o-",
                      label="activation ||y||")
        ax_a.set_xticks(range(len(fwd)), labels, fontsize=7, rotation=45, ha="right")
        ax_a.set_title("forward: activation norm per layer")
        ax_a.set_ylabel("L2 norm")
        ax_a.legend()
        names = list(bwd)
        starred = any(bwd[k]["stats_of"] == "input" for k in names)
        ax_g.semilogy(range(len(names)), [_pos(bwd[k]["norm"]) for k in names], "o-",
                      label="||dL/dx||" + (" (* ||dL/dy||: the first layer computes no "
                                           "dL/dx)" if starred else ""))
        xs, ys = [], []
        for i, k in enumerate(names):
            for pname, val in grads.items():
                if pname.rsplit(".", 1)[0] == k and pname.endswith("weight"):
                    xs.append(i)
                    ys.append(_pos(val))
        if xs:
            ax_g.semilogy(xs, ys, "s", label="||dL/dW||")
        ax_g.set_xticks(range(len(names)),
                        [f"{k} {bwd[k]['type']}" + ("*" if bwd[k]["stats_of"] == "input" else "")
                         for k in names], fontsize=7, rotation=45, ha="right")
        ax_g.set_title("backward: gradient norm per layer")
        ax_g.set_ylabel("L2 norm")
        ax_g.legend(fontsize=7)
        if title:
            fig.suptitle(title)
        return save_figure(fig, path)


def _pos(v):
    return v if v is not None and v > 0 else math.nan


def _last_per_layer(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.pop(r["layer"], None)
        out[r["layer"]] = r
    # keep network order: sort by the call index of each layer's first appearance
    return dict(sorted(out.items(), key=lambda kv: _layer_order(kv[0])))


def _layer_order(name: str):
    parts = name.split(".")
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


def _fmt(v) -> str:
    """Three significant digits, exponents without padding: ``0.617``, ``782``,
    ``1.27e3``, ``-1.68e-7``."""
    if v is None:
        return "-"
    text = f"{v:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _fmt_ms(seconds: float) -> str:
    """Milliseconds in five characters up to 10 s: ``0.674``, ``12.35``, ``571.2``, ``2048``."""
    ms = 1000 * seconds
    for limit, digits in ((10, 3), (100, 2), (1000, 1)):
        if ms < limit:
            return f"{ms:.{digits}f}"
    return f"{ms:.0f}"


def _fmt_shape(s, batch: int | None = None) -> str:
    """``64x32x28x28`` for ``(64, 32, 28, 28)``, ``Nx32x28x28`` when every shape of the
    table starts with the batch size ``batch`` (said once on the first line); ``()`` for
    a scalar."""
    if s is None:
        return "-"
    if not len(s):
        return "()"
    return "x".join(["N" if batch is not None else str(s[0])] + [str(d) for d in s[1:]])


def trace(model: Module, sync: bool = True) -> Trace:
    """Record every leaf layer call of ``model`` inside a ``with`` block (see module doc)."""
    return Trace(model, sync=sync)


# ---------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="tinynet trace",
        description="Run one forward and backward pass of a study model on one batch and "
                    "print what flowed through every layer (norms, zeros, time), then the "
                    "gradient norm of every parameter.")
    p.add_argument("--model", default="base", choices=["base", "bn", "simplecnn", "convbn"],
                   help="study model (default: base)")
    p.add_argument("--batch", type=WHOLE_1, default=64, help="batch size (default: 64)")
    p.add_argument("--random", action="store_true",
                   help="random N(0,1) images and random labels instead of Fashion-MNIST "
                        "(default: the first Fashion-MNIST training images)")
    p.add_argument("--data-root", default=None,
                   help="folder holding Fashion-MNIST's files (default: $TINYNET_DATA, the "
                        "user cache, /usr/share/datasets, then a download)")
    p.add_argument("--seed", type=WHOLE_0, default=0,
                   help="seed for weights and random data (default: 0)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu or cuda (default: cpu)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also write the norm plot here (default: no plot)")
    p.add_argument("--kernels", default="fast", choices=("reference", "fast"),
                   help="run the readable reference kernels or the fast ones (default: fast)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    writable_file(p, args.plot, "--plot")
    import numpy

    from . import data, models
    from .backend import to_device
    from .losses import CrossEntropyLoss
    from .random import manual_seed

    manual_seed(args.seed)
    try:
        model = models.build(args.model)
    except ImportError as e:
        print(f"tinynet trace: model {args.model!r} needs layers this checkout lacks ({e})")
        return 2
    model = model.to(args.device)
    if args.random:
        rng = numpy.random.default_rng(args.seed)
        x = rng.standard_normal((args.batch, 1, 28, 28)).astype("float32")
        t = rng.integers(0, 10, args.batch)
        source = "random N(0,1) data"
    else:
        images, labels = data.load("fashion-mnist", "train", root=args.data_root)
        if args.batch > len(labels):
            print(f"tinynet trace: --batch {args.batch} exceeds the {len(labels)} images")
            return 2
        x = data.to_float(images[:args.batch])
        t = labels[:args.batch]
        source = "the first Fashion-MNIST training images"
    x, t = to_device(x, args.device), to_device(t, args.device)
    loss_fn = CrossEntropyLoss()
    model.zero_grad()
    from .kernels import use_kernels
    with use_kernels(args.kernels), trace(model) as tr:
        loss = loss_fn(model(x), t)
        model.backward(loss_fn.backward())
    print(f"model {args.model}, one batch of {args.batch} ({source}), loss {loss:.4f}\n")
    print(tr.table(batch=args.batch if args.batch >= 10 else None))  # below 10 N saves nothing
    print("\nparameter gradient norms:")
    for name, val in tr.param_grad_norms().items():
        print(f"  {name:24s} {val:.6g}")
    if args.plot:
        print(f"\nwrote {tr.plot(args.plot, title=f'{args.model}, batch {args.batch}')}")
    return 0
