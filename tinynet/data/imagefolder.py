"""``ImageFolder``: images in ``root/<class>/<image>`` (a folder or a ``.tar.gz`` of one).

The layout torchvision's ``ImageFolder`` reads::

    root/[train|test/]<class>/<any/sub/folders>/<image>.png|.jpg|.jpeg

Classes are the folder names sorted (or the ``classes`` list given, in its order, which
must match the folders exactly); label ``i`` is ``classes[i]``; samples are ordered by
class, then by path. With ``split="train"`` the tree under ``train/`` is read. Files
without an image extension are skipped; an image that Pillow cannot decode, an image
outside a class folder, an empty class or images of different sizes raise
:class:`tinynet.DataError` naming the file.

Archives are read as a stream (:func:`tinynet.data.archive.iter_members`): nothing is
extracted, files that are not images are skipped unread, and an archive with any unsafe
member (absolute path, ``..``, a link pointing out, a device) is refused as a whole. In
a folder only regular files are opened (a FIFO or a device named ``x.png`` is refused).

Nothing is decoded on trust (limits in :mod:`tinynet.data.limits`): image files and
archive members are bounded in size (``file_bytes`` each, ``total_bytes`` together), and
an image's width and height are read from its header before its pixels are decoded. As
all images of a split have one size, the first image's header gives the pixels of the
whole split; if they exceed the ``pixels`` budget nothing is decoded at all.

Names that are not UTF-8 (``b"caf\\xe9"``) are read like any other; Python gives them as
strings with surrogate escapes (``"caf\\udce9"``, the form ``os.listdir`` returns, which
opens the same file), and messages show them as ``caf\\xe9``.

Decoding 60,000 small JPEGs takes seconds, so the decoded arrays are cached in the user
cache (``tinynet.data.cache_dir()/imagefolder``) as an uncompressed ``.npz`` written
atomically and read back with ``allow_pickle=False``. The cache key is the source's
absolute path (hashed into the file name) with its size and modification time (for a
folder: the name, size and mtime of every image file, and every folder's name), plus
the options; a changed archive or folder is decoded again. When an archive has
``train/`` and ``test/`` folders both splits are decoded in the one pass over the
archive and both are cached.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings

import numpy as np

from ..errors import DataError
from ..io import atomic_write
from . import limits
from .archive import iter_members
from .datasets import DatasetInfo, cache_dir, register
from .files import open_regular, read_regular, shown

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
CACHE_VERSION = "1"


def decode_image(data: bytes, name: str, mode: str = "RGB", max_pixels: int | None = None,
                 check=None) -> np.ndarray:
    """Decode PNG or JPEG bytes into ``(H, W, 3)`` (mode "RGB") or ``(H, W)`` ("L") uint8.

    The header is read first: an image over ``max_pixels`` (the ``image_pixels`` limit,
    ``TINYNET_MAX_IMAGE_PIXELS``) is refused, and ``check(width, height)``, if given, may
    refuse it with a DataError, before any pixel is decoded.
    """
    from PIL import Image
    max_pixels = limits.get("image_pixels", max_pixels)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:  # the header
            if im.width * im.height > max_pixels:
                raise DataError(f"{name}: image of {im.width} x {im.height} pixels, more "
                                f"than {limits.over('image_pixels', max_pixels)}")
            if check is not None:
                check(im.width, im.height)
            if im.mode != mode:
                im = im.convert(mode)
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError,
        # struct.error, EOFError, DecompressionBombError... on corrupt bytes; all mean
        # "this file is not a readable image".
        raise DataError(f"{name}: cannot decode as PNG or JPEG ({type(e).__name__}: "
                        f"{str(e)[:160]})") from None
    want = 3 if mode == "RGB" else 2
    if arr.ndim != want:
        raise DataError(f"{name}: decoded to shape {arr.shape}, expected {want} dims")
    return arr


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


class _Source:
    """The image files of a folder or an archive: ``relative/posix/path -> bytes`` loaders.

    Limits (:mod:`tinynet.data.limits`) are read once, when the source is made.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.shown = shown(self.root)
        if os.path.isdir(self.root):
            self.kind = "folder"
        elif os.path.isfile(self.root):
            self.kind = "archive"
        else:
            raise DataError(f"ImageFolder: {self.shown} is neither a folder nor an archive")
        self.max_file_bytes = limits.get("file_bytes")
        self.max_total_bytes = limits.get("total_bytes")
        self.read_bytes = 0

    def fingerprint(self) -> str:
        """Changes whenever the archive, an image file or the folders change."""
        h = hashlib.sha256(os.fsencode(self.root))
        try:
            if self.kind == "archive":
                st = os.stat(self.root)
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            else:
                for rel, path in self._walk(dirs=True):
                    if path is None:
                        h.update(b"d\0" + os.fsencode(rel) + b"\0")
                    elif _is_image(rel):
                        st = os.stat(path)
                        h.update(os.fsencode(rel) + f"\0{st.st_size}:{st.st_mtime_ns}\0"
                                 .encode())
        except OSError as e:
            raise DataError(f"{self.shown}: cannot stat: {e.strerror or e}") from None
        return h.hexdigest()

    def _walk(self, dirs: bool = False):
        """``(relative posix path, path)`` of every file, and ``(folder, None)`` with dirs."""
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            if dirs:
                for d in dirnames:
                    yield (d if rel_dir == "." else f"{rel_dir}/{d}"), None
            for f in sorted(filenames):
                yield (f if rel_dir == "." else f"{rel_dir}/{f}"), os.path.join(dirpath, f)

    def listing(self) -> tuple[dict, set]:
        """``(images, dirs)``: images maps a relative path to its bytes (or a path to read).

        Files that are not images are not read; they only show which folders exist.
        """
        files, dirs, others = {}, set(), []
        if self.kind == "archive":
            for name, kind, data in iter_members(self.root, want=_is_image,
                                                 max_member_bytes=self.max_file_bytes,
                                                 max_total_bytes=self.max_total_bytes):
                if kind == "dir":
                    dirs.add(name)
                elif kind == "file" and data is not None:
                    if name in files:
                        raise DataError(f"{self.shown}: member {name!r} appears twice")
                    files[name] = data
                elif kind == "file":
                    others.append(name)
        else:
            for rel, path in self._walk(dirs=True):
                if path is None:
                    dirs.add(rel)
                elif _is_image(rel):
                    files[rel] = path
        for name in list(files) + others:  # a file's folders exist even if unlisted
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return files, dirs

    def read(self, entry) -> bytes:
        """The bytes of an image: held (archive) or read from a regular file (folder)."""
        if isinstance(entry, bytes):
            return entry
        data = read_regular(entry, self.max_file_bytes, what="image file")
        self.read_bytes += len(data)
        if self.read_bytes > self.max_total_bytes:
            raise DataError(f"{self.shown}: image files add up to more than "
                            f"{limits.over('total_bytes', self.max_total_bytes)}")
        return data

    def name(self, rel: str) -> str:
        """How the file ``rel`` is named in messages."""
        return f"{self.shown}:{shown(rel)}" if self.kind == "archive" else \
            shown(os.path.join(self.root, rel))


