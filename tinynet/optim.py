"""Optimizers with PyTorch's update rules, step for step.

``optimizer.step()`` reads each parameter's ``.grad`` (a parameter whose grad is None
is skipped, as in PyTorch) and updates ``.data`` in place; ``zero_grad()`` sets every
grad to None. Hyper-parameters live in ``param_groups`` so a schedule can change them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .backend import get_array_module, to_numpy
from .errors import StateDictError
from .parameter import Parameter


class Optimizer:
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
        for g in groups:
            g["params"] = list(g["params"])
            for p in g["params"]:
                if not isinstance(p, Parameter):
                    raise TypeError(f"{type(self).__name__} takes tinynet Parameters, "
                                    f"got {type(p).__name__}")
            for k, v in self.defaults.items():
                g.setdefault(k, v)
            self.param_groups.append(g)
        self.state: dict[int, dict] = {}  # keyed by the parameter's index over all groups

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
        groups = state_dict.get("param_groups")
        if groups is None or "state" not in state_dict:
            raise StateDictError(f"{type(self).__name__}.load_state_dict: expected keys "
                                 f"'state' and 'param_groups', got {sorted(state_dict)}")
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise StateDictError(
                f"{type(self).__name__}.load_state_dict: the saved optimizer has groups of "
                f"sizes {[len(g['params']) for g in groups]}, this one "
                f"{[len(g['params']) for g in self.param_groups]}")
        params = [p for _, _, p in self._indexed()]
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise StateDictError(f"{type(self).__name__}.load_state_dict: state for "
                                     f"parameter {i}, but there are {len(params)}")
            p = params[i]
            xp = get_array_module(p.data)
            entry = {}
            for name, v in s.items():
                if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                    if tuple(v.shape) != p.shape:
                        raise StateDictError(
                            f"{type(self).__name__}.load_state_dict: {name} of parameter {i} "
                            f"has shape {tuple(v.shape)}, expected {p.shape}")
                    v = xp.array(to_numpy(v) if xp.__name__ == "numpy" else v, dtype=p.dtype)
                elif hasattr(v, "shape"):
                    v = v.item()
                entry[name] = v
            new_state[i] = entry
        for g, saved in zip(self.param_groups, groups):
            for k, v in saved.items():
                if k != "params":
                    g[k] = v
        self.state = new_state

    def __repr__(self) -> str:
        hp = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in hp.items())})"


def _descend(xp, data, grad, scratch, lr) -> None:
    """``data -= lr * grad`` through ``scratch`` (no new array per step)."""
    xp.multiply(grad, lr, out=scratch)
    data -= scratch


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    With g = grad + weight_decay * p, and buf the momentum buffer (set to g on the
    first step, then buf = momentum * buf + (1 - dampening) * g)::

        g = g + momentum * buf  if nesterov  else  buf   (only when momentum != 0)
        p = p - lr * g

    Plain SGD runs as two in-place passes per parameter, through a scratch buffer kept
    between steps: no allocation in the steady state.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got "
                             f"{lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))
        self._scratch: dict[int, Any] = {}

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
            scratch = self._scratch.get(i)
            if scratch is None or scratch.shape != p.data.shape or scratch.dtype != p.dtype \
                    or type(scratch) is not type(p.data):
                scratch = self._scratch[i] = xp.empty_like(p.data)
            _descend(xp, p.data, grad, scratch, p.dtype.type(lr))


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (amsgrad=False, L2 weight decay added to the grad).

    At step t, with g = grad + weight_decay * p::

        m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: invalid hyper-parameters lr={lr}, betas={betas}, "
                             f"eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

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
            bias1 = 1 - b1 ** step
            bias2_sqrt = math.sqrt(1 - b2 ** step)
            denom = xp.sqrt(v) / t(bias2_sqrt)
            denom += t(g["eps"])
            p.data -= (m / denom) * t(g["lr"] / bias1)
