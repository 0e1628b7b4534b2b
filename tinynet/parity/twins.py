"""PyTorch twins of tinynet models: :func:`to_torch`, :func:`from_torch`, ``TorchResidual``.

``to_torch(model)`` builds the ``torch.nn`` model with the same layers, the same
``state_dict`` keys and the same values (copied, dtypes kept, same train/eval mode);
``from_torch(module)`` is the reverse. Round trips are exact, bit for bit.

torch is optional: this module imports without it; :func:`torch_module` imports it on
first use or raises :class:`MissingTorchError` ("needs torch: pip install torch").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import numpy

from .. import layers as _layers
from ..backend import to_numpy
from ..errors import TinynetError
from ..module import Module, Sequential
from ..random import get_rng_state, set_rng_state

__all__ = ["MissingTorchError", "from_torch", "quiet_torch_notices", "to_torch", "torch_module",
           "torch_residual_class", "torch_threads"]


class MissingTorchError(TinynetError, ImportError):
    """tinynet.parity was asked to build or run a PyTorch twin, but torch is not installed."""


def torch_module():
    """Import torch on first use, or raise a clear MissingTorchError."""
    try:
        import torch
    except ImportError as e:
        raise MissingTorchError(
            f"tinynet.parity needs torch: pip install torch (import failed: {e})") from None
    return torch


@contextlib.contextmanager
def torch_threads(count: int):
    """PyTorch's intra-op threads at ``count`` inside this block only (the commands run
    PyTorch at a fixed thread count; a caller's own setting is given back on exit)."""
    torch = torch_module()
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- Residual twin
_TORCH_CLASSES: dict[str, type] = {}


@contextlib.contextmanager
def quiet_torch_notices():
    """Hide, inside this block only, PyTorch's notice that ``padding='same'`` with an even
    kernel may copy the input: a note on its speed, not on the numbers compared. Every
    other warning still shows, and the filters are as before once the block ends."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning,
                                message="Using padding='same' with even kernel lengths")
        yield


def torch_residual_class() -> type:
    """``TorchResidual``: the torch twin of ``tinynet.layers.Residual`` (built on first use)."""
    if "TorchResidual" not in _TORCH_CLASSES:
        nn = torch_module().nn

        class TorchResidual(nn.Module):
            """y = body(x) + (projection(x) if projection is not None else x).

            Attributes ``body`` and ``projection`` give the state_dict keys
            ``body.*`` and ``projection.*``, as tinynet's Residual.
            """

            def __init__(self, body, projection=None) -> None:
                super().__init__()
                self.body = body
                self.projection = projection

            def forward(self, x):
                skip = x if self.projection is None else self.projection(x)
                return self.body(x) + skip

        TorchResidual.__module__ = "tinynet.parity"  # resolved by the package's __getattr__
        TorchResidual.__qualname__ = "TorchResidual"
        _TORCH_CLASSES["TorchResidual"] = TorchResidual
    return _TORCH_CLASSES["TorchResidual"]


# --------------------------------------------------------------------------- dtypes
def _torch_dtype(numpy_dtype):
    torch = torch_module()
    table = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
             "int64": torch.int64}
    name = numpy.dtype(numpy_dtype).name
    if name not in table:
        raise TinynetError(f"tinynet.parity: no torch dtype for {name}")
    return table[name]


def _layer_dtype(module: Module) -> str:
    """The dtype of a layer's first floating parameter or buffer (float32 if it has none)."""
    for p in module.parameters():
        return numpy.dtype(p.data.dtype).name
    for b in module.buffers():
        if b is not None and b.dtype.kind == "f":
            return numpy.dtype(b.dtype).name
    return "float32"


def _torch_layer_dtype(module) -> str:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return str(t.dtype).replace("torch.", "")
    return "float32"


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# --------------------------------------------------------------------------- to_torch
def _linear_to_torch(m, nn, dtype):
    return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)


def _conv_to_torch(m, nn, dtype):
    return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                     padding=m.padding, dilation=m.dilation, groups=m.groups,
                     bias=m.bias is not None, padding_mode=m.padding_mode, dtype=dtype)


def _maxpool_to_torch(m, nn, dtype):
    return nn.MaxPool2d(m.kernel_size, stride=m.stride, padding=m.padding,
                        dilation=m.dilation, return_indices=m.return_indices,
                        ceil_mode=m.ceil_mode)


def _avgpool_to_torch(m, nn, dtype):
    return nn.AvgPool2d(m.kernel_size, stride=m.stride, padding=m.padding,
                        ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                        divisor_override=m.divisor_override)


def _batchnorm_to_torch(kind):
    def convert(m, nn, dtype):
        cls = nn.BatchNorm1d if kind == 1 else nn.BatchNorm2d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats, dtype=dtype,
                   bias=m.bias is not None or not m.affine)
    return convert


