"""Exercise: the backward of max pooling.   Grade it: tinynet grade exercises/maxpool2d.py

Forward (given): y[n, c, a, b] = max over the KH x KW window at (a*SH, b*SW) of x.
Shapes: x (N, C, H, W), y and dy (N, C, OH, OW). `self._argmax` holds, for every output,
which of the KH*KW window offsets (k = i*KW + j) held the maximum; on ties it is the
first one in row-major order, as in PyTorch.

Backward: the max is a selector, so each dy goes to the ONE input it selected. Windows
overlap when the stride is smaller than the kernel; then one input can receive several
gradients. Return dL/dx, shape (N, C, H, W).
"""

# ruff: noqa: F841, RUF059  (backward's first lines unpack what you will need)

from tinynet import Module, get_array_module


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self._argmax = None
        self._shape = None

    def forward(self, x):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        windows = xp.stack([x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                            for i in range(kh) for j in range(kw)])   # (KH*KW, N, C, OH, OW)
        self._argmax = windows.argmax(axis=0)                         # first max on ties
        self._shape = x.shape
        return windows.max(axis=0)

    def backward(self, dy, input_grad=True):
        xp = get_array_module(dy)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = dy.shape[2], dy.shape[3]
        # TODO: dx = zeros of self._shape; for each offset k = i*KW + j, send dy where
        #       self._argmax == k to the strided slice of dx that offset covers
        raise NotImplementedError("MaxPool2d.backward: write it, then run tinynet grade")