class _PixelBudget:
    """Pixels decoded so far by one read, against the ``pixels`` limit."""

    def __init__(self, max_pixels: int | None) -> None:
        self.max = limits.get("pixels", max_pixels)
        self.used = 0

    def spend(self, count: int, width: int, height: int, what: str) -> None:
        pixels = count * width * height
        if self.used + pixels > self.max:
            earlier = f" (after {self.used:,} already decoded)" if self.used else ""
            raise DataError(f"{what}: {count:,} images of {width} x {height} pixels are "
                            f"{pixels:,} pixels{earlier}, more than "
                            f"{limits.over('pixels', self.max)}")
        self.used += pixels


def _plan(source: _Source, files: dict, dirs: set, split: str | None,
          classes: list | None) -> tuple[list, list]:
    """``(classes, [(rel, label), ...])`` of one split, sorted by class then path."""
    top = {d for d in dirs if "/" not in d}
    if split is None:
        if set(SPLITS) <= top:
            raise DataError(f"{source.shown}: has train/ and test/ folders; pass "
                            f"split='train' or split='test'")
        prefix = ""
    else:
        if split not in top:
            raise DataError(f"{source.shown}: no {split}/ folder for split {split!r} (top "
                            f"folders: {sorted(top)[:10]})")
        prefix = split + "/"
    class_dirs = sorted(d[len(prefix):] for d in dirs
                        if d.startswith(prefix) and "/" not in d[len(prefix):] and d != prefix)
    for rel in files:
        if rel.startswith(prefix) and "/" not in rel[len(prefix):] and _is_image(rel):
            raise DataError(f"{source.name(rel)}: image outside a class folder; expected "
                            f"{prefix}<class>/<image>")
    if classes is None:
        classes = class_dirs
    else:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise DataError(f"ImageFolder: class list {classes} has duplicates")
        missing = [c for c in classes if c not in class_dirs]
        extra = [c for c in class_dirs if c not in classes]
        if missing or extra:
            raise DataError(f"{source.shown}: class folders {class_dirs} under "
                            f"'{prefix or './'}' do not match the classes given {classes} "
                            f"(missing {missing}, unexpected {extra})")
    if not classes:
        raise DataError(f"{source.shown}: no class folders under '{prefix or './'}'")
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for rel in sorted(files):
        if not rel.startswith(prefix) or not _is_image(rel):
            continue
        cls = rel[len(prefix):].split("/", 1)[0]
        samples.append((index[cls], rel))
    samples.sort()
    counts = np.bincount([label for label, _ in samples], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts) if n == 0]
    if empty:
        raise DataError(f"{source.shown}: class folder(s) {empty} under '{prefix or './'}' "
                        f"hold no .png/.jpg/.jpeg image")
    return classes, [(rel, label) for label, rel in samples]


