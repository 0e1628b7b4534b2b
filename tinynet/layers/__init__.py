"""Layers: Module wrappers that hold parameters and the cache their backward needs."""

from .activation import ELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .dropout import Dropout, Flatten
from .linear import Linear

__all__ = ["Linear", "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "ELU", "Dropout", "Flatten"]
