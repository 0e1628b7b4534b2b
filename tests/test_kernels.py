"""The two kernel sets: reference and fast agree on every layer and study model; the
switch; ``.grad`` as PyTorch; no trace left on NumPy's BLAS threads."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

import tinynet
from tinynet import functional, kernels, models, parity
from tinynet.functional import fast

TOL = 1e-12          # relative: max |reference - fast| / max |reference|, float64


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(a).max() if a.size else 0.0
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


def _run(model, x, target, loss_fn, kind: str) -> dict:
    """One forward and backward on ``kind``'s kernels: every output, gradient, buffer."""
    m = copy.deepcopy(model)
    with tinynet.use_kernels(kind):
        y = m(x)
        loss = loss_fn(y, target)
        dx = m.backward(loss_fn.backward())
    out = {"output": y, "loss": np.array(loss), "dL/dx": dx}
    out.update({f"grad {k}": p.grad for k, p in m.named_parameters()})
    out.update({f"buffer {k}": b for k, b in m.named_buffers() if b is not None})
    return out


def _assert_same(model, x, target, loss_fn, label: str) -> None:
    tinynet.manual_seed(7)               # the same dropout masks drawn on both runs
    ref = _run(model, x, target, loss_fn, "reference")
    tinynet.manual_seed(7)
    fst = _run(model, x, target, loss_fn, "fast")
    assert list(ref) == list(fst)
    # `not <=` so that a NaN or inf difference is flagged too (nan > TOL is False)
    bad = {k: _rel(ref[k], fst[k]) for k in ref if not _rel(ref[k], fst[k]) <= TOL}
    assert not bad, f"{label}: reference and fast kernels differ: {bad}"


@pytest.mark.parametrize("case", parity.layer_cases(), ids=lambda c: c.name)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_layer_configuration_agrees(case, mode):
    tinynet.manual_seed(0)
    model = case.build().double()
    model.train(mode == "train")
    x, target = case.batch()
    _assert_same(model, x, target, tinynet.MSELoss(), case.name)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_study_model_agrees(name, mode):
    tinynet.manual_seed(0)
    model = models.build(name).double().train(mode == "train")
    rng = np.random.default_rng(1)
    x = rng.random((8,) + models.INPUT_SHAPES[name])
    target = rng.integers(0, 10, 8)
    _assert_same(model, x, target, tinynet.CrossEntropyLoss(), name)


def test_dropout_agrees_with_the_same_mask():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Conv2d(2, 4, 3), tinynet.ReLU(), tinynet.Dropout2d(0.3),
                               tinynet.Flatten(), tinynet.Dropout(0.4),
                               tinynet.Linear(36, 3)).double()
    rng = np.random.default_rng(2)
    x, target = rng.standard_normal((5, 2, 5, 5)), rng.integers(0, 3, 5)
    results = []
    for kind in ("reference", "fast"):
        tinynet.manual_seed(7)             # the same masks drawn on both runs
        results.append(_run(model, x, target, tinynet.CrossEntropyLoss(), kind))
    for key in results[0]:
        assert _rel(results[0][key], results[1][key]) <= TOL, key


def test_every_kernel_exists_in_both_sets_and_fast_ones_are_distinct():
    for name in functional.KERNELS:
        assert callable(getattr(functional, name)) and callable(getattr(fast, name)), name
    replaced = {n for n in functional.KERNELS if getattr(fast, n) is not getattr(functional, n)}
    assert {"conv2d_forward", "conv2d_backward", "maxpool2d_forward", "batch_norm_forward",
            "norm_backward", "sigmoid_forward", "cross_entropy_forward"} <= replaced



# ----------------------------------------------------------------------------- the switch
def test_switch_selects_the_namespace_and_restores():
    assert tinynet.get_kernels() == "fast"
    with tinynet.reference_kernels():
        assert tinynet.get_kernels() == "reference" and kernels.ops() is functional
        with tinynet.use_kernels("fast"):
            assert kernels.ops() is fast
        assert tinynet.get_kernels() == "reference"
    assert tinynet.get_kernels() == "fast"
    tinynet.set_kernels("reference")
    try:
        assert kernels.ops() is functional
    finally:
        tinynet.set_kernels("fast")
    with pytest.raises(ValueError, match="'reference', 'fast'"):
        tinynet.set_kernels("quick")


def test_context_is_local_to_its_thread():
    seen = []
    with tinynet.reference_kernels():
        t = threading.Thread(target=lambda: seen.append(tinynet.get_kernels()))
        t.start()
        t.join()
    assert seen == ["fast"]


