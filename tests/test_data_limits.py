"""Hostile data files: each is refused early with a DataError naming the limit, and
nothing is written. The files are made at full size in tmp_path by ``data_bombs`` (a
4 GiB gzip bomb is 4 MB written in a fraction of a second); every case was a crash,
a hang, gigabytes of memory or minutes of work before the limits.

Memory and time of each case, measured in a subprocess, are in the report of the change
that added these tests; here each case asserts the outcome and the limit named.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile

import data_bombs as bombs
import numpy as np
import pytest
from test_data_archive import tree

import tinynet
from tinynet.data import archive, files, idx, limits, safe_pickle
from tinynet.data.imagefolder import read_image_folder
from tinynet.errors import DataError, TinynetError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test has its own cache (the default one, as a user has) and default limits."""
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path / "cache"))
    for lim in limits.LIMITS.values():
        monkeypatch.delenv(lim.env, raising=False)
    return tmp_path / "cache"


# --- the limits themselves ------------------------------------------------------------------

def test_limits_from_argument_environment_or_default(monkeypatch):
    assert limits.get("file_bytes") == 256 << 20
    assert limits.get("file_bytes", 123) == 123
    for text, value in [("1000", 1000), ("1_000_000", 1_000_000), ("512M", 512 << 20),
                        ("2G", 2 << 30), ("2GiB", 2 << 30), (" 4k ", 4096)]:
        monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", text)
        assert limits.get("file_bytes") == value
        assert limits.get("file_bytes", 7) == 7  # the argument wins
    for bad in ["-1", "0", "lots", "1.5G"]:
        monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", bad)
        with pytest.raises(DataError, match=f"TINYNET_MAX_FILE_BYTES={bad!r}"):
            limits.get("file_bytes")
    with pytest.raises(DataError, match="limit pixels=0: expected a positive int"):
        limits.get("pixels", 0)
    monkeypatch.setenv("TINYNET_MAX_PICKLE_DEPTH", "100000")
    with pytest.raises(DataError, match="at most 10000"):
        limits.get("pickle_depth")


def test_every_limit_has_a_distinct_variable():
    envs = [lim.env for lim in limits.LIMITS.values()]
    assert len(set(envs)) == len(envs) and all(e.startswith("TINYNET_MAX_") for e in envs)


# --- regular files only -------------------------------------------------------------------

def test_open_regular_refuses_fifo_device_folder_and_missing(tmp_path):
    fifo = tmp_path / "f.png"
    os.mkfifo(fifo)
    link = tmp_path / "z.png"
    os.symlink("/dev/zero", link)
    cases = {fifo: "is a FIFO", link: "is a character device", tmp_path: "is a folder",
             tmp_path / "nope": "cannot read: No such file"}
    for path, match in cases.items():
        with pytest.raises(DataError, match=match):
            files.open_regular(path)
    regular = tmp_path / "ok"
    regular.write_bytes(b"abc")
    with files.open_regular(regular) as f:
        assert f.read() == b"abc"
    with pytest.raises(DataError, match=r"3 bytes, more than the limit of 2 bytes"):
        files.read_regular(regular, 2)


def test_shown_escapes_what_is_not_utf8():
    assert files.shown(os.fsdecode(b"caf\xe9/x.png")) == "caf\\xe9/x.png"
    assert files.shown("café") == "café"
    assert files.shown(b"caf\xe9") == "caf\\xe9"


# --- pickles ------------------------------------------------------------------------------

@pytest.mark.parametrize("via", ["dict", "set", "frozenset"])
def test_deep_tuple_refused_before_it_is_hashed(via):
    # 200,000 deep: hashing it as a dict key or set member overflowed the C stack (SIGSEGV)
    with pytest.raises(DataError, match=r"^deep: unsafe or malformed pickle: containers "
                                        r"nested 65 deep .*TINYNET_MAX_PICKLE_DEPTH"):
        safe_pickle.loads(bombs.deep_pickle(via), "deep")


@pytest.mark.parametrize("archived", [True, False], ids=["archive", "folder"])
def test_deep_pickle_as_a_cifar_batch(tmp_path, archived):
    root = bombs.cifar_folder(tmp_path / "c", bombs.deep_pickle("dict"), archived)
    with pytest.raises(DataError, match=r"test_batch: unsafe or malformed pickle: "
                                        r"containers nested 65 deep"):
        tinynet.data.load("cifar10", "test", root=root, download=False)


