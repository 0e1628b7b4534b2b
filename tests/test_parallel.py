"""tinynet.parallel: the CPU thread pool, the split products and the BLAS lever.

The kernels that use the pool are compared with their loop references elsewhere (with the
default thread count, every core); here the pool itself, and that a layer's results do
not depend on the thread count.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tinynet
from tinynet import parallel
from tinynet.functional import conv as conv_f
from tinynet.functional import pool as pool_f
from tinynet.layers import activation, batchnorm
from tinynet.layers.activation import relu_backward, relu_forward
from tinynet.testing import strictxp


needs_pool = pytest.mark.skipif(
    not parallel._get_blas().usable,
    reason="NumPy's BLAS threads cannot be set here, so tinynet runs everything in the caller")


@pytest.fixture
def threads():
    """Set the thread count inside a test; the previous count comes back after it."""
    before = parallel._threads
    yield parallel.set_num_threads
    parallel.set_num_threads(before if before is not None else parallel._default_threads())


def test_split_covers_the_range_in_near_equal_parts():
    for n in (1, 2, 7, 64, 1001):
        for parts in (1, 2, 3, 5):
            ranges = parallel.split(n, parts)
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [e - s for s, e in ranges]
            assert max(sizes) - min(sizes) <= 1


@needs_pool
def test_parallel_for_runs_each_range_once_on_distinct_threads(threads):
    threads(3)
    seen, lock = [], threading.Lock()

    def fn(s, e):
        with lock:
            seen.append((s, e, threading.get_ident()))

    parallel.parallel_for(np, 10, fn)
    assert sorted((s, e) for s, e, _ in seen) == [(0, 3), (3, 6), (6, 10)]
    assert len({t for *_, t in seen}) == 3
    seen.clear()
    parallel.parallel_for(np, 10, fn, grain=4)          # at most 10 // 4 = 2 ranges
    assert sorted((s, e) for s, e, _ in seen) == [(0, 5), (5, 10)]


def test_one_range_in_the_caller_for_other_array_modules_and_one_thread(threads):
    calls = []
    threads(3)
    parallel.parallel_for(strictxp, 10, lambda s, e: calls.append((s, e, threading.get_ident())))
    threads(1)
    parallel.parallel_for(np, 10, lambda s, e: calls.append((s, e, threading.get_ident())))
    me = threading.get_ident()
    assert calls == [(0, 10, me), (0, 10, me)]


@needs_pool
def test_a_failing_range_raises_in_the_caller_and_the_pool_survives(threads):
    threads(2)

    def fn(s, e):
        if s > 0:
            raise ValueError(f"range {s}-{e} failed")

    with pytest.raises(ValueError, match="range 5-10 failed"):
        parallel.parallel_for(np, 10, fn)
    out = np.zeros(10)
    parallel.parallel_for(np, 10, lambda s, e: out.__setitem__(slice(s, e), 1.0))
    assert out.sum() == 10


def test_nested_parallel_calls_run_serially_instead_of_deadlocking(threads):
    threads(2)
    out = np.zeros((4, 6))

    def inner(row):
        def fill(s, e):
            out[row, s:e] = row + 1
        return fill

    parallel.parallel_for(np, 4, lambda s, e: [parallel.parallel_for(np, 6, inner(r))
                                               for r in range(s, e)])
    np.testing.assert_array_equal(out, np.repeat(np.arange(1, 5.0)[:, None], 6, axis=1))


@pytest.mark.parametrize("shape", [(600, 40, 30), (40, 50, 700), (30, 5000, 20),
                                   (7, 3, 5), (2048, 64, 2048)],
                         ids=["rows", "cols", "inner", "small", "large"])
def test_split_matmul_matches_numpy(threads, monkeypatch, shape):
    """Each way of splitting (rows of a, columns of b, the inner axis) against NumPy;
    the grain is lowered so that every shape but the small one is really split."""
    m, k, p = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, p))
    monkeypatch.setattr(parallel, "MATMUL_GRAIN", 1 << 12)
    calls = []
    real = parallel.parallel_for

    def spy(xp, n, fn, grain=1):
        calls.append((n, min(parallel.get_num_threads(), n // max(1, grain))))
        return real(xp, n, fn, grain)

    monkeypatch.setattr(parallel, "parallel_for", spy)
    threads(3)
    parallel.matmul(a, b)
    axis = {"rows": m, "cols": p, "inner": k, "large": m}.get(
        {(600, 40, 30): "rows", (40, 50, 700): "cols", (30, 5000, 20): "inner",
         (2048, 64, 2048): "large"}.get(shape, ""))
    if axis is None:                        # (7, 3, 5): too small to split
        assert all(parts <= 1 for _, parts in calls)
    elif parallel._get_blas().usable:
        assert calls[0] == (axis, 3)
    calls.clear()
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(parallel.matmul(a.T.copy().T, b[:, ::-1]), a @ b[:, ::-1],
                               rtol=1e-12, atol=1e-12)       # strided operands
    out = np.full((m, p), np.nan)
    assert parallel.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-12)
    threads(1)
    np.testing.assert_array_equal(parallel.matmul(a, b), np.matmul(a, b))


def test_column_sums_match_numpy(threads):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((300_000, 3))
    threads(3)
    np.testing.assert_allclose(parallel.column_sums(a), a.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(parallel.column_sums(a[:5]), a[:5].sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_set_num_threads_rejects_anything_but_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        tinynet.set_num_threads(bad)


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("TINYNET_NUM_THREADS", "3")
    assert parallel._default_threads() == 3
    for bad in ("zero", "0", "-1"):
        monkeypatch.setenv("TINYNET_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="TINYNET_NUM_THREADS must be a positive"):
            parallel._default_threads()


def test_blas_is_held_at_one_thread_while_the_pool_is_on_and_given_back(threads):
    """Checked against threadpoolctl, which finds the BLAS its own way."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl (a test "
                                        "extra) reads the BLAS thread count independently")
    if not parallel._get_blas().usable:
        pytest.skip(f"tinynet cannot set this BLAS: {parallel._get_blas().why}")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas" and i["filepath"] == parallel._get_blas().path]

    threads(1)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert blas_threads() == [2]
        threads(2)
        assert blas_threads() == [1]
        assert "held at 1 thread" in parallel.info()
        threads(1)
        assert blas_threads() == [2]
        assert parallel.get_num_threads() == 1


