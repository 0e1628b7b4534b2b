"""Exercise: the backward of the logistic sigmoid.   Grade it: tinynet grade exercises/sigmoid.py

Forward (given): y = sigma(x) = 1 / (1 + exp(-x)), element-wise, any shape.
Backward: return dL/dx = dL/dy * sigma'(x). Differentiate 1 / (1 + e^-x) and write the
result in terms of y alone: then the cached output is all you need.
"""

from tinynet import Module, get_array_module


class Sigmoid(Module):
    def __init__(self):
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = get_array_module(x)
        z = xp.exp(-xp.abs(x))                    # never overflows
        self._y = y = xp.where(x >= 0, 1 / (1 + z), z / (1 + z))
        return y

    def backward(self, dy, input_grad=True):
        # TODO: return dL/dx using self._y
        raise NotImplementedError("Sigmoid.backward: write it, then run tinynet grade")