def test_depth_and_items_limits_are_exact(monkeypatch):
    nested = [1]
    for _ in range(63):  # 64 levels of lists in all
        nested = [nested]
    assert safe_pickle.loads(pickle.dumps(nested, protocol=2)) == nested
    with pytest.raises(DataError, match="nested 65 deep"):
        safe_pickle.loads(pickle.dumps([nested], protocol=2))
    assert safe_pickle.loads(pickle.dumps([nested], protocol=2), max_depth=65) == [nested]
    items = {"a": list(range(7)), "b": (1, 2)}  # 2 keys + 2 values + 7 + 2 elements = 13
    raw = pickle.dumps(items, protocol=2)
    assert safe_pickle.loads(raw, max_items=13) == items
    monkeypatch.setenv("TINYNET_MAX_PICKLE_ITEMS", "12")
    with pytest.raises(DataError, match=r"more than the limit of 12 items "
                                        r"\(TINYNET_MAX_PICKLE_ITEMS raises it\)"):
        safe_pickle.loads(raw)


def test_deepened_after_memo_still_refused():
    # a list put inside others first, then filled with a deep chain through the memo:
    # the dry run sees the list shallow, the walk of the result catches the depth
    outer = b"]q\x000" + b"h\x00" + b"\x85" * 30 + b"q\x010"  # L; T = 30 tuples around L
    fill = b"h\x00K\x01" + b"\x85" * 60 + b"a0"  # L.append(a 60-deep tuple): 61 deep
    with pytest.raises(DataError, match="nested more than the limit of 64 levels"):
        safe_pickle.loads(b"\x80\x02" + outer + fill + b"h\x01.")  # T: 92 deep


def test_one_buffer_many_bytearrays_refused():
    # bytearray(buf) repeated through the memo: 100 copies of 1 MiB from a 1 MiB pickle
    big = b"B" + (1 << 20).to_bytes(4, "little") + bytes(1 << 20)  # BINBYTES, memo 0
    call = b"c__builtin__\nbytearray\nq\x01"
    body = call + b"(" + big + b"q\x02" + b"h\x01h\x02\x85R" * 100 + b"l."
    with pytest.raises(DataError, match="twice the pickle's size|2 times the pickle"):
        safe_pickle.loads(b"\x80\x03" + body)


def test_real_batch_sizes_fit_the_defaults():
    data = np.zeros((10000, 3072), np.uint8)
    batch = {b"data": data, b"labels": [i % 10 for i in range(10000)],
             b"filenames": [b"f%d.png" % i for i in range(10000)], b"batch_label": b"x"}
    for protocol in (2, 4):
        out = safe_pickle.loads(pickle.dumps(batch, protocol=protocol))
        assert out[b"labels"] == batch[b"labels"] and out[b"data"].shape == (10000, 3072)


# --- IDX ----------------------------------------------------------------------------------

def test_gzip_with_4gib_of_zeros_after_the_data(tmp_path):
    images = bombs.idx_trailing_zeros(tmp_path / "img.gz")  # 4 MB: 10 images, then 4 GiB
    with pytest.raises(DataError, match=r"img.gz: IDX file has trailing bytes: header says "
                                        r"dims \(10, 28, 28\) = 7840 bytes of data, file has "
                                        r"more than 7840"):
        idx.read_idx(images)


def test_huge_valid_headers_refused_before_reading(tmp_path):
    # valid files of 2,147,483,632 images (1x1) and labels: 2 MB gzips of 2 GB each
    images = bombs.idx_huge(tmp_path / "img.gz")
    labels = bombs.idx_huge(tmp_path / "lab.gz", labels=True)
    root = bombs.mnist_test_folder(tmp_path / "root", images, labels)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: IDX header claims dims "
                                        r"\(2147483632, 1, 1\) \(2,147,483,632 bytes\), more "
                                        r"than the limit of 256 MiB "
                                        r"\(TINYNET_MAX_FILE_BYTES raises it\)"):
        tinynet.data.load("mnist", "test", root=root, download=False)
    with pytest.raises(DataError, match=r"lab.gz: IDX header claims dims \(2147483632,\)"):
        idx.read_idx(labels)


def test_sparse_3gib_raw_file_refused_by_its_size(tmp_path):
    images = bombs.idx_sparse_raw(tmp_path / "img")  # 10 images, then zeros to 3 GiB
    with pytest.raises(DataError, match=r"trailing bytes: .* = 7840 bytes of data, file has "
                                        r"3221225456"):
        idx.read_idx(images)


