"""Module and Sequential: names, state_dict, train/eval, to(), double(), parameter counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tinynet
from tinynet import (
    Dropout,
    Flatten,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    models,
)
from tinynet.errors import DeviceError, StateDictError


def _small():
    tinynet.manual_seed(0)
    return Sequential(Flatten(), Linear(4, 3), ReLU(), Dropout(0.2), Linear(3, 2))


def _snapshot(model):
    return {k: tinynet.backend.to_numpy(v).copy() for k, v in model.state_dict().items()}


class _WithBuffer(Module):
    """A module with a parameter and a buffer, as BatchNorm has (running_mean)."""

    def __init__(self):
        super().__init__()
        self.weight = Parameter(np.ones(3, np.float32))
        self.register_buffer("running_mean", np.zeros(3, np.float32))

    def forward(self, x):
        return x * self.weight.data


# ------------------------------------------------------------------ names and counts
@pytest.mark.parametrize("name,count", [("base", 669_706), ("wider", 1_863_690),
                                        ("deeper", 932_362)])
def test_count_parameters_of_the_study_mlps(name, count):
    model = models.build(name)
    assert tinynet.count_parameters(model) == count
    assert models.PARAMETER_COUNTS[name] == count


def _torch_twin(torch, widths):
    layers = [torch.nn.Flatten()]
    for a, b in itertools.pairwise(widths[:-1]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(widths[-2], widths[-1]))
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("name,widths", [("base", (784, 512, 512, 10)),
                                         ("wider", (784, 1024, 1024, 10)),
                                         ("deeper", (784, 512, 512, 512, 10))])
def test_named_parameters_match_torch_twin(torch, name, widths):
    ours = [(n, p.shape) for n, p in models.build(name).named_parameters()]
    twin = _torch_twin(torch, widths)
    theirs = [(n, tuple(p.shape)) for n, p in twin.named_parameters()]
    assert ours == theirs
    assert sum(p.numel() for p in twin.parameters()) == models.PARAMETER_COUNTS[name]


def test_names_order_and_describe():
    model = _small()
    assert [n for n, _ in model.named_parameters()] == ["1.weight", "1.bias", "4.weight",
                                                        "4.bias"]
    assert list(model.state_dict()) == ["1.weight", "1.bias", "4.weight", "4.bias"]
    assert model[4].describe() == "Linear '4'"
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2", "3", "4"]
    outer = Sequential(model, Linear(2, 2))
    assert outer[0][4].describe() == "Linear '0.4'"
    assert "0.4.weight" in outer.state_dict()


def test_buffers_are_in_state_dict_not_parameters():
    m = Sequential(_WithBuffer())
    assert list(m.state_dict()) == ["0.weight", "0.running_mean"]
    assert [n for n, _ in m.named_parameters()] == ["0.weight"]
    assert [n for n, _ in m.named_buffers()] == ["0.running_mean"]


def test_missing_super_init_is_a_clear_error():
    class Bad(Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(AttributeError, match="super"):
        Bad()


# ------------------------------------------------------------------ state_dict
def test_state_dict_round_trip():
    a, b = _small(), _small()
    for p in b.parameters():
        p.data[...] = 0.5
    saved = _snapshot(a)
    b.load_state_dict(saved)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, saved[k])
        assert v.dtype == np.float32
    # loaded arrays are copies, not aliases of the dict's arrays
    saved["1.weight"][...] = 7.0
    assert not np.any(b.state_dict()["1.weight"] == 7.0)
    x = np.random.default_rng(0).normal(size=(5, 2, 2)).astype(np.float32)
    a.eval()
    b.eval()
    np.testing.assert_array_equal(a(x), b(x))


def test_load_state_dict_casts_to_the_module_dtype():
    m = _small()
    m.load_state_dict({k: v.astype(np.float64) for k, v in _snapshot(m).items()})
    assert all(p.data.dtype == np.float32 for p in m.parameters())


def test_strict_errors_name_every_bad_key_and_change_nothing():
    m = _small()
    before = _snapshot(m)
    bad = dict(_snapshot(m))
    del bad["4.bias"]
    bad["9.weight"] = np.zeros(1)
    bad["1.weight"] = np.zeros((4, 3), np.float32)  # transposed
    bad["1.bias"] = np.full(3, 9.0, np.float32)  # fine, but must not be written
    with pytest.raises(StateDictError) as info:
        m.load_state_dict(bad)
    msg = str(info.value)
    assert "missing keys: 4.bias" in msg
    assert "unexpected keys: 9.weight" in msg
    assert "1.weight: got (4, 3), expected (3, 4)" in msg
    for k, v in _snapshot(m).items():
        np.testing.assert_array_equal(v, before[k])


def test_non_array_values_are_named():
    m = _small()
    before = _snapshot(m)
    bad = dict(before, **{"1.bias": [0.0, 0.0, 0.0], "4.bias": 3.0})
    with pytest.raises(StateDictError, match=r"1.bias: got list, expected an array of shape "
                                             r"\(3,\).*4.bias: got float"):
        m.load_state_dict(bad)
    for k, v in _snapshot(m).items():
        np.testing.assert_array_equal(v, before[k])


def test_non_strict_reports_missing_and_unexpected():
    m = _small()
    sd = _snapshot(m)
    partial = {"1.weight": np.ones((3, 4), np.float32), "extra": np.zeros(2)}
    missing, unexpected = m.load_state_dict(partial, strict=False)
    assert missing == ["1.bias", "4.weight", "4.bias"]
    assert unexpected == ["extra"]
    np.testing.assert_array_equal(m.state_dict()["1.weight"], np.ones((3, 4)))
    np.testing.assert_array_equal(m.state_dict()["4.weight"], sd["4.weight"])
    with pytest.raises(StateDictError, match=r"1.bias: got \(2,\), expected \(3,\)"):
        m.load_state_dict({"1.bias": np.zeros(2)}, strict=False)


def test_load_torch_state_dict_gives_torch_outputs(torch):
    twin = _torch_twin(torch, (12, 7, 5, 3))
    m = models.mlp(12, (7, 5), 3)
    m.load_state_dict(twin.state_dict())
    x = np.random.default_rng(1).normal(size=(4, 3, 4)).astype(np.float32)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m(x), ref, rtol=1e-5, atol=1e-6)
    # and back: our state_dict loads into the twin
    twin2 = _torch_twin(torch, (12, 7, 5, 3))
    twin2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    with torch.no_grad():
        np.testing.assert_allclose(twin2(torch.from_numpy(x)).numpy(), ref, rtol=1e-6)


def test_load_state_dict_on_every_backend(xp):
    m = xp.to(_small())
    src = _small()
    for p in src.parameters():
        p.data[...] = 0.25
    m.load_state_dict(src.state_dict())
    for k, v in m.state_dict().items():
        assert tinynet.get_array_module(v) is xp.xp, k
        np.testing.assert_array_equal(xp.asnumpy(v), np.full(v.shape, 0.25))


# ------------------------------------------------------------------ modes, devices, dtypes
def test_train_eval_reach_every_submodule():
    model = Sequential(_small(), Dropout(0.5))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = np.ones((3, 2, 2), np.float32)
    model.eval()
    np.testing.assert_array_equal(model(x), model(x))  # no dropout in eval


def test_double_and_float(xp):
    m = xp.to(_small()).double()
    assert m.dtype == np.float64
    assert all(p.data.dtype == np.float64 for p in m.parameters())
    y = m(xp.asarray(np.ones((2, 2, 2))))
    assert y.dtype == np.float64
    m.float()
    assert all(p.data.dtype == np.float32 for p in m.parameters())
    # buffers are cast too, integer buffers are left alone
    w = _WithBuffer()
    w.register_buffer("count", np.zeros(1, np.int64))
    w.double()
    assert w.running_mean.dtype == np.float64 and w.count.dtype == np.int64


def test_to_cpu_returns_numpy_and_drops_grads(xp):
    m = xp.to(_small())
    x = xp.asarray(np.ones((2, 2, 2), np.float32))
    m(x)
    m.backward(xp.asarray(np.ones((2, 2), np.float32)))
    assert m[1].weight.grad is not None
    m.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in m.parameters())
    assert all(p.grad is None for p in m.parameters())


def test_to_unknown_or_missing_device_is_a_clear_error():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        _small().to("tpu")
    if not tinynet.cuda_available():
        with pytest.raises(DeviceError, match="cuda"):
            _small().to("cuda")


def test_zero_grad_on_module():
    m = _small()
    m(np.ones((2, 2, 2), np.float32))
    m.backward(np.ones((2, 2), np.float32))
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_backend_helpers(xp, torch):
    from tinynet import backend
    a = xp.asarray(np.arange(3.0))
    assert backend.get_array_module(a) is xp.xp
    assert backend.get_array_module(np.zeros(1)) is np
    assert backend.device_of(a) == ("cuda" if xp.name == "cupy" else "cpu")
    host = backend.to_numpy(a)
    assert type(host) is np.ndarray and host.tolist() == [0.0, 1.0, 2.0]
    assert backend.to_numpy(torch.arange(3.0)).tolist() == [0.0, 1.0, 2.0]
    assert type(backend.to_device(a, "cpu")) is np.ndarray
    backend.synchronize(a)  # a no-op off the GPU; must not fail
    assert f"numpy {np.__version__}" in backend.name()
    with pytest.raises(DeviceError, match="expected 'cpu' or 'cuda'"):
        backend.to_device(a, "gpu")


def test_assigning_a_module_or_parameter_after_none_replaces_the_plain_attribute():
    import numpy as np

    import tinynet
    from tinynet.parameter import Parameter

    m = tinynet.Module()
    m.proj = None
    m.proj = tinynet.Linear(2, 3)
    assert isinstance(m.proj, tinynet.Linear)
    assert [k for k, _ in m.named_parameters()] == ["proj.weight", "proj.bias"]
    m.w = None
    m.w = Parameter(np.zeros(2, dtype=np.float32))
    assert isinstance(m.w, Parameter) and "w" in dict(m.named_parameters())
    m.w = None  # and back: no longer a parameter
    assert m.w is None and "w" not in dict(m.named_parameters())


# ----------------------------------------------------------------- shared modules, tying
def test_a_layer_held_twice_is_listed_once_and_its_backward_refused(torch):
    """PyTorch counts a shared layer's parameters once and keeps a state_dict key per
    place. tinynet does the same, and refuses the backward: without autograd the layer
    would back-propagate its earlier use with its later use's cache."""
    tinynet.manual_seed(0)
    shared = Linear(3, 3)
    m = Sequential(shared, tinynet.Tanh(), shared).double()
    t = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh())
    t.append(t[0])
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()] \
        == ["0.weight", "0.bias"]
    assert tinynet.count_parameters(m) == sum(p.numel() for p in t.parameters()) == 12
    assert list(m.state_dict()) == list(t.state_dict()) == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "0", "1"]
    assert len(list(m.named_modules(remove_duplicate=False))) == 4
    m.load_state_dict({k: v.copy() for k, v in m.state_dict().items()})   # both keys accepted
    y = m(np.ones((2, 3)))                                  # inference is fine
    with pytest.raises(tinynet.ArgumentError,
                       match=r"one Linear instance is used at '0' and at '2'.*separate"):
        m.backward(np.ones_like(y))
    assert shared.weight.grad is None