def _layernorm_to_torch(m, nn, dtype):
    return nn.LayerNorm(m.normalized_shape, eps=m.eps,
                        elementwise_affine=m.elementwise_affine, bias=m.bias is not None,
                        dtype=dtype)


def _to_torch_table() -> list[tuple[type, Callable]]:
    """(tinynet class, converter) pairs."""
    table = [
        ("Linear", _linear_to_torch),
        ("Identity", lambda m, nn, dt: nn.Identity()),
        ("ReLU", lambda m, nn, dt: nn.ReLU()),
        ("Tanh", lambda m, nn, dt: nn.Tanh()),
        ("Sigmoid", lambda m, nn, dt: nn.Sigmoid()),
        ("SiLU", lambda m, nn, dt: nn.SiLU()),
        ("GELU", lambda m, nn, dt: nn.GELU(m.approximate)),
        ("Softmax", lambda m, nn, dt: nn.Softmax(m.dim)),
        ("LogSoftmax", lambda m, nn, dt: nn.LogSoftmax(m.dim)),
        ("LeakyReLU", lambda m, nn, dt: nn.LeakyReLU(m.negative_slope)),
        ("ELU", lambda m, nn, dt: nn.ELU(m.alpha)),
        ("Flatten", lambda m, nn, dt: nn.Flatten(m.start_dim, m.end_dim)),
        ("Dropout", lambda m, nn, dt: nn.Dropout(m.p)),
        ("Dropout2d", lambda m, nn, dt: nn.Dropout2d(m.p)),
        ("Conv2d", _conv_to_torch),
        ("MaxPool2d", _maxpool_to_torch),
        ("AvgPool2d", _avgpool_to_torch),
        ("AdaptiveAvgPool2d", lambda m, nn, dt: nn.AdaptiveAvgPool2d(m.output_size)),
        ("BatchNorm1d", _batchnorm_to_torch(1)),
        ("BatchNorm2d", _batchnorm_to_torch(2)),
        ("LayerNorm", _layernorm_to_torch),
    ]
    return [(getattr(_layers, name), f) for name, f in table]


def _build_torch(m: Module):
    nn = torch_module().nn
    if isinstance(m, Sequential):
        twin = nn.Sequential(*[_build_torch(child) for child in m])
    elif hasattr(_layers, "Residual") and isinstance(m, _layers.Residual):
        proj = m.projection
        twin = torch_residual_class()(_build_torch(m.body),
                                       None if proj is None else _build_torch(proj))
    else:
        for cls, convert in _to_torch_table():
            if type(m) is cls:
                twin = convert(m, nn, _torch_dtype(_layer_dtype(m)))
                break
        else:
            raise TinynetError(
                f"to_torch: no PyTorch twin for {m.describe()} ({type(m).__name__}); "
                f"supported: Sequential, Residual, "
                f"{', '.join(c.__name__ for c, _ in _to_torch_table())}")
    twin.train(m.training)
    return twin


def to_torch(model: Module):
    """The PyTorch twin of a tinynet model, with identical weights and buffers.

    A tinynet ``Sequential`` becomes a ``torch.nn.Sequential`` (nested ones nest), a
    ``Residual`` a :class:`TorchResidual` (attributes ``body`` and ``projection``), and
    each layer its ``torch.nn`` namesake with the same constructor arguments. Values are
    copied (the twin shares no memory with ``model``) with their dtypes kept; the twin
    lives on the CPU and is in the same train/eval mode. ``twin.state_dict()`` has the
    same keys, shapes, dtypes and values as ``model.state_dict()``.
    """
    torch = torch_module()
    twin = _build_torch(model)
    state = {}
    for key, value in model.state_dict().items():
        host = numpy.array(to_numpy(value), copy=True)
        state[key] = torch.from_numpy(host)
    with torch.no_grad():
        _load_exact_torch(twin, state, model)
    return twin


def _load_exact_torch(twin, state: dict, model: Module) -> None:
    """Copy ``state`` into ``twin``; refuse any key, shape or dtype mismatch."""
    own = twin.state_dict()
    if list(own) != list(state):
        raise TinynetError(
            f"to_torch: state_dict keys differ between {type(model).__name__} and its twin: "
            f"tinynet {list(state)} vs torch {list(own)}")
    for key, value in state.items():
        target = own[key]
        if tuple(target.shape) != tuple(value.shape) or target.dtype != value.dtype:
            raise TinynetError(
                f"to_torch: {key}: tinynet {tuple(value.shape)} {value.dtype} vs torch "
                f"{tuple(target.shape)} {target.dtype}")
        target.copy_(value)