def _decode_all(source: _Source, files: dict, samples: list, mode: str,
                budget: _PixelBudget) -> tuple:
    """Decode ``samples`` into one array; the first header is checked against ``budget``."""
    images = None
    labels = np.empty(len(samples), dtype=np.int64)
    rel = None

    def check(width: int, height: int) -> None:  # the header of ``rel``, before decoding
        shape = (height, width, 3) if mode == "RGB" else (height, width)
        if images is None:
            budget.spend(len(samples), width, height,
                         f"{source.name(rel)} and the rest of its split")
        elif shape != images.shape[1:]:
            first = source.name(samples[0][0])
            raise DataError(f"{source.name(rel)}: image of shape {shape}, but {first} "
                            f"has {images.shape[1:]}; all images must have one size")

    for i, (rel, label) in enumerate(samples):
        arr = decode_image(source.read(files[rel]), source.name(rel), mode, check=check)
        if images is None:
            images = np.empty((len(samples),) + arr.shape, dtype=np.uint8)
        images[i] = arr
        labels[i] = label
    return images, labels


def _cache_path(source: _Source, split: str | None, classes, mode: str) -> str:
    opts = hashlib.sha256(repr((CACHE_VERSION, split, classes, mode)).encode()).hexdigest()
    where = hashlib.sha256(os.fsencode(source.root)).hexdigest()[:16]
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", os.path.basename(source.root))[:40]
    return os.path.join(cache_dir(), "imagefolder",
                        f"{label}-{where}-{split or 'all'}-{opts[:8]}.npz")