def test_a_shared_activation_in_a_nested_model_is_named():
    act = ReLU()
    m = Sequential(Linear(2, 2), act, Sequential(Linear(2, 2), act))
    y = m(np.ones((1, 2), dtype=np.float32))
    with pytest.raises(tinynet.ArgumentError, match=r"ReLU instance is used at '1' and at '2.1'"):
        m.backward(np.ones_like(y))


def test_tied_weights_get_the_sum_of_both_gradients_as_in_torch(torch):
    """Sharing the Parameter (not the layer) is how to tie weights: each use adds its
    gradient, and the optimizer sees the parameter once."""
    tinynet.manual_seed(1)
    a, b = Linear(4, 4), Linear(4, 4)
    b.weight = a.weight
    m = Sequential(a, tinynet.Tanh(), b).double()
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.bias"]
    ta, tb = torch.nn.Linear(4, 4).double(), torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        ta.weight.copy_(torch.from_numpy(a.weight.data))
        ta.bias.copy_(torch.from_numpy(a.bias.data))
        tb.bias.copy_(torch.from_numpy(b.bias.data))
    tb.weight = ta.weight
    x = np.random.default_rng(0).standard_normal((5, 4))
    tx = torch.from_numpy(x)
    tb(torch.tanh(ta(tx))).pow(2).sum().backward()
    y = m(x)
    m.backward(2 * y)
    np.testing.assert_allclose(a.weight.grad, ta.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    opt = tinynet.SGD(m.parameters(), lr=0.1)
    before = a.weight.data.copy()
    opt.step()
    np.testing.assert_allclose(a.weight.data, before - 0.1 * a.weight.grad, rtol=1e-15)


def test_a_slice_keeps_the_names_as_torch_does(torch):
    model = models.build("base")
    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 10))
    part = model[1:4]
    assert list(part.state_dict()) == list(twin[1:4].state_dict()) == \
        ["1.weight", "1.bias", "3.weight", "3.bias"]
    assert part[0] is model[1] and len(part) == 3
    part.load_state_dict({k: v.copy() for k, v in model.state_dict().items()
                          if k[0] in "13"})
    part.append(ReLU())                                    # "3" is taken: the next free name
    assert [n for n, _ in part.named_children()] == ["1", "2", "3", "4"]


