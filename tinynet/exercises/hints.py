"""Hints: recognise the usual backprop mistakes from the wrong gradient they produce.

For each exercise, ``MISTAKES[name]`` lists known wrong variants: a function of the test
case (``Case``: the input ``x``, upstream ``dy``, parameters, constructor arguments,
target, and the correct gradients) that returns the gradients a student who made that
mistake would get. If a student's wrong gradient equals one of them, that mistake's hint
is shown. ``generic_hint`` covers what no list names: a wrong shape (transposed, not
summed over the batch), a constant factor (1/N, N, -1), all zeros, a missing gradient.

All arrays here are host NumPy float64: grading runs on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Case:
    """Everything a mistake variant may need about one graded test."""
    x: np.ndarray
    dy: np.ndarray | None
    params: dict
    kwargs: dict
    expected: dict               # gradient name -> correct array
    target: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Mistake:
    name: str
    hint: str
    variant: Callable[[Case], dict]


def close(a, b, rtol: float = 1e-6) -> bool:
    """Equal up to float64 round-off (scaled by the larger array's magnitude)."""
    if a is None or b is None or np.shape(a) != np.shape(b):
        return False
    scale = max(float(np.max(np.abs(b), initial=0.0)), float(np.max(np.abs(a), initial=0.0)),
                1e-300)
    return bool(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0) <= rtol * scale)


# ---------------------------------------------------------------------- Linear
def _linear_mistakes() -> list[Mistake]:
    def t_dw(c):
        return {"weight": (c.dy.T @ c.x).T}

    def mean_db(c):
        return {"bias": c.dy.mean(axis=0)}

    def first_db(c):
        return {"bias": c.dy[0]}

    def mean_dw(c):
        return {"weight": c.dy.T @ c.x / c.x.shape[0]}

    def dx_wt(c):
        return {"dx": c.dy @ c.params["weight"].T} if c.x.shape[1] == c.dy.shape[1] else {}

    return [
        Mistake("transposed weight gradient",
                "The weight gradient must have the weight's layout (D_out, D_in): "
                "dW = dy.T @ x. You computed x.T @ dy, its transpose.", t_dw),
        Mistake("bias averaged",
                "Forgot to sum over the batch: every sample used the same bias, so "
                "db = dy.sum(axis=0), not dy.mean(axis=0). (The 1/N of the mean loss is "
                "already inside dy.)", mean_db),
        Mistake("bias from one sample",
                "Forgot to sum over the batch: db must add dy over all N rows "
                "(dy.sum(axis=0)), not take one row.", first_db),
        Mistake("weight averaged",
                "dy.T @ x already sums over the batch; dividing by N again applies the "
                "loss's 1/N twice.", mean_dw),
        Mistake("dx with W.T",
                "dx = dy @ W (shape (N, D_in)). W.T belongs to the forward y = x @ W.T.", dx_wt),
    ]


# ---------------------------------------------------------------------- elementwise
def _relu_mistakes() -> list[Mistake]:
    return [
        Mistake("mask after in-place ReLU",
                "Your gradient passes through every entry, as if the mask were taken after "
                "the in-place ReLU (x[x < 0] = 0, then mask x >= 0 is all True). Take the "
                "mask x > 0 *before* modifying x, or cache it in forward.",
                lambda c: {"dx": c.dy.copy()}),
        Mistake("multiplied by the output",
                "dx = dy * [x > 0]: multiply by the local derivative (0 or 1), not by the "
                "output max(x, 0).", lambda c: {"dx": c.dy * np.maximum(c.x, 0)}),
        Mistake("inverted mask",
                "The mask is inverted: gradient flows where x > 0 and is zero where x <= 0.",
                lambda c: {"dx": c.dy * (c.x <= 0)}),
        Mistake("forgot dy",
                "Chain rule: multiply the local derivative by the upstream gradient dy.",
                lambda c: {"dx": (c.x > 0).astype(float)}),
    ]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _sigmoid_mistakes() -> list[Mistake]:
    return [
        Mistake("forgot (1 - y)",
                "sigma'(x) = y (1 - y): you multiplied by y only.",
                lambda c: {"dx": c.dy * _sigmoid(c.x)}),
        Mistake("derivative of the input",
                "The formula y (1 - y) uses the *output* y = sigma(x); you used x (1 - x).",
                lambda c: {"dx": c.dy * c.x * (1 - c.x)}),
        Mistake("sigmoid applied twice",
                "You applied sigma to the cached output again: sigma(y) (1 - sigma(y)). "
                "The cache already holds y = sigma(x); use y (1 - y).",
                lambda c: {"dx": c.dy * _sigmoid(_sigmoid(c.x)) * (1 - _sigmoid(_sigmoid(c.x)))}),
        Mistake("forgot dy",
                "Chain rule: multiply the local derivative y (1 - y) by the upstream gradient dy.",
                lambda c: {"dx": _sigmoid(c.x) * (1 - _sigmoid(c.x))}),
    ]


