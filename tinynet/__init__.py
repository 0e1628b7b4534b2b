"""tinynet: a neural-network framework on NumPy (and CuPy), every backward by hand.

PyTorch's names, argument orders, defaults and state_dict layout, with no autograd::

    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(784, 10))
    loss_fn = tinynet.CrossEntropyLoss()
    y = model(x); loss = loss_fn(y, t); model.backward(loss_fn.backward())
"""

from . import backend, functional, init, kernels
from .backend import cuda_available, get_array_module
from .checks import checking, set_checks
from .errors import (
    ArgumentError,
    CheckpointError,
    DataError,
    DeviceError,
    DTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
    StateDictError,
    TinynetError,
)
from .functional.fast.threads import get_num_threads, set_num_threads
from .kernels import get_kernels, reference_kernels, set_kernels, use_kernels
from .layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Residual,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .models import count_parameters
from .module import Module, Sequential
from .optim import SGD, Adam, Optimizer
from .parameter import Parameter
from .random import manual_seed
from .serialization import load, save
from .trace import trace
from .train import evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "SGD",
    "Adam",
    "AdaptiveAvgPool2d",
    "ArgumentError",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "CheckpointError",
    "Conv2d",
    "CrossEntropyLoss",
    "DTypeError",
    "DataError",
    "DeviceError",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "L1Loss",
    "LabelError",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "NLLLoss",
    "NonFiniteError",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "ShapeError",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "StateDictError",
    "Tanh",
    "TinynetError",
    "backend",
    "checking",
    "count_parameters",
    "cuda_available",
    "evaluate",
    "fit",
    "functional",
    "get_array_module",
    "get_kernels",
    "get_num_threads",
    "init",
    "kernels",
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

# Sub-packages with a job of their own, imported on first use so ``import tinynet`` stays
# quick: ``tinynet.gradcheck.check(...)`` works after a plain ``import tinynet``.
_SUBPACKAGES = ("data", "exercises", "gradcheck", "models", "parity", "testing")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
