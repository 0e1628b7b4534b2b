"""Module: the base of every layer and model, and Sequential.

The protocol (no autograd, no graph):

* ``y = module(x)`` runs ``forward`` and keeps in the module what ``backward`` needs;
* ``dx = module.backward(dy)`` returns dLoss/dx for the last forward and *adds*
  dLoss/dparameter into every parameter's ``.grad`` (as PyTorch accumulates until
  ``zero_grad()``). A backward never writes into the ``dy`` it was given.

Parameters, buffers and sub-modules are registered by assignment, as in PyTorch, and
kept in insertion order, so ``named_parameters()`` and ``state_dict()`` keys equal those
of the equivalent ``torch.nn.Sequential`` (``"1.weight"`` for a Linear at index 1).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import numpy

from .backend import get_array_module, to_device, to_numpy
from .errors import ArgumentError, ShapeError, StateDictError
from .functional.fast import threads
from .parameter import Parameter


class Module:
    """Base class of layers and models (``torch.nn.Module`` without autograd).

    Subclasses implement ``forward(x)`` and ``backward(dy, input_grad=True)``. A layer
    with parameters should skip computing dLoss/dx when ``input_grad`` is False (the
    first layer of a network never needs it) and then return None.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_name", "")

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                "before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            self.__dict__.pop(name, None)  # a plain attribute (e.g. None) would shadow it
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._modules[name] = value
            value._set_name(_join(self._name, name))
            Module.structure_version += 1
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            if self._modules.pop(name, None) is not None:
                Module.structure_version += 1
            self._parameters.pop(name, None)
            object.__setattr__(self, name, value)

    # Whether forward calls each child exactly once (Sequential, Residual): then a layer
    # held at two places is used twice, which a backward must refuse (``shared_module``).
    calls_children_once = False
    # Whether one instance may be called at several places (its backward needs nothing
    # from its forward, as Identity's): not refused by ``shared_module``.
    reusable = False

    # Bumped whenever a sub-module is added, replaced or removed anywhere, so a container
    # can cache what it learned by walking its modules (``splits``).
    structure_version = 0

    @property
    def splits(self) -> bool:
        """Whether a layer in this module splits batches over CPU threads (cached)."""
        cached = _SPLITS.get(self)
        if cached is None or cached[0] != Module.structure_version:
            found = any(getattr(type(m), "splits", False) is True for m in self.modules())
            cached = _SPLITS[self] = (Module.structure_version, found)
        return cached[1]

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, array: Any) -> None:
        """A state array that is saved in ``state_dict`` but not trained (e.g. running_mean)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def _set_name(self, name: str) -> None:
        object.__setattr__(self, "_name", name)
        for key, child in self._modules.items():
            child._set_name(_join(name, key))

    def describe(self) -> str:
        """How errors name this module: its type and state_dict prefix, e.g. ``Linear '1'``."""
        return f"{type(self).__name__} '{self._name}'" if self._name else type(self).__name__

    # ----------------------------------------------------------------- protocol
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy, input_grad: bool = True):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        return self.forward(x)

    # ----------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for this module and every one below it, depth first. As in
        PyTorch, a module held at two places is listed once, at the first, unless
        ``remove_duplicate=False`` (``memo``: a set of modules not to list)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if self in memo:
                return
            memo.add(self)
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(memo, _join(prefix, name), remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(name, parameter)``; a parameter held by two modules (tied weights) or by a
        module held twice is listed once, as in PyTorch, so an optimizer updates it once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        """``(name, array)`` of every buffer; ``recurse=False``: this module's own only. A
        module held twice has its buffers listed once."""
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def _named_members(self, kind: str, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, Any]]:
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        seen = set()                      # tied parameters: one Parameter in two modules
        for mprefix, m in modules:
            for name, value in getattr(m, kind).items():
                if remove_duplicate and isinstance(value, Parameter):
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield _join(mprefix, name), value

    def buffers(self) -> Iterator[Any]:
        for _, b in self.named_buffers():
            yield b

    # ----------------------------------------------------------------- modes
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            p.zero_grad(set_to_none)

    # ----------------------------------------------------------------- state_dict
    def state_dict(self) -> OrderedDict[str, Any]:
        """Parameters then buffers of each module, in PyTorch's key order.

        Values are the live arrays (as PyTorch returns live tensors); copy them to keep
        a snapshot, or use ``tinynet.save``.
        """
        out: OrderedDict[str, Any] = OrderedDict()
        for mprefix, m in self.named_modules(remove_duplicate=False):   # a key per place
            for name, p in m._parameters.items():
                out[_join(mprefix, name)] = p.data
            for name, b in m._buffers.items():
                out[_join(mprefix, name)] = b
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> tuple[list, list]:
        """Copy arrays from ``state_dict`` into this module's parameters and buffers.

        Accepts NumPy arrays, CuPy arrays and torch tensors. Everything is checked before
        anything is written, so a bad state_dict changes nothing (grads included): with
        ``strict`` a missing or unexpected key fails; a mis-shaped entry, a value that
        cannot be cast to the target's dtype without loss (strings, objects, complex
        numbers; floats into an integer buffer; integers out of its range; floats beyond
        float32's range into float32) or a NaN/inf always fails, with every offending
        key named. float64 into float32 and integers into int64 are cast, as in PyTorch;
        values land on each target's device. Loaded parameters have no grad.

        Returns ``(missing_keys, unexpected_keys)`` as PyTorch does.
        """
        missing, unexpected, plan = self._plan_load(state_dict, strict)
        new_values = []
        for m, name, is_param, value in plan:  # all copies first: nothing is assigned
            current = m._parameters[name].data if is_param else m._buffers[name]
            xp = get_array_module(current)
            if xp is numpy:
                value = to_numpy(value)
            new_values.append((m, name, is_param, xp.array(value, dtype=current.dtype)))
        for m, name, is_param, new in new_values:
            if is_param:
                m._parameters[name].data = new
                m._parameters[name].grad = None
            else:
                m._buffers[name] = new
        return missing, unexpected

    def check_state_dict(self, state_dict: dict, strict: bool = True) -> tuple[list, list]:
        """Raise StateDictError if ``load_state_dict(state_dict, strict)`` would; change nothing.

        Returns ``(missing_keys, unexpected_keys)``.
        """
        missing, unexpected, _ = self._plan_load(state_dict, strict)
        return missing, unexpected

    def _targets(self) -> OrderedDict[str, tuple[Module, str, bool]]:
        """key -> (module, name, is_parameter) for every parameter and non-None buffer."""
        targets: OrderedDict[str, tuple[Module, str, bool]] = OrderedDict()
        for mprefix, m in self.named_modules(remove_duplicate=False):
            for name in m._parameters:
                targets[_join(mprefix, name)] = (m, name, True)
            for name, b in m._buffers.items():
                if b is not None:  # e.g. BatchNorm without running statistics
                    targets[_join(mprefix, name)] = (m, name, False)
        return targets

    def _plan_load(self, state_dict: dict, strict: bool) -> tuple[list, list, list]:
        if not hasattr(state_dict, "items"):
            raise StateDictError(f"cannot load state_dict into {type(self).__name__}: "
                                 f"expected a dict of arrays, got {type(state_dict).__name__}")
        targets = self._targets()
        none_buffers = {_join(p, n) for p, m in self.named_modules(remove_duplicate=False)
                        for n, b in m._buffers.items() if b is None}
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k, v in state_dict.items() if k not in targets
                      and not (k in none_buffers and v is None)]
        mis_shaped, bad_values, plan = [], [], []
        for key, (m, name, is_param) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if hasattr(value, "detach"):  # a torch tensor
                value = to_numpy(value)
            current = m._parameters[name].data if is_param else m._buffers[name]
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                # a list or a number: name the key, as torch does
                mis_shaped.append(f"{key}: got {type(value).__name__}, expected an array of "
                                  f"shape {tuple(current.shape)}")
                continue
            if tuple(value.shape) != tuple(current.shape):
                mis_shaped.append(f"{key}: got {tuple(value.shape)}, expected "
                                  f"{tuple(current.shape)}")
                continue
            problem = value_problem(value, current.dtype)
            if problem:
                bad_values.append(f"{key}: {problem}")
                continue
            plan.append((m, name, is_param, value))
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(map(str, unexpected)))
        if mis_shaped:
            problems.append("shape mismatch: " + "; ".join(mis_shaped))
        if bad_values:
            problems.append("bad values: " + "; ".join(bad_values))
        if problems:
            raise StateDictError(
                f"cannot load state_dict into {type(self).__name__}: " + " | ".join(problems))
        return missing, unexpected, plan

    # ----------------------------------------------------------------- device and dtype
    def _apply(self, fn: Callable[[Any], Any], floating_only: bool = False) -> Module:
        """Replace every parameter and buffer array ``a`` by ``fn(a)`` (grads are dropped)."""
        for m in self.modules():
            for p in m._parameters.values():
                if not floating_only or p.data.dtype.kind == "f":
                    p.data = fn(p.data)
                    p.grad = None
            for name, b in list(m._buffers.items()):
                if b is not None and (not floating_only or b.dtype.kind == "f"):
                    m._buffers[name] = fn(b)
        return self

    def to(self, device=None, dtype=None) -> Module:
        """Move parameters and buffers to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy), and/or
        cast the floating-point ones to ``dtype`` (float16, float32 or float64), as
        ``torch.nn.Module.to``: ``to("cuda")``, ``to(numpy.float64)``, ``to("cuda",
        "float64")``, ``to(dtype=torch.float64)``. Grads are dropped."""
        if device is not None and not isinstance(device, str):
            if type(device).__name__ == "device":            # a torch.device
                device = str(device)
            elif dtype is None:                              # to(numpy.float64), as PyTorch
                device, dtype = None, device
            else:
                raise ArgumentError(f"to(): device must be 'cpu' or 'cuda', got {device!r}")
        if dtype is not None:
            from .layers.base import resolve_dtype
            dtype = resolve_dtype(dtype)                     # a DTypeError for int32 & co.
        if device is not None:
            self._apply(lambda a: to_device(a, device))
        if dtype is not None:
            self._apply(lambda a: a.astype(dtype.name), floating_only=True)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self) -> Module:
        return self.to("cuda")

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64 (for gradient checks)."""
        return self.to(dtype="float64")

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32 (the default)."""
        return self.to(dtype="float32")

    @property
    def dtype(self):
        """The dtype of the first parameter (float32 unless ``double()`` was called)."""
        for p in self.parameters():
            return p.data.dtype
        return numpy.dtype("float32")

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + "\n)"


# dtype kinds each target kind accepts without loss of meaning (PyTorch casts float64
# into float32 and any integer into int64; strings, objects and complex numbers never).
_ACCEPTS = {"f": "biuf", "i": "biu", "u": "biu", "b": "b"}


def value_problem(value: Any, dtype: Any) -> str | None:
    """Why array ``value`` cannot be stored into an array of ``dtype``, or None if it can.

    Refused: dtypes that would lose their meaning (strings, objects, complex numbers,
    floats into integers, anything but bool into bool), integers outside ``dtype``'s
    range, NaN or inf, and finite floats beyond ``dtype``'s range (they would become inf).
    Used by ``Module.load_state_dict`` and ``Optimizer.load_state_dict``.
    """
    src, dst = numpy.dtype(value.dtype), numpy.dtype(dtype)
    if src.kind not in _ACCEPTS.get(dst.kind, "") or src.fields is not None:
        wanted = {"b": "bool", "i": "bool or integer", "u": "bool or integer"}.get(
            dst.kind, "bool, integer or floating")
        return f"dtype {src} cannot be stored as {dst} without loss (expected {wanted} values)"
    if value.size == 0 or src.kind == "b":
        return None
    xp = get_array_module(value)
    if src.kind == "f":
        bad = int((~xp.isfinite(value)).sum())
        if bad:
            return f"holds {bad} NaN or inf value(s), expected finite numbers"
        if src.itemsize > dst.itemsize:
            top = float(xp.abs(value).max())
            if top > float(numpy.finfo(dst).max):
                return f"holds {top:g}, beyond the largest {dst} ({numpy.finfo(dst).max:g})"
        return None
    lo, hi = int(value.min()), int(value.max())
    info = numpy.iinfo(dst) if dst.kind in "iu" else numpy.finfo(dst)
    if lo < info.min or hi > info.max:
        return f"holds integers from {lo} to {hi}, outside {dst}'s range"
    return None


# Module -> (structure_version, splits): kept outside the modules' own attributes.
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Module -> (structure_version, the first two names of a module it holds twice, or None).
_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _called_places(module: Module, prefix: str = "") -> Iterator[tuple[str, Module]]:
    """``(name, module)`` for every place a forward is known to call a module: each child
    of a container whose forward calls each child once (``calls_children_once``:
    Sequential, Residual), at any depth, also inside a Module of your own. The direct
    children of such a Module are not places (they may be aliases it never calls); a
    ``reusable`` module (Identity) is not counted."""
    counted = getattr(type(module), "calls_children_once", False)
    for name, child in module._modules.items():
        place = _join(prefix, name)
        if counted and not getattr(type(child), "reusable", False):
            yield place, child
        yield from _called_places(child, place)


def shared_module(model: Module) -> tuple[Module, str, str] | None:
    """``(module, first_name, second_name)`` for the first module instance that
    ``model``'s forward calls at two places, else None (cached until the structure of
    any module changes)."""
    cached = _SHARED.get(model)
    if cached is None or cached[0] != Module.structure_version:
        first: dict[int, str] = {}
        found = None
        for name, m in _called_places(model):
            if id(m) in first:
                found = (m, first[id(m)], name)
                break
            first[id(m)] = name
        cached = _SHARED[model] = (Module.structure_version, found)
    return cached[1]


def _check_not_shared(model: Module) -> None:
    """Refuse a backward through a model that uses one module instance twice: without
    autograd a layer keeps the cache of its last forward only, so the backward through
    its earlier use would silently be wrong."""
    shared = shared_module(model)
    if shared is not None:
        m, a, b = shared
        raise ArgumentError(
            f"{model.describe()}: one {type(m).__name__} instance is used at '{a}' and at "
            f"'{b}'; a tinynet layer keeps the cache of its last forward only, so the "
            f"backward through '{a}' would be wrong. Use a separate instance at each place "
            f"(to tie weights, share the Parameter: second.weight = first.weight)")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class Sequential(Module):
    """Layers applied in order; children are named ``"0"``, ``"1"``, ... as in PyTorch.

    ``backward(dy, input_grad=False)`` skips the work nobody needs: layers before the
    first one with parameters are not run backwards at all, and that first layer is
    asked for its parameter gradients only (for a first Linear this saves the largest
    matrix product of the step). ``fit`` uses it; the default returns dLoss/dx.
    """

    calls_children_once = True

    def __init__(self, *layers: Module) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):    # Sequential(OrderedDict(...))
            named = list(layers[0].items())
            for name, _ in named:
                if not isinstance(name, str) or not name or "." in name:
                    raise ArgumentError(f"Sequential: layer names must be non-empty strings "
                                        f"without '.', got {name!r}")
                if name in self.__dict__ or hasattr(type(self), name):
                    raise ArgumentError(f"Sequential: layer name {name!r} is an attribute "
                                        f"of Sequential already; choose another name")
        else:
            named = [(str(i), layer) for i, layer in enumerate(layers)]
        for i, (name, layer) in enumerate(named):
            if not isinstance(layer, Module):
                raise TypeError(
                    f"Sequential takes Modules, got {type(layer).__name__} at position {i}")
            setattr(self, name, layer)

    def append(self, layer: Module) -> Sequential:
        """Add ``layer`` at the end, named by the position it takes (the next free whole
        number when a slice kept higher names)."""
        taken = [int(k) for k in self._modules if k.isdigit()]
        name = len(self._modules)
        if str(name) in self._modules:
            name = max(taken) + 1
        setattr(self, str(name), layer)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, index):
        """A layer by position; a slice is a Sequential of the same layers under the same
        names (``model[1:4].state_dict()`` keys start at ``"1."``, as in PyTorch)."""
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def forward(self, x):
        with threads.region(self):        # CPU threads for convolutional models
            for layer in self._modules.values():
                x = layer(x)
        return x

    def backward(self, dy, input_grad: bool = True):
        _check_not_shared(self)
        layers = list(self._modules.values())
        with threads.region(self):
            if input_grad:
                for layer in reversed(layers):
                    dy = layer.backward(dy)
                return dy
            first = first_with_parameters(layers)
            if first is None:
                return None
            for layer in reversed(layers[first + 1:]):
                dy = layer.backward(dy)
            layers[first].backward(dy, input_grad=False)
        return None


def first_with_parameters(layers: list) -> int | None:
    """Index of the first layer that has parameters (None if none has)."""
    for i, layer in enumerate(layers):
        if next(layer.parameters(), None) is not None:
            return i
    return None


def check_input(module: Module, x, ndim: int, expected: str, size_axis: int | None = None,
                size: int | None = None) -> None:
    """Raise ShapeError unless ``x`` has ``ndim`` dims (and ``x.shape[size_axis] == size``).

    ``expected`` spells the shape for the message, e.g. ``"(N, 784)"``.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ShapeError(f"{module.describe()}: expected an array of shape {expected}, "
                         f"got {type(x).__name__}")
    if len(shape) != ndim or (size_axis is not None and shape[size_axis] != size):
        raise ShapeError(f"{module.describe()}: got input of shape {tuple(shape)}, "
                         f"expected {expected}")
