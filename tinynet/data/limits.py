"""How much a data file may ask of the machine: sizes, counts, nesting depth, pixels.

Every reader checks what a file *declares* (an IDX header's dims, a tar member's size,
an image's width and height, a pickle's nesting) against these limits before it reads,
inflates, allocates or decodes anything, so a small hostile file cannot make tinynet
read gigabytes, fill the memory or crash the interpreter. The defaults leave ample room
for the data sets tinynet knows (Fashion-MNIST, MNIST, CIFAR-10 in both forms).

Each limit is read, in this order, from the reader's keyword argument (where it has
one), the environment variable named below, or the default. A limit that refuses a
file is named in the :class:`tinynet.DataError`, with the variable that raises it.
The variables accept plain integers (``1_000_000``) and binary suffixes (``512M``,
``2G``: powers of 1024).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import DataError


@dataclass(frozen=True)
class Limit:
    """One limit: its environment variable, default, unit and what it bounds."""
    env: str
    default: int
    unit: str
    what: str


MiB = 1 << 20

LIMITS = {
    "file_bytes": Limit("TINYNET_MAX_FILE_BYTES", 256 * MiB, "bytes",
                        "one data file or archive member read into memory, and the data "
                        "an IDX header declares (labels counted as int64)"),
    "total_bytes": Limit("TINYNET_MAX_TOTAL_BYTES", 512 * MiB, "bytes",
                         "what one archive unpacks to (every member, read or skipped), "
                         "and the image files one image-folder read takes together"),
    "members": Limit("TINYNET_MAX_MEMBERS", 200_000, "headers",
                     "tar headers in one archive (a pax or long-name header counts)"),
    "pixels": Limit("TINYNET_MAX_PIXELS", 1 << 27, "pixels",
                    "pixels decoded by one image-folder read, all images together"),
    "image_pixels": Limit("TINYNET_MAX_IMAGE_PIXELS", 1 << 24, "pixels",
                          "pixels of one image (width x height)"),
    "pickle_depth": Limit("TINYNET_MAX_PICKLE_DEPTH", 64, "levels",
                          "nesting of containers in a data pickle"),
    "pickle_items": Limit("TINYNET_MAX_PICKLE_ITEMS", 1_000_000, "items",
                          "elements of all lists, tuples, sets and dicts of one pickle"),
}

# Deeper than this, hashing a nested tuple could overflow the C stack: never raised past.
PICKLE_DEPTH_CEILING = 10_000

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NUMBER = re.compile(r"^\s*([0-9][0-9_]*)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def _parse(text: str, source: str) -> int:
    m = _NUMBER.match(text)
    if not m:
        raise DataError(f"{source}={text!r}: expected a positive integer, optionally with "
                        f"a K, M, G or T suffix (powers of 1024)")
    value = int(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if value <= 0:
        raise DataError(f"{source}={text!r}: a limit must be positive")
    return value


def get(name: str, value: int | None = None) -> int:
    """The limit ``name``: ``value`` if given, else its environment variable, else default."""
    lim = LIMITS[name]
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise DataError(f"limit {name}={value!r}: expected a positive int")
        out = value
    elif os.environ.get(lim.env, "").strip():
        out = _parse(os.environ[lim.env], lim.env)
    else:
        out = lim.default
    if name == "pickle_depth" and out > PICKLE_DEPTH_CEILING:
        raise DataError(f"limit pickle_depth={out}: at most {PICKLE_DEPTH_CEILING} (deeper "
                        f"nesting could crash the interpreter while hashing)")
    return out


def over(name: str, value: int) -> str:
    """``'the limit of 256 MiB (TINYNET_MAX_FILE_BYTES)'``, for an error message."""
    lim = LIMITS[name]
    return f"the limit of {_human(value, lim.unit)} ({lim.env} raises it)"


def _human(value: int, unit: str) -> str:
    if unit == "bytes" and value >= MiB and value % MiB == 0:
        return f"{value // MiB:,} MiB"
    return f"{value:,} {unit}"


__all__ = ["LIMITS", "PICKLE_DEPTH_CEILING", "Limit", "get", "over"]