def test_backward_runs_the_set_its_forward_ran_on():
    """A switch between forward and backward cannot hand one set's cache to the other."""
    layer = tinynet.Conv2d(2, 3, 3, padding=1).double()
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5))
    with tinynet.reference_kernels():
        y = layer(x)
    dx = layer.backward(np.ones_like(y))           # fast in force now
    g_ref = layer.weight.grad.copy()
    layer.zero_grad()
    layer(x)
    dx_fast = layer.backward(np.ones_like(y))
    assert _rel(dx, dx_fast) <= TOL and _rel(g_ref, layer.weight.grad) <= TOL


def test_trace_names_the_kernels():
    model = models.build("base")
    loss_fn = tinynet.CrossEntropyLoss()
    for kind in ("reference", "fast"):
        with tinynet.use_kernels(kind), tinynet.trace(model) as tr:
            loss_fn(model(np.zeros((2, 1, 28, 28), np.float32)), np.array([0, 1]))
            model.backward(loss_fn.backward())
        assert tr.table().splitlines()[0].startswith(f"{kind} kernels")
        assert {r["kernels"] for r in tr.rows()} == {kind}


# ----------------------------------------------------------------------------- .grad
def test_grad_is_a_new_array_after_zero_grad_as_pytorch():
    tinynet.manual_seed(0)
    model = models.build("bn")
    opt = tinynet.SGD(model.parameters(), lr=0.1)
    loss_fn = tinynet.CrossEntropyLoss()
    rng = np.random.default_rng(4)
    kept = []
    for _ in range(3):
        x = rng.random((16, 1, 28, 28), dtype=np.float32)
        t = rng.integers(0, 10, 16)
        opt.zero_grad()
        loss_fn(model(x), t)
        model.backward(loss_fn.backward())
        kept.append([p.grad for p in model.parameters()])
        copies = [g.copy() for g in kept[-1]]
        opt.step()
        kept[-1] = (kept[-1], copies)
    for step, (grads, copies) in enumerate(kept):
        for g, c in zip(grads, copies, strict=True):
            np.testing.assert_array_equal(g, c, err_msg=f"step {step}: a kept grad changed")
    for a, b in ((0, 1), (1, 2)):       # different batches: different gradients
        assert not np.array_equal(kept[a][0][0], kept[b][0][0])
        assert kept[a][0][0] is not kept[b][0][0]


def test_zero_grad_set_to_none_false_reuses_the_array():
    layer = tinynet.Linear(3, 2)
    x = np.ones((4, 3), np.float32)
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    g = layer.weight.grad
    layer.zero_grad(set_to_none=False)
    assert layer.weight.grad is g and not g.any()
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    assert layer.weight.grad is g and g.any()
    layer.zero_grad()
    assert layer.weight.grad is None


def test_a_mis_shaped_gradient_is_refused():
    p = tinynet.Parameter(np.zeros((3, 2), np.float32))
    with pytest.raises(tinynet.ShapeError, match=r"\(2, 3\).*\(3, 2\)"):
        p.accumulate(np.zeros((2, 3), np.float32))


# ----------------------------------------------------------------------------- threads
def test_no_tinynet_call_changes_numpys_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl reads them")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"]

    before = blas_threads()
    old = tinynet.get_num_threads()
    try:
        for n in (2, 1):
            tinynet.set_num_threads(n)
            tinynet.manual_seed(0)
            model = models.build("convbn")
            opt = tinynet.SGD(model.parameters(), lr=0.01)
            loss_fn = tinynet.CrossEntropyLoss()
            x = np.random.default_rng(5).random((16, 1, 28, 28), dtype=np.float32)
            loss_fn(model(x), np.arange(16) % 10)
            model.backward(loss_fn.backward())
            opt.step()
            assert blas_threads() == before, f"after a step with {n} tinynet thread(s)"
    finally:
        tinynet.set_num_threads(old)


def test_threads_give_the_same_results():
    old = tinynet.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            tinynet.set_num_threads(n)
            tinynet.manual_seed(0)
            model = models.build("convbn").double()
            x = np.random.default_rng(6).random((16, 1, 28, 28))
            results.append(_run(model, x, np.arange(16) % 10, tinynet.CrossEntropyLoss(),
                                "fast"))
    finally:
        tinynet.set_num_threads(old)
    for other in results[1:]:
        for key in results[0]:
            assert _rel(results[0][key], other[key]) <= TOL, key


