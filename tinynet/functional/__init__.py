"""Stateless kernels: functions of arrays that the layers in ``tinynet.layers`` wrap.

Each fast kernel has a loop-based ``*_naive`` reference next to it that the tests
compare it with.
"""

from .conv import (
                   col2im,
                   conv2d_backward,
                   conv2d_backward_naive,
                   conv2d_forward,
                   conv2d_naive,
                   conv_output_size,
                   im2col,
)
from .pool import (
                   avgpool2d_backward,
                   avgpool2d_backward_naive,
                   avgpool2d_forward,
                   avgpool2d_naive,
                   maxpool2d_backward,
                   maxpool2d_backward_naive,
                   maxpool2d_forward,
                   maxpool2d_naive,
)

__all__ = [
                   "avgpool2d_backward",
                   "avgpool2d_backward_naive",
                   "avgpool2d_forward",
                   "avgpool2d_naive",
                   "col2im",
                   "conv2d_backward",
                   "conv2d_backward_naive",
                   "conv2d_forward",
                   "conv2d_naive",
                   "conv_output_size",
                   "im2col",
                   "maxpool2d_backward",
                   "maxpool2d_backward_naive",
                   "maxpool2d_forward",
                   "maxpool2d_naive",
]