def _cache_load(path: str, key: str, mode: str):
    if not os.path.isfile(path):
        return None
    try:
        with open_regular(path, "cache file") as f, np.load(f, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            images, labels, classes = z["images"], z["labels"], [str(c) for c in z["classes"]]
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        return None
    ndim = 4 if mode == "RGB" else 3
    if images.dtype != np.uint8 or images.ndim != ndim or labels.dtype != np.int64 \
            or labels.shape != images.shape[:1] or (labels.size and (
                labels.min() < 0 or labels.max() >= len(classes))):
        return None
    return images, labels, classes


def _cache_save(path: str, key: str, images, labels, classes) -> None:
    def write(f):
        np.savez(f, key=np.array(key), images=images, labels=labels,
                 classes=np.array(classes, dtype=str))
    try:
        atomic_write(path, write)
    except OSError as e:
        warnings.warn(f"ImageFolder: could not write the cache {path}: {e}", stacklevel=3)


def read_image_folder(root: str, split: str | None = None, classes: list | None = None,
                      cache: bool = True, mode: str = "RGB",
                      max_pixels: int | None = None) -> tuple:
    """Read an image folder or archive; return ``(images, labels, classes)``.

    Args:
        root: a folder ``<class>/<image>`` (or ``train|test/<class>/<image>``), or a
            tar (``.tar``, ``.tar.gz``, ...) of such a tree.
        split: ``"train"``/``"test"`` to read the tree under that top folder; None
            reads the whole tree (an error if it has both ``train/`` and ``test/``).
        classes: class names in label order; default the folder names sorted.
        cache: keep the decoded arrays in the user cache and reuse them.
        mode: ``"RGB"`` -> images ``(N, H, W, 3)``; ``"L"`` (grey) -> ``(N, H, W)``.
        max_pixels: the most pixels this read may decode, all images together; default
            the ``pixels`` limit (``TINYNET_MAX_PIXELS``, 2**27).

    Returns:
        images uint8 ``(N, H, W, 3)`` or ``(N, H, W)``; labels int64 ``(N,)``; the
        class names (``classes[labels[i]]`` is sample ``i``'s class).
    """
    if mode not in ("RGB", "L"):
        raise DataError(f"ImageFolder: mode {mode!r}, expected 'RGB' or 'L'")
    if split is not None and split not in SPLITS:
        raise DataError(f"ImageFolder: split {split!r}, expected one of {SPLITS} or None")
    source = _Source(root)
    class_key = None if classes is None else [str(c) for c in classes]
    if cache:
        key = source.fingerprint()
        path = _cache_path(source, split, class_key, mode)
        hit = _cache_load(path, key, mode)
        if hit is not None:
            return hit
    files, dirs = source.listing()
    top = {d for d in dirs if "/" not in d}
    # One pass over an archive serves every split: decode (and cache) them all now.
    splits = [split]
    if cache and split is not None and source.kind == "archive" and set(SPLITS) <= top:
        splits = [split] + [s for s in SPLITS if s != split]
    budget = _PixelBudget(max_pixels)
    names, samples = _plan(source, files, dirs, split, class_key)
    result = _decode_all(source, files, samples, mode, budget) + (names,)
    if cache:
        _cache_save(_cache_path(source, split, class_key, mode), key, *result)
    for other in splits[1:]:  # while the archive's images are at hand; not needed now,
        try:  # so a problem there is reported when that split is asked for
            names, samples = _plan(source, files, dirs, other, class_key)
            images, labels = _decode_all(source, files, samples, mode, budget)
        except DataError:
            continue
        _cache_save(_cache_path(source, other, class_key, mode), key, images, labels, names)
    return result


class ImageFolder:
    """A data set of images in ``root/<class>/<image>``, as torchvision's ``ImageFolder``.

    Attributes: ``images`` uint8 ``(N, H, W, 3)``, ``labels`` int64 ``(N,)``,
    ``classes`` (names in label order), ``class_to_idx``. ``ds[i]`` is
    ``(images[i], labels[i])``; ``len(ds)`` is N. Arguments as :func:`read_image_folder`.
    """

    def __init__(self, root: str, split: str | None = None, classes: list | None = None,
                 cache: bool = True, mode: str = "RGB", max_pixels: int | None = None) -> None:
        self.root, self.split = os.fspath(root), split
        self.images, self.labels, self.classes = read_image_folder(root, split, classes,
                                                                   cache, mode, max_pixels)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __repr__(self) -> str:
        return (f"ImageFolder(root={self.root!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, image shape={self.images.shape[1:]})")


# --- CIFAR-10 as JPEG (an archive of train/<class>/*.jpg and test/<class>/*.jpg) ----------

CIFAR10_JPEG = "cifar10-jpeg.tar.gz"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def read_cifar10_jpeg(folder: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``cifar10-jpeg.tar.gz`` in ``folder``: 50,000 train / 10,000 test, ``(N, 32, 32, 3)``."""
    images, labels, _ = read_image_folder(os.path.join(folder, CIFAR10_JPEG), split,
                                          classes=CIFAR10_CLASSES)
    if images.shape[1:] != (32, 32, 3):
        raise DataError(f"{shown(os.path.join(folder, CIFAR10_JPEG))}: images of shape "
                        f"{images.shape[1:]}, expected (32, 32, 3)")
    return images, labels


register(DatasetInfo(
    name="cifar10-jpeg",
    files={"train": [CIFAR10_JPEG], "test": [CIFAR10_JPEG]},
    md5={CIFAR10_JPEG: "52b0810de26e99209fec34a6aa47cef0"},
    mirrors=[],  # no public mirror: a copy is provided in $TINYNET_DATA/cifar10-jpeg/
    reader=read_cifar10_jpeg,
    classes=list(CIFAR10_CLASSES),
))

__all__ = ["IMG_EXTENSIONS", "ImageFolder", "decode_image", "read_cifar10_jpeg",
           "read_image_folder"]
