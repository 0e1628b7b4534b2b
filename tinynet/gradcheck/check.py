"""``tinynet.gradcheck.check``: the entry point, the contract checks and localisation.

How a check works is described in the package's docstring (:mod:`tinynet.gradcheck`).

Default eps and tolerances (``DEFAULTS``), and why. The central difference has
truncation error ``eps^2 |L'''| / 6`` and round-off error about ``u |L| / eps`` (u the
unit round-off: 1.1e-16 in float64, 6.0e-8 in float32), so the total is smallest at
``eps ~ (3 u)^(1/3)``: about 7e-6 in float64 and 6e-3 in float32, with an error there of
order ``u^(2/3)``: ~1e-10 and ~1e-5 (times the loss scale and the conditioning of the
forward sums). Study S8 (``experiments/s08_fd.py``) measures exactly this V.

The round-off term is ``u |L| / eps`` only for a perfectly conditioned forward; a
deep network amplifies rounding. Measured on ConvBN (batch 8, cross-entropy, |L| ~ 2.3,
``gradcheck`` with ``only=``/``eps=``): in float64 the error of the input's worst element
grows as 1/eps below eps = 1e-5 (1.6e-8, 1.2e-7, 1.4e-6 at eps 1e-5, 1e-6, 1e-7), i.e. the
loss carries ~1e-13 of rounding noise, ~500 u |L|; BatchNorm over channels that ReLU
left almost constant divides by a tiny standard deviation.

* float64: ``eps = 1e-6`` (torch.autograd.gradcheck's), ``rtol = 1e-4``, ``atol = 1e-7``:
  a 10x margin over that measured worst case (~1e-7 absolute, ~3e-5 relative), while
  10x tighter in rtol and 100x in atol than torch's (``atol 1e-5, rtol 1e-3``) and
  than Chainer's ``check_backward`` atol (``eps 1e-3, atol 1e-5, rtol 1e-4``). Shallow
  models land far lower (MLPs: ~1e-7 relative, ~1e-10 absolute); CS231n calls a
  relative error below 1e-7 good and above 1e-2 wrong, assuming a gradient clear of
  zero: our floor handles near-zero ones.
* float32: ``eps = 1e-3`` (Chainer's; near the optimum 6e-3 but less likely to cross a
  kink), ``rtol = 1e-2``, ``atol = 5e-3``: ``u |L| / eps`` is ~1e-4 for an O(1) loss and
  the same ConvBN amplification brings it to ~3e-3. float32 checks are for shallow
  models and single layers; deep ones are noise- and kink-limited (every early
  parameter moves thousands of ReLUs by 1e-3, so most probes cross a kink and are
  skipped): check those in float64. A wrong backward is usually off by O(|grad|),
  far beyond either tolerance.
"""

from __future__ import annotations

import contextlib

import numpy

from .. import random as _random
from ..errors import DTypeError
from ..kernels import use_kernels
from ..module import Module
from .probes import directions, elements, taylor
from .problem import Problem, host, owner
from .report import GradcheckReport, TensorCheck

__all__ = ["DEFAULTS", "OPTIONS", "check", "kernels_in_force"]

# eps, rtol, atol per dtype; the module docstring derives them.
DEFAULTS: dict[str, dict[str, float]] = {
    "float64": {"eps": 1e-6, "rtol": 1e-4, "atol": 1e-7},
    "float32": {"eps": 1e-3, "rtol": 1e-2, "atol": 5e-3},
}

OPTIONS = {
    "eps": None, "rtol": None, "atol": None,   # None: DEFAULTS[dtype]
    "max_elements": 64,      # tensors up to this size are checked element by element
    "samples": 12,           # elements drawn from a larger tensor
    "directions": 2,         # random unit directions per tensor
    "taylor": True,          # run the Taylor test
    "taylor_min_slope": 1.5,
    "check_input": True,     # also check dL/dx (when x is floating point)
    "contract": True,        # dy untouched, grads accumulate, input_grad=False
    "only": None,            # check only these tensor names ("input", "0.weight", ...)
    "localize": True,        # on failure, check each child of a Sequential alone
}


