"""Exercise: the backward of a 2-D convolution.   Grade it: tinynet grade exercises/conv2d.py

Forward (given), a cross-correlation with stride (SH, SW) and zero padding (PH, PW):
    y[n, o, a, b] = sum_{c, i, j} xpad[n, c, a*SH + i, b*SW + j] * W[o, c, i, j] + bias[o]
Shapes: x (N, C, H, W), W (C_out, C, KH, KW), bias (C_out,), y and dy (N, C_out, OH, OW).
The forward loops over the KH*KW kernel offsets (never over pixels): for each (i, j) the
strided slice `patch` holds, for every output position, the input it meets at W[:, :, i, j].

Your backward must ADD dL/dW and dL/dbias into .grad and return dL/dx (N, C, H, W).
Follow the same loop: for each offset, which dy's touched which inputs and weights? Build
dL/dxpad, then cut the padding off. xp.einsum is handy.
"""

# ruff: noqa: F841, RUF059  (backward's first lines unpack what you will need)

import numpy

from tinynet import Module, Parameter, get_array_module
from tinynet.init import pytorch_default_


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.kernel_size = kh, kw = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.weight = Parameter(numpy.empty((out_channels, in_channels, kh, kw)))
        self.bias = Parameter(numpy.empty((out_channels,))) if bias else None
        pytorch_default_(self.weight, self.bias)
        self._xpad = None
        self._shape = None

    def forward(self, x):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        weight = self.weight.data
        y = xp.zeros((n, weight.shape[0], oh, ow), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                patch = xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]      # (N, C, OH, OW)
                y += xp.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
        if self.bias is not None:
            y += self.bias.data[None, :, None, None]
        self._xpad, self._shape = xpad, x.shape
        return y

    def backward(self, dy, input_grad=True):
        xp = get_array_module(dy)
        xpad, (n, c, h, w) = self._xpad, self._shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = dy.shape[2], dy.shape[3]
        # TODO: dW (C_out, C, KH, KW) and dxpad (like xpad), one kernel offset at a time
        # TODO: self.weight.accumulate(dW); bias: sum dy over N, OH and OW
        # TODO: return dxpad without the padding (None if not input_grad)
        raise NotImplementedError("Conv2d.backward: write it, then run tinynet grade")