# ---------------------------------------------------------------------- cross-entropy
def _ce_mistakes() -> list[Mistake]:
    def parts(c):
        z = c.x - c.x.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(c.target)), c.target] = 1
        return p, onehot, c.x.shape[0]

    def no_mean(c):
        p, y, _n = parts(c)
        return {"dx": p - y}

    def no_onehot(c):
        p, _y, n = parts(c)
        return {"dx": p / n}

    def sign(c):
        p, y, n = parts(c)
        return {"dx": (y - p) / n}

    def by_classes(c):
        p, y, n = parts(c)
        return {"dx": (p - y) / p.shape[1]} if p.shape[1] != n else {}

    return [
        Mistake("forgot 1/N",
                "Forgot the 1/N in cross-entropy: the loss is the *mean* over the batch, so "
                "dL/dz = (p - onehot(t)) / N.", no_mean),
        Mistake("forgot the one-hot",
                "Subtract 1 at each sample's target class: dL/dz = (p - onehot(t)) / N; you "
                "returned p / N.", no_onehot),
        Mistake("sign flipped",
                "Sign flipped: the loss is -log p_t, so dL/dz = (p - onehot(t)) / N.", sign),
        Mistake("divided by C",
                "Divide by the batch size N (the mean is over samples), not by the number of "
                "classes C.", by_classes),
    ]


# ---------------------------------------------------------------------- Conv2d
def _conv_mistakes() -> list[Mistake]:
    def flipped(c):
        from .solutions import Conv2d
        w = c.params["weight"]
        layer = Conv2d(w.shape[1], w.shape[0], w.shape[2:], **c.kwargs)
        layer.weight.data = w[:, :, ::-1, ::-1].copy()
        if layer.bias is not None:
            layer.bias.data = c.params["bias"]
        layer.forward(c.x)
        return {"dx": layer.backward(c.dy)}

    def db_mean(c):
        return {"bias": c.dy.mean(axis=0).sum(axis=(1, 2))}

    def dw_mean(c):
        return {"weight": c.expected["weight"] / c.x.shape[0]}

    return [
        Mistake("flipped kernel in dx",
                "No kernel flip in the backward here: the forward is a cross-correlation, "
                "and its adjoint sends each dy[n, o, a, b] back to the inputs of its window "
                "with the same W[o, c, i, j] (dxpad[..., a*SH+i, b*SW+j] += dy * W).", flipped),
        Mistake("bias averaged over the batch",
                "Forgot to sum over the batch: db[o] = dy[:, o].sum() over N, OH and OW.",
                db_mean),
        Mistake("weight averaged over the batch",
                "Forgot to sum over the batch: dW adds the contributions of all N samples "
                "(do not divide by N; the loss's 1/N is already in dy).", dw_mean),
    ]