# --------------------------------------------------------------------------- from_torch
def _from_torch_table(nn) -> list[tuple[type, Callable]]:
    L = _layers
    return [
        (nn.Linear, lambda t: L.Linear(t.in_features, t.out_features, bias=t.bias is not None)),
        (nn.Identity, lambda t: L.Identity()),
        (nn.ReLU, lambda t: L.ReLU()),
        (nn.Tanh, lambda t: L.Tanh()),
        (nn.Sigmoid, lambda t: L.Sigmoid()),
        (nn.SiLU, lambda t: L.SiLU()),
        (nn.GELU, lambda t: L.GELU(t.approximate)),
        (nn.Softmax, lambda t: L.Softmax(t.dim)),
        (nn.LogSoftmax, lambda t: L.LogSoftmax(t.dim)),
        (nn.LeakyReLU, lambda t: L.LeakyReLU(t.negative_slope)),
        (nn.ELU, lambda t: L.ELU(t.alpha)),
        (nn.Flatten, lambda t: L.Flatten(t.start_dim, t.end_dim)),
        (nn.Dropout, lambda t: L.Dropout(t.p)),
        (nn.Dropout2d, lambda t: L.Dropout2d(t.p)),
        (nn.Conv2d, lambda t: L.Conv2d(
            t.in_channels, t.out_channels, tuple(t.kernel_size), tuple(t.stride),
            t.padding if isinstance(t.padding, str) else tuple(t.padding), tuple(t.dilation),
            t.groups, t.bias is not None, t.padding_mode)),
        (nn.MaxPool2d, lambda t: L.MaxPool2d(t.kernel_size, t.stride, t.padding, t.dilation,
                                             t.return_indices, t.ceil_mode)),
        (nn.AvgPool2d, lambda t: L.AvgPool2d(t.kernel_size, t.stride, t.padding, t.ceil_mode,
                                             t.count_include_pad, t.divisor_override)),
        (nn.AdaptiveAvgPool2d, lambda t: L.AdaptiveAvgPool2d(t.output_size)),
        (nn.BatchNorm1d, _batchnorm_from_torch(1)),
        (nn.BatchNorm2d, _batchnorm_from_torch(2)),
        (nn.LayerNorm, lambda t: L.LayerNorm(t.normalized_shape, t.eps, t.elementwise_affine,
                                             t.bias is not None)),
    ]


def _batchnorm_from_torch(kind):
    def convert(t):
        cls = _layers.BatchNorm1d if kind == 1 else _layers.BatchNorm2d
        return cls(t.num_features, t.eps, t.momentum, t.affine, t.track_running_stats,
                   bias=t.bias is not None or not t.affine)
    return convert


def _build_tinynet(t) -> Module:
    nn = torch_module().nn
    if isinstance(t, nn.Sequential):
        m = Sequential(*[_build_tinynet(child) for child in t])
    elif type(t).__name__ == "TorchResidual" and hasattr(_layers, "Residual"):
        proj = t.projection
        m = _layers.Residual(_build_tinynet(t.body),
                             None if proj is None else _build_tinynet(proj))
    else:
        for cls, convert in _from_torch_table(nn):
            if type(t) is cls:
                m = convert(t)
                break
        else:
            raise TinynetError(
                f"from_torch: no tinynet twin for torch module {type(t).__name__}; supported: "
                f"Sequential, TorchResidual, "
                f"{', '.join(c.__name__ for c, _ in _from_torch_table(nn))}")
        if _torch_layer_dtype(t) == "float64":
            m.double()
    m.train(t.training)
    return m


def from_torch(module) -> Module:
    """The tinynet model of a PyTorch one built from the layers :func:`to_torch` knows.

    The reverse of :func:`to_torch`: ``torch.nn.Sequential`` becomes ``Sequential``,
    :class:`TorchResidual` becomes ``Residual``, ``torch.nn.Linear`` becomes ``Linear``,
    and so on; parameters and buffers are copied with their dtypes, the mode is kept.
    Building the layers does not advance tinynet's global random generator.
    """
    torch = torch_module()
    if not isinstance(module, torch.nn.Module):
        raise TinynetError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    rng = get_rng_state()
    try:
        model = _build_tinynet(module)
    finally:
        set_rng_state(rng)
    state = module.state_dict()
    own = model.state_dict()
    if list(own) != list(state):
        raise TinynetError(f"from_torch: state_dict keys differ: torch {list(state)} vs "
                           f"tinynet {list(own)}")
    for key, value in state.items():
        if numpy.dtype(own[key].dtype) != numpy.dtype(str(value.dtype).replace("torch.", "")):
            raise TinynetError(f"from_torch: {key}: torch {value.dtype} vs tinynet "
                               f"{own[key].dtype}")
    model.load_state_dict({k: v.detach().cpu().numpy() for k, v in state.items()})
    return model
