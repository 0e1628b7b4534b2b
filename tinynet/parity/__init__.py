"""PyTorch parity: twin models, per-tensor comparison and training trajectories.

"Checked against PyTorch" made into something anyone can rerun (``tinynet parity``)::

    from tinynet import models, parity
    model = models.build("simplecnn")
    twin = parity.to_torch(model)        # torch.nn.Sequential, same weights and buffers
    back = parity.from_torch(twin)       # a tinynet Sequential again, bit for bit equal
    report = parity.compare(model, x, t) # float64 and float32, train and eval mode
    print(report); assert report.ok

torch is optional: this package imports without it, and every function that needs it
raises :class:`MissingTorchError` ("needs torch: pip install torch").

One module per job:

* :mod:`~tinynet.parity.twins`: ``to_torch``, ``from_torch``, ``TorchResidual``;
* :mod:`~tinynet.parity.compare`: one forward/backward pass in both, ``compare``;
* :mod:`~tinynet.parity.trajectory`: training runs side by side, ``trajectory``;
* :mod:`~tinynet.parity.report`: ``Row``, ``ParityReport``, ``difference``;
* :mod:`~tinynet.parity.tolerances`: every limit, with the measurements behind it;
* :mod:`~tinynet.parity.cases`: what the command checks; :mod:`~tinynet.parity.cli`: the
  command; :mod:`~tinynet.parity.spread`: how far float32 rounding alone carries a
  training run (``python -m tinynet.parity.spread``).

docs/parity.md has the measured numbers.
"""

from .cases import (
    TRAJECTORY_OPTIMIZERS,
    Case,
    check_case,
    layer_cases,
    model_cases,
    seeded_trajectory,
    trajectory_plan,
)
from .cli import main, parser
from .compare import DropoutMasks, compare
from .report import ParityReport, Row, difference
from .tolerances import (
    BASELINE_RUNS,
    FLOAT32_FLOOR_FACTOR,
    FLOAT32_STEP_FACTOR,
    STEP_ERROR_FLOOR,
    TOLERANCES,
    TRAJECTORY_TOLERANCES,
)
from .trajectory import Trajectory, trajectory
from .twins import MissingTorchError, from_torch, to_torch, torch_residual_class

__all__ = [
    "BASELINE_RUNS",
    "FLOAT32_FLOOR_FACTOR",
    "FLOAT32_STEP_FACTOR",
    "STEP_ERROR_FLOOR",
    "TOLERANCES",
    "TRAJECTORY_OPTIMIZERS",
    "TRAJECTORY_TOLERANCES",
    "Case",
    "DropoutMasks",
    "MissingTorchError",
    "ParityReport",
    "Row",
    "Trajectory",
    "check_case",
    "compare",
    "difference",
    "from_torch",
    "layer_cases",
    "main",
    "model_cases",
    "parser",
    "seeded_trajectory",
    "to_torch",
    "trajectory",
    "trajectory_plan",
]


def __getattr__(name: str):  # lazy ``tinynet.parity.TorchResidual`` (it needs torch)
    if name == "TorchResidual":
        return torch_residual_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
