"""Exercise: the backward of a fully connected layer.   Grade it: tinynet grade exercises/linear.py

Forward (given):  y = x @ W.T + b,  i.e.  y[n, o] = sum_i x[n, i] W[o, i] + b[o]
Shapes: x (N, D_in), W (D_out, D_in), b (D_out,), y and dy (N, D_out).

Your backward gets dy = dL/dy and must
  * ADD dL/dW into self.weight.grad and dL/db into self.bias.grad (use .accumulate(g)),
  * return dL/dx, of shape (N, D_in) (or None when input_grad is False).
Write each derivative for one element first (which y's does W[o, i] touch?), then turn
the sum into a matrix product. Every gradient must have the shape of what it is the
gradient of.
"""

# ruff: noqa: F841  (backward's first lines unpack what you will need)

import numpy

from tinynet import Module, Parameter, get_array_module  # noqa: F401
from tinynet.init import pytorch_default_


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = Parameter(numpy.empty((out_features, in_features)))
        self.bias = Parameter(numpy.empty((out_features,))) if bias else None
        pytorch_default_(self.weight, self.bias)
        self._x = None

    def forward(self, x):
        self._x = x                               # (N, D_in): all backward needs
        y = x @ self.weight.data.T
        if self.bias is not None:
            y = y + self.bias.data
        return y

    def backward(self, dy, input_grad=True):
        x = self._x
        # TODO: self.weight.accumulate(...)         dL/dW, shape (D_out, D_in)
        # TODO: if self.bias is not None: self.bias.accumulate(...)   dL/db, shape (D_out,)
        # TODO: return dL/dx, shape (N, D_in) (None if not input_grad)
        raise NotImplementedError("Linear.backward: write it, then run tinynet grade")