def test_labels_checked_against_the_images_before_reading(tmp_path, monkeypatch):
    images = bombs.write(tmp_path / "i", bombs.idx_header((3, 2, 2)) + bytes(12))
    labels = bombs.write(tmp_path / "l.gz", bombs.gzip_bytes([bombs.idx_header((1000,)), 1000]))
    root = bombs.mnist_test_folder(tmp_path / "root", images, labels)
    with pytest.raises(DataError, match=r"declares 1,000 items, expected 3 \(one per image"):
        tinynet.data.load("mnist", "test", root=root, download=False)
    # 1x1 images: 2,000 labels are 16,000 bytes as int64, refused before reading
    images = bombs.write(tmp_path / "i2", bombs.idx_header((2000, 1, 1)) + bytes(2000))
    labels = bombs.write(tmp_path / "l2", bombs.idx_header((2000,)) + bytes(2000))
    root = bombs.mnist_test_folder(tmp_path / "root2", images, labels)
    monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", "8000")
    with pytest.raises(DataError, match="2,000 labels would take 16,000 bytes as int64"):
        tinynet.data.load("mnist", "test", root=root, download=False)


def test_idx_special_files(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match="fifo: is a FIFO"):
        idx.read_idx(tmp_path / "fifo")
    with pytest.raises(DataError, match="is a character device"):
        idx.read_idx("/dev/zero")


# --- image folders and archives -----------------------------------------------------------

def test_hard_links_to_a_big_png_refused_before_decoding(tmp_path, private_cache):
    path = bombs.hardlink_bomb(tmp_path / "bomb.tar.gz")  # 4 KB: a 4096x4096 PNG, 59 links
    with pytest.raises(DataError, match=r"bomb.tar.gz:train/cat/0.png and the rest of its "
                                        r"split: 60 images of 4096 x 4096 pixels are "
                                        r"1,006,632,960 pixels, more than the limit of "
                                        r"134,217,728 pixels \(TINYNET_MAX_PIXELS raises it\)"):
        read_image_folder(path, "train")
    assert not private_cache.exists() or tree(private_cache) <= {"imagefolder"}
    # within a budget raised for it, the links are read as the images they are
    images, labels, classes = read_image_folder(
        bombs.write(tmp_path / "small.tar.gz", bombs.gzip_bytes(bombs.tar_parts(
            [("train/cat/0.png", bombs.png(8, 8, 5))]
            + [(f"train/cat/{i}.png", tarfile.LNKTYPE, "train/cat/0.png") for i in (1, 2)]))),
        "train", max_pixels=3 * 64)
    assert images.shape == (3, 8, 8, 3) and np.all(images == 5) and classes == ["cat"]
    assert labels.tolist() == [0, 0, 0]
    with pytest.raises(DataError, match="TINYNET_MAX_PIXELS"):
        read_image_folder(tmp_path / "small.tar.gz", "train", max_pixels=3 * 64 - 1,
                          cache=False)


@pytest.mark.parametrize("reader", ["imagefolder", "safe_extract"])
def test_zero_filled_members_are_skipped_and_budgeted(tmp_path, reader):
    path = bombs.zero_members(tmp_path / "bomb.tar.gz")  # 4 MB: 63 members of 64 MiB of zeros
    before = tree(tmp_path)
    with pytest.raises(DataError, match=r"bomb.tar.gz: members add up to more than the limit "
                                        r"of 512 MiB \(TINYNET_MAX_TOTAL_BYTES raises it\)"):
        if reader == "imagefolder":
            read_image_folder(path, "train")
        else:
            archive.safe_extract(path, str(tmp_path / "out"))
    assert tree(tmp_path) - before <= {"cache", "cache/imagefolder"}


def test_non_image_members_within_the_budget_are_skipped(tmp_path, monkeypatch):
    path = bombs.zero_members(tmp_path / "ok.tar.gz", count=3, size=1 << 20)
    images, labels, classes = read_image_folder(path, "train", cache=False)
    assert images.shape == (1, 4, 4, 3) and labels.tolist() == [0] and classes == ["cat"]
    monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", "1M")
    read_image_folder(path, "train", cache=False)  # 1 MiB members: at the limit, accepted
    monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", "1048575")
    with pytest.raises(DataError, match=r"'train/cat/blob0.bin' claims 1,048,576 bytes"):
        read_image_folder(path, "train", cache=False)


def test_png_padded_to_3gb(tmp_path):
    path = bombs.padded_png_archive(tmp_path / "a" / "padded.tar.gz")
    with pytest.raises(DataError, match=r"member 'train/cat/a.png' claims 3,000,000,000 "
                                        r"bytes, more than the limit of 256 MiB"):
        read_image_folder(path, "train")
    root = bombs.padded_png_folder(tmp_path / "f")
    with pytest.raises(DataError, match=r"cat/a.png: 3,000,000,000 bytes, more than the limit "
                                        r"of 256 MiB \(TINYNET_MAX_FILE_BYTES raises it\)"):
        read_image_folder(root)