def kernels_in_force(kernels: str | None) -> contextlib.AbstractContextManager:
    """``tinynet.use_kernels(kernels)``, or nothing when ``kernels`` is None."""
    return contextlib.nullcontext() if kernels is None else use_kernels(kernels)


def check(module: Module, x, target=None, loss_fn=None, dtype: str = "float64",
          seed: int = 0, kernels: str | None = None, **options) -> GradcheckReport:
    """Check ``module``'s backward against finite differences; return the report.

    Args:
        module: any layer or model (its train/eval mode is kept).
        x: the input, e.g. ``(N, D_in)`` or ``(N, C, H, W)`` (cast to ``dtype``).
        target, loss_fn: ``L = loss_fn(module(x), target)``; without ``loss_fn`` the
            loss is ``sum(y * g)`` for a fixed seeded random ``g`` of y's shape.
        dtype: "float64" (default) or "float32".
        seed: seeds ``g``, the sampled elements, the directions and the dropout masks.
        kernels: run the module on ``"reference"`` or ``"fast"`` kernels; None (the
            default): whatever is in force (``tinynet.get_kernels()``).
        **options: see ``OPTIONS`` (eps, rtol, atol default to ``DEFAULTS[dtype]``).

    Returns:
        a :class:`GradcheckReport`; ``report.ok``, ``print(report)``,
        ``report.raise_if_failed()``.
    """
    dtype = str(numpy.dtype(dtype))
    if dtype not in DEFAULTS:
        raise DTypeError(f"gradcheck: dtype must be 'float64' or 'float32', got {dtype!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"gradcheck.check: unknown option(s) {unknown}; "
                        f"expected some of {sorted(OPTIONS)}")
    if not isinstance(module, Module):
        raise TypeError(f"gradcheck.check: expected a tinynet Module, got {type(module).__name__}")
    if not hasattr(x, "dtype"):
        raise TypeError(f"gradcheck.check: x must be an array, got {type(x).__name__}")
    opts = dict(OPTIONS)
    opts.update(options)
    for k in ("eps", "rtol", "atol"):
        if opts[k] is None:
            opts[k] = DEFAULTS[dtype][k]
    saved_rng = _random.get_rng_state()
    try:
        with kernels_in_force(kernels):
            return _check(module, x, target, loss_fn, dtype, seed, opts)
    finally:
        _random.set_rng_state(saved_rng)


def _check(module, x, target, loss_fn, dtype, seed, opts) -> GradcheckReport:
    p = Problem(module, x, target, loss_fn, dtype, seed)
    report = GradcheckReport(module.describe(), dtype, opts["eps"], opts["rtol"], opts["atol"])

    # the analytic pass
    base_loss, base_pattern = p.loss()
    dy = p.upstream()
    dy_before = dy.copy()
    p.module.zero_grad()
    dx = p.module.backward(dy)
    params = list(p.module.named_parameters())
    grads = {}
    none_grad = set()
    for name, prm in params:
        if prm.grad is None:
            none_grad.add(name)
            grads[name] = numpy.zeros(prm.shape)
        else:
            grads[name] = host(prm.grad)
    if opts["contract"]:
        _contract(p, report, dy, dy_before, grads, params)

    tensors = []
    if opts["check_input"] and p.x.dtype.kind == "f":
        if dx is None:
            report.contract.append(("backward(dy) returns dL/dx", False, "it returned None"))
        else:
            tensors.append(("input", module.describe(), lambda: p.x, host(dx)))
    for name, prm in params:
        tensors.append((name, owner(p.module, name), (lambda prm=prm: prm.data), grads[name]))
    if opts["only"] is not None:
        only = {opts["only"]} if isinstance(opts["only"], str) else set(opts["only"])
        tensors = [t for t in tensors if t[0] in only]

    for name, layer, get, grad in tensors:
        row = TensorCheck(name, layer, tuple(get().shape))
        if name in none_grad:
            row.notes.append(".grad is None after backward (taken as zeros)")
        if grad.shape != row.shape:
            row.status = "FAIL"
            row.notes.append(f"gradient has shape {grad.shape}, expected {row.shape}")
            report.rows.append(row)
            continue
        elements(p, row, get, grad, base_loss, opts)
        directions(p, row, get, grad, base_loss, opts)
        if opts["taylor"]:
            taylor(p, row, get, grad, base_loss, base_pattern, opts)
        if row.status != "FAIL" and row.checked == 0 and row.directions == 0:
            row.status = "skip"
        report.rows.append(row)
    if not report.ok and opts["localize"]:
        _localize(p, report, dtype, seed, opts)
    return report


