"""Exercise: the backward of ReLU.   Grade it: tinynet grade exercises/relu.py

Forward (given): y = max(x, 0), element-wise, any shape.
Backward: return dL/dx = dL/dy * dy/dx, element-wise, where dy/dx is 1 where x > 0 and 0
elsewhere (0 at x = 0, as PyTorch). Careful with what you cache: if you clamp x in place,
x > 0 and x >= 0 are no longer the same thing.
"""

from tinynet import Module, get_array_module


class ReLU(Module):
    def __init__(self):
        super().__init__()
        self._mask = None

    def forward(self, x):
        xp = get_array_module(x)
        self._mask = x > 0                        # boolean, same shape as x
        return xp.maximum(x, 0)

    def backward(self, dy, input_grad=True):
        # TODO: return dL/dx (same shape as dy). Do not modify dy in place.
        raise NotImplementedError("ReLU.backward: write it, then run tinynet grade")
