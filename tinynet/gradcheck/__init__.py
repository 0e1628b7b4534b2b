"""Finite-difference gradient checks of any layer or model: ``tinynet.gradcheck.check``.

What is checked. A scalar loss ``L`` is built on the module's output: the given loss
function, or, without one, ``L = sum(y * g)`` with a fixed seeded random upstream
gradient ``g`` of y's shape (then ``dL/dy = g``, so every element of the backward is
exercised). The analytic gradient of ``L`` with respect to the input and to every
parameter comes from the module's own backward; the numeric one from central
differences of ``L``::

    numeric_i = (L(w + eps e_i) - L(w - eps e_i)) / ((w + eps e_i)_i - (w - eps e_i)_i)

(the denominator is the step actually taken after rounding ``w +- eps`` to the dtype,
which matters in float32). Four verdicts per tensor, each one able to fail:

1. **Elements.** Every element of a small tensor (``size <= max_elements``), else a
   seeded random sample of ``samples`` elements. Element i passes when::

       rel_err = |a - n| / max(|a|, |n|, floor) <= rtol,     floor = atol / rtol

   i.e. ``|a - n| <= max(rtol * max(|a|, |n|), atol)``: relative where the gradient is
   large, absolute (atol) where it is near zero and round-off dominates.
2. **Directions.** ``directions`` random unit directions v over the whole tensor:
   ``v . grad`` against ``(L(w + eps v) - L(w - eps v)) / (2 eps)``, same measure. This
   sees every element at once, so a bug in an element the sample missed still shows.
3. **Taylor test** (eps-free). Along a random unit direction v, the remainder
   ``r(h) = |L(w + h v) - L(w) - h v . grad|`` is O(h^2) when grad is the gradient and
   O(h) when it is not. The slope of log r against log h, fitted over a sweep of h where
   r stands clear of round-off, is reported; below ``taylor_min_slope`` (1.5) it fails.
   If r stays at round-off level for every h (L is linear along v, e.g. a Linear layer
   with ``L = sum(y * g)``) the first-order term matched to rounding: "linear", a pass.
   A slope of 1 caused by a kink at w itself (in a layer whose kinks are not recorded,
   see below) is told apart by the symmetric sum r(h) + r(-h), which cancels the
   gradient: "kink", no verdict.
4. **Contract.** Backward must not write into the ``dy`` it was given, must *add* into
   ``.grad`` (a second backward doubles it) and, for a module with parameters,
   ``backward(dy, input_grad=False)`` must give the same parameter gradients.

Kinks. ReLU at 0, LeakyReLU/ELU at 0 and ties in max pooling are not differentiable;
a perturbation that crosses one gives a central difference that is neither
one-sided derivative. Every forward records the activation pattern of each kinked
layer (the ReLU/LeakyReLU/ELU sign masks, the max-pool arg-max; a custom layer can
offer a ``kink_pattern()`` method) and a probe whose +eps and -eps patterns differ is
*skipped* (counted, never a pass or a fail); a sampled element is then replaced by
another one. As a layer-agnostic backstop (for kinks no pattern records) a probe
whose two one-sided quotients disagree by more than twice the tolerance band is
repeated at 10 eps: a smooth L's disagreement grows ~10x (it is ``eps |L''|``), a
kink's stays put (it is the jump of the slope); a kink is skipped. The Taylor test
tells a kink at w itself from a wrong gradient by the symmetric sum
``r(h) + r(-h)``, which cancels the gradient (reported as "kink", no verdict).

Train-mode BatchNorm and Dropout. Before every forward the module's buffers are
restored (running statistics never drift; batch statistics are recomputed in every
perturbed forward, so their dependence on the perturbed value is part of the check),
the global generator (``tinynet.random``) is reset to one fixed state (every Dropout
forward draws the same mask), and any mask injected with ``next_mask`` is injected
again.

Localising a failure. When a ``Sequential`` fails, each of its layers is checked alone
on the input it received in the model's forward (``localize=True``) and the report's
``hint`` names those that fail alone (``report.culprits``); when all pass alone, the
loss function's backward is named instead.

The caller's module is never touched: the check runs on a deep copy cast to ``dtype``,
and the global generator's state is restored afterwards.

Shapes: ``x`` is whatever the module takes, e.g. ``(N, D_in)`` or ``(N, C, H, W)``;
``target`` is whatever ``loss_fn`` takes (``(N,)`` class indices for CrossEntropyLoss).

One module per job: :mod:`~tinynet.gradcheck.check` (the entry point, its defaults and
their derivation, the contract checks, localisation), :mod:`~tinynet.gradcheck.probes`
(elements, directions, Taylor test), :mod:`~tinynet.gradcheck.kinks`,
:mod:`~tinynet.gradcheck.problem`, :mod:`~tinynet.gradcheck.report` and
:mod:`~tinynet.gradcheck.suite` (``tinynet gradcheck``).
"""

from .check import DEFAULTS, OPTIONS, check
from .kinks import kink_pattern, patterns_equal
from .problem import Problem
from .report import GradcheckError, GradcheckReport, TensorCheck

__all__ = [
    "DEFAULTS",
    "OPTIONS",
    "GradcheckError",
    "GradcheckReport",
    "Problem",
    "TensorCheck",
    "check",
    "kink_pattern",
    "main",
    "patterns_equal",
]


def main(argv: list[str] | None = None) -> int:
    """``tinynet gradcheck``: see :mod:`tinynet.gradcheck.suite`."""
    from .suite import main as suite_main
    return suite_main(argv)
