"""What ``tinynet parity`` checks: layer and model cases, and the trajectory plan.

:func:`layer_cases` covers every layer type in several configurations, :func:`model_cases`
every study model; :func:`check_case` runs :func:`tinynet.parity.compare` on one.
:func:`trajectory_plan` lists the training runs (model, optimizer settings) and
:func:`seeded_trajectory` runs one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy

from .. import layers as _layers
from ..module import Module, Sequential
from ..random import get_rng_state, manual_seed, set_rng_state
from .compare import compare
from .report import ParityReport
from .trajectory import trajectory

__all__ = ["TRAJECTORY_OPTIMIZERS", "Case", "check_case", "layer_cases", "model_cases",
           "seeded_model", "seeded_trajectory", "trajectory_plan"]


@dataclass
class Case:
    """A parity check: a model builder, the input shape of one batch and the loss."""
    name: str
    build: Callable[[], Module]
    input_shape: tuple
    loss: str = "mse"
    shift: float = 0.0

    def batch(self, seed: int = 0) -> tuple:
        """A random input ``N(shift, 1)`` of ``input_shape`` and a target for ``loss``
        (seeded, float64)."""
        model = self.build()
        rng = numpy.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape) + self.shift
        y = model.eval()(x.astype(model.dtype))
        if self.loss == "cross_entropy":
            return x, rng.integers(0, y.shape[1], size=y.shape[0])
        return x, rng.standard_normal(tuple(y.shape))


def layer_cases() -> list:
    """Every tinynet layer type in several configurations, on small shapes.

    Each layer is checked alone with an MSE loss against a random target (so every
    output element gets its own gradient); containers wrap small bodies.
    """
    L = _layers
    S = Sequential

    def case(name, build, shape):
        return Case(name, build, shape, "mse")

    cases = [
        case("Linear(6,4)", lambda: L.Linear(6, 4), (5, 6)),
        case("Linear(6,4,bias=False)", lambda: L.Linear(6, 4, bias=False), (5, 6)),
        case("ReLU", L.ReLU, (4, 7)),
        case("Tanh", L.Tanh, (4, 7)),
        case("Sigmoid", L.Sigmoid, (4, 7)),
        case("LeakyReLU()", L.LeakyReLU, (4, 7)),
        case("LeakyReLU(0.2)", lambda: L.LeakyReLU(0.2), (4, 7)),
        case("ELU()", L.ELU, (4, 7)),
        case("ELU(0.5)", lambda: L.ELU(0.5), (4, 7)),
        case("Flatten()", L.Flatten, (2, 3, 4, 5)),
        case("Flatten(2)", lambda: L.Flatten(2), (2, 3, 4, 5)),
        case("Flatten(1,2)", lambda: L.Flatten(1, 2), (2, 3, 4, 5)),
        case("Dropout(0.5)", L.Dropout, (6, 8)),
        case("Dropout(0.2) 4d", lambda: L.Dropout(0.2), (2, 3, 4, 4)),
        case("Sequential(Linear,ReLU,Linear)",
             lambda: S(L.Linear(6, 5), L.ReLU(), L.Linear(5, 3)), (4, 6)),
        case("nested Sequential",
             lambda: S(S(L.Linear(6, 5), L.Tanh()), S(S(L.Linear(5, 4)), L.ELU())), (4, 6)),
    ]
    if hasattr(L, "Conv2d"):
        cases += [
            case("Conv2d(3,4,3)", lambda: L.Conv2d(3, 4, 3), (2, 3, 6, 7)),
            case("Conv2d(3,4,3,s2,p1)", lambda: L.Conv2d(3, 4, 3, 2, 1), (2, 3, 7, 6)),
            case("Conv2d(3,5,(3,2),s(2,1),p(1,0),bias=False)",
                 lambda: L.Conv2d(3, 5, (3, 2), (2, 1), (1, 0), bias=False), (2, 3, 7, 6)),
            case("Conv2d(2,3,1)", lambda: L.Conv2d(2, 3, 1), (3, 2, 4, 5)),
            case("Conv2d(2,3,5,p2)", lambda: L.Conv2d(2, 3, 5, 1, 2), (2, 2, 6, 6)),
        ]
    if hasattr(L, "MaxPool2d"):
        cases += [
            case("MaxPool2d(2)", lambda: L.MaxPool2d(2), (2, 3, 6, 8)),
            case("MaxPool2d(3,2,1)", lambda: L.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
            case("MaxPool2d((2,3),1)", lambda: L.MaxPool2d((2, 3), 1), (2, 2, 5, 6)),
            case("MaxPool2d(2) odd input", lambda: L.MaxPool2d(2), (2, 2, 5, 7)),
        ]
    if hasattr(L, "AvgPool2d"):
        cases += [
            case("AvgPool2d(2)", lambda: L.AvgPool2d(2), (2, 3, 6, 8)),
            case("AvgPool2d(3,2,1)", lambda: L.AvgPool2d(3, 2, 1), (2, 3, 7, 6)),
            case("AvgPool2d(3,2,1,count_include_pad=False)",
                 lambda: L.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
            case("AvgPool2d((2,3),(1,2))", lambda: L.AvgPool2d((2, 3), (1, 2)), (2, 2, 5, 7)),
        ]
    if hasattr(L, "BatchNorm1d"):
        cases += [
            case("BatchNorm1d(5)", lambda: _perturbed(L.BatchNorm1d(5)), (6, 5)),
            case("BatchNorm1d(4) (N,C,L)", lambda: _perturbed(L.BatchNorm1d(4)), (3, 4, 5)),
            case("BatchNorm1d(5,momentum=0.5,eps=1e-3)",
                 lambda: _perturbed(L.BatchNorm1d(5, eps=1e-3, momentum=0.5)), (6, 5)),
            case("BatchNorm1d(5,momentum=None)",
                 lambda: _perturbed(L.BatchNorm1d(5, momentum=None)), (6, 5)),
            case("BatchNorm1d(5,affine=False)",
                 lambda: _perturbed(L.BatchNorm1d(5, affine=False)), (6, 5)),
            case("BatchNorm1d(5,track_running_stats=False)",
                 lambda: _perturbed(L.BatchNorm1d(5, track_running_stats=False)), (6, 5)),
        ]
    if hasattr(L, "BatchNorm2d"):
        cases += [
            case("BatchNorm2d(3)", lambda: _perturbed(L.BatchNorm2d(3)), (2, 3, 4, 5)),
            Case("BatchNorm2d(3) large M, mean 3", lambda: _perturbed(L.BatchNorm2d(3)),
                 (16, 3, 24, 24), "mse", shift=3.0),
            case("BatchNorm2d(3,momentum=0.3,affine=False)",
                 lambda: _perturbed(L.BatchNorm2d(3, momentum=0.3, affine=False)),
                 (2, 3, 4, 5)),
        ]
    cases += [
        case("Identity", L.Identity, (3, 5)),
        case("SiLU", L.SiLU, (4, 7)),
        case("GELU()", L.GELU, (4, 7)),
        case("GELU('tanh')", lambda: L.GELU("tanh"), (4, 7)),
        case("Softmax(1)", lambda: L.Softmax(1), (4, 7)),
        case("Softmax(-1) 3d", lambda: L.Softmax(-1), (2, 3, 5)),
        case("LogSoftmax(1)", lambda: L.LogSoftmax(1), (4, 7)),
        case("LogSoftmax(0)", lambda: L.LogSoftmax(0), (4, 7)),
        case("Dropout2d(0.3)", lambda: L.Dropout2d(0.3), (3, 4, 5, 5)),
        case("Linear(6,4) on (2,3,6)", lambda: L.Linear(6, 4), (2, 3, 6)),
        case("Conv2d(4,6,3,dilation=2,groups=2)",
             lambda: L.Conv2d(4, 6, 3, 1, 2, 2, 2), (2, 4, 7, 8)),
        case("Conv2d(4,4,3,groups=4) depthwise", lambda: L.Conv2d(4, 4, 3, groups=4),
             (2, 4, 6, 6)),
        case("Conv2d(2,3,(2,4),padding='same')",
             lambda: L.Conv2d(2, 3, (2, 4), padding="same"), (2, 2, 6, 5)),
        case("Conv2d(2,3,3,padding='valid')", lambda: L.Conv2d(2, 3, 3, padding="valid"),
             (2, 2, 5, 6)),
        case("Conv2d(2,3,3,p2,reflect)", lambda: L.Conv2d(2, 3, 3, 1, 2, padding_mode="reflect"),
             (2, 2, 6, 6)),
        case("Conv2d(2,3,3,s2,p(1,2),replicate)",
             lambda: L.Conv2d(2, 3, 3, 2, (1, 2), padding_mode="replicate"), (2, 2, 6, 6)),
        case("Conv2d(2,3,3,p(2,1),circular)",
             lambda: L.Conv2d(2, 3, 3, 1, (2, 1), padding_mode="circular"), (2, 2, 5, 6)),
        case("MaxPool2d(3,2,1,dilation=2)", lambda: L.MaxPool2d(3, 2, 1, 2), (2, 3, 9, 8)),
        case("MaxPool2d(2,ceil_mode)", lambda: L.MaxPool2d(2, ceil_mode=True), (2, 3, 5, 7)),
        case("MaxPool2d(3,2,1,ceil_mode)", lambda: L.MaxPool2d(3, 2, 1, ceil_mode=True),
             (2, 2, 6, 7)),
        case("AvgPool2d(3,2,1,ceil_mode)", lambda: L.AvgPool2d(3, 2, 1, ceil_mode=True),
             (2, 3, 6, 7)),
        case("AvgPool2d(3,2,1,ceil_mode,count_include_pad=False)",
             lambda: L.AvgPool2d(3, 2, 1, True, False), (2, 3, 6, 7)),
        case("AvgPool2d(2,divisor_override=3)", lambda: L.AvgPool2d(2, divisor_override=3),
             (2, 3, 6, 6)),
        case("AdaptiveAvgPool2d(3)", lambda: L.AdaptiveAvgPool2d(3), (2, 3, 7, 8)),
        case("AdaptiveAvgPool2d((1,None))", lambda: L.AdaptiveAvgPool2d((1, None)),
             (2, 3, 5, 6)),
        case("LayerNorm(7)", lambda: _perturbed_affine(L.LayerNorm(7)), (4, 7)),
        case("LayerNorm((4,5))", lambda: _perturbed_affine(L.LayerNorm((4, 5))), (2, 3, 4, 5)),
        case("LayerNorm(6,elementwise_affine=False)",
             lambda: L.LayerNorm(6, elementwise_affine=False), (3, 6)),
        case("LayerNorm(6,bias=False)", lambda: _perturbed_affine(L.LayerNorm(6, bias=False)),
             (3, 6)),
        case("BatchNorm1d(5,bias=False)", lambda: _perturbed(L.BatchNorm1d(5, bias=False)),
             (6, 5)),
    ]
    if hasattr(L, "Conv2d") and hasattr(L, "BatchNorm2d"):
        # Conv2d's output is channels-last in memory: BatchNorm2d's statistics then
        # reduce over strided axes, the case where naive float32 summation loses digits.
        cases.append(Case("Conv2d(3,8,3,p1,bias=False) + BatchNorm2d(8)",
                          lambda: S(L.Conv2d(3, 8, 3, 1, 1, bias=False),
                                    _perturbed(L.BatchNorm2d(8))),
                          (16, 3, 16, 16), "mse", shift=2.0))
    if hasattr(L, "Residual"):
        cases += [
            case("Residual(Linear,ReLU,Linear)",
                 lambda: L.Residual(S(L.Linear(6, 6), L.ReLU(), L.Linear(6, 6))), (4, 6)),
            case("Residual(Linear) + projection Linear",
                 lambda: L.Residual(S(L.Linear(6, 4), L.Tanh()), L.Linear(6, 4)), (4, 6)),
        ]
        if hasattr(L, "Conv2d") and hasattr(L, "BatchNorm2d"):
            cases += [
                case("Residual conv block",
                     lambda: S(L.Residual(S(L.Conv2d(3, 3, 3, 1, 1, bias=False),
                                            _perturbed(L.BatchNorm2d(3)),
                                            L.ReLU(), L.Conv2d(3, 3, 3, 1, 1, bias=False))),
                               L.ReLU()), (2, 3, 5, 5)),
                case("Residual conv block, projection (1x1 s2 + BN)",
                     lambda: L.Residual(
                         S(L.Conv2d(3, 4, 3, 2, 1, bias=False), _perturbed(L.BatchNorm2d(4)),
                           L.ReLU(), L.Conv2d(4, 4, 3, 1, 1, bias=False),
                           _perturbed(L.BatchNorm2d(4))),
                         S(L.Conv2d(3, 4, 1, 2, 0, bias=False), _perturbed(L.BatchNorm2d(4)))),
                     (2, 3, 6, 6)),
            ]
    return cases


def _perturbed_affine(norm: Module) -> Module:
    """A LayerNorm whose weight and bias are moved off their init (ones and zeros)."""
    rng = numpy.random.default_rng(5)
    for p in norm.parameters():
        p.data[...] = p.data + rng.uniform(-0.5, 0.5, p.shape).astype(p.dtype)
    return norm


def _perturbed(bn: Module) -> Module:
    """A BatchNorm with non-trivial gamma, beta and running statistics (seeded).

    The defaults (gamma 1, beta 0, mean 0, var 1) would hide a swapped or ignored one.
    """
    rng = numpy.random.default_rng(1234 + bn.num_features)
    if bn.affine:
        bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
    if bn.bias is not None:
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, bn.num_features)
    if bn.track_running_stats:
        bn.running_mean[...] = rng.uniform(-0.5, 0.5, bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
        bn.num_batches_tracked[...] = 3
    return bn


def model_cases(batch_size: int = 4) -> list:
    """Every model of ``tinynet.models.MODELS`` (the studies' models), cross-entropy loss."""
    from ..models import INPUT_SHAPES, MODELS
    return [Case(name, build, (batch_size,) + tuple(INPUT_SHAPES.get(name, (1, 28, 28))),
                 "cross_entropy") for name, build in MODELS.items()]


def seeded_model(build: Callable[[], Module], seed: int) -> Module:
    """``build()`` with the global generator seeded, then restored."""
    rng = get_rng_state()
    try:
        manual_seed(seed)
        return build()
    finally:
        set_rng_state(rng)


def check_case(case: Case, dtype=("float64", "float32"), train=(True, False),
               seed: int = 0, kernels: str | None = None) -> ParityReport:
    """:func:`compare` on ``case``: its model built with the global generator seeded."""
    model = seeded_model(case.build, seed)
    x, target = case.batch(seed)
    return compare(model, x, target, case.loss, dtype=dtype, train=train, name=case.name,
                   seed=seed, kernels=kernels)


# Optimizer settings of the trajectory checks: ``(name, hyper-parameters)``.
TRAJECTORY_OPTIMIZERS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    ("adam", {"lr": 1e-3}),
    ("adam", {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 1e-4}),
]