def test_sequential_from_an_ordered_dict_as_torch():
    from collections import OrderedDict
    m = Sequential(OrderedDict([("fc", Linear(2, 3)), ("act", ReLU())]))
    assert list(m.state_dict()) == ["fc.weight", "fc.bias"] and m[1] is m.act
    for bad in ("", "a.b", 3):
        with pytest.raises(tinynet.ArgumentError, match="non-empty strings without '.'"):
            Sequential(OrderedDict([(bad, ReLU())]))


def test_to_takes_a_dtype_as_torch_does(torch):
    m = _small()
    assert m.to(np.float64).dtype == np.float64
    assert m.to(torch.float32).dtype == np.float32
    assert m.to("cpu", "float64").dtype == np.float64
    assert m.to(torch.device("cpu")).dtype == np.float64
    with pytest.raises(tinynet.DTypeError, match="floating-point"):
        m.to(np.int32)
    assert m.dtype == np.float64                          # the refused cast changed nothing
    with pytest.raises(DeviceError, match=r"unknown device 'float64'.*to\(dtype='float64'\)"):
        m.to("float64")


def test_subpackages_are_reachable_after_a_plain_import():
    """README's ``tinynet.gradcheck.check(...)`` after ``import tinynet`` (a fresh process,
    so no other test has imported the sub-packages already)."""
    import subprocess
    import sys
    code = ("import tinynet, sys\n"
            "assert 'tinynet.gradcheck' not in sys.modules\n"
            "print(tinynet.gradcheck.check.__name__, tinynet.exercises.grade.__name__,\n"
            "      tinynet.parity.__name__, tinynet.data.DataLoader.__name__)\n"
            "try:\n    tinynet.no_such_thing\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out == ("check grade tinynet.parity DataLoader\n"
                   "module 'tinynet' has no attribute 'no_such_thing'\n")


