"""The fast kernels: every function of :mod:`tinynet.functional`, faster where it paid.

The same names, arguments and results as the reference set (``tests/test_kernels.py``
holds every layer and study model to within 1e-12 of it in float64). Each fast module
says what it changes and the measurement that justified it; a name with no faster
version here is the reference function itself. The layers run this set by default
(``tinynet.set_kernels("fast")``); the speed of both sets on the study models is in
``docs/benchmarks.md``.

* :mod:`.conv`           channels-last memory, chunked im2col, tap-by-tap col2im
* :mod:`.pool`           max pooling in the input's memory order, arg-max without a reduction
* :mod:`.normalization`  BatchNorm on a contiguous frame, sums as products with ones
* :mod:`.activation`     Sigmoid, LeakyReLU, ELU without selects; ReLU split over threads
* :mod:`.linear`         the products split over threads in a convolutional model
* :mod:`.loss`           cross-entropy without the one-hot target matrix
* :mod:`.threads`        the samples of a batch split over CPU threads
"""

from .. import *
from .. import KERNELS
from .activation import (  # noqa: F401
    elu_backward,
    elu_forward,
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
)
from .conv import conv2d_backward, conv2d_forward  # noqa: F401
from .linear import linear_backward, linear_forward  # noqa: F401
from .loss import cross_entropy_backward, cross_entropy_forward  # noqa: F401
from .normalization import batch_norm_forward, layer_norm_forward, norm_backward  # noqa: F401
from .pool import maxpool2d_backward, maxpool2d_forward, maxpool2d_indices  # noqa: F401

__all__ = list(KERNELS)
