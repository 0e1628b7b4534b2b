"""Batching: ``DataLoader`` yields ``(x, y)`` batches on the model's device.

Images stay uint8 in memory and each batch is converted by ``to_float`` as it is
drawn (as torchvision's ``ToTensor``): a copy of 64 images costs microseconds, and the
whole set never exists in float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_device
from ..checks import check_size
from ..errors import ArgumentError, DataError, LabelError, ShapeError

# Channel counts of image files (grey, RGB, RGBA): how a 4-D
# batch that is channels-first by mistake is told from a channels-last one.
_CHANNELS = (1, 3, 4)


def to_float(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Image batches to floats, channels first, as torchvision's ``ToTensor``.

    ``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, H, W, C)`` -> ``(N, C, H, W)``. uint8 images
    are scaled to [0, 1], the division by 255 done in the target dtype, exactly as
    ``x.float().div(255)``; any other dtype is cast unscaled (as ``ToTensor`` does), so
    floats already in [0, 1] stay there. A 4-D batch that looks channels-first
    (``(N, 3, 32, 32)``) is refused rather than scrambled.
    """
    if images.ndim == 3:
        x = images[:, None, :, :]
    elif images.ndim == 4:
        if images.shape[3] not in _CHANNELS and images.shape[1] in _CHANNELS:
            raise ShapeError(
                f"to_float: got images of shape {images.shape}, which look channels-first "
                f"(N, C, H, W); expected channels-last (N, H, W, C), as image files and "
                f"torchvision's ToTensor have them: pass images.transpose(0, 2, 3, 1), or "
                f"transform=None for batches already in the model's layout")
        x = images.transpose(0, 3, 1, 2)
    else:
        raise ShapeError(f"to_float: got images of shape {images.shape}, expected (N, H, W) "
                         f"or (N, H, W, C)")
    out = np.empty(x.shape, dtype=dtype)
    if images.dtype == np.uint8:
        np.divide(x, out.dtype.type(255), out=out, casting="unsafe")
    else:
        out[...] = x
    return out


def _class_indices(labels: np.ndarray) -> np.ndarray:
    """``labels`` as int64 class indices; floats only when every value is a whole number,
    and nothing beyond int64's range (it would wrap)."""
    if labels.dtype.kind == "O":                     # a list of Python ints, say
        try:
            labels = np.array(labels.tolist())
        except (TypeError, ValueError, OverflowError):
            pass
    if labels.dtype.kind == "u" and labels.size and int(labels.max()) > np.iinfo(np.int64).max:
        raise LabelError(f"DataLoader: label {int(labels.max())} is beyond int64, expected "
                         f"class indices")
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64, copy=False)
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels)) & (np.abs(labels) < 2.0**63)
        if whole.all():
            return labels.astype(np.int64)
        i = int(np.argmin(whole))
        raise LabelError(f"DataLoader: label {i} is {labels[i].item()!r}, expected class indices "
                         f"(whole numbers)")
    raise LabelError(f"DataLoader: labels of dtype {labels.dtype}, expected integer class "
                     f"indices")


class DataLoader:
    """Iterate over ``(images, labels)`` in batches, as ``torch.utils.data.DataLoader``.

    Args:
        images: array ``(N, ...)``, usually uint8 ``(N, H, W)`` or ``(N, H, W, C)``.
        labels: int array ``(N,)``.
        batch_size: samples per batch; the last batch is smaller unless ``drop_last``.
        shuffle: draw a new permutation every epoch from a generator seeded with ``seed``.
        transform: applied to each image batch (default ``to_float``); None keeps raw arrays.
        device: ``"cpu"`` or ``"cuda"``: where batches are delivered.

    Resuming: ``state_dict()`` records the generator state at the start of the current
    epoch and how many batches were taken; after ``load_state_dict`` the next iteration
    redraws the same permutation and continues from the next batch, so a resumed run
    sees exactly the data order of an uninterrupted one.
    """

    def __init__(self, images, labels, batch_size: int = 64, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, transform=to_float,
                 device: str = "cpu", dtype: str = "float32") -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim == 0:
            raise ShapeError("DataLoader: got a single number as images, expected an array "
                             "(N, ...)")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"DataLoader: {images.shape[0]} images but labels of shape "
                            f"{labels.shape}; expected ({images.shape[0]},)")
        self.batch_size = check_size(batch_size, "DataLoader: batch_size")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ArgumentError(f"DataLoader: seed must be a whole number >= 0, got {seed!r}")
        self.images, self.labels = images, _class_indices(labels)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = int(seed)
        self.transform, self.device, self.dtype = transform, device, dtype
        self.generator = np.random.default_rng(self.seed)
        self._epoch_state = None
        self._position = 0
        self._resume_position = 0

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = self.images.shape[0]
        if self._resume_position == 0:
            self._epoch_state = self.generator.bit_generator.state
        else:
            self.generator.bit_generator.state = self._epoch_state
        order = self.generator.permutation(n) if self.shuffle else None
        start_batch, self._resume_position = self._resume_position, 0
        for b in range(start_batch, len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, n)
            if order is None:
                x, y = self.images[lo:hi], self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                x, y = self.images[idx], self.labels[idx]
            if self.transform is not None:
                x = self.transform(x, self.dtype) if self.transform is to_float \
                    else self.transform(x)
            self._position = b + 1
            if self.device != "cpu":
                x, y = to_device(x, self.device), to_device(y, self.device)
            yield x, y
        self._position = 0
        self._epoch_state = None  # the next epoch starts from the generator's current state

    def state_dict(self) -> dict:
        """Where the loader stands: generator state at this epoch's start, batches taken."""
        return {"epoch_state": self._epoch_state or self.generator.bit_generator.state,
                "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        self._epoch_state = state["epoch_state"]
        self._resume_position = self._position = int(state["position"])
        self.generator.bit_generator.state = state["epoch_state"]