def _dropout_mlp() -> Sequential:
    """The base MLP with Dropout(0.2) after each hidden ReLU (trajectories with masks)."""
    L = _layers
    return Sequential(L.Flatten(), L.Linear(784, 512), L.ReLU(), L.Dropout(0.2),
                      L.Linear(512, 512), L.ReLU(), L.Dropout(0.2), L.Linear(512, 10))


def trajectory_plan() -> list:
    """``(name, builder, optimizer settings)`` of the command's trajectory checks."""
    from ..models import MODELS
    sgd_momentum = [TRAJECTORY_OPTIMIZERS[1]]
    plan = [("base", MODELS["base"], TRAJECTORY_OPTIMIZERS)]
    if "simplecnn" in MODELS and hasattr(_layers, "Conv2d"):
        plan.append(("simplecnn", MODELS["simplecnn"],
                     [TRAJECTORY_OPTIMIZERS[i] for i in (3, 4)]))
    if "bn" in MODELS and hasattr(_layers, "BatchNorm1d"):
        plan.append(("bn", MODELS["bn"], sgd_momentum + [TRAJECTORY_OPTIMIZERS[4]]))
    plan.append(("base + Dropout(0.2)", _dropout_mlp, sgd_momentum))
    return plan


def seeded_trajectory(name: str, build: Callable[[], Module], batches: list, optimizer: str,
                      hyper: dict, dtype: str, seed: int = 0,
                      kernels: str | None = None) -> ParityReport:
    """:func:`trajectory` of the model ``build()`` makes with the global generator seeded."""
    return trajectory(seeded_model(build, seed), batches, optimizer, hyper, dtype=dtype, name=name,
                      seed=seed, kernels=kernels).report
