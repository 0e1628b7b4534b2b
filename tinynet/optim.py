"""Optimizers with PyTorch's update rules, step for step.

``optimizer.step()`` reads each parameter's ``.grad`` (a parameter whose grad is None
is skipped, as in PyTorch) and updates ``.data`` in place; ``zero_grad()`` sets every
grad to None. Hyper-parameters live in ``param_groups`` so a schedule can change them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy

from .backend import get_array_module, to_numpy
from .errors import ArgumentError, StateDictError
from .module import value_problem
from .parameter import Parameter


def _real(v: Any) -> bool:
    return isinstance(v, (int, float, numpy.integer, numpy.floating)) and not isinstance(
        v, (bool, numpy.bool_))


def finite_at_least(low: float) -> Callable[[Any], str | None]:
    """A hyper-parameter check: a finite number >= ``low``."""
    def check(v: Any) -> str | None:
        if _real(v) and math.isfinite(v) and v >= low:
            return None
        return f"a finite number >= {low:g}"
    return check


def finite_number(v: Any) -> str | None:
    return None if _real(v) and math.isfinite(v) else "a finite number"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, (bool, numpy.bool_)) else "True or False"


def betas(v: Any) -> str | None:
    ok = isinstance(v, (tuple, list)) and len(v) == 2 and all(
        _real(b) and math.isfinite(b) and 0 <= b < 1 for b in v)
    return None if ok else "two numbers in [0, 1)"


class Optimizer:
    """Base class: ``param_groups``, ``state``, ``zero_grad``, ``state_dict``.

    Subclasses list their hyper-parameters in ``HYPERPARAMETERS`` (name -> a check
    returning None or what was expected) and the per-parameter state they keep in
    ``STATE`` (name -> ``"array"``, ``"nonnegative array"`` or ``"count"``); both the
    constructor and ``load_state_dict`` check against them before changing anything.
    """

    HYPERPARAMETERS: ClassVar[dict[str, Callable[[Any], str | None]]] = {}
    STATE: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Iterable, defaults: dict) -> None:
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if isinstance(params[0], dict):
            groups = [dict(g) for g in params]
        else:
            groups = [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        seen: dict[int, int] = {}         # id(parameter) -> its group
        for gi, g in enumerate(groups):
            g["params"] = list(g["params"])
            for p in g["params"]:
                if not isinstance(p, Parameter):
                    raise TypeError(f"{type(self).__name__} takes tinynet Parameters, "
                                    f"got {type(p).__name__}")
                if id(p) in seen:
                    where = (f"twice in param group {gi}" if seen[id(p)] == gi else
                             f"in param groups {seen[id(p)]} and {gi}")
                    raise ArgumentError(
                        f"{type(self).__name__}: a parameter of shape {p.shape} appears "
                        f"{where}; give each parameter once (it would be updated twice "
                        f"per step; PyTorch refuses it across groups and warns within one)")
                seen[id(p)] = gi
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            self.check_hyperparameters(g, type(self).__name__)
            self.param_groups.append(g)
        self.state: dict[int, dict] = {}  # keyed by the parameter's index over all groups

    @classmethod
    def check_hyperparameters(cls, group: dict, where: str) -> None:
        """Raise ArgumentError naming the first hyper-parameter of ``group`` out of range."""
        for name, check in cls.HYPERPARAMETERS.items():
            if name in group:
                expected = check(group[name])
                if expected:
                    raise ArgumentError(f"{where}: {name} must be {expected}, got "
                                        f"{group[name]!r}")
        cls.check_combination(group, where)

    @classmethod
    def check_combination(cls, group: dict, where: str) -> None:
        """Constraints between hyper-parameters (e.g. SGD's nesterov); none by default."""

    def _indexed(self):
        i = 0
        for g in self.param_groups:
            for p in g["params"]:
                yield i, g, p
                i += 1

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, _, p in self._indexed():
            p.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}`` as PyTorch."""
        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            h = {k: v for k, v in g.items() if k != "params"}
            h["params"] = list(range(start, start + n))
            groups.append(h)
            start += n
        return {"state": {i: dict(s) for i, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Take the state and hyper-parameters of ``state_dict`` (as ``state_dict()`` gives).

        Everything is checked first -- group sizes, each hyper-parameter's type and range,
        each state entry's names, shape, dtype (castable without loss) and values (finite;
        Adam's second moments >= 0; step counts whole numbers >= 0) -- so a bad
        state_dict raises StateDictError and changes nothing.
        """
        groups, state = self._plan_load(state_dict)
        for g, saved in zip(self.param_groups, groups):
            g.update(saved)
        self.state = state

    def check_state_dict(self, state_dict: dict) -> None:
        """Raise StateDictError if ``load_state_dict(state_dict)`` would; change nothing."""
        self._plan_load(state_dict)

    def _plan_load(self, state_dict: dict) -> tuple[list[dict], dict]:
        where = f"{type(self).__name__}.load_state_dict"
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(groups, (list, tuple)) or not isinstance(state_dict.get("state"), dict):
            keys = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else \
                type(state_dict).__name__
            raise StateDictError(f"{where}: expected keys 'state' and 'param_groups' (a dict "
                                 f"and a list), got {keys}")
        if not all(isinstance(g, dict) and isinstance(g.get("params"), (list, tuple))
                   for g in groups):
            raise StateDictError(f"{where}: each param group must be a dict with a "
                                 f"'params' list")
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise StateDictError(
                f"{where}: the saved optimizer has groups of "
                f"sizes {[len(g['params']) for g in groups]}, this one "
                f"{[len(g['params']) for g in self.param_groups]}")
        new_groups = []
        for gi, (saved, own) in enumerate(zip(groups, self.param_groups)):
            hyper = {k: v for k, v in saved.items() if k != "params"}
            if self.HYPERPARAMETERS:
                unknown = sorted(set(hyper) - set(self.HYPERPARAMETERS))
                if unknown:
                    raise StateDictError(
                        f"{where}: param_groups[{gi}] has {unknown}, which {type(self).__name__}"
                        f" does not use (it has {', '.join(self.HYPERPARAMETERS)}): the state "
                        f"of another optimizer?")
            hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in hyper.items()}
            try:
                self.check_hyperparameters(dict(own, **hyper), f"{where}: param_groups[{gi}]")
            except ArgumentError as e:
                raise StateDictError(str(e)) from None
            new_groups.append(hyper)
        params = [p for _, _, p in self._indexed()]
        group_of = [dict(own, **hyper) for own, hyper in zip(self.param_groups, new_groups)
                    for _ in own["params"]]              # each parameter's group, as loaded
        new_state = {}
        for key, entry in state_dict["state"].items():
            i = key if isinstance(key, int) and not isinstance(key, bool) else \
                int(key) if isinstance(key, str) and key.isdigit() else None
            if i is None or not 0 <= i < len(params):
                raise StateDictError(f"{where}: state for parameter {key!r}, but there are "
                                     f"{len(params)} (indices 0 to {len(params) - 1})")
            if not isinstance(entry, dict):
                raise StateDictError(f"{where}: state of parameter {i} is a "
                                     f"{type(entry).__name__}, expected a dict")
            new_state[i] = self._plan_entry(where, i, params[i], entry, group_of[i])
        return new_groups, new_state

    def state_names(self, group: dict) -> dict[str, str]:
        """The state a parameter of ``group`` keeps (name -> kind): ``STATE`` by default."""
        return self.STATE

    def optional_state(self, group: dict) -> dict[str, str]:
        """State a parameter of ``group`` may also carry (name -> kind); none by default."""
        return {}

    def _plan_entry(self, where: str, i: int, p: Parameter, entry: dict, group: dict) -> dict:
        names = self.state_names(group)
        optional = self.optional_state(group)
        if names and not set(names) <= set(entry) <= set(names) | set(optional):
            raise StateDictError(f"{where}: state of parameter {i} has {sorted(entry)}, "
                                 f"expected {sorted(names)}"
                                 + (f" (and maybe {sorted(optional)})" if optional else ""))
        names = dict(optional, **names)
        xp = get_array_module(p.data)
        out = {}
        for name, v in entry.items():
            kind = names.get(name, "array" if getattr(v, "ndim", 0) > 0 else "number")
            if hasattr(v, "detach"):  # a torch tensor
                v = to_numpy(v)
            if kind == "count" or kind == "number":
                if hasattr(v, "shape") and getattr(v, "ndim", None) == 0:
                    v = v.item()
                ok = (isinstance(v, (int, numpy.integer)) and not isinstance(v, bool)
                      and v >= 0) if kind == "count" else _real(v) and math.isfinite(v)
                if not ok:
                    raise StateDictError(
                        f"{where}: {name} of parameter {i} is {v!r}, expected "
                        f"{'a whole number >= 0' if kind == 'count' else 'a finite number'}")
                out[name] = int(v) if kind == "count" else v
                continue
            if not hasattr(v, "shape") or tuple(v.shape) != p.shape:
                got = tuple(v.shape) if hasattr(v, "shape") else type(v).__name__
                raise StateDictError(f"{where}: {name} of parameter {i} has shape {got}, "
                                     f"expected {p.shape}")
            problem = value_problem(v, p.dtype)
            if problem is None and kind == "nonnegative array" and v.size and \
                    float(v.min()) < 0:
                problem = f"holds negative values ({float(v.min()):g}), expected >= 0"
            if problem:
                raise StateDictError(f"{where}: {name} of parameter {i}: {problem}")
            out[name] = xp.array(to_numpy(v) if xp is numpy else v, dtype=p.dtype)
        return out

    def __repr__(self) -> str:
        hp = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in hp.items())})"


