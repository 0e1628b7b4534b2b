"""Downloading files: mirrors, retries, a progress bar, checksums, atomic writes.

Written on the standard library's ``urllib`` so tinynet needs no HTTP dependency. A
file is streamed into a temporary file in the target folder, checked, fsynced and
only then renamed over the final name, so an interrupted or corrupt download never
leaves a half file where a good one is expected.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from ..errors import DataError
from ..io import atomic_write

CHUNK = 1 << 16


def md5_of_file(path: str, decompress: bool = False) -> str:
    """MD5 of a file's bytes, or of its gunzipped contents with ``decompress``."""
    h = hashlib.md5()
    opener = gzip.open if decompress else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read for checksum: {e}") from e
    return h.hexdigest()


def _stream(url: str, f, progress: bool, timeout: float) -> None:
    from tqdm.auto import tqdm
    req = urllib.request.Request(url, headers={"User-Agent": "tinynet"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        total = r.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=os.path.basename(url), disable=not progress, leave=False) as bar:
            got = 0
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if total is not None and got != total:
            raise DataError(f"{url}: connection closed after {got} of {total} bytes")


def download(urls: Iterable[str], path: str, md5: str | None = None,
             md5_decompressed: bool = False, retries: int = 3, progress: bool = True,
             timeout: float = 60.0, backoff: float = 1.0) -> str:
    """Fetch the first URL that works into ``path``, checking its MD5; return ``path``.

    Each URL is tried ``retries`` times, waiting ``backoff * 2**k`` seconds between
    tries. ``md5_decompressed`` checks the MD5 of the gunzipped bytes (what the
    publishers' checksums of MNIST-style files describe, independent of the gzip
    wrapper). A checksum mismatch removes the file and tries the next source.
    """
    errors = []
    for url in urls:
        for attempt in range(retries):
            try:
                atomic_write(path, lambda f: _stream(url, f, progress, timeout))
            except (urllib.error.URLError, OSError, DataError) as e:
                errors.append(f"{url} (try {attempt + 1}): {getattr(e, 'reason', e)}")
                if attempt + 1 < retries:
                    time.sleep(backoff * 2 ** attempt)
                continue
            if md5 is not None:
                try:
                    got = md5_of_file(path, decompress=md5_decompressed)
                except DataError as e:
                    got = f"unreadable ({e})"
                if got != md5:
                    os.unlink(path)
                    errors.append(f"{url}: MD5 {got}, expected {md5}")
                    break  # the same mirror will serve the same bytes again
            return path
    raise DataError(f"could not download {os.path.basename(path)}: " + "; ".join(errors))
