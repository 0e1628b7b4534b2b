"""DataLoader: order, seeding, drop_last, resuming mid-epoch; ``to_float``."""

from __future__ import annotations

import numpy as np
import pytest

from tinynet.data import DataLoader, to_float
from tinynet.errors import ArgumentError, DataError, LabelError, ShapeError

N = 23


@pytest.fixture
def dataset():
    """Images whose first pixel is the sample's index, so order can be read off a batch."""
    images = np.zeros((N, 2, 3), np.uint8)
    images[:, 0, 0] = np.arange(N)
    labels = np.arange(N) % 10
    return images, labels


def _epoch(loader):
    """The sample indices of each batch of one pass over ``loader``."""
    out = []
    for x, y in loader:
        idx = np.rint(x[:, 0, 0, 0] * 255).astype(int)
        np.testing.assert_array_equal(y, idx % 10)  # labels travel with their images
        out.append(idx)
    return out


def test_unshuffled_order_and_batch_sizes(dataset):
    loader = DataLoader(*dataset, batch_size=5)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 5
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches), np.arange(N))


def test_batches_are_float_nchw_and_int64(dataset):
    x, y = next(iter(DataLoader(*dataset, batch_size=4)))
    assert x.shape == (4, 1, 2, 3) and x.dtype == np.float32
    assert y.dtype == np.int64
    x64, _ = next(iter(DataLoader(*dataset, batch_size=4, dtype="float64")))
    assert x64.dtype == np.float64
    raw, _ = next(iter(DataLoader(*dataset, batch_size=4, transform=None)))
    assert raw.dtype == np.uint8 and raw.shape == (4, 2, 3)


def test_drop_last(dataset):
    loader = DataLoader(*dataset, batch_size=5, drop_last=True, shuffle=True, seed=1)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 4
    assert all(len(b) == 5 for b in batches)
    assert len(set(np.concatenate(batches))) == 20


def test_shuffle_is_a_permutation_reproducible_per_seed(dataset):
    a = _epoch(DataLoader(*dataset, batch_size=4, shuffle=True, seed=3))
    b = _epoch(DataLoader(*dataset, batch_size=4, shuffle=True, seed=3))
    c = _epoch(DataLoader(*dataset, batch_size=4, shuffle=True, seed=4))
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(N))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert not np.array_equal(np.concatenate(a), np.arange(N))


def test_each_epoch_draws_a_new_order(dataset):
    loader = DataLoader(*dataset, batch_size=4, shuffle=True, seed=5)
    e1, e2 = np.concatenate(_epoch(loader)), np.concatenate(_epoch(loader))
    assert not np.array_equal(e1, e2)
    np.testing.assert_array_equal(np.sort(e2), np.arange(N))
    # and the sequence of epochs repeats for the same seed
    again = DataLoader(*dataset, batch_size=4, shuffle=True, seed=5)
    np.testing.assert_array_equal(np.concatenate(_epoch(again)), e1)
    np.testing.assert_array_equal(np.concatenate(_epoch(again)), e2)


@pytest.mark.parametrize("taken", [0, 1, 3])
def test_state_dict_resume_mid_epoch(dataset, taken):
    ref = DataLoader(*dataset, batch_size=4, shuffle=True, seed=7)
    _epoch(ref)  # resume in the second epoch, so the generator has moved on
    full = _epoch(ref)
    next_epoch = _epoch(ref)

    loader = DataLoader(*dataset, batch_size=4, shuffle=True, seed=7)
    _epoch(loader)
    it = iter(loader)
    for _ in range(taken):
        next(it)
    state = loader.state_dict()

    resumed = DataLoader(*dataset, batch_size=4, shuffle=True, seed=999)  # seed overridden
    resumed.load_state_dict(state)
    rest = _epoch(resumed)
    assert len(rest) == len(full) - taken
    for got, want in zip(rest, full[taken:]):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(_epoch(resumed), next_epoch):
        np.testing.assert_array_equal(got, want)


def test_to_float_matches_torchvision_scaling():
    img = np.array([[[0, 128, 255]]], np.uint8)
    out = to_float(img)
    assert out.shape == (1, 1, 1, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0, 0], np.float32([0, 128, 255]) / np.float32(255))
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    out = to_float(rgb, "float64")
    assert out.shape == (2, 3, 4, 5)
    np.testing.assert_allclose(out, rgb.transpose(0, 3, 1, 2) / 255.0, rtol=1e-15)
    with pytest.raises(ShapeError, match=r"\(4, 5\)"):
        to_float(np.zeros((4, 5), np.uint8))


def test_bad_arguments(dataset):
    images, labels = dataset
    with pytest.raises(DataError, match=r"23 images but labels of shape \(22,\)"):
        DataLoader(images, labels[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(images, labels, batch_size=0)

    for bad in (2.7, "2", True, -1):
        with pytest.raises(ArgumentError, match=f"batch_size must be a whole number >= 1, "
                                                f"got {bad!r}"):
            DataLoader(images, labels, batch_size=bad)
    with pytest.raises(ArgumentError, match="seed must be a whole number >= 0, got 1.5"):
        DataLoader(images, labels, seed=1.5)
    with pytest.raises(ShapeError, match="single number"):
        DataLoader(np.float32(3), labels)


def test_labels_must_be_class_indices(dataset):
    images, labels = dataset
    whole = DataLoader(images, labels.astype(np.float64))     # 3.0 is class 3
    np.testing.assert_array_equal(next(iter(whole))[1], labels[:64])
    assert next(iter(whole))[1].dtype == np.int64
    fractional = labels.astype(np.float64)
    fractional[5] = 1.7
    with pytest.raises(LabelError, match="label 5 is 1.7, expected class indices"):
        DataLoader(images, fractional)
    with pytest.raises(LabelError, match="labels of dtype <U1"):
        DataLoader(images, np.array(["a"] * N))


def test_to_float_casts_other_dtypes_unscaled_as_totensor():
    """torchvision's ToTensor divides uint8 by 255 and nothing else."""
    floats = np.random.default_rng(1).random((3, 4, 5), dtype=np.float32)
    np.testing.assert_array_equal(to_float(floats)[:, 0], floats)
    wide = np.array([[[0, 128, 255]]], np.int64)
    np.testing.assert_array_equal(to_float(wide, "float64")[0, 0, 0], [0.0, 128.0, 255.0])
    loader = DataLoader(floats, np.zeros(3, np.int64), batch_size=3)
    assert float(next(iter(loader))[0].max()) == pytest.approx(float(floats.max()))


def test_to_float_refuses_a_channels_first_batch():
    nchw = np.zeros((10, 3, 32, 32), np.uint8)
    with pytest.raises(ShapeError, match=r"\(10, 3, 32, 32\), which look channels-first.*"
                                          r"transpose\(0, 2, 3, 1\)"):
        to_float(nchw)
    assert to_float(nchw.transpose(0, 2, 3, 1)).shape == (10, 3, 32, 32)
    assert to_float(np.zeros((2, 1, 5, 1), np.uint8)).shape == (2, 1, 1, 5)   # grey, H=1


def test_labels_beyond_int64_are_refused_not_wrapped(dataset):
    images, labels = dataset
    big = labels.astype(np.float64)
    big[2] = 1e20
    with pytest.raises(LabelError, match="label 2 is 1e\\+20"):
        DataLoader(images, big)
    huge = labels.astype(np.uint64)
    huge[0] = 2 ** 63
    with pytest.raises(LabelError, match="beyond int64"):
        DataLoader(images, huge)
    as_objects = np.array(list(labels), dtype=object)
    assert next(iter(DataLoader(images, as_objects)))[1].dtype == np.int64
