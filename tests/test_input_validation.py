"""Every layer rejects bad input with a tinynet error that names the layer.

Wrong shapes (forward input and backward gradient), wrong dtypes, non-array input,
NaN/inf (only with the opt-in ``tinynet.set_checks`` / ``tinynet.checking()`` /
``tinynet train --check``) and class labels outside ``[0, num_classes)``. Each layer is
tested inside a Sequential, so the message must carry its state_dict prefix
(``Linear '1'``) and the shape it expected.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tinynet
from tinynet import (
    ELU,
    CrossEntropyLoss,
    Dropout,
    DTypeError,
    Flatten,
    LabelError,
    LeakyReLU,
    Linear,
    MSELoss,
    NonFiniteError,
    ReLU,
    Sequential,
    ShapeError,
    Sigmoid,
    Tanh,
    TinynetError,
)
from tinynet.layers import AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, factory, a good input shape, bad input shapes, the expected shape as spelled
PARAM_LAYERS = [
    ("Linear", lambda: Linear(4, 3), (2, 4), [(2, 5), (2, 4, 1), (5,)], "(*, 4)"),
    ("Conv2d", lambda: Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5),
     [(2, 3, 5, 5), (3, 5, 5), (2, 50)], "(N, 2, H, W)"),
    ("BatchNorm1d", lambda: BatchNorm1d(3), (4, 3), [(4, 2), (4,), (4, 3, 2, 2)],
     "(N, 3) or (N, 3, L)"),
    ("BatchNorm2d", lambda: BatchNorm2d(3), (2, 3, 4, 4), [(2, 2, 4, 4), (2, 3, 4)],
     "(N, 3, H, W)"),
]
POOL_LAYERS = [
    ("MaxPool2d", lambda: MaxPool2d(2), (2, 2, 4, 4), [(16,), (2, 16)], "(N, C, H, W)"),
    ("AvgPool2d", lambda: AvgPool2d(2), (2, 2, 4, 4), [(16,), (2, 16)], "(N, C, H, W)"),
]
SHAPED = PARAM_LAYERS + POOL_LAYERS
ELEMENTWISE = [("ReLU", ReLU), ("Tanh", Tanh), ("Sigmoid", Sigmoid),
               ("LeakyReLU", LeakyReLU), ("ELU", ELU), ("Dropout", lambda: Dropout(0.5))]
COMPUTING = SHAPED + [(n, f, (3, 4), [], "") for n, f in ELEMENTWISE]
# Flatten moves no values: any dtype is fine and it leaves NaN checks to the next layer.
ALL = COMPUTING + [("Flatten", Flatten, (2, 3, 4), [], "")]


def _named(factory):
    """The layer at index 1 of a Sequential, so it is called e.g. ``Linear '1'``."""
    layer = factory()
    Sequential(Flatten(start_dim=0, end_dim=0), layer)  # a no-op first layer
    return layer


def _x(shape, dtype="float32", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _label(name: str) -> str:
    return re.escape(f"{name} '1'")


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", SHAPED,
                         ids=[s[0] for s in SHAPED])
def test_wrong_input_shape_names_layer_and_expected_shape(name, factory, good, bad_shapes,
                                                         expected):
    layer = _named(factory)
    assert layer(_x(good)).shape[0] == good[0]  # the good shape works
    for shape in bad_shapes:
        with pytest.raises(ShapeError) as e:
            layer(_x(shape))
        msg = str(e.value)
        assert re.search(_label(name), msg), msg
        assert str(tuple(shape)) in msg and expected in msg, msg


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", COMPUTING,
                         ids=[s[0] for s in COMPUTING])
def test_wrong_input_dtype_names_layer(name, factory, good, bad_shapes, expected):
    layer = _named(factory)
    bad = ["int64", "uint8", "bool"] + (["float64"] if name in {p[0] for p in PARAM_LAYERS}
                                        else [])
    for dtype in bad:
        x = (_x(good) * 10).astype(dtype)
        with pytest.raises(DTypeError, match=_label(name)) as e:
            layer(x)
        assert str(np.dtype(dtype)) in str(e.value)


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", ALL,
                         ids=[s[0] for s in ALL])
def test_non_array_input_is_a_shape_error(name, factory, good, bad_shapes, expected):
    layer = _named(factory)
    with pytest.raises(ShapeError, match=_label(name)):
        layer(_x(good).tolist())


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", COMPUTING,
                         ids=[s[0] for s in COMPUTING])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected_only_with_checks(name, factory, good, bad_shapes,
                                                        expected, bad):
    layer = _named(factory)
    x = _x(good)
    x.flat[3] = bad
    assert not tinynet.checks.checks_enabled()
    with np.errstate(invalid="ignore", over="ignore"):
        layer(x)  # off by default: no cost, no error
    with tinynet.checking(), pytest.raises(NonFiniteError, match=_label(name)) as e:
        layer(x)
    n_nan, n_inf = (1, 0) if np.isnan(bad) else (0, 1)
    assert f"holds {n_nan} NaN and {n_inf} inf" in str(e.value)
    assert not tinynet.checks.checks_enabled()  # restored


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", ALL,
                         ids=[s[0] for s in ALL])
def test_wrong_gradient_shape_names_layer(name, factory, good, bad_shapes, expected):
    layer = _named(factory)
    y = layer(_x(good))
    for shape in [(y.shape[0] + 1,) + y.shape[1:], (1,) + y.shape[1:],
                  y.shape[:-1] + (y.shape[-1] + 1,)]:
        with pytest.raises(ShapeError, match=_label(name)) as e:
            layer.backward(_x(shape))
        assert str(tuple(shape)) in str(e.value)


@pytest.mark.parametrize("name, factory, good, bad_shapes, expected", COMPUTING,
                         ids=[s[0] for s in COMPUTING])
def test_non_finite_gradient_is_rejected_with_checks(name, factory, good, bad_shapes,
                                                     expected):
    layer = _named(factory)
    y = layer(_x(good))
    dy = _x(y.shape)
    dy.flat[0] = np.nan
    with tinynet.checking(), pytest.raises(NonFiniteError, match=_label(name) + ".*gradient"):
        layer.backward(dy)


def test_backward_before_forward_names_layer():
    for name, factory, *_ in ALL:
        if name == "Dropout":
            continue  # eval-mode Dropout is the identity and has nothing to forget
        layer = _named(factory)
        with pytest.raises(RuntimeError, match=_label(name) + ": backward called before"):
            layer.backward(_x((2, 3)))


def test_model_with_wrong_image_size_names_first_linear():
    model = tinynet.models.base_mlp()
    with pytest.raises(ShapeError, match=re.escape(
            "Linear '1': got input of shape (5, 1024), expected (*, 784)")):
        model(_x((5, 1, 32, 32)))


# ----------------------------------------------------------------- losses and labels
@pytest.mark.parametrize("labels, lo, hi", [([0, 1, 3], 0, 3), ([-1, 0, 2], -1, 2),
                                            ([7, 7, 7], 7, 7)])
def test_labels_outside_the_classes_are_rejected(labels, lo, hi):
    loss = CrossEntropyLoss()
    with pytest.raises(LabelError, match=re.escape(
            f"class labels must be in [0, 3), got values from {lo} to {hi}")):
        loss(_x((3, 3)), np.array(labels))


def test_labels_of_the_wrong_kind_or_shape():
    loss = CrossEntropyLoss()
    with pytest.raises(DTypeError, match=re.escape(
            "dtype float32 and shape (3,): expected integer class indices of shape (3,)")):
        loss(_x((3, 3)), np.array([0, 1, 2], np.float32))
    with pytest.raises(DTypeError, match="integer class indices or float class probabilities"):
        loss(_x((3, 3)), np.array(["a", "b", "c"]))
    with pytest.raises(ShapeError, match=re.escape("expected (3,) class indices")):
        loss(_x((3, 3)), np.array([[0], [1], [2]]))
    with pytest.raises(ShapeError, match=re.escape("got targets of shape (3,), expected ()")):
        loss(_x((3,)), np.array([0, 1, 2]))      # an unbatched input takes one class index
    with pytest.raises(ShapeError, match="MSELoss"):
        MSELoss()(_x((3, 2)), _x((2, 3)))


def test_non_finite_logits_rejected_with_checks():
    z = _x((3, 4))
    z[1, 2] = np.inf
    with np.errstate(invalid="ignore"):
        CrossEntropyLoss()(z, np.array([0, 1, 2]))  # off by default
    with tinynet.checking(), pytest.raises(NonFiniteError, match="CrossEntropyLoss: logits"):
        CrossEntropyLoss()(z, np.array([0, 1, 2]))


def test_fit_reports_bad_labels_before_training():
    model = Sequential(Flatten(), Linear(4, 3))
    before = model[1].weight.data.copy()
    images = np.zeros((8, 2, 2), np.uint8)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 0])
    with pytest.raises(LabelError, match=re.escape("[0, 3), got values from 0 to 3")):
        tinynet.fit(model, CrossEntropyLoss(), tinynet.SGD(model.parameters(), lr=0.1),
                    (images, labels), batch_size=8, progress=False, log=None)
    assert np.array_equal(model[1].weight.data, before)


def test_every_error_is_a_tinynet_error():
    for cls in (ShapeError, DTypeError, LabelError, NonFiniteError):
        assert issubclass(cls, TinynetError)


# ----------------------------------------------------------------- tinynet train --check
CHECK_CHILD = r'''
import sys
import numpy as np
import tinynet.cli
from tinynet.data import datasets

def reader(folder, split):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    return images, np.arange(64) % 10

datasets.register(datasets.DatasetInfo(name="tiny", files={"train": [], "test": []},
                                       md5={}, mirrors=[], reader=reader))
sys.exit(tinynet.cli.main(["train", "--data", "tiny", "--data-root", sys.argv[1]]
                          + sys.argv[2:]))
'''


@pytest.mark.parametrize("check", [False, True])
def test_train_check_flag_stops_at_the_first_non_finite_layer(tmp_path, check):
    script = tmp_path / "child.py"
    script.write_text(CHECK_CHILD)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    args = [sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / "out"),
            "--lr", "1e38", "--batch-size", "16", "--no-progress"] + (["--check"] if check
                                                                     else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env,
                       check=False)
    assert r.returncode == 1, (r.stdout, r.stderr)
    if check:  # a layer names itself as the place the first inf appeared
        assert re.search(r"tinynet train: error: \w+ '\d+': (input|gradient) of shape "
                         r"\(16, \d+\) holds \d+ NaN and \d+ inf", r.stderr), r.stderr
    else:  # without the check, fit notices only the loss
        assert "stopped: loss became" in r.stdout, r.stdout


# ----------------------------------------------------------------- bad arrays into the API
@pytest.mark.parametrize("make, x", [
    (lambda: Linear(3, 2), np.zeros((2, 3), np.float32)),
    (lambda: Conv2d(1, 1, 3), np.zeros((1, 1, 4, 4), np.float32)),
    (lambda: ReLU(), np.zeros((2, 3), np.float32)),
    (lambda: BatchNorm1d(3), np.ones((4, 3), np.float32)),
    (lambda: MaxPool2d(2), np.zeros((1, 1, 4, 4), np.float32)),
])
def test_a_complex_or_object_gradient_is_a_dtype_error(make, x):
    layer = make()
    y = layer(x)
    for bad in (y.astype(np.complex64), y.astype(object), np.full(y.shape, "a")):
        with pytest.raises(DTypeError, match="gradient"):
            layer.backward(bad)


@pytest.mark.parametrize("bad", [np.array([["a", "b", "c"]]), np.zeros((1, 3), object),
                                 np.zeros((1, 3), np.complex128)])
def test_string_object_and_complex_inputs_are_dtype_errors(bad):
    for layer in (Linear(3, 2), ReLU(), Sigmoid(), tinynet.Dropout(0.5), BatchNorm1d(3)):
        with pytest.raises(DTypeError, match="expected"):
            layer(bad)


def test_bad_probabilities_and_rates_name_the_argument():
    for p in (1.5, -0.1, float("nan"), "x"):
        with pytest.raises(tinynet.ArgumentError, match="Dropout: p"):
            tinynet.Dropout(p)
    with pytest.raises(tinynet.ArgumentError, match="lr"):
        tinynet.SGD(Linear(2, 2).parameters(), lr=float("nan"))


def test_fit_on_no_samples_is_a_clear_error():
    model = Sequential(Flatten(), Linear(4, 3))
    with pytest.raises(tinynet.ArgumentError, match="holds no samples"):
        tinynet.fit(model, CrossEntropyLoss(), tinynet.SGD(model.parameters(), lr=0.1),
                    (np.zeros((0, 2, 2), np.uint8), np.zeros(0, np.int64)), progress=False,
                    log=None)


@pytest.mark.parametrize("make, name, bad", [
    (lambda v: tinynet.Linear(v, 3), "Linear: in_features", 2.5),
    (lambda v: tinynet.Linear(3, v), "Linear: out_features", "3"),
    (lambda v: tinynet.Linear(v, 3), "Linear: in_features", True),
    (lambda v: tinynet.Linear(v, 3), "Linear: in_features", 0),
    (lambda v: tinynet.Conv2d(v, 8, 3), "Conv2d: in_channels", 3.5),
    (lambda v: tinynet.Conv2d(4, v, 3), "Conv2d: out_channels", -2),
    (lambda v: tinynet.Conv2d(4, 8, 3, groups=v), "Conv2d: groups", 2.0),
    (lambda v: tinynet.BatchNorm1d(v), "BatchNorm1d: num_features", 2.5),
    (lambda v: tinynet.BatchNorm2d(v), "BatchNorm2d: num_features", None),
])
def test_layer_sizes_must_be_whole_numbers(make, name, bad):
    """A size that is not a whole number >= 1 is refused by name, not truncated (2.5 -> 2)
    nor handed to NumPy (which fails with 'float object cannot be interpreted')."""
    with pytest.raises(tinynet.ArgumentError, match=re.escape(f"{name} must be a whole "
                                                              f"number >= 1, got {bad!r}")):
        make(bad)


def test_layer_sizes_accept_numpy_integers():
    layer = tinynet.Linear(np.int64(4), np.int32(3))
    assert (layer.in_features, layer.out_features) == (4, 3)
    assert type(layer.in_features) is int and layer.weight.data.shape == (3, 4)
    assert tinynet.Conv2d(np.int64(2), 4, 3).weight.data.shape == (4, 2, 3, 3)
    assert tinynet.BatchNorm1d(np.int64(5)).num_features == 5
