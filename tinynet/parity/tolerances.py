"""Every limit ``tinynet parity`` applies, with the measurement behind it (docs/parity.md).

One forward/backward pass (:func:`tinynet.parity.compare`), per tensor, on max_rel:

* ``TOLERANCES``: 1e-10 in float64, 1e-5 in float32;
* ``FLOAT32_FLOOR_FACTOR``: where PyTorch's own float32 result is further from its
  float64 result than that (same weights and input), tinynet's float32 may differ from
  PyTorch's by this factor times that distance: two float32 computations that round
  differently cannot agree better than their distance to the exact result.

Training trajectories (:func:`tinynet.parity.trajectory`):

* float64, ``TRAJECTORY_TOLERANCES``: tinynet and PyTorch train side by side, free, and
  the per-step losses and final weights must agree to 1e-9 (achieved: 1e-15 with SGD,
  1e-12 with Adam, after 50 steps). This is the bug detector: a gradient 1e-6 too large
  fails it. Where training amplifies rounding that much (the BN MLP, 5e-9 apart after 50
  steps), the limit is raised to ``FLOAT32_FLOOR_FACTOR`` x the largest drift of
  ``BASELINE_RUNS`` PyTorch runs started one ulp away in random directions: such runs
  end 4e-10 to 7e-9 (Adam) and 3e-9 to 1.6e-8 (SGD) from PyTorch's own, so one run alone
  is not enough (one gave 1.4e-10, and a limit below tinynet's 4.8e-9).
* float32, ``FLOAT32_STEP_FACTOR``: free float32 runs cannot be compared. Rounding
  differences of 1e-7 are amplified by rare discrete events (a ReLU whose input is within
  the runs' distance of zero switches in one run only; Adam turns a near-zero gradient's
  rounding into an lr-sized step), and PyTorch's own float32 runs started one ulp apart
  end 4.2e-3 to 9.6e-2 from float64 (SimpleCNN, Adam, 50 steps; 8 runs of 11 at 9.6e-2,
  where tinynet's ends: ``python -m tinynet.parity.spread``). So each
  float32 step is checked instead, from the same state: before every step PyTorch's
  float32 state (weights, buffers, optimizer state) is loaded into tinynet and into a
  float64 PyTorch twin; each takes one step on the batch; ``e = |du - du64| / |du64|``
  is the relative error of the update ``du`` of each tensor (and of the loss) against
  float64. Over the steps, tinynet's median error may be ``FLOAT32_STEP_FACTOR`` times
  PyTorch's (never less than ``STEP_ERROR_FLOOR``). Measured on the 11 settings of
  ``tinynet parity``, 3 seeds at 1 thread and 1 at 2 threads: the ratio is 1.00 to 1.11 on
  the correct code; with the update of Adam or SGD rounded to float16 it is 110 to 725,
  with BatchNorm normalising by a variance summed in float16 8,400 and more.
"""

from __future__ import annotations

import numpy

__all__ = ["BASELINE_RUNS", "FLOAT32_FLOOR_FACTOR", "FLOAT32_STEP_FACTOR", "STEP_ERROR_FLOOR",
           "TOLERANCES", "TRAJECTORY_TOLERANCES"]

# Per-tensor tolerance on max_rel for one forward/backward pass, by dtype.
TOLERANCES = {"float64": 1e-10, "float32": 1e-5}
FLOAT32_FLOOR_FACTOR = 10.0
# float64 trajectories: tolerance on max_rel of the per-step losses and of the final
# weights and buffers, by optimizer.
TRAJECTORY_TOLERANCES = {"float64": {"sgd": 1e-9, "adam": 1e-9}}
# ... raised, where a row exceeds it, to FLOAT32_FLOOR_FACTOR x the largest drift of this
# many PyTorch runs started one ulp away.
BASELINE_RUNS = 4
# float32 trajectories: tinynet's median step error may be this many times PyTorch's.
FLOAT32_STEP_FACTOR = 10.0
# ... and never has to be below this (float32's machine epsilon, 1.2e-7).
STEP_ERROR_FLOOR = float(numpy.finfo(numpy.float32).eps)