def _localize(p: Problem, report: GradcheckReport, dtype: str, seed: int, opts) -> None:
    """Name the layer(s) of a failing Sequential that also fail when checked alone.

    Each child is checked on the input it received in the model's forward (same
    buffers, same dropout masks), with a random upstream gradient.
    """
    children = list(p.module.named_children())
    if not children or type(p.module).__name__ != "Sequential":
        return
    p._reset()
    h = p.x
    inputs = []
    for _, child in children:
        inputs.append(h)
        h = child(h)
    child_opts = {k: v for k, v in opts.items() if k not in ("only", "localize")}
    for (_, child), inp in zip(children, inputs):
        if getattr(inp, "dtype", None) is None or inp.dtype.kind != "f":
            continue
        sub = check(child, inp, dtype=dtype, seed=seed, localize=True, **child_opts)
        if not sub.ok:
            report.culprits.append(sub.culprits[0] if sub.culprits else child.describe())
    if report.culprits:
        report.hint = ("localised: " + ", ".join(report.culprits)
                       + " fail(s) when checked alone")
    elif p.loss_fn is not None:
        report.hint = ("every layer passes when checked alone: suspect the loss "
                       f"function's backward ({type(p.loss_fn).__name__})")
    else:
        report.hint = "every layer passes when checked alone: suspect how they are composed"


def _contract(p: Problem, report: GradcheckReport, dy, dy_before, grads, params) -> None:
    xp = p.xp
    same = bool(xp.all(dy == dy_before)) if dy.shape == dy_before.shape else False
    report.contract.append(("backward leaves dy unchanged", same,
                            "" if same else "backward wrote into the dy it was given"))
    if not params:
        return
    tol = DEFAULTS[str(p.dtype)]["rtol"] * 1e-2
    # accumulate: a second backward of the same forward adds the same gradient again
    p.loss()
    p.module.backward(p.upstream())
    bad = []
    for name, prm in params:
        if prm.grad is None:
            continue
        twice = host(prm.grad)
        atol = tol * (1 + numpy.abs(grads[name]).max())
        if not numpy.allclose(twice, 2 * grads[name], rtol=tol, atol=atol):
            bad.append(name)
    report.contract.append(("backward adds into .grad", not bad,
                            "" if not bad else "a second backward did not double .grad of "
                            + ", ".join(bad)))
    # input_grad=False gives the same parameter gradients
    p.module.zero_grad()
    p.loss()
    try:
        p.module.backward(p.upstream(), input_grad=False)
    except TypeError as e:
        report.contract.append(("backward(dy, input_grad=False)", False, str(e)))
        return
    bad = []
    for name, prm in params:
        g = numpy.zeros(prm.shape) if prm.grad is None else host(prm.grad)
        atol = tol * (1 + numpy.abs(grads[name]).max())
        if not numpy.allclose(g, grads[name], rtol=tol, atol=atol):
            bad.append(name)
    report.contract.append(("input_grad=False gives the same parameter grads", not bad,
                            "" if not bad else "differs for " + ", ".join(bad)))
    p.module.zero_grad()
