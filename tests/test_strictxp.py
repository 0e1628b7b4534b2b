"""The strict CPU stand-in for CuPy: what it allows, what it refuses, and that it catches bugs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinynet
from tinynet import Module
from tinynet.testing import strictxp as sx
from tinynet.testing.strictxp import StrictArray


@pytest.fixture
def a():
    return sx.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))


def test_get_array_module_and_device_of(a):
    assert tinynet.get_array_module(a) is sx
    assert tinynet.get_array_module(np.zeros(1), a) is sx
    assert sx.get_array_module(a) is sx
    assert sx.get_array_module(np.zeros(1)) is np
    assert tinynet.backend.device_of(a) == "cpu"
    assert isinstance(a, sx.ndarray) and not isinstance(a, np.ndarray)


def test_implicit_conversion_is_refused(a):
    for convert in (np.asarray, np.array, np.ascontiguousarray, lambda v: np.float32(v)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
            convert(a)
    with pytest.raises(AttributeError):
        a.__array_interface__  # noqa: B018
    with pytest.raises(AttributeError):
        a.data  # noqa: B018  (host memory)


@pytest.mark.parametrize("op", [
    lambda s, h: s + h, lambda s, h: h + s, lambda s, h: s * h, lambda s, h: h - s,
    lambda s, h: s @ h.T, lambda s, h: s == h, lambda s, h: s < h, lambda s, h: np.add(s, h),
    lambda s, h: np.add(h, s), lambda s, h: sx.maximum(s, h), lambda s, h: sx.exp(h),
    lambda s, h: sx.concatenate([s, h]), lambda s, h: np.concatenate([s, h]),
    lambda s, h: sx.where(s > 1, s, h), lambda s, h: sx.matmul(s, h.T),
    lambda s, h: np.multiply(s, 2, out=h), lambda s, h: s.__setitem__(0, h[0]),
    lambda s, h: s[np.array([0, 1])],
], ids=lambda f: "")
def test_mixing_with_host_arrays_is_refused(a, op):
    with pytest.raises(TypeError, match="cannot mix a strict"):
        op(a, np.ones((2, 3), np.float32))


def test_in_place_mixing_is_refused(a):
    with pytest.raises(TypeError):
        a += np.ones((2, 3), np.float32)
    h = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError):
        h += a
    with pytest.raises(TypeError, match="torch|Tensor|cannot mix"):
        a + _ArrayLike()


class _ArrayLike:
    """Something NumPy would convert (as a torch tensor is)."""

    def __array__(self, dtype=None, copy=None):
        return np.ones((2, 3))


def test_scalars_are_fine(a):
    b = a * 2 + np.float32(1) - 0.5
    np.testing.assert_array_equal(b.get(), a.get() * 2 + 0.5)
    assert b.dtype == np.float32
    assert (a * a.dtype.type(3)).dtype == np.float32
    assert (2 ** a).get()[0, 1] == 2.0
    c = a.copy()
    c[0, 0] = np.float32(9)
    c[1] = 5.0
    assert c.get().tolist() == [[9.0, 1.0, 2.0], [5.0, 5.0, 5.0]]


def test_results_stay_wrapped(a):
    for r in (a + 1, -a, abs(a), a.T, a.reshape(3, 2), a.sum(axis=0), a.max(), a.argmax(axis=1),
              a.astype(np.float64), a.ravel(), a[0], a[:, 1:], a[a > 2], np.exp(a), np.tanh(a),
              sx.exp(a), np.concatenate([a, a]), sx.stack([a, a]), sx.zeros((2, 2)),
              sx.arange(3), sx.add.reduce(a, axis=1), np.where(a > 1, a, 0), a @ a.T):
        assert isinstance(r, StrictArray), type(r)
    assert isinstance(np.split(a, 3, axis=1), list)
    assert all(isinstance(r, StrictArray) for r in np.split(a, 3, axis=1))


def test_metadata_passes_through(a):
    assert a.shape == (2, 3) and a.ndim == 2 and a.size == 6 and a.dtype == np.float32
    assert len(a) == 2 and a.T.shape == (3, 2) and a.itemsize == 4
    assert sx.float32 is np.float32 and sx.pi == np.pi and sx.newaxis is None


def test_reductions_are_0d_arrays_and_scalars_convert(a):
    s = a.sum()
    assert isinstance(s, StrictArray) and s.ndim == 0
    assert float(s) == 15.0 and int(a.max()) == 5 and bool(a.any())
    assert a[1, 2].item() == 5.0
    assert f"{s:.1f}" == "15.0"
    with pytest.raises((TypeError, ValueError)):
        float(a)
    with pytest.raises(ValueError):
        bool(a)


def test_explicit_transfers_copy(a):
    h = a.get()
    assert type(h) is np.ndarray
    h[0, 0] = 100
    assert float(a[0, 0]) == 0.0
    h2 = sx.asnumpy(a)
    h2[0, 0] = 100
    assert float(a[0, 0]) == 0.0
    src = np.zeros(3)
    d = sx.asarray(src)
    src[0] = 1
    assert float(d[0]) == 0.0
    assert sx.asarray(d) is d
    assert sx.asarray(d, dtype=np.float32).dtype == np.float32
    assert tinynet.backend.to_numpy(a).tolist() == a.get().tolist()


def test_in_place_operations_write_through(a):
    view = a[0]
    view += 10
    assert a.get()[0].tolist() == [10.0, 11.0, 12.0]
    a *= 2
    assert a.get()[1].tolist() == [6.0, 8.0, 10.0]
    i = sx.arange(2)
    a[i, i] -= np.float32(1)
    assert a.get()[1, 1] == 7.0


def test_out_returns_the_same_wrapper(a):
    out = sx.empty((2, 2), dtype=np.float32)
    assert sx.matmul(a, a.T, out=out) is out
    np.testing.assert_allclose(out.get(), a.get() @ a.get().T)
    out1 = sx.empty(3, dtype=np.float32)
    assert sx.sum(a, axis=0, out=out1) is out1
    assert np.multiply(a, 2, out=a) is a
    z = sx.zeros(4)
    sx.add.at(z, sx.asarray(np.array([0, 0, 2])), 1.0)
    assert z.get().tolist() == [2.0, 0.0, 1.0, 0.0]


def test_copies_and_iteration(a):
    b = copy.deepcopy(a)
    b[0, 0] = 42
    assert float(a[0, 0]) == 0.0
    assert [type(r) for r in a] == [StrictArray, StrictArray]


def test_random_draws_are_device_arrays():
    g = sx.random.default_rng(0)
    r = g.random((2, 3))
    assert isinstance(r, StrictArray) and r.shape == (2, 3)
    np.testing.assert_array_equal(r.get(), np.random.default_rng(0).random((2, 3)))
    assert isinstance(sx.random.rand(2), StrictArray)


def test_asarray_order_and_dtype(a):
    f = sx.asarray(np.ones((2, 3)), order="F")
    assert f.flags["F_CONTIGUOUS"]
    assert sx.asarray(a) is a
    assert sx.asarray(a, dtype=np.float64).dtype == np.float64


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="strictxp"):
        sx.not_a_numpy_function  # noqa: B018


# ------------------------------------------------------------------ it catches real bugs
class _HostBug(Module):
    """A layer that computes on the host: fine on NumPy, broken on CuPy."""

    def forward(self, x):
        return np.asarray(x) * 2


class _MixBug(Module):
    """A layer that adds a host constant array to device data."""

    def forward(self, x):
        return x + np.ones(x.shape[-1], dtype=x.dtype)


class _Good(Module):
    def forward(self, x):
        xp = tinynet.get_array_module(x)
        return x + xp.ones(x.shape[-1], dtype=x.dtype)


@pytest.mark.parametrize("layer", [_HostBug, _MixBug])
def test_stand_in_catches_what_numpy_lets_through(xp, layer):
    x = xp.asarray(np.ones((2, 3), np.float32))
    if xp.name == "numpy":
        layer()(x)  # NumPy silently accepts the bug
    else:
        with pytest.raises(TypeError):
            layer()(x)


def test_correct_layer_runs_everywhere(xp):
    y = _Good()(xp.asarray(np.ones((2, 3), np.float32)))
    np.testing.assert_array_equal(xp.asnumpy(y), np.full((2, 3), 2.0))


def test_model_moves_onto_the_stand_in():
    model = tinynet.Sequential(tinynet.Linear(3, 2))
    model._apply(sx.asarray)
    assert all(isinstance(p.data, StrictArray) for p in model.parameters())
    with pytest.raises(TypeError):
        model(np.ones((1, 3), np.float32))  # a host batch into a "device" model
    model.to("cpu")
    assert all(type(p.data) is np.ndarray for p in model.parameters())


# ------------------------------------------------------------------ same numbers as NumPy
_BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.minimum, np.greater,
           lambda u, v: u * 2.5 - v, lambda u, v: (u @ v.T) if u.ndim == 2 else u * v,
           lambda u, v: np.where(u > v, u, -v)]
_UNARY = [np.exp, np.tanh, np.abs, lambda u: u.sum(axis=0), lambda u: u.max(axis=-1),
          lambda u: u.argmax(axis=0), lambda u: u.T.copy(), lambda u: u.reshape(-1)[::2],
          lambda u: u[u > 0], lambda u: u.astype(np.float32), lambda u: -u]


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                  elements=st.floats(-50, 50)),
       st.integers(0, len(_BINARY) - 1), st.integers(0, len(_UNARY) - 1))
def test_results_equal_numpy(host, i, j):
    other = host[::-1].copy()
    s, o = sx.asarray(host), sx.asarray(other)
    np.testing.assert_array_equal(sx.asnumpy(_BINARY[i](s, o)), _BINARY[i](host, other))
    np.testing.assert_array_equal(sx.asnumpy(_UNARY[j](s)), _UNARY[j](host))