def test_an_mlp_runs_the_one_thread_code_and_a_cnn_uses_the_threads(monkeypatch):
    """At the default thread count an MLP never enters a threaded region (no hand-off, no
    BLAS limit): the default and one thread run the same code. A CNN hands work out."""
    pytest.importorskip("threadpoolctl", reason="the threads need threadpoolctl")
    from tinynet.functional.fast import threads
    handed, limited = [], []
    real_split = threads._split
    monkeypatch.setattr(threads, "_split", lambda n, parts: handed.append(n) or
                        real_split(n, parts))
    controller = threads._blas_controller()
    real_limit = type(controller).limit
    monkeypatch.setattr(type(controller), "limit",
                        lambda self, **kw: limited.append(kw) or real_limit(self, **kw))
    old = tinynet.get_num_threads()
    tinynet.set_num_threads(2)
    try:
        for name, expect in (("base", False), ("bn", False), ("simplecnn", True)):
            handed.clear()
            limited.clear()
            model = models.build(name)
            loss_fn = tinynet.CrossEntropyLoss()
            x = np.random.default_rng(7).random((64, 1, 28, 28), dtype=np.float32)
            loss_fn(model(x), np.arange(64) % 10)
            model.backward(loss_fn.backward(), input_grad=False)
            assert bool(handed) is expect and bool(limited) is expect, name
    finally:
        tinynet.set_num_threads(old)



@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_thread_count_in_the_environment_is_a_tinynet_error(monkeypatch, value):
    """Library users can catch it (ArgumentError, still a ValueError); it names the
    variable, the value and what is expected."""
    from tinynet.functional.fast import threads
    monkeypatch.setattr(threads, "_threads", None)   # not read yet in this process
    monkeypatch.setenv("TINYNET_NUM_THREADS", value)
    with pytest.raises(tinynet.errors.ArgumentError) as e:
        tinynet.get_num_threads()
    assert isinstance(e.value, tinynet.TinynetError) and isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"environment variable TINYNET_NUM_THREADS={value!r}: "
                                   f"expected a whole number >= 1"), e.value
    monkeypatch.setenv("TINYNET_NUM_THREADS", " 3 ")
    assert threads.threads_from_env() == 3


# ----------------------------------------------------------------------------- one code path
@pytest.mark.parametrize("case", parity.layer_cases(), ids=lambda c: c.name)
def test_every_layer_configuration_runs_unchanged_on_another_array_module(case, device_xp,
                                                                         kernels):
    """Each layer case on NumPy, on the strict stand-in for CuPy (arrays that refuse any
    implicit host conversion) and on CuPy when present: the same numbers."""
    xp = device_xp
    tinynet.manual_seed(0)
    model = case.build().double().eval()
    x, target = case.batch()
    host = _run(model, x, target, tinynet.MSELoss(), kernels)
    device_model = xp.to(copy.deepcopy(model))
    with tinynet.use_kernels(kernels):
        y = device_model(xp.asarray(x))
        loss_fn = tinynet.MSELoss()
        loss_fn(y, xp.asarray(target))
        dx = device_model.backward(loss_fn.backward())
    assert _rel(host["output"], xp.asnumpy(y)) <= TOL
    assert _rel(host["dL/dx"], xp.asnumpy(dx)) <= TOL
    for key, p in device_model.named_parameters():
        assert _rel(host[f"grad {key}"], xp.asnumpy(p.grad)) <= TOL, key


@pytest.mark.parametrize("case", __import__("tinynet.parity.losses", fromlist=["x"])
                         .loss_cases(), ids=lambda c: c.name)
def test_every_loss_runs_unchanged_on_another_array_module(case, device_xp, kernels):
    xp = device_xp
    from tinynet import losses
    x, t = case.arrays()
    kwargs = {k: np.asarray(v) if isinstance(v, tuple) else v for k, v in case.kwargs.items()}
    results = []
    for on_device, to in ((False, lambda a: a), (True, xp.asarray)):
        loss_fn = getattr(losses, case.loss)(**{k: to(v) if isinstance(v, np.ndarray) else v
                                               for k, v in kwargs.items()})
        value = loss_fn(to(x), to(t))
        grad = np.ones(np.shape(value)) if np.ndim(value) else None
        dx = loss_fn.backward(None if grad is None else to(grad))
        if not on_device:
            assert isinstance(dx, np.ndarray), type(dx)
            assert isinstance(value, (float, np.ndarray)), type(value)
            results.append((np.asarray(value), dx))
            continue
        # on the device backend every array stays there: none is a host numpy.ndarray
        assert not isinstance(dx, np.ndarray) and isinstance(dx, xp.xp.ndarray), type(dx)
        if isinstance(value, float):     # a reduced loss is a Python float, as on NumPy
            results.append((np.asarray(value), xp.asnumpy(dx)))
        else:
            assert not isinstance(value, np.ndarray) and isinstance(value, xp.xp.ndarray), \
                type(value)
            results.append((xp.asnumpy(value), xp.asnumpy(dx)))
    assert _rel(results[0][0], results[1][0]) <= TOL
    assert _rel(results[0][1], results[1][1]) <= TOL