def _cnn_step(x, w1, b1, w2, dy_seed):
    """Conv -> ReLU -> MaxPool -> Conv(stride 2) forward and backward; every output."""
    y1, c1 = conv_f.conv2d_forward(x, w1, b1, 1, 1)
    r = relu_forward(y1)
    p, pc = pool_f.maxpool2d_forward(r, 2)
    y2, c2 = conv_f.conv2d_forward(p, w2, None, 2, 1)
    dy2 = np.random.default_rng(dy_seed).standard_normal(y2.shape)
    dp, dw2, _ = conv_f.conv2d_backward(dy2, c2)
    dr = pool_f.maxpool2d_backward(dp, pc)
    dy1 = relu_backward(dr, r)
    dx, dw1, db1 = conv_f.conv2d_backward(dy1, c1)
    return [y1, r, p, y2, dp, dw2, dr, dy1, dx, dw1, db1]


def test_kernel_results_do_not_depend_on_the_thread_count(threads, monkeypatch):
    """Element-wise passes are identical; products agree to float64 rounding (a split
    product sums the same terms, a split inner axis adds two partial sums)."""
    monkeypatch.setattr(conv_f, "CHUNK_BYTES", 1 << 14)      # several chunks per thread
    monkeypatch.setattr(conv_f, "DX_CHUNK_BYTES", 1 << 12)
    for module in (parallel, pool_f, activation):
        monkeypatch.setattr(module, "ELEMENT_GRAIN", 64)
    monkeypatch.setattr(parallel, "MATMUL_GRAIN", 256)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((7, 3, 10, 10))
    w1, b1 = rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8)
    w2 = rng.standard_normal((5, 8, 3, 3))
    threads(1)
    ref = _cnn_step(x, w1, b1, w2, 4)
    for n in (2, 3):
        threads(n)
        got = _cnn_step(x, w1, b1, w2, 4)
        for i, (a, b) in enumerate(zip(got, ref)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"output {i}")
        for i in (1, 2, 6):                      # ReLU, MaxPool forward, MaxPool backward
            np.testing.assert_array_equal(got[i], ref[i])


@pytest.mark.parametrize("shape, channels_last", [((6, 5, 7, 3), True), ((6, 5, 7, 3), False),
                                                  ((128, 40), False), ((10, 40), False)])