# Elements per block of ``descend``: 128 KiB of float32, so the block of lr * grad stays
# in the L2 cache between its two passes.
DESCEND_BLOCK = 1 << 15


def descend(data, grad, lr, scratch=None) -> None:
    """``data -= lr * grad`` in place, the same two roundings as that expression.

    For C-contiguous NumPy arrays it runs one block of ``scratch.size`` elements at a
    time through ``scratch`` (a 1-D array of data's dtype; SGD's holds ``DESCEND_BLOCK``
    elements): lr * grad is
    never written out whole, so the update reads grad and data once and writes data
    once (measured 480 against 580 us for the base MLP's 669,706 parameters on a 2-core
    Xeon, docs/benchmarks.md). Anything else (CuPy, strided views) runs the expression.
    """
    xp = get_array_module(data)
    if xp is not numpy or scratch is None or not (data.flags.c_contiguous
                                                   and grad.flags.c_contiguous):
        data -= grad * lr
        return
    d, g = data.reshape(-1), grad.reshape(-1)
    size = scratch.size
    for start in range(0, d.size, size):
        stop = min(d.size, start + size)
        block = scratch[:stop - start]
        numpy.multiply(g[start:stop], lr, out=block)
        numpy.subtract(d[start:stop], block, out=d[start:stop])


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    With g = grad + weight_decay * p, and buf the momentum buffer (set to g on the
    first step, then buf = momentum * buf + (1 - dampening) * g)::

        g = g + momentum * buf  if nesterov  else  buf   (only when momentum != 0)
        p = p - lr * g

    The update ``p -= lr * g`` runs in cache-sized blocks (``descend``): no allocation in
    the steady state and one pass over memory.
    """

    HYPERPARAMETERS: ClassVar = {"lr": finite_at_least(0), "momentum": finite_at_least(0),
                                 "dampening": finite_number,
                                 "weight_decay": finite_at_least(0), "nesterov": boolean}
    STATE: ClassVar = {"momentum_buffer": "array"}

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        self._scratch: dict = {}      # a descend block per dtype

    @classmethod
    def check_combination(cls, group: dict, where: str) -> None:
        if group.get("nesterov") and (group.get("momentum", 0) <= 0
                                      or group.get("dampening", 0) != 0):
            raise ArgumentError(f"{where}: nesterov needs momentum > 0 and dampening 0, got "
                                f"momentum {group.get('momentum')!r}, dampening "
                                f"{group.get('dampening')!r}")

    def step(self) -> None:
        for i, g, p in self._indexed():
            grad = p.grad
            if grad is None:
                continue
            xp = get_array_module(p.data)
            lr, mom, wd = g["lr"], g["momentum"], g["weight_decay"]
            if wd != 0:
                grad = grad + p.data * p.dtype.type(wd)
            if mom != 0:
                st = self.state.setdefault(i, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = grad.copy()
                else:
                    buf *= p.dtype.type(mom)
                    buf += grad if g["dampening"] == 0 else grad * p.dtype.type(1 - g["dampening"])
                grad = grad + buf * p.dtype.type(mom) if g["nesterov"] else buf
            scratch = self._scratch.get(p.dtype)
            if scratch is None and xp is numpy:
                scratch = self._scratch[p.dtype] = numpy.empty((DESCEND_BLOCK,), p.dtype)
            descend(p.data, grad, p.dtype.type(lr), scratch)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (L2 weight decay added to the grad).

    At step t, with g = grad + weight_decay * p::

        m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    With ``amsgrad=True`` the step divides by the largest v seen so far instead of v
    (state ``max_exp_avg_sq``; Reddi et al., "On the Convergence of Adam and Beyond").
    """

    HYPERPARAMETERS: ClassVar = {"lr": finite_at_least(0), "betas": betas,
                                 "eps": finite_at_least(0), "weight_decay": finite_at_least(0),
                                 "amsgrad": boolean}
    STATE: ClassVar = {"step": "count", "exp_avg": "array", "exp_avg_sq": "nonnegative array"}

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(
            betas, (tuple, list)) else betas, eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def state_names(self, group: dict) -> dict[str, str]:
        if group.get("amsgrad"):
            return dict(self.STATE, max_exp_avg_sq="nonnegative array")
        return self.STATE

    def optional_state(self, group: dict) -> dict[str, str]:
        # kept from steps with amsgrad=True when a run turned it off (PyTorch loads it)
        return {} if group.get("amsgrad") else {"max_exp_avg_sq": "nonnegative array"}

    def step(self) -> None:
        for i, g, p in self._indexed():
            grad = p.grad
            if grad is None:
                continue
            xp = get_array_module(p.data)
            t = p.dtype.type
            b1, b2 = g["betas"]
            if g["weight_decay"] != 0:
                grad = grad + p.data * t(g["weight_decay"])
            st = self.state.setdefault(i, {})
            if "step" not in st:
                st["step"] = 0
                st["exp_avg"] = xp.zeros_like(p.data)
                st["exp_avg_sq"] = xp.zeros_like(p.data)
            st["step"] += 1
            step = st["step"]
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m += (grad - m) * t(1 - b1)          # torch: exp_avg.lerp_(grad, 1 - beta1)
            v *= t(b2)
            v += grad * grad * t(1 - b2)
            if g["amsgrad"]:                     # the largest second moment so far
                v_max = st.get("max_exp_avg_sq")
                if v_max is None:
                    v_max = st["max_exp_avg_sq"] = xp.zeros_like(p.data)
                xp.maximum(v_max, v, out=v_max)
                v = v_max
            bias1 = 1 - b1 ** step
            bias2_sqrt = math.sqrt(1 - b2 ** step)
            denom = xp.sqrt(v) / t(bias2_sqrt)
            denom += t(g["eps"])
            p.data -= (m / denom) * t(g["lr"] / bias1)
