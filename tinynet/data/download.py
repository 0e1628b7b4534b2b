"""Downloading files: mirrors, retries, a progress bar, checksums, atomic writes.

Written on the standard library's ``urllib`` so tinynet needs no HTTP dependency. A
file is streamed into a temporary file in the target folder, checked, fsynced and
only then renamed over the final name, so an interrupted or corrupt download never
leaves a half file where a good one is expected. A download may not exceed the
``file_bytes`` limit (:mod:`tinynet.data.limits`), nor may the checksummed contents of
a gzipped file.

When every mirror fails, the :class:`tinynet.DataError` says in its first line what
went wrong (for instance that the network is unreachable), then gives one short line
per URL; every try is kept in the exception's ``attempts`` attribute as
``(url, try number, reason)``.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from ..errors import DataError
from ..io import atomic_write
from . import limits
from .files import open_regular, shown

CHUNK = 1 << 16
_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


def md5_of_file(path: str, decompress: bool = False, max_bytes: int | None = None) -> str:
    """MD5 of a file's bytes, or of its gunzipped contents with ``decompress``.

    The gunzipped contents may not exceed the ``file_bytes`` limit (``max_bytes``).
    """
    max_bytes = limits.get("file_bytes", max_bytes)
    h = hashlib.md5()
    total = 0
    try:
        with open_regular(path, "downloaded file") as raw:
            f = gzip.GzipFile(fileobj=raw, mode="rb") if decompress else raw
            with f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    total += len(chunk)
                    if total > max_bytes:
                        raise DataError(f"{shown(path)}: decompresses to more than "
                                        f"{limits.over('file_bytes', max_bytes)}")
                    h.update(chunk)
    except (OSError, EOFError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{shown(path)}: cannot read for checksum: {e}") from e
    return h.hexdigest()


def _stream(url: str, f, progress: bool, timeout: float, max_bytes: int) -> None:
    from tqdm.auto import tqdm
    req = urllib.request.Request(url, headers={"User-Agent": "tinynet"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        total = r.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        if total is not None and total > max_bytes:
            raise DataError(f"the server announces {total:,} bytes, more than "
                            f"{limits.over('file_bytes', max_bytes)}")
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=os.path.basename(url), disable=not progress, leave=False) as bar:
            got = 0
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > max_bytes:
                    raise DataError(f"more than {limits.over('file_bytes', max_bytes)} "
                                    f"sent")
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and got != total:
            raise DataError(f"connection closed after {got} of {total} bytes")


def reason(e: BaseException) -> tuple[str, str]:
    """``(kind, short text)`` of a failed try; kind is "offline", "refused" or "other"."""
    if isinstance(e, urllib.error.HTTPError):
        return "other", f"HTTP {e.code} {e.reason}"
    r = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(r, socket.gaierror):  # no DNS: offline, or a host name that is wrong
        return "offline", f"host name not resolved ({r.strerror or r})"
    if isinstance(r, (TimeoutError, socket.timeout)):
        return "offline", "timed out"
    if isinstance(r, OSError) and r.errno in _OFFLINE_ERRNOS:
        return "offline", f"[Errno {r.errno}] {r.strerror}"
    if isinstance(r, ConnectionRefusedError):
        return "refused", "connection refused"
    text = str(r) or type(r).__name__
    return "other", text if len(text) <= 120 else text[:120] + "..."


def summary(attempts: list) -> str:
    """The first line's cause: "the network is unreachable", "no mirror answered", ..."""
    kinds = {kind for _, _, kind, _ in attempts}
    if kinds == {"offline"}:
        return "the network is unreachable (no mirror could be reached)"
    if kinds <= {"offline", "refused"}:
        return "no mirror answered"
    return "every mirror failed"


def per_url(attempts: list) -> list[str]:
    """One short line per URL: the distinct reasons and how many tries."""
    lines: dict[str, list] = {}
    for url, _, _, text in attempts:
        lines.setdefault(url, []).append(text)
    out = []
    for url, texts in lines.items():
        distinct = list(dict.fromkeys(texts))
        tries = f" ({len(texts)} tries)" if len(texts) > 1 else ""
        out.append(f"  {url}: {'; '.join(distinct)}{tries}")
    return out


def download(urls: Iterable[str], path: str, md5: str | None = None,
             md5_decompressed: bool = False, retries: int = 3, progress: bool = True,
             timeout: float = 60.0, backoff: float = 1.0) -> str:
    """Fetch the first URL that works into ``path``, checking its MD5; return ``path``.

    Each URL is tried ``retries`` times, waiting ``backoff * 2**k`` seconds between
    tries. ``md5_decompressed`` checks the MD5 of the gunzipped bytes (what the
    publishers' checksums of MNIST-style files describe, independent of the gzip
    wrapper). A checksum mismatch removes the file and tries the next source.

    Raises :class:`tinynet.DataError` when no URL gives the file: its message has the
    cause on the first line, then one line per URL; ``.attempts`` lists every try as
    ``(url, try number, reason)``.
    """
    max_bytes = limits.get("file_bytes")
    attempts = []  # (url, try, kind, text)
    for url in urls:
        for attempt in range(retries):
            try:
                atomic_write(path, lambda f, url=url: _stream(url, f, progress, timeout, max_bytes))
            except (urllib.error.URLError, OSError, http.client.HTTPException,
                    ValueError) as e:  # DataError is an OSError
                attempts.append((url, attempt + 1, *reason(e)))
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
                    attempts.append((url, attempt + 1, "other",
                                     f"MD5 {got}, expected {md5} (file removed)"))
                    break  # the same mirror will serve the same bytes again
            return path
    name = os.path.basename(path)
    err = DataError("\n".join([f"could not download {name}: {summary(attempts)}"]
                              + per_url(attempts)))
    err.attempts = [(url, k, text) for url, k, _, text in attempts]
    err.summary = summary(attempts)
    raise err