def test_batchnorm_is_identical_at_every_thread_count(threads, monkeypatch, shape,
                                                      channels_last):
    """Each unit's partial sums are computed alike on any thread and added in order, so
    the statistics, outputs and gradients are bit-identical."""
    for module in (parallel, batchnorm):
        monkeypatch.setattr(module, "ELEMENT_GRAIN", 16)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 1
    dy = rng.standard_normal(shape).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    results = []
    for n in (1, 2, 3):
        threads(n)
        tinynet.manual_seed(0)
        bn = (tinynet.BatchNorm2d if len(shape) == 4 else tinynet.BatchNorm1d)(shape[1])
        bn.weight.data[...] = rng.standard_normal(shape[1]) if n == 1 else results[0][4]
        y = bn(x)
        dx = bn.backward(dy)
        results.append((y, dx, bn.weight.grad, bn.bias.grad, bn.weight.data.copy(),
                        bn.running_mean, bn.running_var))
    for got in results[1:]:
        for i, (a, b) in enumerate(zip(got, results[0])):
            np.testing.assert_array_equal(a, b, err_msg=f"result {i}")


@needs_pool
@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"),
                    reason="needs signal.pthread_kill (POSIX) to interrupt the waiting caller")
def test_a_call_interrupted_while_waiting_does_not_leak_into_the_next(threads):
    """Ctrl-C while the caller waits for a worker: the worker's late result must not be
    taken for the next call's, or that call would return before its ranges are done."""
    import signal
    import time
    threads(2)
    main = threading.get_ident()

    def slow(s, e):
        if s > 0:
            time.sleep(0.3)

    finished = []

    def slow_marked(s, e):
        slow(s, e)
        finished.append(s)

    timer = threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel.parallel_for(np, 2, slow_marked)
    finally:
        timer.cancel()
        timer.join()
    assert sorted(finished) == [0, 1]      # the caller waited for the worker's range
    out = np.zeros(2)

    def mark(s, e):
        if s > 0:
            time.sleep(0.3)
        out[s:e] = 1

    parallel.parallel_for(np, 2, mark)
    assert out.tolist() == [1.0, 1.0]


@needs_pool
def test_thread_count_changed_by_another_thread_just_before_a_call(threads):
    """set_num_threads(2) from another thread between a call's start and its taking the
    lock: the call must use the pool it gets (it used to hand 4 ranges to 1 worker and
    wait forever)."""
    threads(4)
    real = parallel._lock

    class Interleaved:
        fired = False

        def acquire(self, blocking=True):
            if not Interleaved.fired:
                Interleaved.fired = True
                t = threading.Thread(target=parallel.set_num_threads, args=(2,))
                t.start()
                t.join()
            return real.acquire(blocking)

        def release(self):
            real.release()

        def __enter__(self):
            real.acquire()
            return self

        def __exit__(self, *exc):
            real.release()

    out = np.zeros(4)
    done = threading.Event()

    def call():
        parallel.parallel_for(np, 4, lambda s, e: out.__setitem__(slice(s, e), 1.0))
        done.set()

    parallel._lock = Interleaved()
    try:
        threading.Thread(target=call, daemon=True).start()
        finished = done.wait(10)
    finally:
        if done.is_set():
            parallel._lock = real
        else:   # the hung call holds the real lock: let the other tests go on without it
            parallel._lock, parallel._pool = threading.Lock(), None
    assert finished, "parallel_for hung after the thread count changed"
    assert out.tolist() == [1.0] * 4


def test_set_num_threads_inside_a_range_is_refused(threads):
    threads(2)
    errors = []

    def fn(s, e):
        try:
            parallel.set_num_threads(1)
        except RuntimeError as exc:
            errors.append(str(exc))

    done = threading.Event()
    caller = threading.Thread(target=lambda: (parallel.parallel_for(np, 4, fn), done.set()),
                              daemon=True)
    caller.start()
    if not done.wait(10):   # the stuck call holds the lock: let the other tests go on
        parallel._lock, parallel._pool = threading.Lock(), None
        pytest.fail("set_num_threads inside a range deadlocked")
    assert errors and all("inside a parallel range" in e for e in errors)


def test_empty_batches_give_empty_or_zero_results(threads):
    threads(2)
    x, w, b = np.zeros((0, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.ones(4)
    y, cache = conv_f.conv2d_forward(x, w, b, 1, 1)
    dx, dw, db = conv_f.conv2d_backward(np.zeros(y.shape), cache)
    assert y.shape == (0, 4, 5, 5) and dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    np.testing.assert_array_equal(parallel.matmul(np.ones((3, 0)), np.ones((0, 4))), 0)
