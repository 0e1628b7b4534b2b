"""ImageFolder: folders and archives of PNG/JPEG images, the decoded-array cache, and
the shared JPEG copy of CIFAR-10."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

import tinynet
from tinynet.data import imagefolder
from tinynet.data.imagefolder import ImageFolder, read_image_folder
from tinynet.errors import DataError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache folder (never the user's, never the repo)."""
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def make_tree(seed: int = 0, classes=("dog", "cat", "bird"), per_class=(3, 2, 4),
              prefix: str = "", size=(5, 7)) -> tuple[dict, list]:
    """``{relative path: PNG bytes}`` and the expected (class, path, pixels) samples."""
    rng = np.random.default_rng(seed)
    files, samples = {}, []
    for cls, n in zip(classes, per_class):
        for i in range(n):
            arr = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            name = f"{prefix}{cls}/img{(7 * i) % 10}_{i}.png"
            files[name] = png_bytes(arr)
            samples.append((cls, name, arr))
    return files, samples


def write_folder(root, files: dict) -> str:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return str(root)


def write_archive(path, files: dict, dirs=(), extra=()) -> str:
    """A .tar.gz of ``files`` (in reverse name order: the reader must not rely on it)."""
    with tarfile.open(path, "w:gz") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for rel in sorted(files, reverse=True):
            info = tarfile.TarInfo(rel)
            info.size = len(files[rel])
            tar.addfile(info, io.BytesIO(files[rel]))
        for info in extra:
            tar.addfile(info)
    return str(path)


def expected(samples, classes):
    order = sorted(samples, key=lambda s: (classes.index(s[0]), s[1]))
    return (np.stack([s[2] for s in order]),
            np.array([classes.index(s[0]) for s in order], dtype=np.int64))


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_reads_tree_sorted_classes(tmp_path, kind):
    files, samples = make_tree()
    root = write_folder(tmp_path / "root", files) if kind == "folder" else \
        write_archive(tmp_path / "root.tar.gz", files)
    images, labels, classes = read_image_folder(root)
    assert classes == ["bird", "cat", "dog"]
    want_x, want_y = expected(samples, classes)
    assert images.dtype == np.uint8 and images.shape == (9, 5, 7, 3)
    np.testing.assert_array_equal(images, want_x)
    np.testing.assert_array_equal(labels, want_y)
    assert labels.dtype == np.int64


def test_class_list_sets_label_order(tmp_path):
    files, samples = make_tree()
    root = write_archive(tmp_path / "r.tar.gz", files)
    ds = ImageFolder(root, classes=["dog", "cat", "bird"])
    want_x, want_y = expected(samples, ["dog", "cat", "bird"])
    np.testing.assert_array_equal(ds.images, want_x)
    np.testing.assert_array_equal(ds.labels, want_y)
    assert ds.class_to_idx == {"dog": 0, "cat": 1, "bird": 2} and len(ds) == 9
    x, y = ds[3]
    np.testing.assert_array_equal(x, want_x[3])
    assert y == want_y[3]
    with pytest.raises(DataError, match=r"missing \['fox'\], unexpected \['bird'\]"):
        read_image_folder(root, classes=["dog", "cat", "fox"])


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_train_test_splits(tmp_path, kind):
    train, train_samples = make_tree(1, prefix="train/")
    test, test_samples = make_tree(2, per_class=(1, 1, 2), prefix="test/")
    files = {**train, **test}
    root = write_folder(tmp_path / "root", files) if kind == "folder" else \
        write_archive(tmp_path / "root.tar.gz", files)
    for split, samples in (("test", test_samples), ("train", train_samples)):
        images, labels, classes = read_image_folder(root, split)
        want_x, want_y = expected(samples, classes)
        np.testing.assert_array_equal(images, want_x)
        np.testing.assert_array_equal(labels, want_y)
    with pytest.raises(DataError, match="pass split="):
        read_image_folder(root)
    with pytest.raises(DataError, match="split 'valid'"):
        read_image_folder(root, "valid")


def test_missing_split_folder(tmp_path):
    root = write_archive(tmp_path / "r.tar.gz", make_tree(prefix="train/")[0])
    with pytest.raises(DataError, match="no test/ folder"):
        read_image_folder(root, "test")


def test_jpeg_matches_pillow_and_grey_mode(tmp_path):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    root = write_folder(tmp_path / "r", {"a/x.jpg": jpeg_bytes(arr),
                                         "b/y.JPEG": jpeg_bytes(arr[::-1])})
    images, labels, _ = read_image_folder(root)
    ref = np.asarray(Image.open(tmp_path / "r" / "a" / "x.jpg").convert("RGB"))
    np.testing.assert_array_equal(images[0], ref)
    assert labels.tolist() == [0, 1]
    grey, _, _ = read_image_folder(root, mode="L")
    ref_l = np.asarray(Image.open(tmp_path / "r" / "a" / "x.jpg").convert("L"))
    assert grey.shape == (2, 8, 8)
    np.testing.assert_array_equal(grey[0], ref_l)