def test_folder_image_files_add_up_to_the_total_budget(tmp_path, monkeypatch):
    root = tmp_path / "r"
    for i in range(4):
        bombs.write(root / "cat" / f"{i}.png", bombs.png(4, 4, i))
    size = os.path.getsize(root / "cat" / "0.png")
    monkeypatch.setenv("TINYNET_MAX_TOTAL_BYTES", str(3 * size + 1))
    with pytest.raises(DataError, match="image files add up to more than the limit"):
        read_image_folder(str(root), cache=False)


@pytest.mark.parametrize("kind", ["symlink-to-dev-zero", "character-device", "fifo"])
def test_special_files_in_a_folder(tmp_path, kind):
    root = tmp_path / "r"
    bombs.write(root / "cat" / "a.png", bombs.png(4, 4))
    target = root / "cat" / ("f.png" if kind == "fifo" else "z.png")
    if kind == "symlink-to-dev-zero":
        os.symlink("/dev/zero", target)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        try:
            os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # as /dev/zero
        except PermissionError:
            pytest.skip("creating a device node needs privileges")
    match = "is a FIFO" if kind == "fifo" else "is a character device"
    with pytest.raises(DataError, match=f"{target.name}: {match}.*, not a regular file"):
        read_image_folder(str(root))
    with pytest.raises(DataError, match="neither a folder nor an archive"):
        read_image_folder(str(target))


def _non_utf8_tree() -> dict:
    return {b"caf\xe9/\xe9t\xe9.png": bombs.png(4, 4, 1), b"caf\xe9/caf\xe9": b"not an image",
            b"caf\xe9/b.png": bombs.png(4, 4, 3), b"dog/x.png": bombs.png(4, 4, 2)}


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_names_that_are_not_utf8_are_read(tmp_path, kind, private_cache):
    if kind == "folder":
        root = os.path.join(os.fsencode(tmp_path), b"r\xe9")
        for name, data in _non_utf8_tree().items():
            bombs.write(os.fsdecode(os.path.join(root, name)), data)
        root = os.fsdecode(root)
    else:
        root = str(tmp_path / "r.tar")
        with tarfile.open(root, "w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in _non_utf8_tree().items():
                info = tarfile.TarInfo(os.fsdecode(name))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for _ in range(2):  # decoded, then from the cache
        images, labels, classes = read_image_folder(root)
        # the class is named as os.listdir names the folder: it opens the same path
        assert classes == [os.fsdecode(b"caf\xe9"), "dog"]
        assert labels.tolist() == [0, 0, 1]
        # b.png sorts before \xe9t\xe9.png
        assert [int(x[0, 0, 0]) for x in images] == [3, 1, 2]
    assert len(os.listdir(private_cache / "imagefolder")) == 1


def test_names_that_are_not_utf8_are_printable_in_messages(tmp_path):
    root = os.path.join(os.fsencode(tmp_path), b"r")
    bombs.write(os.fsdecode(os.path.join(root, b"caf\xe9", b"\xe9.png")), b"not a png")
    with pytest.raises(DataError) as err:
        read_image_folder(os.fsdecode(root))
    msg = str(err.value)
    assert "caf\\xe9/\\xe9.png: cannot decode as PNG or JPEG" in msg
    msg.encode("utf-8")  # printable anywhere: no lone surrogates


# --- archives: headers tarfile would act on ----------------------------------------------

def _pax_archive(path, pax: dict) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("train/cat/a.png")
        data = bombs.png(4, 4)
        info.size = len(data)
        info.pax_headers = pax
        tar.addfile(info, io.BytesIO(data))
    return bombs.write(path, buf.getvalue())


def test_pax_headers_bounded_and_gnu_sparse_refused(tmp_path):
    ok = _pax_archive(tmp_path / "ok.tar", {"comment": "x" * 1000})
    assert read_image_folder(ok, "train", cache=False)[0].shape == (1, 4, 4, 3)
    big = _pax_archive(tmp_path / "big.tar", {"comment": "x" * (70 << 10)})
    with pytest.raises(DataError, match=r"long-name header of 71,\d{3} bytes; at most 65,536"):
        read_image_folder(big, "train", cache=False)
    sparse = _pax_archive(tmp_path / "sparse.tar", {"GNU.sparse.major": "1",
                                                    "GNU.sparse.minor": "0"})
    with pytest.raises(DataError, match="describes a GNU sparse file"):
        read_image_folder(sparse, "train", cache=False)
    with pytest.raises(DataError, match="describes a GNU sparse file"):
        archive.safe_extract(sparse, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_archive_must_be_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "a.tar.gz")
    with pytest.raises(DataError, match="a.tar.gz: is a FIFO"):
        list(archive.iter_files(str(tmp_path / "a.tar.gz")))


def test_every_error_is_a_tinynet_error():
    assert issubclass(DataError, TinynetError)
