"""SGD and Adam: hand-computed steps, a reference of PyTorch's rules, and torch.optim itself."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from tinynet import SGD, Adam, Parameter
from tinynet.errors import StateDictError


def _param(xp, value):
    return Parameter(xp.asarray(np.asarray(value, dtype=np.float64)))


def _run(xp, make_opt, p0, grads):
    """Apply ``grads`` (a list of host arrays) one step each; return the host values after each."""
    p = _param(xp, p0)
    opt = make_opt([p])
    out = []
    for g in grads:
        p.grad = xp.asarray(np.asarray(g, dtype=np.float64))
        opt.step()
        out.append(xp.asnumpy(p.data).copy())
    return out


# ------------------------------------------------------------------ hand-computed steps
# One scalar parameter p0 = 1.0, gradients 0.5 then -1.0, lr = 0.1. Each expected value
# is worked out by hand from torch.optim.SGD's documented rule in the comment beside it.
SGD_HAND = [
    # plain: p = 1 - 0.1*0.5 = 0.95; p = 0.95 + 0.1*1 = 1.05
    ({}, [0.95, 1.05]),
    # momentum 0.9: buf = 0.5 -> p = 0.95; buf = 0.9*0.5 - 1 = -0.55 -> p = 0.95 + 0.055
    ({"momentum": 0.9}, [0.95, 1.005]),
    # dampening 0.5: buf = 0.5 (first step undamped); buf = 0.45 + 0.5*(-1) = -0.05
    ({"momentum": 0.9, "dampening": 0.5}, [0.95, 0.955]),
    # nesterov: g = 0.5 + 0.9*0.5 = 0.95 -> 0.905; buf = -0.55, g = -1 - 0.495 = -1.495
    ({"momentum": 0.9, "nesterov": True}, [0.905, 1.0545]),
    # weight decay 0.1: g = 0.5 + 0.1 = 0.6 -> 0.94; g = -1 + 0.094 = -0.906 -> 1.0306
    ({"weight_decay": 0.1}, [0.94, 1.0306]),
]


@pytest.mark.parametrize("kwargs,expected", SGD_HAND)
def test_sgd_hand_computed(xp, kwargs, expected):
    out = _run(xp, lambda ps: SGD(ps, lr=0.1, **kwargs), [1.0], [[0.5], [-1.0]])
    np.testing.assert_allclose([o[0] for o in out], expected, rtol=1e-14)


def test_adam_first_step_is_lr_times_sign(xp):
    # Step 1: m = (1-b1) g, v = (1-b2) g^2, so m_hat = g and v_hat = g^2 and the update is
    # lr * g / (|g| + eps): lr * sign(g) up to eps.
    g = np.array([0.5, -3.0, 1e-3])
    out = _run(xp, lambda ps: Adam(ps, lr=0.1), [1.0, 2.0, 3.0], [g])
    np.testing.assert_allclose(out[0], [1.0, 2.0, 3.0] - 0.1 * g / (np.abs(g) + 1e-8),
                               rtol=1e-14)


def test_adam_second_step_by_hand(xp):
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    out = _run(xp, lambda ps: Adam(ps, lr=lr), [1.0], [[0.5], [-1.0]])
    m1, v1 = 0.1 * 0.5, 0.001 * 0.25
    p1 = 1.0 - lr * (m1 / 0.1) / (math.sqrt(v1 / 0.001) + eps)
    m2, v2 = b1 * m1 + 0.1 * -1.0, b2 * v1 + 0.001 * 1.0
    p2 = p1 - lr * (m2 / (1 - b1 ** 2)) / (math.sqrt(v2 / (1 - b2 ** 2)) + eps)
    np.testing.assert_allclose([out[0][0], out[1][0]], [p1, p2], rtol=1e-13)


# ------------------------------------------------------------------ reference over several steps
def _sgd_reference(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                   nesterov=False):
    p, buf, out = p.copy(), None, []
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def _adam_reference(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    p, m, v, out = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
    {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.01},
    {"lr": 0.02, "momentum": 0.8, "weight_decay": 0.05, "nesterov": True},
]
ADAM_CONFIGS = [{}, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}]


def _problem(seed=0, shape=(3, 4), steps=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), [rng.normal(size=shape) for _ in range(steps)]


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_reference(xp, cfg):
    p0, grads = _problem(1)
    out = _run(xp, lambda ps: SGD(ps, **cfg), p0, grads)
    for got, want in zip(out, _sgd_reference(p0, grads, **cfg)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=str)
def test_adam_matches_reference(xp, cfg):
    p0, grads = _problem(2)
    out = _run(xp, lambda ps: Adam(ps, **cfg), p0, grads)
    for got, want in zip(out, _adam_reference(p0, grads, **cfg)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _torch_trajectory(torch, opt_class, cfg, p0, grads):
    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = opt_class([p], **cfg)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch(torch, cfg):
    p0, grads = _problem(3, steps=6)
    ours = _run(_Host, lambda ps: SGD(ps, **cfg), p0, grads)
    theirs = _torch_trajectory(torch, torch.optim.SGD, cfg, p0, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cfg", ADAM_CONFIGS + [
    {"lr": 0.05, "amsgrad": True},
    {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.05, "amsgrad": True}], ids=str)
def test_adam_matches_torch(torch, cfg):
    p0, grads = _problem(4, steps=6)
    ours = _run(_Host, lambda ps: Adam(ps, **cfg), p0, grads)
    theirs = _torch_trajectory(torch, torch.optim.Adam, cfg, p0, grads)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


class _Host:
    """The NumPy backend without the fixture (for the torch comparisons)."""

    @staticmethod
    def asarray(a):
        return np.array(a, copy=True)

    @staticmethod
    def asnumpy(a):
        return np.asarray(a)


# ------------------------------------------------------------------ protocol details
def test_step_skips_parameters_without_grad_and_keeps_grad(xp):
    a, b = _param(xp, [1.0, 2.0]), _param(xp, [3.0])
    opt = SGD([a, b], lr=0.5, momentum=0.9, weight_decay=0.1)
    a.grad = xp.asarray(np.array([1.0, -1.0]))
    opt.step()
    np.testing.assert_allclose(xp.asnumpy(a.data), [1.0 - 0.5 * 1.1, 2.0 + 0.5 * 0.8])
    np.testing.assert_array_equal(xp.asnumpy(b.data), [3.0])
    np.testing.assert_array_equal(xp.asnumpy(a.grad), [1.0, -1.0])  # step leaves grad alone
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_param_groups_and_lr_change():
    a, b = _param(_Host, [1.0]), _param(_Host, [1.0])
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.5])
    opt.param_groups[0]["lr"] = 0.2
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.7, 0.0])


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
                                  lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
                                  lambda ps: Adam(ps, lr=0.05, betas=(0.5, 0.9), amsgrad=True)],
                         ids=["sgd", "adam", "amsgrad"])
def test_optimizer_state_dict_resume(xp, make):
    p0, grads = _problem(5, steps=6)
    full = _run(xp, make, p0, grads)

    p = _param(xp, p0)
    opt = make([p])
    for g in grads[:3]:
        p.grad = xp.asarray(g)
        opt.step()
    saved_p = xp.asnumpy(p.data).copy()
    saved = copy.deepcopy(opt.state_dict())
    opt.step()  # changes the live state; the saved copy must not follow

    q = _param(xp, saved_p)
    resumed = make([q])
    resumed.load_state_dict(saved)
    for i, g in enumerate(grads[3:], start=3):
        q.grad = xp.asarray(g)
        resumed.step()
        np.testing.assert_allclose(xp.asnumpy(q.data), full[i], rtol=1e-13)


def test_optimizer_load_state_dict_errors():
    p = _param(_Host, np.zeros((2, 3)))
    opt = SGD([p], lr=0.1, momentum=0.9)
    other = SGD([_param(_Host, np.zeros(2)), _param(_Host, np.zeros(2))], lr=0.1)
    with pytest.raises(StateDictError, match=r"sizes \[2\].*\[1\]"):
        opt.load_state_dict(other.state_dict())
    bad = {"state": {0: {"momentum_buffer": np.zeros((3, 2))}},
           "param_groups": opt.state_dict()["param_groups"]}
    with pytest.raises(StateDictError, match=r"momentum_buffer.*\(3, 2\).*\(2, 3\)"):
        opt.load_state_dict(bad)
    with pytest.raises(StateDictError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_optimizer_argument_errors():
    p = _param(_Host, [1.0])
    with pytest.raises(ValueError, match="lr"):
        SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameters"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(0.9, 1.0))


def test_amsgrad_uses_the_largest_second_moment():
    """Two steps by hand: g = 1 then 0.1, beta2 0.5. v = 0.5, then 0.255; AMSGrad keeps 0.5."""
    p0, grads, b1, b2 = [0.0], [[1.0], [0.1]], 0.0, 0.5
    plain = _run(_Host, lambda ps: Adam(ps, lr=1.0, betas=(b1, b2), eps=0.0), p0, grads)
    ams = _run(_Host, lambda ps: Adam(ps, lr=1.0, betas=(b1, b2), eps=0.0, amsgrad=True),
               p0, grads)
    corr2 = math.sqrt(1 - b2 ** 2)                      # bias correction of step 2
    np.testing.assert_allclose(plain[1][0] - plain[0][0], -0.1 / (math.sqrt(0.255) / corr2))
    np.testing.assert_allclose(ams[1][0] - ams[0][0], -0.1 / (math.sqrt(0.5) / corr2))


def test_amsgrad_state_is_checked_on_load():
    p = _param(_Host, [1.0, 2.0])
    opt = Adam([p], amsgrad=True)
    p.grad = np.array([0.5, -0.5])
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    del saved["state"][0]["max_exp_avg_sq"]
    with pytest.raises(StateDictError, match="max_exp_avg_sq"):
        Adam([_param(_Host, [1.0, 2.0])], amsgrad=True).load_state_dict(saved)
    with pytest.raises(ValueError, match="amsgrad must be True or False"):
        Adam([p], amsgrad="yes")


def test_sgd_default_lr_is_torchs(torch):
    import inspect
    want = inspect.signature(torch.optim.SGD).parameters["lr"].default
    assert SGD([_param(_Host, [1.0])]).param_groups[0]["lr"] == want == 1e-3


def test_a_parameter_given_twice_is_refused_as_in_torch():
    from tinynet.errors import ArgumentError
    w, b = _param(_Host, np.zeros((2, 3))), _param(_Host, [0.0])
    with pytest.raises(ArgumentError, match=r"shape \(2, 3\) appears twice in param group 0"):
        SGD([w, b, w], lr=0.1)
    with pytest.raises(ArgumentError, match=r"appears in param groups 0 and 1"):
        Adam([{"params": [w]}, {"params": [b, w]}])


def test_amsgrad_turned_off_keeps_a_loadable_state():
    p = _param(_Host, [1.0, 2.0])
    opt = Adam([p], amsgrad=True)
    p.grad = np.array([0.5, -0.5])
    opt.step()
    opt.param_groups[0]["amsgrad"] = False
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    assert "max_exp_avg_sq" in saved["state"][0]
    again = Adam([_param(_Host, [1.0, 2.0])])
    again.load_state_dict(saved)                 # as torch.optim.Adam does
    np.testing.assert_array_equal(again.state[0]["max_exp_avg_sq"],
                                  saved["state"][0]["max_exp_avg_sq"])
