"""Layers: Module wrappers that hold parameters and the cache their backward needs."""

from .activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .dropout import Dropout, Flatten
from .linear import Linear
from .pooling import AvgPool2d, MaxPool2d
from .residual import Residual, residual_block

__all__ = ["Linear", "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "Dropout", "Flatten",
           "Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Residual",
           "residual_block"]
