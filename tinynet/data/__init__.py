"""Data sets and batching: ``load(name, split)``, ``DataLoader``, ``to_float``."""

from .archive import safe_extract
from .cifar import read_cifar10  # registers "cifar10"
from .datasets import (
           DATASETS,
           DatasetInfo,
           cache_dir,
           fetch,
           find,
           load,
           register,
           search_paths,
)
from .idx import read_idx, read_idx_bytes
from .imagefolder import ImageFolder, read_image_folder  # registers "cifar10-jpeg"
from .loader import DataLoader, to_float

__all__ = ["DATASETS", "DataLoader", "DatasetInfo", "ImageFolder", "cache_dir", "fetch", "find",
           "load", "read_cifar10", "read_idx", "read_idx_bytes", "read_image_folder", "register",
           "safe_extract", "search_paths", "to_float"]
