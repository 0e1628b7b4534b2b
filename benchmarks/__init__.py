"""tinynet's benchmark suite: tinynet against PyTorch, side by side, in one process.

Run ``python -m benchmarks`` (or ``tinynet bench``); ``--help`` lists the options.

* :mod:`benchmarks.timing`  threads, the pause before each timed block, interleaved repeats,
  device synchronisation on the GPU;
* :mod:`benchmarks.cases`   what is timed: layers (forward, backward, both) and whole
  training steps, each with its tinynet and PyTorch callables and, for steps, the
  matrix products of the step alone (the "GEMM floor");
* :mod:`benchmarks.report`  the machine header, the markdown table, the JSON, the PNG;
* :mod:`benchmarks.mlp_step` the focused base-MLP step script of issue 11.

TF32 is disabled before CuPy can be imported (``CUPY_TF32=0``), so a GPU run compares
full float32 products on both sides.
"""

import os

os.environ["CUPY_TF32"] = "0"  # before tinynet.backend imports cupy
