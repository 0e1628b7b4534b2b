"""Layers: Module wrappers that hold parameters and the cache their backward needs."""

from .activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout, Flatten
from .linear import Linear
from .pooling import AvgPool2d, MaxPool2d
from .residual import Residual, residual_block

__all__ = [
           "ELU",
           "AvgPool2d",
           "BatchNorm1d",
           "BatchNorm2d",
           "Conv2d",
           "Dropout",
           "Flatten",
           "LeakyReLU",
           "Linear",
           "MaxPool2d",
           "ReLU",
           "Residual",
           "Sigmoid",
           "Tanh",
           "residual_block",
]