# ---------------------------------------------------------------------- MaxPool2d
def _pool_windows(c):
    kh, kw = c.extra["kernel"]
    sh, sw = c.extra["stride"]
    oh, ow = c.dy.shape[2], c.dy.shape[3]
    return kh, kw, sh, sw, oh, ow


def _pool_mistakes() -> list[Mistake]:
    def all_ties(c):
        kh, kw, sh, sw, oh, ow = _pool_windows(c)
        y = c.extra["y"]
        dx = np.zeros_like(c.x)
        for i in range(kh):
            for j in range(kw):
                win = c.x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += c.dy * (win == y)
        return {"dx": dx}

    def assign(c):
        kh, kw, sh, sw, oh, ow = _pool_windows(c)
        argmax = c.extra["argmax"]
        dx = np.zeros_like(c.x)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            sl = (slice(None), slice(None), slice(i, i + sh * oh, sh), slice(j, j + sw * ow, sw))
            dx[sl] = np.where(argmax == k, c.dy, dx[sl])
        return {"dx": dx} if (sh < kh or sw < kw) else {}

    def average(c):
        kh, kw, sh, sw, oh, ow = _pool_windows(c)
        dx = np.zeros_like(c.x)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += c.dy / (kh * kw)
        return {"dx": dx}

    return [
        Mistake("gradient to every tied maximum",
                "Pooling ties: when several entries of a window equal the max, the gradient "
                "goes to ONE of them (the first in row-major order, as PyTorch), not to all. "
                "A mask (window == max) sends it to every tied entry; keep the argmax instead.",
                all_ties),
        Mistake("overlapping windows assigned",
                "Windows overlap (stride < kernel): an input that is the max of two windows "
                "gets both gradients. Accumulate with +=, do not assign.", assign),
        Mistake("average pooling gradient",
                "That is average pooling's gradient (dy / (KH*KW) everywhere): max pooling "
                "sends all of dy to the window's maximum and nothing to the rest.", average),
    ]


# ---------------------------------------------------------------------- BatchNorm1d
def _bn_parts(c, ddof=0):
    x, gamma, eps = c.x, c.params["weight"], c.kwargs.get("eps", 1e-5)
    n = x.shape[0]
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=ddof)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * invstd
    g = c.dy * gamma
    return n, xhat, invstd, g


def _bn_mistakes() -> list[Mistake]:
    def constants(c):
        _n, _xhat, invstd, g = _bn_parts(c)
        return {"dx": g * invstd}

    def unbiased(c):
        n, xhat, invstd, g = _bn_parts(c, ddof=1)
        return {"dx": invstd / n * (n * g - g.sum(0) - xhat * (g * xhat).sum(0)),
                "weight": (c.dy * xhat).sum(0)}

    def unbiased_term(c):
        # the template's cache (xhat, invstd) with d var / dx taken as 2 (x - mu) / (N - 1)
        n, xhat, invstd, g = _bn_parts(c)
        return {"dx": invstd / n * (n * g - g.sum(0)
                                    - xhat * (g * xhat).sum(0) * n / (n - 1))}

    def no_mean_term(c):
        n, xhat, invstd, g = _bn_parts(c)
        return {"dx": invstd / n * (n * g - xhat * (g * xhat).sum(0))}

    def no_var_term(c):
        n, _xhat, invstd, g = _bn_parts(c)
        return {"dx": invstd / n * (n * g - g.sum(0))}

    def dgamma_no_xhat(c):
        return {"weight": c.dy.sum(0)}

    def no_gamma(c):
        n, xhat, invstd, g = _bn_parts(c)
        g = c.dy
        return {"dx": invstd / n * (n * g - g.sum(0) - xhat * (g * xhat).sum(0))}

    return [
        Mistake("mean and variance treated as constants",
                "mu and var are computed from the whole batch, so every x[n] moves them: "
                "dx needs the two extra terms, dx = invstd/N (N g - sum g - xhat sum(g xhat)) "
                "with g = dy * gamma.", constants),
        Mistake("unbiased variance",
                "Biased vs unbiased variance: training-mode BatchNorm normalises with the "
                "biased variance (divide by N, var(ddof=0)); the unbiased N-1 version only "
                "goes into running_var.", unbiased),
        Mistake("unbiased variance in the variance term",
                "Biased vs unbiased variance: var = mean((x - mu)^2) divides by N, so d var / "
                "dx[n] = 2 (x[n] - mu) / N; an N/(N-1) in the variance term is the unbiased "
                "variance, which only goes into running_var.", unbiased_term),
        Mistake("missing the mean term",
                "Missing the term from the mean: subtract sum_n g (the gradient through mu).",
                no_mean_term),
        Mistake("missing the variance term",
                "Missing the term from the variance: subtract xhat * sum_n (g * xhat).",
                no_var_term),
        Mistake("dgamma without xhat",
                "y = gamma * xhat + beta, so dgamma = sum_n dy * xhat (dy alone is dbeta).",
                dgamma_no_xhat),
        Mistake("forgot gamma in dx",
                "The gradient reaching xhat is g = dy * gamma: multiply by gamma before the "
                "three-term formula.", no_gamma),
    ]


