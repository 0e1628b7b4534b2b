"""tinynet: a neural-network framework on NumPy (and CuPy), every backward by hand.

PyTorch's names, argument orders, defaults and state_dict layout, with no autograd::

    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(784, 10))
    loss_fn = tinynet.CrossEntropyLoss()
    y = model(x); loss = loss_fn(y, t); model.backward(loss_fn.backward())
"""

from . import backend, init
from .backend import cuda_available, get_array_module
from .checks import checking, set_checks
from .errors import (
                     DataError,
                     DeviceError,
                     DTypeError,
                     LabelError,
                     NonFiniteError,
                     ShapeError,
                     StateDictError,
                     TinynetError,
)
from .kernels import get_kernels, reference_kernels, set_kernels, use_kernels
from .layers import (
                     ELU,
                     AvgPool2d,
                     BatchNorm1d,
                     BatchNorm2d,
                     Conv2d,
                     Dropout,
                     Flatten,
                     LeakyReLU,
                     Linear,
                     MaxPool2d,
                     ReLU,
                     Residual,
                     Sigmoid,
                     Tanh,
)
from .losses import CrossEntropyLoss, MSELoss
from .models import count_parameters
from .module import Module, Sequential
from .optim import SGD, Adam, Optimizer
from .parallel import get_num_threads, set_num_threads
from .parameter import Parameter
from .random import manual_seed
from .serialization import load, save
from .trace import trace
from .train import evaluate, fit

__version__ = "0.1.0"

__all__ = [
                     "ELU",
                     "SGD",
                     "Adam",
                     "AvgPool2d",
                     "BatchNorm1d",
                     "BatchNorm2d",
                     "Conv2d",
                     "CrossEntropyLoss",
                     "DTypeError",
                     "DataError",
                     "DeviceError",
                     "Dropout",
                     "Flatten",
                     "LabelError",
                     "LeakyReLU",
                     "Linear",
                     "MSELoss",
                     "MaxPool2d",
                     "Module",
                     "NonFiniteError",
                     "Optimizer",
                     "Parameter",
                     "ReLU",
                     "Residual",
                     "Sequential",
                     "ShapeError",
                     "Sigmoid",
                     "StateDictError",
                     "Tanh",
                     "TinynetError",
                     "backend",
                     "checking",
                     "count_parameters",
                     "cuda_available",
                     "evaluate",
                     "fit",
                     "get_array_module",
                     "get_kernels",
                     "get_num_threads",
                     "init",
                     "load",
                     "manual_seed",
                     "reference_kernels",
                     "save",
                     "set_checks",
                     "set_kernels",
                     "set_num_threads",
                     "trace",
                     "use_kernels",
]
