"""Exercise: BatchNorm1d's backward in training mode.   Grade it: tinynet grade exercises/batchnorm1d.py

Forward (given), per feature over the batch of N:
    mu = mean_n x,  var = mean_n (x - mu)^2  (biased: divide by N),
    xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta.
Shapes: x, y, dy (N, C); gamma = self.weight, beta = self.bias (C,).

Backward: ADD dL/dgamma and dL/dbeta into .grad and return dL/dx. mu and var depend on
every x in the batch, so dL/dx[n] gets contributions through xhat[n] directly, through
mu and through var: the result has three terms. The cache holds xhat and 1/sqrt(var+eps).
"""

# ruff: noqa: F841, RUF059  (backward's first lines unpack what you will need)

import numpy

from tinynet import Module, Parameter, get_array_module


class BatchNorm1d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = Parameter(numpy.ones((num_features,)))
        self.bias = Parameter(numpy.zeros((num_features,)))
        self.register_buffer("running_mean", numpy.zeros((num_features,)))
        self.register_buffer("running_var", numpy.ones((num_features,)))
        self._cache = None

    def forward(self, x):
        xp = get_array_module(x)
        n = x.shape[0]
        mu = x.mean(axis=0)
        var = ((x - mu) ** 2).mean(axis=0)
        invstd = 1 / xp.sqrt(var + self.eps)
        xhat = (x - mu) * invstd
        m = self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * mu
        self.running_var = (1 - m) * self.running_var + m * var * (n / max(n - 1, 1))
        self._cache = (xhat, invstd)
        return self.weight.data * xhat + self.bias.data

    def backward(self, dy, input_grad=True):
        xhat, invstd = self._cache
        n = dy.shape[0]
        # TODO: self.bias.accumulate(...)   dL/dbeta  (C,)
        # TODO: self.weight.accumulate(...) dL/dgamma (C,)
        # TODO: return dL/dx (N, C) (None if not input_grad)
        raise NotImplementedError("BatchNorm1d.backward: write it, then run tinynet grade")