MISTAKES: dict[str, list[Mistake]] = {
    "Linear": _linear_mistakes(), "ReLU": _relu_mistakes(), "Sigmoid": _sigmoid_mistakes(),
    "SoftmaxCrossEntropy": _ce_mistakes(), "Conv2d": _conv_mistakes(),
    "MaxPool2d": _pool_mistakes(), "BatchNorm1d": _bn_mistakes(),
}


def known_mistake(exercise: str, grad: str, got, case: Case) -> Mistake | None:
    """The first listed mistake whose variant of ``grad`` equals ``got``, or None."""
    for m in MISTAKES.get(exercise, []):
        try:
            wrong = m.variant(case).get(grad)
        except Exception:  # noqa: BLE001, S112 (a variant that does not apply to this case)
            continue
        if wrong is not None and not close(wrong, case.expected[grad]) and close(got, wrong):
            return m
    return None


def generic_hint(grad: str, got, expected, n: int) -> str:
    """A hint from the shape or a constant factor when no known mistake matches."""
    if got is None:
        if grad == "dx":
            return "backward returned None: it must return dL/dx (shape of the input)."
        return (f"{grad}.grad is None: accumulate the gradient into the parameter "
                f"(self.{grad}.accumulate(g), or .grad += g).")
    got = np.asarray(got)
    es, gs = tuple(expected.shape), tuple(got.shape)
    if gs != es:
        msg = f"{grad} has shape {gs}, expected {es} (the shape of what it is the gradient of)."
        if len(gs) >= 2 and gs[:2] == es[:2][::-1] and gs[2:] == es[2:]:
            msg += " The first two axes are swapped: a transposed gradient."
        elif gs == (n,) + es:
            msg += " It still has the batch axis: forgot to sum over the batch."
        elif len(gs) == len(es) and all(g >= e for g, e in zip(gs, es)) and grad == "dx":
            msg += " Larger than the input: did you forget to crop the padding?"
        return msg
    e = np.asarray(expected, dtype=float)
    if not np.any(got):
        return "Your gradient is all zeros."
    denom = float(np.vdot(e, e))
    if denom > 0:
        c = float(np.vdot(got, e)) / denom
        if close(got, c * e, 1e-6):
            for value, text in ((1.0 / n, ("Off by a factor 1/N: you averaged over the "
                                           "batch where a sum is needed.")),
                                (float(n), "Off by a factor N: forgot the 1/N of the mean."),
                                (-1.0, "Sign flipped."),
                                (2.0, "Twice the right value: added twice?"),
                                (0.5, "Half the right value.")):
                if n != 1 and abs(c - value) <= 1e-6 * abs(value) or \
                        value in (-1.0, 2.0, 0.5) and abs(c - value) <= 1e-6:
                    return text
            return f"Your gradient is {c:.6g} times the right one: a constant factor is off."
    return ""
