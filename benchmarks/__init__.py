"""tinynet's benchmark suite: tinynet against PyTorch, side by side, in one process.

Run ``python -m benchmarks`` (or ``tinynet bench``); ``--help`` lists the options.

* :mod:`benchmarks.timing`  threads, the pause before each timed block, interleaved repeats,
  device synchronisation on the GPU;
* :mod:`benchmarks.cases`   what is timed: layers (forward, backward, both) and whole
  training steps, each with its tinynet and PyTorch callables and, for steps, the
  matrix products of the step alone (the "GEMM floor");
* :mod:`benchmarks.report`  the machine header, the markdown table, the JSON, the PNG;
* :mod:`benchmarks.variants` tinynet's default against one thread and against the reference kernels;
* :mod:`benchmarks.floor`   the base MLP step as straight-line NumPy: is the goal reachable here?
* :mod:`benchmarks.profile` where a tinynet step spends its time, layer by layer.

TF32 is disabled before CuPy can be imported (``CUPY_TF32=0``), so a GPU run compares
full float32 products on both sides.
"""

import os
import sys

# TF32 would stay on if the user had set CUPY_TF32 and CuPy was already imported
# (e.g. by ``tinynet bench``, which imports tinynet first); --device cuda refuses then.
CUPY_TF32_TOO_LATE = os.environ.get("CUPY_TF32", "0") not in ("", "0") and "cupy" in sys.modules
os.environ["CUPY_TF32"] = "0"  # before tinynet.backend imports cupy
