"""Data sets and batching: ``load(name, split)``, ``DataLoader``, ``to_float``."""

from .datasets import DATASETS, DatasetInfo, cache_dir, fetch, find, load, register, search_paths
from .idx import read_idx, read_idx_bytes
from .loader import DataLoader, to_float
from .archive import safe_extract
from .cifar import read_cifar10  # registers "cifar10"
from .imagefolder import ImageFolder, read_image_folder  # registers "cifar10-jpeg"

__all__ = ["load", "find", "fetch", "register", "search_paths", "cache_dir", "DATASETS",
           "DatasetInfo", "DataLoader", "to_float", "read_idx", "read_idx_bytes", "safe_extract",
           "read_cifar10", "ImageFolder", "read_image_folder"]
