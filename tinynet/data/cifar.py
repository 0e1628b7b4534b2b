"""CIFAR-10 in its official Python format, read without ever running ``pickle.load``.

``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) holds
``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5`` (training, 10,000
images each), ``test_batch`` (10,000) and ``batches.meta``. Each batch is a Python 2
pickle of a dict::

    {b"data": uint8 array (10000, 3072),   # a row: 1024 red, 1024 green, 1024 blue bytes,
                                            #        each 32 x 32 in row-major order
     b"labels": [int in 0..9] * 10000,
     b"batch_label": b"training batch 1 of 5",
     b"filenames": [bytes] * 10000}

The batches are unpickled by :mod:`tinynet.data.safe_pickle` (NumPy arrays in builtin
containers only; anything else is refused) straight from the archive's stream: nothing
is extracted to disk. An extracted ``cifar-10-batches-py/`` folder is read as well.

Returns images ``(N, 32, 32, 3)`` uint8 (HWC, as torchvision's ``CIFAR10.data``) and
labels ``(N,)`` int64: ``train`` is the five training batches in order, ``test`` the
test batch.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from . import limits, safe_pickle
from .archive import iter_files
from .datasets import DatasetInfo, register
from .files import read_regular, shown

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def _key(k) -> str | None:
    if isinstance(k, bytes):
        try:
            return k.decode("ascii")
        except UnicodeDecodeError:
            return None
    return k if isinstance(k, str) else None


def parse_batch(obj, name: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Validate one unpickled batch dict; return images ``(N, 32, 32, 3)`` uint8, labels.

    ``name`` (the file, e.g. ``archive.tar.gz:cifar-10-batches-py/data_batch_1``) is in
    every error message.
    """
    if not isinstance(obj, dict):
        raise DataError(f"{name}: a CIFAR-10 batch is a dict, this pickle holds a "
                        f"{type(obj).__name__}")
    batch = {_key(k): v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(f"{name}: CIFAR-10 batch has no {key!r} entry (keys: "
                            f"{sorted(str(k) for k in batch)[:8]})")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        what = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise DataError(f"{name}: 'data' is a {what}, expected a uint8 array (N, 3072)")
    n = data.shape[0]
    if isinstance(labels, np.ndarray):
        labels = labels.tolist() if labels.ndim == 1 else None
    if not isinstance(labels, (list, tuple)) or len(labels) != n:
        got = f"{len(labels)} labels" if isinstance(labels, (list, tuple)) else \
            f"labels of type {type(labels).__name__}"
        raise DataError(f"{name}: {n} images but {got}; expected a list of {n} ints")
    # Host-side check of a Python list (not a kernel): exact ints, so "1", 1.5 or True
    # never slip through NumPy's conversions.
    bad = next((i for i, v in enumerate(labels)
                if type(v) is not int or not 0 <= v < num_classes), None)
    if bad is not None:
        raise DataError(f"{name}: label {bad} is {safe_pickle._short(labels[bad])}, "
                        f"expected an int in [0, {num_classes})")
    images = np.ascontiguousarray(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, np.asarray(labels, dtype=np.int64)


def read_batch_bytes(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle (restricted) and validate the bytes of one batch file called ``name``."""
    return parse_batch(safe_pickle.loads(raw, name), name)


def _read_file(path: str) -> bytes:
    return read_regular(path, limits.get("file_bytes"), what="CIFAR-10 batch")


def read_cifar10(folder: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 split from ``folder`` (holding the archive or the extracted folder).

    Returns images ``(N, 32, 32, 3)`` uint8 and labels ``(N,)`` int64 (N = 50,000 for
    the official ``train``, 10,000 for ``test``).
    """
    if split not in BATCHES:
        raise DataError(f"cifar10: unknown split {split!r}: expected one of {sorted(BATCHES)}")
    folder = os.fspath(folder)
    wanted = BATCHES[split]
    archive = os.path.join(folder, ARCHIVE)
    parts: dict[str, tuple] = {}
    if os.path.isfile(archive):
        members = {f"{FOLDER}/{b}": b for b in wanted}
        # only the wanted batches are read; the others are skipped unread
        for member, raw in iter_files(archive, want=members.__contains__):
            name = f"{shown(archive)}:{shown(member)}"
            if members[member] in parts:
                raise DataError(f"{name}: appears twice in the archive")
            parts[members[member]] = read_batch_bytes(raw, name)
        where = shown(archive)
    elif os.path.isdir(os.path.join(folder, FOLDER)):
        where = shown(os.path.join(folder, FOLDER))
        for b in wanted:
            path = os.path.join(folder, FOLDER, b)
            if os.path.isfile(path):
                parts[b] = read_batch_bytes(_read_file(path), shown(path))
    else:
        raise DataError(f"cifar10: neither {ARCHIVE} nor {FOLDER}/ in {shown(folder)}")
    missing = [b for b in wanted if b not in parts]
    if missing:
        raise DataError(f"{where}: CIFAR-10 {split} batch(es) {missing} missing; expected "
                        f"{[f'{FOLDER}/{b}' for b in wanted]}")
    images = np.concatenate([parts[b][0] for b in wanted])
    labels = np.concatenate([parts[b][1] for b in wanted])
    return images, labels


register(DatasetInfo(
    name="cifar10",
    files={"train": [ARCHIVE], "test": [ARCHIVE]},
    md5={ARCHIVE: "c58f30108f718f92721af3b95e74349a"},
    mirrors=["https://www.cs.toronto.edu/~kriz/"],
    reader=read_cifar10,
    classes=list(CLASSES),
    # an already extracted archive is found through one of its files
    alternatives={ARCHIVE: [f"{FOLDER}/batches.meta"]},
))

__all__ = ["CLASSES", "parse_batch", "read_batch_bytes", "read_cifar10"]
