"""Batching: ``DataLoader`` yields ``(x, y)`` batches on the model's device.

Images stay uint8 in memory and each batch is converted by ``to_float`` as it is
drawn (as torchvision's ``ToTensor``): a copy of 64 images costs microseconds, and the
whole set never exists in float32.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import to_device
from ..errors import DataError, ShapeError


def to_float(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 images to floats in [0, 1], channels first, as torchvision's ``ToTensor``.

    ``(N, H, W)`` -> ``(N, 1, H, W)``; ``(N, H, W, C)`` -> ``(N, C, H, W)``. The division
    by 255 is done in the target dtype, exactly as ``x.float().div(255)``.
    """
    if images.ndim == 3:
        x = images[:, None, :, :]
    elif images.ndim == 4:
        x = images.transpose(0, 3, 1, 2)
    else:
        raise ShapeError(f"to_float: got images of shape {images.shape}, expected (N, H, W) "
                         f"or (N, H, W, C)")
    out = np.empty(x.shape, dtype=dtype)
    np.divide(x, out.dtype.type(255), out=out, casting="unsafe")
    return out


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
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataError(f"DataLoader: {images.shape[0]} images but labels of shape "
                            f"{labels.shape}; expected ({images.shape[0]},)")
        if batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels.astype(np.int64, copy=False)
        self.batch_size = int(batch_size)
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
