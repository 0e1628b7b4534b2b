"""Data set registry, local search order and ``load(name, split)``.

Search order when ``root`` is not given (the first folder that holds every file of
the split wins):

1. ``$TINYNET_DATA/<name>`` when the environment variable is set;
2. the user cache, ``$TINYNET_CACHE`` or ``$XDG_CACHE_HOME/tinynet`` or
   ``~/.cache/tinynet``, then ``/<name>``;
3. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` installs there).

If nothing is found and ``download`` is true, the files are fetched from the
publishers' mirrors into the cache (or into ``root``) with MD5 checks and a progress
bar. When ``root`` is given it is the folder that holds the files, and nothing else is
searched.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from . import limits
from .download import download as _download
from .files import shown
from .idx import read_idx, validate_pair

SYSTEM_DIR = "/usr/share/datasets"


@dataclass
class DatasetInfo:
    """How to find, fetch and read one data set.

    ``files[split]`` lists the file names a split needs; ``md5[file]`` the checksum
    checked after a download (of the decompressed bytes when ``md5_decompressed``);
    ``reader(folder, split)`` returns ``(images, labels)``.
    """
    name: str
    files: dict
    md5: dict
    mirrors: list
    reader: Callable[[str, str], tuple]
    md5_decompressed: bool = False
    classes: list = field(default_factory=list)
    alternatives: dict = field(default_factory=dict)  # file -> other accepted names


def _idx_reader(info_name: str):
    def read(folder: str, split: str) -> tuple:
        info = DATASETS[info_name]
        img_name, lab_name = info.files[split]
        images = read_idx(_existing(folder, img_name, info))
        lab_path = _existing(folder, lab_name, info)
        # the labels are returned as int64: 8 bytes each, whatever the file stores
        max_bytes = limits.get("file_bytes")
        if 8 * images.shape[0] > max_bytes:
            raise DataError(f"{shown(lab_path)}: {images.shape[0]:,} labels would take "
                            f"{8 * images.shape[0]:,} bytes as int64, more than "
                            f"{limits.over('file_bytes', max_bytes)}")
        labels = read_idx(lab_path, count=images.shape[0])
        validate_pair(images, labels, f"{info_name} {split} in {shown(folder)}")
        return images, labels.astype(np.int64)
    return read


def _idx_files(prefix_train="train", prefix_test="t10k") -> dict:
    return {
        "train": [f"{prefix_train}-images-idx3-ubyte.gz", f"{prefix_train}-labels-idx1-ubyte.gz"],
        "test": [f"{prefix_test}-images-idx3-ubyte.gz", f"{prefix_test}-labels-idx1-ubyte.gz"],
    }


def _ungzipped_names(files: dict) -> dict:
    return {f: [f[:-3]] for split in files.values() for f in split if f.endswith(".gz")}


DATASETS: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    """Add a data set (used by the image data sets, and by users for their own)."""
    DATASETS[info.name] = info


register(DatasetInfo(
    name="mnist",
    files=_idx_files(),
    # MD5 of the decompressed IDX bytes, as published with MNIST.
    md5={"train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
         "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
         "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
         "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637"},
    md5_decompressed=True,
    mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/",
             "https://storage.googleapis.com/cvdf-datasets/mnist/",
             "http://yann.lecun.com/exdb/mnist/"],
    reader=_idx_reader("mnist"),
    classes=[str(i) for i in range(10)],
    alternatives=_ungzipped_names(_idx_files()),
))

register(DatasetInfo(
    name="fashion-mnist",
    files=_idx_files(),
    # MD5 of the decompressed IDX bytes of the official release (the gzip wrappers of
    # Debian's copy differ from the publisher's, the contents do not).
    md5={"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
         "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
         "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
         "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965"},
    md5_decompressed=True,
    mirrors=["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"],
    reader=_idx_reader("fashion-mnist"),
    classes=["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"],
    alternatives=_ungzipped_names(_idx_files()),
))


def cache_dir() -> str:
    """``$TINYNET_CACHE``, else ``$XDG_CACHE_HOME/tinynet``, else ``~/.cache/tinynet``."""
    if os.environ.get("TINYNET_CACHE"):
        return os.environ["TINYNET_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tinynet")


def search_paths(name: str) -> list[str]:
    """The folders searched for data set ``name`` when no root is given, in order."""
    paths = []
    if os.environ.get("TINYNET_DATA"):
        paths.append(os.path.join(os.environ["TINYNET_DATA"], name))
    paths.append(os.path.join(cache_dir(), name))
    paths.append(os.path.join(SYSTEM_DIR, name))
    return paths


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}: expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _existing(folder: str, filename: str, inf: DatasetInfo) -> str | None:
    for candidate in [filename] + inf.alternatives.get(filename, []):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _complete(folder: str, split: str, inf: DatasetInfo) -> bool:
    return all(_existing(folder, f, inf) for f in inf.files[split])


def find(name: str, split: str = "train", root: str | None = None) -> str | None:
    """The folder ``load`` would read ``name``/``split`` from, or None if none has it."""
    inf = info(name)
    if split not in inf.files:
        raise DataError(f"{name}: unknown split {split!r}: expected one of {sorted(inf.files)}")
    candidates = [os.fspath(root)] if root is not None else search_paths(name)
    for folder in candidates:
        if _complete(folder, split, inf):
            return folder
    return None


def fetch(name: str, split: str = "train", root: str | None = None,
          mirrors: list | None = None, progress: bool = True) -> str:
    """Download the missing files of ``name``/``split`` into ``root`` (or the cache)."""
    inf = info(name)
    folder = os.fspath(root) if root is not None else os.path.join(cache_dir(), name)
    for filename in inf.files[split]:
        if _existing(folder, filename, inf):
            continue
        urls = [m.rstrip("/") + "/" + filename for m in (mirrors or inf.mirrors)]
        if not urls:  # e.g. cifar10-jpeg: a provided copy only, no public mirror
            raise DataError(f"{name}: {filename} not found in {search_paths(name)} and "
                            f"{name} has no download mirror; set TINYNET_DATA to a folder "
                            f"holding {name}/{filename}, or pass root=")
        try:
            _download(urls, os.path.join(folder, filename), md5=inf.md5.get(filename),
                      md5_decompressed=inf.md5_decompressed, progress=progress)
        except DataError as e:
            if not hasattr(e, "attempts"):
                raise
            err = DataError(f"{name}: {e}\n{by_hand(name, split, folder, root is None)}")
            err.attempts, err.summary = e.attempts, e.summary
            raise err from None
    return folder


def by_hand(name: str, split: str, folder: str, env_hint: bool = True) -> str:
    """The lines that say where to put a data set's files when they cannot be downloaded."""
    files = DATASETS[name].files
    names = list(dict.fromkeys(files[split] + [f for s in files.values() for f in s]))
    text = textwrap.fill(f"To install by hand, put {', '.join(names)} (from a mirror above)",
                         width=90, break_long_words=False, break_on_hyphens=False)
    text += f"\nin {shown(os.path.abspath(folder))}{os.sep}"
    if env_hint:
        text += f" (or in <folder>{os.sep}{name}{os.sep} with TINYNET_DATA=<folder>)"
    return text + "."


def load(name: str, split: str = "train", root: str | None = None, download: bool = True,
         mirrors: list | None = None, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load a data set split as ``(images, labels)`` NumPy arrays.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ... (``tinynet.data.DATASETS``).
        split: ``"train"`` or ``"test"``.
        root: the folder holding this data set's files; when given nothing else is searched.
        download: fetch missing files from the publishers' mirrors (into ``root`` or the cache).
        mirrors: base URLs to use instead of the registered ones.

    Returns:
        images uint8 ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (colour); labels int64 ``(N,)``.
    """
    inf = info(name)
    if split not in inf.files:
        raise DataError(f"{name}: unknown split {split!r}: expected one of {sorted(inf.files)}")
    folder = find(name, split, root)
    if folder is None:
        where = [os.fspath(root)] if root is not None else search_paths(name)
        if not download:
            raise DataError(
                f"{name} {split} not found in {where} (download=False). Set TINYNET_DATA to "
                f"a folder holding {name}/, pass root=, or allow the download")
        folder = fetch(name, split, root, mirrors, progress)
    return inf.reader(folder, split)