def test_only_layers_a_forward_calls_twice_are_refused():
    """An alias kept by a Module of your own is not a second use, and Identity keeps
    nothing; a layer shared inside a Residual's body is a second use."""
    class Head(Module):
        def __init__(self):
            super().__init__()
            self.body = Sequential(Linear(3, 3), ReLU(), Linear(3, 2))
            self.out = self.body[2]                 # an alias, as torch allows

        def forward(self, x):
            return self.body(x)

        def backward(self, dy, input_grad=True):
            return self.body.backward(dy, input_grad)

    skip = tinynet.Identity()
    m = Sequential(Head(), skip, ReLU(), skip).double()
    x = np.ones((2, 3))
    y = m(x)
    assert m.backward(np.ones_like(y)).shape == x.shape
    shared = Linear(3, 3)
    res = Sequential(tinynet.Residual(Sequential(shared, ReLU())), shared).double()
    y = res(x)
    with pytest.raises(tinynet.ArgumentError, match=r"used at '0.body.0' and at '1'"):
        res.backward(np.ones_like(y))

    class Block(Module):                     # a Module of your own that runs a Sequential
        def __init__(self, seq):
            super().__init__()
            self.seq = seq

        def forward(self, x):
            return self.seq(x)

        def backward(self, dy, input_grad=True):
            return self.seq.backward(dy, input_grad)

    inner = Sequential(Linear(3, 3), ReLU(), Block(Sequential(shared))).double()
    y = inner(x)
    with pytest.raises(tinynet.ArgumentError, match=r"at '0' and at '2.seq.0'"):
        Sequential(shared, ReLU(), Block(Sequential(shared))).double().backward(y)
    assert inner.backward(np.ones_like(y)).shape == x.shape


def test_ordered_dict_names_that_are_attributes_are_refused():
    from collections import OrderedDict
    for name in ("training", "_modules", "forward"):
        with pytest.raises(tinynet.ArgumentError, match=f"layer name '{name}' is an attribute"):
            Sequential(OrderedDict([(name, ReLU())]))


def test_named_modules_memo_takes_modules_as_torch():
    m = _small()
    assert [n for n, _ in m.named_modules(memo={m[1]})] == ["", "0", "2", "3", "4"]
