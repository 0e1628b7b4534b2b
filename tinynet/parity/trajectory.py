"""Training trajectories of a tinynet model and its PyTorch twin: :func:`trajectory`.

float64: both train side by side, free, from the same weights, on the same batches,
with the same Dropout masks and optimizer settings; the per-step losses and the final
weights and buffers must agree to ``TRAJECTORY_TOLERANCES`` (1e-9).

float32: free runs cannot be compared (rounding differences are amplified by rare
discrete events: PyTorch's own runs started one ulp apart end up to 9.6e-2 apart, see
:mod:`tinynet.parity.tolerances` and ``python -m tinynet.parity.spread``). PyTorch's
float32 run leads instead, and before each of its steps its whole state (weights,
buffers, optimizer state) is loaded into tinynet and into a float64 PyTorch twin; all
three take one step on the batch, and each float32 update is compared with the float64
one. tinynet's error must stay within ``FLOAT32_STEP_FACTOR`` times PyTorch's own.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy

from .. import layers as _layers
from ..backend import to_numpy
from ..errors import TinynetError
from ..module import Module
from ..optim import SGD, Adam
from .compare import (
    DropoutMasks,
    array_module,
    cast_model,
    kernels_in_force,
    loss_pair,
    targets,
)
from .report import ParityReport, Row, difference
from .tolerances import (
    BASELINE_RUNS,
    FLOAT32_FLOOR_FACTOR,
    FLOAT32_STEP_FACTOR,
    STEP_ERROR_FLOOR,
    TRAJECTORY_TOLERANCES,
)
from .twins import to_torch, torch_module

__all__ = ["Trajectory", "optimizer_pair", "trajectory"]

OPTIMIZERS = ("sgd", "adam")


def optimizer_pair(optimizer: str, model: Module, twin, hyper: dict) -> tuple:
    """``(tinynet optimizer, torch optimizer)`` of the same kind and hyper-parameters."""
    torch = torch_module()
    hyper = dict(hyper)
    if optimizer == "sgd":
        hyper.setdefault("lr", 0.1)
        return SGD(model.parameters(), **hyper), torch.optim.SGD(twin.parameters(), **hyper)
    if optimizer == "adam":
        return Adam(model.parameters(), **hyper), torch.optim.Adam(twin.parameters(), **hyper)
    raise TinynetError(f"trajectory: unknown optimizer {optimizer!r}: expected 'sgd' or 'adam'")


@dataclass
class Trajectory:
    """Per-step losses of both frameworks and the comparison rows of a trajectory check.

    float32: the losses are those of each framework's step from PyTorch's state, and
    ``errors`` maps each row's tensor to ``(tinynet's, PyTorch's)`` per-step relative
    errors against float64 (arrays of one value per step).
    """
    tinynet_losses: list
    torch_losses: list
    report: ParityReport
    errors: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report.ok


def trajectory(model: Module, batches: Iterable, optimizer: str = "sgd",
               hyper: dict | None = None, dtype: str = "float64", loss="cross_entropy",
               name: str | None = None, seed: int = 0, tol: float | None = None,
               baseline: bool = True, factor: float | None = None,
               kernels: str | None = None) -> Trajectory:
    """Train ``model`` and its twin side by side on ``batches`` and compare the runs.

    Both start from the same weights (the twin is made by :func:`to_torch`), see the same
    batches in the same order, share Dropout masks, and take one optimizer step per batch
    with the same hyper-parameters (``optimizer`` "sgd" or "adam", ``hyper`` the keyword
    arguments of ``torch.optim.SGD``/``Adam``). ``model`` itself is not changed.

    float64 (free runs): reported are the largest relative loss difference over the
    steps and every final parameter and buffer (BatchNorm running statistics included),
    within ``tol`` (default ``TRAJECTORY_TOLERANCES["float64"][optimizer]``). With
    ``baseline``, when a row is above it, PyTorch runs ``BASELINE_RUNS`` more times from
    weights moved by one ulp in random directions (``nextafter``); where those runs drift
    from PyTorch's by up to d, the row's tolerance is raised to ``FLOAT32_FLOOR_FACTOR * d``
    (marked ``*``).

    float32 (one step at a time from PyTorch's state, see the module docstring): one row
    for the loss and one per parameter and floating buffer, ``"update <key>"``; its
    error is the median over the steps of tinynet's relative error against float64, its
    limit ``factor`` (default ``FLOAT32_STEP_FACTOR``) times PyTorch's own median, never
    below ``STEP_ERROR_FLOOR``.

    ``kernels``: run tinynet on ``"reference"`` or ``"fast"`` kernels; None: whatever is
    in force.
    """
    torch = torch_module()
    dt = numpy.dtype(dtype).name
    if dt not in ("float64", "float32"):
        raise TinynetError(f"trajectory: dtype must be float64 or float32, got {dt}")
    if optimizer not in OPTIMIZERS:
        raise TinynetError(f"trajectory: unknown optimizer {optimizer!r}: expected 'sgd' or "
                           "'adam'")
    hyper = dict(hyper or {})
    name = name or type(model).__name__
    m = cast_model(model, dt).train()
    loss_fn, torch_loss, kind = loss_pair(loss)
    loss_fn = copy.copy(loss_fn)
    data = [(numpy.asarray(to_numpy(x)).astype(dt), targets(t, kind, dt)) for x, t in batches]
    if not data:
        raise TinynetError("trajectory: no batches given")
    hp = ", ".join(f"{k}={v}" for k, v in hyper.items())
    run = _Run(torch, m, data, optimizer, hyper, loss_fn, torch_loss, name,
               f"{optimizer}({hp}) x{len(data)}", seed)
    with kernels_in_force(kernels):
        if dt == "float64":
            limit = TRAJECTORY_TOLERANCES[dt][optimizer] if tol is None else float(tol)
            return run.free(limit, baseline)
        return run.stepwise(FLOAT32_STEP_FACTOR if factor is None else float(factor))


def torch_step(torch, twin, topt, torch_loss, x_host, t_host, to=None) -> float:
    """One optimizer step of a torch model on one batch; its loss."""
    xt, tt = torch.from_numpy(x_host), torch.from_numpy(t_host)
    if to is not None:
        xt = xt.to(to)
        tt = tt if not tt.is_floating_point() else tt.to(to)
    topt.zero_grad()
    lt = torch_loss(twin(xt), tt)
    lt.backward()
    topt.step()
    return float(lt.detach())


@dataclass
class _Run:
    """One trajectory check's settings; ``free`` (float64) or ``stepwise`` (float32)."""
    torch: object
    model: Module          # tinynet's copy, in the run's dtype, train mode
    data: list             # [(x, target)] host arrays in the run's dtype
    optimizer: str
    hyper: dict
    loss_fn: object
    torch_loss: object
    name: str
    mode: str
    seed: int

    def _tinynet_step(self, opt, x_host, t_host) -> float:
        xp = array_module(self.model)
        opt.zero_grad()
        value = float(self.loss_fn(self.model(xp.asarray(x_host)), xp.asarray(t_host)))
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        opt.step()
        return value

    def _forget_masks(self) -> None:
        for layer in self.model.modules():  # hooks may have handed masks nobody used
            if isinstance(layer, _layers.Dropout):
                layer.next_mask = None

    # ------------------------------------------------------------------ float64: free
    def free(self, limit: float, baseline: bool) -> Trajectory:
        torch, m = self.torch, self.model
        start = to_torch(m)  # before any step: the baseline run starts here too
        twin = copy.deepcopy(start)
        opt, topt = optimizer_pair(self.optimizer, m, twin, self.hyper)
        masks = DropoutMasks(m, twin, self.seed)
        ours, theirs = [], []
        try:
            for x_host, t_host in self.data:
                theirs.append(torch_step(torch, twin, topt, self.torch_loss, x_host, t_host))
                ours.append(self._tinynet_step(opt, x_host, t_host))
        finally:
            masks.remove()
        tstate = twin.state_dict()
        worst = max(range(len(ours)), key=lambda i: difference(ours[i], theirs[i])[1])
        diffs = {"loss": difference(ours[worst], theirs[worst])}
        labels = {"loss": f"loss (worst: step {worst + 1})"}
        for key, value in m.state_dict().items():
            diffs[f"final {key}"] = difference(value, tstate[key])
            labels[f"final {key}"] = f"final {key}"
        drifts = dict.fromkeys(diffs, 0.0)
        if baseline and any(rel > limit for _, rel in diffs.values()):
            drifts = self._one_ulp_drift(start, theirs, tstate)
        rows = []
        for key, (abs_err, rel_err) in diffs.items():
            row_tol = max(limit, FLOAT32_FLOOR_FACTOR * drifts[key])
            rows.append(Row(self.name, "float64", self.mode, labels[key], abs_err, rel_err,
                            row_tol, raised=row_tol > limit))
        return Trajectory(ours, theirs, ParityReport(rows))

    def _one_ulp_drift(self, start, theirs, tstate) -> dict:
        """How far rounding alone carries PyTorch's float64 run: the largest max_rel per
        final tensor (and loss) of ``BASELINE_RUNS`` PyTorch runs from weights moved by
        one ulp in random directions, same batches and masks."""
        torch = self.torch
        drifts: dict = {}
        for run in range(1, BASELINE_RUNS + 1):
            shadow = copy.deepcopy(start)
            generator = torch.Generator().manual_seed(1000 * self.seed + run)
            with torch.no_grad():
                for p in shadow.parameters():
                    up = torch.rand(p.shape, generator=generator, dtype=torch.float64) < 0.5
                    way = torch.where(up, math.inf, -math.inf).to(p.dtype)
                    p.copy_(torch.nextafter(p, way))
            _, sopt = optimizer_pair(self.optimizer, self.model, shadow, self.hyper)
            masks = DropoutMasks(self.model, shadow, self.seed)
            try:
                losses = [torch_step(torch, shadow, sopt, self.torch_loss, x, t)
                          for x, t in self.data]
            finally:
                masks.remove()
                self._forget_masks()
            sstate = shadow.state_dict()
            found = {f"final {key}": difference(sstate[key], tstate[key])[1] for key in tstate}
            found["loss"] = max(difference(a, b)[1] for a, b in zip(losses, theirs))
            for key, value in found.items():
                drifts[key] = max(drifts.get(key, 0.0), value)
        return drifts

    # ------------------------------------------------------------------ float32: stepwise
    def stepwise(self, factor: float) -> Trajectory:
        torch, m = self.torch, self.model
        twin = to_torch(m)                      # PyTorch float32: runs free and leads
        shadow = copy.deepcopy(twin).double()   # PyTorch float64: one step from each state
        opt, topt = optimizer_pair(self.optimizer, m, twin, self.hyper)
        _, sopt = optimizer_pair(self.optimizer, m, shadow, self.hyper)
        keys = [k for k, v in twin.state_dict().items() if v.is_floating_point()]
        errors = {label: ([], []) for label in ["loss"] + [f"update {k}" for k in keys]}
        ours, theirs = [], []
        masks = [DropoutMasks(m, twin, self.seed), DropoutMasks(m, shadow, self.seed)]
        try:
            for x_host, t_host in self.data:
                state = {k: v.detach().clone() for k, v in twin.state_dict().items()}
                opt_state = copy.deepcopy(topt.state_dict())
                theirs.append(torch_step(torch, twin, topt, self.torch_loss, x_host, t_host))
                with torch.no_grad():
                    for k, v in shadow.state_dict().items():
                        v.copy_(state[k])
                sopt.load_state_dict(copy.deepcopy(opt_state))
                exact = torch_step(torch, shadow, sopt, self.torch_loss, x_host, t_host,
                                   to=torch.float64)
                m.load_state_dict(state)
                opt.load_state_dict(tinynet_optimizer_state(opt, opt_state))
                ours.append(self._tinynet_step(opt, x_host, t_host))
                scale = max(abs(exact), _TINY)
                errors["loss"][0].append(abs(ours[-1] - exact) / scale)
                errors["loss"][1].append(abs(theirs[-1] - exact) / scale)
                after = (m.state_dict(), twin.state_dict(), shadow.state_dict())
                for k in keys:
                    e_ours, e_theirs = _update_errors(state[k], *(a[k] for a in after))
                    errors[f"update {k}"][0].append(e_ours)
                    errors[f"update {k}"][1].append(e_theirs)
        finally:
            for mask in masks:
                mask.remove()
            self._forget_masks()
        rows = []
        for label, (e_ours, e_theirs) in errors.items():
            mine, own = float(numpy.median(e_ours)), float(numpy.median(e_theirs))
            rows.append(Row(self.name, "float32", self.mode, label, math.nan, mine,
                            factor * max(own, STEP_ERROR_FLOOR), reference=own,
                            measure="step"))
        arrays = {k: (numpy.array(a), numpy.array(b)) for k, (a, b) in errors.items()}
        return Trajectory(ours, theirs, ParityReport(rows), arrays)


_TINY = float(numpy.finfo(numpy.float64).tiny)


def _update_errors(before, ours, theirs, exact) -> tuple[float, float]:
    """Relative errors of two float32 updates of one tensor against the float64 update.

    ``|du - du64| / |du64|`` (Euclidean norms), with ``du = after - before``; the scale
    is never below float32's resolution of the tensor itself, ``eps32 |before|``.
    """
    b = numpy.asarray(to_numpy(before), dtype=numpy.float64)
    exact = numpy.asarray(to_numpy(exact), dtype=numpy.float64) - b
    scale = max(float(numpy.linalg.norm(exact)), STEP_ERROR_FLOOR * float(numpy.linalg.norm(b)),
                _TINY)
    out = []
    for after in (ours, theirs):
        du = numpy.asarray(to_numpy(after), dtype=numpy.float64) - b
        out.append(float(numpy.linalg.norm(du - exact)) / scale)
    return out[0], out[1]


def tinynet_optimizer_state(opt, torch_state: dict) -> dict:
    """A torch optimizer's ``state_dict()`` in the form ``opt.load_state_dict`` takes.

    Same parameter indices and entry names (``step``, ``exp_avg``, ``exp_avg_sq``,
    ``momentum_buffer``); tensors become host arrays, the step count an int; the
    hyper-parameters stay ``opt``'s own.
    """
    state = {}
    for index, entry in torch_state["state"].items():
        state[int(index)] = {
            k: (int(v.item()) if k == "step" else v.detach().cpu().numpy().copy())
            if hasattr(v, "detach") else v for k, v in entry.items()}
    return {"state": state, "param_groups": opt.state_dict()["param_groups"]}