def test_non_images_skipped_and_palette_converted(tmp_path):
    files, _ = make_tree(per_class=(1, 1, 1))
    pal = Image.fromarray(np.arange(35, dtype=np.uint8).reshape(5, 7)).convert("P")
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    files["cat/zz_palette.png"] = buf.getvalue()
    files["cat/notes.txt"] = b"not an image"
    files["README"] = b"top-level text is fine"
    images, labels, classes = read_image_folder(write_archive(tmp_path / "r.tar.gz", files))
    assert images.shape == (4, 5, 7, 3)
    assert classes == ["bird", "cat", "dog"] and labels.tolist() == [0, 1, 1, 2]
    np.testing.assert_array_equal(images[2], np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("problem, match", [
    ("empty-class", r"\['empty'\] .* hold no"),
    ("only-text-class", r"\['notes'\] .* hold no"),
    ("image-outside-class", "image outside a class folder"),
    ("sizes-differ", r"shape \(6, 7, 3\), but .* has \(5, 7, 3\)"),
    ("corrupt-image", r"cat/img0_0.png: cannot decode as PNG or JPEG"),
    ("truncated-image", r"cat/img0_0.png: cannot decode"),
    ("not-an-image", r"dog/img0_0.png: cannot decode"),
    ("no-classes", "no class folders"),
])
@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_bad_trees(tmp_path, problem, match, kind):
    files, _ = make_tree()
    dirs = []
    if problem == "empty-class":
        dirs = ["empty"]
    elif problem == "only-text-class":
        files["notes/readme.txt"] = b"hello"
    elif problem == "image-outside-class":
        files["stray.png"] = files["cat/img0_0.png"]
    elif problem == "sizes-differ":
        files["dog/zzz.png"] = png_bytes(np.zeros((6, 7, 3), np.uint8))
    elif problem == "corrupt-image":
        raw = bytearray(files["cat/img0_0.png"])
        raw[40:60] = b"\xff" * 20
        files["cat/img0_0.png"] = bytes(raw)
    elif problem == "truncated-image":
        files["cat/img0_0.png"] = files["cat/img0_0.png"][:50]
    elif problem == "not-an-image":
        files["dog/img0_0.png"] = b"GIF89a definitely not a png"
    elif problem == "no-classes":
        files = {"a.txt": b"x"}
    if kind == "folder":
        root = write_folder(tmp_path / "root", files)
        for d in dirs:
            os.makedirs(os.path.join(root, d))
    else:
        root = write_archive(tmp_path / "root.tar.gz", files, dirs=dirs)
    with pytest.raises(DataError, match=match) as err:
        read_image_folder(root)
    assert str(root) in str(err.value)


def test_unsafe_archive_refused(tmp_path):
    files, _ = make_tree()
    evil = tarfile.TarInfo("../../evil.png")
    evil.size = 0
    root = write_archive(tmp_path / "r.tar.gz", files, extra=[evil])
    with pytest.raises(DataError, match="'..' component"):
        read_image_folder(root)
    link = tarfile.TarInfo("cat/ln.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    root = write_archive(tmp_path / "s.tar.gz", files, extra=[link])
    with pytest.raises(DataError, match="points outside"):
        read_image_folder(root)


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="neither a folder nor an archive"):
        read_image_folder(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="mode 'CMYK'"):
        read_image_folder(str(tmp_path), mode="CMYK")


# --- cache ---------------------------------------------------------------------------------


def _forbid_decoding(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("decoded although the cache should have served the load")
    monkeypatch.setattr(imagefolder, "decode_image", fail)


def test_cache_serves_second_load(tmp_path, monkeypatch, private_cache):
    files, _ = make_tree(prefix="train/")
    files.update(make_tree(5, prefix="test/")[0])
    root = write_archive(tmp_path / "r.tar.gz", files)
    first = read_image_folder(root, "train")
    cached = os.listdir(private_cache / "imagefolder")
    assert len(cached) == 2 and all(c.endswith(".npz") for c in cached)  # both splits
    test_ref = read_image_folder(root, "test", cache=False)
    _forbid_decoding(monkeypatch)
    test_x, test_y, _ = read_image_folder(root, "test")
    np.testing.assert_array_equal(test_x, test_ref[0])
    np.testing.assert_array_equal(test_y, test_ref[1])
    images, labels, classes = read_image_folder(root, "train")
    np.testing.assert_array_equal(images, first[0])
    np.testing.assert_array_equal(labels, first[1])
    assert classes == first[2]
    with np.load(private_cache / "imagefolder" / cached[0], allow_pickle=False) as z:
        assert set(z.files) == {"key", "images", "labels", "classes"}


def test_other_split_problem_reported_when_that_split_is_read(tmp_path, private_cache):
    files, _ = make_tree(prefix="train/")
    test, _ = make_tree(5, prefix="test/")
    test["test/cat/img0_0.png"] = b"not a png"
    root = write_archive(tmp_path / "r.tar.gz", {**files, **test})
    want = read_image_folder(root, "train", cache=False)
    got = read_image_folder(root, "train")  # decodes test/ too while at it: fails, skipped
    np.testing.assert_array_equal(got[0], want[0])
    assert len(os.listdir(private_cache / "imagefolder")) == 1  # only train/ cached
    with pytest.raises(DataError, match="test/cat/img0_0.png: cannot decode"):
        read_image_folder(root, "test")


def test_changed_archive_invalidates_cache(tmp_path):
    files, _ = make_tree(0)
    path = tmp_path / "r.tar.gz"
    write_archive(path, files)
    read_image_folder(str(path))
    files2, samples2 = make_tree(1, per_class=(1, 1, 1))
    write_archive(path, files2)
    os.utime(path, ns=(1, 1))  # even with an old mtime the size differs
    images, labels, classes = read_image_folder(str(path))
    want_x, want_y = expected(samples2, classes)
    np.testing.assert_array_equal(images, want_x)
    np.testing.assert_array_equal(labels, want_y)


def test_changed_folder_invalidates_cache(tmp_path):
    files, _ = make_tree(0)
    root = write_folder(tmp_path / "root", files)
    a = read_image_folder(root)[0]
    new = np.full((5, 7, 3), 7, np.uint8)
    write_folder(root, {"bird/img0_0.png": png_bytes(new)})
    os.utime(os.path.join(root, "bird/img0_0.png"), ns=(5, 5))
    b = read_image_folder(root)[0]
    np.testing.assert_array_equal(b[0], new)
    assert not np.array_equal(a[0], b[0])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-dtype"])
def test_damaged_cache_rebuilt(tmp_path, private_cache, damage):
    files, _ = make_tree()
    root = write_archive(tmp_path / "r.tar.gz", files)
    want = read_image_folder(root)
    (cache_file,) = (private_cache / "imagefolder").iterdir()
    if damage == "garbage":
        cache_file.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[:500])
    else:
        with np.load(cache_file) as z:
            arrays = dict(z)
        arrays["images"] = arrays["images"].astype(np.float32)
        np.savez(cache_file, **arrays)
    got = read_image_folder(root)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_cache_disabled_writes_nothing(tmp_path, private_cache):
    root = write_archive(tmp_path / "r.tar.gz", make_tree()[0])
    read_image_folder(root, cache=False)
    assert not private_cache.exists()


# --- the shared JPEG copy of CIFAR-10 --------------------------------------------------------


@pytest.mark.slow  # decodes 60,000 JPEGs once: about 10 s on one core
def test_cifar10_jpeg_shared_copy(shared_data, monkeypatch, private_cache):
    monkeypatch.setenv("TINYNET_DATA", str(shared_data))
    assert tinynet.data.cache_dir() == str(private_cache)  # never the user's ~/.cache
    x, y = tinynet.data.load("cifar10-jpeg", "test", download=False)  # decodes both splits
    cached = sorted(os.listdir(private_cache / "imagefolder"))  # both splits, in tmp only
    assert len(cached) == 2 and all(c.startswith("cifar10-jpeg") for c in cached), cached
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and np.bincount(y, minlength=10).tolist() == [1000] * 10
    _forbid_decoding(monkeypatch)  # the train split now comes from the cache
    x, y = tinynet.data.load("cifar10-jpeg", "train", download=False)
    assert x.shape == (50000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [5000] * 10
    # README: per-channel training means within 0.05 of CIFAR-10's (125.27, 122.93, 113.86)
    # (bincount per channel: exact integer sums, no float accumulation)
    means = [np.dot(np.bincount(x[..., c].ravel(), minlength=256), np.arange(256)) / (
        x.shape[0] * 32 * 32) for c in range(3)]
    np.testing.assert_allclose(means, [125.27, 122.93, 113.86], atol=0.05)
    # class order of the README: label 0 is airplane ... 9 is truck
    assert tinynet.data.DATASETS["cifar10-jpeg"].classes[0] == "airplane"
    assert tinynet.data.DATASETS["cifar10-jpeg"].classes[9] == "truck"


def test_cifar10_jpeg_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    with pytest.raises(DataError, match="cifar10-jpeg"):
        tinynet.data.load("cifar10-jpeg", "train", download=False)


def test_cifar10_jpeg_no_mirror_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    with pytest.raises(DataError, match="no download mirror; set TINYNET_DATA"):
        tinynet.data.load("cifar10-jpeg", "train")
