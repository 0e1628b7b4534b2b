"""load_state_dict changes everything or nothing, and bad hyper-parameters are named.

``Module.load_state_dict`` and ``Optimizer.load_state_dict`` check every entry (keys,
shapes, dtypes castable without loss, finite values, hyper-parameter types and ranges)
before assigning any; on an error the module (grads included) or the optimizer (state
and param_groups) is exactly as before. The SGD and Adam constructors check the same
ranges and raise :class:`tinynet.errors.ArgumentError` (also a ValueError).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import tinynet
from tinynet import (
    SGD,
    Adam,
    BatchNorm1d,
    Flatten,
    Linear,
    ReLU,
    Sequential,
    StateDictError,
)
from tinynet.errors import ArgumentError, TinynetError


def _model() -> Sequential:
    tinynet.manual_seed(0)
    return Sequential(Flatten(), Linear(4, 3), ReLU(), BatchNorm1d(3), Linear(3, 2))


def _with_grads(model: Sequential) -> Sequential:
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.grad = rng.standard_normal(p.shape).astype(p.dtype)
    return model


def _snapshot(model) -> dict:
    out = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    out.update({f"grad/{k}": None if p.grad is None else p.grad.copy()
                for k, p in model.named_parameters()})
    return out


def _assert_unchanged(model, before: dict) -> None:
    after = _snapshot(model)
    assert sorted(after) == sorted(before)
    for k, v in before.items():
        if v is None:
            assert after[k] is None, k
        else:
            assert after[k].dtype == v.dtype and after[k].shape == v.shape, k
            assert np.array_equal(after[k], v, equal_nan=True), k


def _good_state(model) -> dict:
    rng = np.random.default_rng(2)
    out = {}
    for k, v in model.state_dict().items():
        out[k] = (np.asarray(rng.integers(0, 9, v.shape), dtype=v.dtype) if v.dtype.kind == "i"
                  else rng.random(v.shape).astype(v.dtype) + 0.5)
    return out


BAD_LAST_VALUES = {  # the last entry (4.bias, float32 (2,)) replaced by each of these
    "strings": (np.array(["a", "b"]), r"dtype <U1 cannot be stored as float32"),
    "objects": (np.array([1.0, 2.0], dtype=object), "dtype object cannot be stored"),
    "complex": (np.array([1 + 2j, 0j]), "dtype complex128 cannot be stored"),
    "nan": (np.array([np.nan, 1.0], np.float32), r"holds 1 NaN or inf value"),
    "inf": (np.array([np.inf, -np.inf]), r"holds 2 NaN or inf value"),
    "beyond float32": (np.array([1e39, 0.0]), r"beyond the largest float32"),
    "list": ([0.5, 0.5], r"got list, expected an array of shape \(2,\)"),
    "shape": (np.zeros((2, 1), np.float32), r"got \(2, 1\), expected \(2,\)"),
}


@pytest.mark.parametrize("case", list(BAD_LAST_VALUES))
def test_module_load_state_dict_changes_nothing_on_a_bad_last_entry(case):
    model = _with_grads(_model())
    before = _snapshot(model)
    state = _good_state(model)
    value, message = BAD_LAST_VALUES[case]
    assert list(state)[-1] == "4.bias"
    state["4.bias"] = value
    with pytest.raises(StateDictError, match=message) as e:
        model.load_state_dict(state)
    assert "4.bias" in str(e.value)
    _assert_unchanged(model, before)  # weights, buffers and grads
    with pytest.raises(StateDictError, match=message):
        model.check_state_dict(state)
    _assert_unchanged(model, before)


def test_module_load_state_dict_names_every_bad_entry():
    model = _model()
    state = _good_state(model)
    state["1.weight"] = state["1.weight"].astype(np.complex64)
    state["3.num_batches_tracked"] = np.array(2.5)             # a float into int64
    state["3.running_var"] = np.array([1, 2, np.nan], np.float64)
    with pytest.raises(StateDictError) as e:
        model.load_state_dict(state)
    msg = str(e.value)
    assert "1.weight: dtype complex64" in msg
    assert "3.num_batches_tracked: dtype float64 cannot be stored as int64" in msg
    assert "3.running_var: holds 1 NaN or inf" in msg


def test_module_load_state_dict_casts_what_pytorch_casts():
    model = _with_grads(_model())
    state = _good_state(model)
    state["1.weight"] = state["1.weight"].astype(np.float64)    # float64 into float32
    state["4.bias"] = np.array([1, -2], np.int32)                # ints into a float
    state["3.num_batches_tracked"] = np.array(7, np.uint8)        # small ints into int64
    state["3.running_mean"] = np.array([True, False, True])       # bools into a float
    missing, unexpected = model.load_state_dict(state)
    assert missing == unexpected == []
    sd = model.state_dict()
    assert sd["1.weight"].dtype == np.float32
    assert np.array_equal(sd["1.weight"], state["1.weight"].astype(np.float32))
    assert sd["3.num_batches_tracked"].dtype == np.int64 and sd["3.num_batches_tracked"] == 7
    assert sd["3.num_batches_tracked"].shape == ()
    assert np.array_equal(sd["4.bias"], [1.0, -2.0])
    assert all(p.grad is None for p in model.parameters())  # loaded parameters: no grad


def test_module_load_state_dict_refuses_integers_out_of_range():
    model = _model()
    state = _good_state(model)
    state["3.num_batches_tracked"] = np.array(2**63, np.uint64)
    with pytest.raises(StateDictError, match="outside int64's range"):
        model.load_state_dict(state)


def test_module_without_running_stats_round_trips():
    model = Sequential(Linear(2, 2), BatchNorm1d(2, track_running_stats=False))
    other = Sequential(Linear(2, 2), BatchNorm1d(2, track_running_stats=False))
    other.load_state_dict(model.state_dict())  # its state_dict holds None buffers
    assert np.array_equal(other[0].weight.data, model[0].weight.data)


# ----------------------------------------------------------------- optimizers
def _trained_optimizer(make):
    model = _model()
    opt = make(list(model.parameters()))
    for _ in range(2):
        _with_grads(model)
        opt.step()
    return model, opt


def _opt_snapshot(opt) -> tuple:
    state = {i: {k: (v.copy() if hasattr(v, "copy") else v) for k, v in s.items()}
             for i, s in opt.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return state, groups


def _assert_opt_unchanged(opt, before) -> None:
    state, groups = _opt_snapshot(opt)
    assert groups == before[1]
    assert sorted(state) == sorted(before[0])
    for i, s in before[0].items():
        assert sorted(state[i]) == sorted(s)
        for k, v in s.items():
            assert np.array_equal(np.asarray(state[i][k]), np.asarray(v)), (i, k)


SGD_MAKE = lambda p: SGD(p, lr=0.1, momentum=0.9)
ADAM_MAKE = lambda p: Adam(p, lr=0.01)


def _bad_sgd_groups(sd, key, value):
    sd["param_groups"][0][key] = value
    return sd


def _bad_state(sd, index, name, value):
    sd["state"][index][name] = value
    return sd


OPTIMIZER_CASES = [
    # (id, make, corrupt(state_dict) -> state_dict, message)
    ("momentum list", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "momentum", [1, 2]),
     r"momentum must be a finite number >= 0, got \(1, 2\)"),
    ("lr string", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "lr", "x"),
     r"lr must be a finite number >= 0, got 'x'"),
    ("lr nan", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "lr", math.nan), r"lr must be .*nan"),
    ("lr negative", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "lr", -1.0), r"lr must be"),
    ("nesterov", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "nesterov", "yes"),
     r"nesterov must be True or False"),
    ("unknown name", SGD_MAKE, lambda sd: _bad_sgd_groups(sd, "betas", (0.9, 0.99)),
     r"\['betas'\], which SGD does not use"),
    ("betas", ADAM_MAKE, lambda sd: _bad_sgd_groups(sd, "betas", (0.9, 1.0)),
     r"betas must be two numbers in \[0, 1\)"),
    ("eps nan", ADAM_MAKE, lambda sd: _bad_sgd_groups(sd, "eps", math.nan), "eps must be"),
    ("buffer shape", SGD_MAKE, lambda sd: _bad_state(sd, 5, "momentum_buffer", np.zeros(3)),
     r"momentum_buffer of parameter 5 has shape \(3,\), expected \(2,\)"),
    ("buffer strings", SGD_MAKE, lambda sd: _bad_state(sd, 5, "momentum_buffer",
                                                       np.array(["a", "b"])),
     r"momentum_buffer of parameter 5: dtype <U1"),
    ("buffer nan", SGD_MAKE, lambda sd: _bad_state(sd, 5, "momentum_buffer",
                                                   np.array([np.nan, 0.0])),
     "holds 1 NaN or inf"),
    ("step negative", ADAM_MAKE, lambda sd: _bad_state(sd, 5, "step", -1),
     r"step of parameter 5 is -1, expected a whole number >= 0"),
    ("step string", ADAM_MAKE, lambda sd: _bad_state(sd, 5, "step", "3"),
     r"step of parameter 5 is '3'"),
    ("step float", ADAM_MAKE, lambda sd: _bad_state(sd, 5, "step", 1.5), r"step .* is 1.5"),
    ("negative second moment", ADAM_MAKE,
     lambda sd: _bad_state(sd, 5, "exp_avg_sq", np.array([-1.0, 0.0])), "negative values"),
    ("missing moment", ADAM_MAKE, lambda sd: (sd["state"][5].pop("exp_avg"), sd)[1],
     r"state of parameter 5 has \['exp_avg_sq', 'step'\]"),
    ("index", SGD_MAKE, lambda sd: (sd["state"].update({9: sd["state"][0]}), sd)[1],
     "state for parameter 9, but there are 6"),
    ("adam into sgd", SGD_MAKE, lambda sd: _trained_optimizer(ADAM_MAKE)[1].state_dict(),
     r"\['amsgrad', 'betas', 'eps'\], which SGD does not use"),
]


@pytest.mark.parametrize("make, corrupt, message", [c[1:] for c in OPTIMIZER_CASES],
                         ids=[c[0] for c in OPTIMIZER_CASES])
def test_optimizer_load_state_dict_changes_nothing_on_error(make, corrupt, message):
    _, source = _trained_optimizer(make)
    _, target = _trained_optimizer(make)
    for g in target.param_groups:
        g["lr"] = 0.5  # differs from the source: must stay 0.5
    before = _opt_snapshot(target)
    bad = corrupt(copy.deepcopy(source.state_dict()))
    with pytest.raises(StateDictError, match=message):
        target.load_state_dict(bad)
    _assert_opt_unchanged(target, before)


@pytest.mark.parametrize("make", [SGD_MAKE, ADAM_MAKE], ids=["sgd", "adam"])
def test_optimizer_load_state_dict_takes_a_good_one(make):
    _, source = _trained_optimizer(make)
    _, target = _trained_optimizer(make)
    target.param_groups[0]["lr"] = 0.5
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    assert target.param_groups[0]["lr"] == source.param_groups[0]["lr"]
    for i, s in source.state.items():
        for k, v in s.items():
            assert np.array_equal(np.asarray(target.state[i][k]), np.asarray(v))


@pytest.mark.parametrize("make, message", [
    (lambda p: SGD(p, lr=math.nan), r"SGD: lr must be a finite number >= 0, got nan"),
    (lambda p: SGD(p, lr=-1), r"SGD: lr must be a finite number >= 0, got -1"),
    (lambda p: SGD(p, lr="0.1"), r"SGD: lr must be a finite number >= 0, got '0.1'"),
    (lambda p: SGD(p, lr=0.1, momentum=-1), r"momentum must be a finite number >= 0"),
    (lambda p: SGD(p, lr=0.1, momentum=math.inf), r"momentum must be .*got inf"),
    (lambda p: SGD(p, lr=0.1, weight_decay=math.nan), "weight_decay must be"),
    (lambda p: SGD(p, lr=0.1, dampening=math.nan), "dampening must be a finite number"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov needs momentum > 0"),
    (lambda p: Adam(p, lr=math.nan), r"Adam: lr must be a finite number >= 0, got nan"),
    (lambda p: Adam(p, lr=-0.1), "Adam: lr must be"),
    (lambda p: Adam(p, betas=(0.9, math.nan)), r"betas must be two numbers in \[0, 1\)"),
    (lambda p: Adam(p, betas=(-0.1, 0.9)), "betas must be"),
    (lambda p: Adam(p, betas=0.9), "betas must be"),
    (lambda p: Adam(p, eps=-1e-8), "eps must be a finite number >= 0"),
    (lambda p: Adam(p, weight_decay=math.inf), "weight_decay must be"),
], ids=lambda v: "" if callable(v) else v.split(" must")[0])
def test_optimizer_constructors_name_the_bad_argument(make, message):
    params = list(_model().parameters())
    with pytest.raises(ArgumentError, match=message) as e:
        make(params)
    assert isinstance(e.value, TinynetError) and isinstance(e.value, ValueError)
