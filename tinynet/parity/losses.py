"""Every loss and its options against torch.nn's: the loss and dL/dinput.

Each case builds a tinynet loss and the torch one with the same arguments, an input and
a target, and compares the loss value and the gradient of the input in float64 and
float32 (``TOLERANCES``). For ``reduction="none"`` the gradient of each loss is a fixed
random array, as ``loss.backward(grad)`` takes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from .. import losses
from .report import ParityReport, Row, difference
from .tolerances import TOLERANCES
from .twins import torch_module

__all__ = ["LossCase", "check_loss", "loss_cases"]

WEIGHT = (0.5, 2.0, 1.0, 0.1)


@dataclass
class LossCase:
    """A loss class name, its keyword arguments, the input shape and the target kind:
    ``"indices"``, ``"probabilities"`` or ``"values"`` (same shape as the input)."""
    name: str
    loss: str
    kwargs: dict = field(default_factory=dict)
    shape: tuple = (6, 4)
    target: str = "indices"
    scale: float = 1.0

    def arrays(self, seed: int = 0) -> tuple:
        rng = numpy.random.default_rng(seed)
        x = rng.standard_normal(self.shape) * self.scale
        if self.loss == "NLLLoss":                        # log-probabilities
            x = x - numpy.log(numpy.exp(x).sum(axis=1 if len(self.shape) > 1 else 0,
                                              keepdims=True))
        if self.target == "indices":
            c = self.shape[1] if len(self.shape) > 1 else self.shape[0]
            t_shape = (self.shape[0],) + self.shape[2:] if len(self.shape) > 1 else ()
            t = rng.integers(0, c, t_shape)
            ignore = self.kwargs.get("ignore_index")
            if ignore is not None and t.ndim:
                t.reshape(-1)[::3] = ignore
        elif self.target == "probabilities":
            t = rng.random(self.shape)
            t /= t.sum(axis=1 if len(self.shape) > 1 else 0, keepdims=True)
        else:
            t = rng.random(self.shape) if self.loss == "BCEWithLogitsLoss" else \
                rng.standard_normal(self.shape)
        return x, t


def loss_cases() -> list[LossCase]:
    w = {"weight": WEIGHT}
    ce, nll = "CrossEntropyLoss", "NLLLoss"
    return [
        LossCase("CrossEntropyLoss()", ce),
        LossCase("CrossEntropyLoss(sum)", ce, {"reduction": "sum"}),
        LossCase("CrossEntropyLoss(none)", ce, {"reduction": "none"}),
        LossCase("CrossEntropyLoss(weight)", ce, w),
        LossCase("CrossEntropyLoss(ignore_index=2)", ce, {"ignore_index": 2}),
        LossCase("CrossEntropyLoss(label_smoothing=0.2)", ce, {"label_smoothing": 0.2}),
        LossCase("CrossEntropyLoss(weight, ignore, smoothing)", ce,
                 {**w, "ignore_index": 1, "label_smoothing": 0.1}),
        LossCase("CrossEntropyLoss (N,C,d1,d2)", ce, {}, (2, 4, 3, 2)),
        LossCase("CrossEntropyLoss unbatched (C,)", ce, {}, (4,)),
        LossCase("CrossEntropyLoss probabilities", ce, {"label_smoothing": 0.1}, (5, 4),
                 "probabilities"),
        LossCase("CrossEntropyLoss large logits", ce, {}, (6, 4), scale=100.0),
        LossCase("NLLLoss(weight, ignore_index=3)", nll, {**w, "ignore_index": 3}),
        LossCase("NLLLoss(none) (N,C,d)", nll, {"reduction": "none"}, (3, 4, 5)),
        LossCase("MSELoss()", "MSELoss", {}, (4, 5), "values"),
        LossCase("MSELoss(none)", "MSELoss", {"reduction": "none"}, (4, 5), "values"),
        LossCase("L1Loss(sum)", "L1Loss", {"reduction": "sum"}, (4, 5), "values"),
        LossCase("BCEWithLogitsLoss()", "BCEWithLogitsLoss", {}, (4, 3), "values", 30.0),
        LossCase("BCEWithLogitsLoss(weight, pos_weight, none)", "BCEWithLogitsLoss",
                 {"weight": (1.0, 2.0, 0.5), "pos_weight": (3.0, 0.5, 1.0),
                  "reduction": "none"}, (4, 3), "values"),
    ]


def check_loss(case: LossCase, dtype=("float64", "float32"), seed: int = 0) -> ParityReport:
    """The loss value and dL/dinput of tinynet and torch, per dtype."""
    torch = torch_module()
    report = ParityReport()
    x64, t64 = case.arrays(seed)
    for dt in (dtype,) if isinstance(dtype, str) else dtype:
        x = x64.astype(dt)
        t = t64.astype(dt) if t64.dtype.kind == "f" else t64
        kwargs = {k: numpy.asarray(v, dt) if isinstance(v, tuple) else v
                  for k, v in case.kwargs.items()}
        ours = getattr(losses, case.loss)(**kwargs)
        theirs = getattr(torch.nn, case.loss)(**{
            k: torch.from_numpy(v) if isinstance(v, numpy.ndarray) else v
            for k, v in kwargs.items()})
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        tl = theirs(tx, torch.from_numpy(numpy.asarray(t).copy()))
        value = numpy.asarray(ours(x, t))
        grad = numpy.random.default_rng(seed + 1).standard_normal(tuple(tl.shape)).astype(dt)
        if tl.dim():
            tl.backward(torch.from_numpy(grad))
            dx = ours.backward(grad)
        else:
            tl.backward()
            dx = ours.backward()
        tol = TOLERANCES[dt]
        for tensor, a, b in (("loss", value, tl.detach().numpy()),
                             ("dL/dinput", dx, tx.grad.numpy())):
            err_abs, err_rel = difference(a, b)
            report.rows.append(Row(case.name, dt, "-", tensor, err_abs, err_rel, tol))
    return report
