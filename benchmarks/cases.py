"""What the suite times: per-layer forward/backward/both and whole training steps.

Every case builds, on demand, a tinynet callable and its PyTorch twin doing the same
work on the same numbers (the twin's weights are copied with ``tinynet.parity.to_torch``):

* layer cases (``layer/<name>/<fwd|bwd|both>``): ``fwd`` is ``y = layer(x)`` (PyTorch
  with autograd on, as in training: it records the graph as tinynet keeps its cache);
  ``bwd`` is one backward from a fixed ``dy`` after one forward (grads reset to None
  first on both sides, dx computed on both sides: the input requires grad in torch);
  ``both`` is forward then backward. Each input has the memory layout it has inside the
  models: tinynet's convolutions return channels-last arrays (an ``(N, C, H, W)`` view),
  so the layers after a convolution get such a view, torch gets its contiguous NCHW.
* step cases (``step/<model>/<batch>``): the training step of ``tinynet.train.fit``::

      y = model(x); loss = loss_fn(y, t); optimizer.zero_grad()
      model.backward(loss_fn.backward(), input_grad=False); optimizer.step()

  against PyTorch's standard one (the input does not require grad)::

      opt.zero_grad(); loss = crit(model(x), t); loss.backward(); opt.step(); loss.item()

  (``.item()`` because tinynet's loss is a Python float; on the GPU both sides sync
  there). SGD with lr 0.01, no momentum, random inputs in [0, 1) and random labels.
  The GEMM floor of a step is its matrix products alone, in the shapes and operand
  layouts tinynet uses (forward, dW and, except for the first layer, dx of every Linear
  and Conv2d as im2col products), each written into a preallocated output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy

MODEL_NAMES = ("base", "bn", "simplecnn", "convbn")
MODEL_TITLES = {"base": "base MLP", "bn": "BN MLP", "simplecnn": "SimpleCNN",
                "convbn": "ConvBN"}
STEP_BATCHES = (64, 256, 1024)

# Targets: the most tinynet/torch may be, per device; "floor" is step / GEMM floor.
TARGETS = {
    "cpu": {"base": {"ratio": 1.0, "floor": 1.3}, "bn": {"ratio": 1.1},
            "simplecnn": {"ratio": 1.25}, "convbn": {"ratio": 1.25}},
    "cuda": {"base": {"ratio": 1.2}, "bn": {"ratio": 1.2},
             "simplecnn": {"ratio": 2.0}, "convbn": {"ratio": 2.0}},
}


@dataclass
class Case:
    """One timed comparison. ``build(device)`` returns a :class:`Built`."""

    name: str
    group: str                      # "layer" or "step"
    title: str
    batch: int
    build: Callable[[str], Built]
    model: str = ""                 # step cases: the key of TARGETS


@dataclass
class Built:
    tinynet: Callable[[], Any]
    torch: Callable[[], Any]
    gemm: Callable[[], Any] | None = None        # tinynet's BLAS, products alone
    gemm_torch: Callable[[], Any] | None = None  # torch's BLAS, same products
    flops: int = 0                               # of the matrix products
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def _torch():
    import torch
    return torch


def require_torch() -> None:
    """Exit with one line saying how to get PyTorch when it is not installed (every
    benchmark command compares with it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit("the benchmarks compare with PyTorch, which is not installed: "
                         "pip install torch") from None


def _xp(device: str):
    if device == "cuda":
        from tinynet.backend import cupy_module
        return cupy_module()
    return numpy


def _tdev(device: str) -> str:
    return "cuda" if device == "cuda" else "cpu"


def _channels_last(a, xp):
    """The ``(N, C, H, W)`` view of a channels-last copy of ``a`` (as a Conv2d returns)."""
    return xp.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _like(values: numpy.ndarray, ref, xp):
    """``values`` as an array with ``ref``'s memory layout (and module)."""
    out = xp.empty_like(ref)
    out[...] = xp.asarray(values)
    return out


def _twin(module, device: str):
    from tinynet.parity import to_torch
    twin = to_torch(module)
    return twin.to(_tdev(device))


def _reset_grads(params) -> None:
    for p in params:
        p.grad = None


# --------------------------------------------------------------------------- layers
def _layer_case(name: str, title: str, make: Callable[[], Any], in_shape: tuple,
                mode: str, channels_last_input: bool = False, seed: int = 0) -> Case:
    def build(device: str) -> Built:
        torch = _torch()
        xp = _xp(device)
        rng = numpy.random.default_rng(seed)
        layer = make()
        has_params = next(layer.parameters(), None) is not None
        if device == "cuda":
            layer.to("cuda")
        layer.train()
        twin = _twin(layer, device)
        twin.train()
        host = rng.standard_normal(in_shape).astype(numpy.float32)
        x = xp.asarray(host)
        if channels_last_input:
            x = _channels_last(x, xp)
        xt = torch.from_numpy(host.copy()).to(_tdev(device)).requires_grad_(True)
        y = layer(x)
        dy_host = rng.standard_normal(y.shape).astype(numpy.float32)
        dy = _like(dy_host, y, xp)
        dyt = torch.from_numpy(dy_host).to(_tdev(device))
        params = list(layer.parameters())

        def tn_fwd():
            return layer(x)

        def tn_bwd():
            _reset_grads(params)
            return layer.backward(dy)

        def tn_both():
            _reset_grads(params)
            layer(x)
            return layer.backward(dy)

        yt = twin(xt)

        def th_fwd():
            return twin(xt)

        def th_bwd():
            twin.zero_grad(set_to_none=True)
            xt.grad = None
            yt.backward(dyt, retain_graph=True)

        def th_both():
            twin.zero_grad(set_to_none=True)
            xt.grad = None
            twin(xt).backward(dyt)

        fns = {"fwd": (tn_fwd, th_fwd), "bwd": (tn_bwd, th_bwd), "both": (tn_both, th_both)}
        tn, th = fns[mode]
        return Built(tn, th, extra={"input": list(in_shape), "has_params": has_params})
    return Case(f"layer/{name}/{mode}", "layer", f"{title} {mode}", in_shape[0], build)


def _loss_case(mode: str, batch: int = 256, classes: int = 10) -> Case:
    def build(device: str) -> Built:
        torch = _torch()
        xp = _xp(device)
        from tinynet import CrossEntropyLoss
        rng = numpy.random.default_rng(1)
        z_host = rng.standard_normal((batch, classes)).astype(numpy.float32)
        t_host = rng.integers(0, classes, batch)
        z, t = xp.asarray(z_host), xp.asarray(t_host)
        zt = torch.from_numpy(z_host).to(_tdev(device)).requires_grad_(True)
        tt = torch.from_numpy(t_host).to(_tdev(device))
        loss_fn, crit = CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
        loss_fn(z, t)
        lt = crit(zt, tt)

        def tn_fwd():
            return loss_fn(z, t)

        def tn_bwd():
            return loss_fn.backward()

        def tn_both():
            loss_fn(z, t)
            return loss_fn.backward()

        def th_fwd():
            return crit(zt, tt).item()

        def th_bwd():
            zt.grad = None
            lt.backward(retain_graph=True)

        def th_both():
            zt.grad = None
            loss = crit(zt, tt)
            loss.backward()
            return loss.item()

        fns = {"fwd": (tn_fwd, th_fwd), "bwd": (tn_bwd, th_bwd), "both": (tn_both, th_both)}
        tn, th = fns[mode]
        return Built(tn, th, extra={"input": [batch, classes]})
    return Case(f"layer/cross_entropy/{mode}", "layer", f"CrossEntropyLoss {mode}", batch,
                build)


def layer_cases(quick: bool = False) -> list[Case]:
    """Per-layer cases at the shapes the study models use (batch 64 for images)."""
    import tinynet as tn
    from tinynet.layers import BatchNorm1d, BatchNorm2d, Conv2d, MaxPool2d
    specs = [
        ("linear_784x512", "Linear(784, 512) N=256", lambda: tn.Linear(784, 512),
         (256, 784), False),
        ("conv_simplecnn1", "Conv2d(1, 32, 3, p1) 64x1x28x28",
         lambda: Conv2d(1, 32, 3, 1, 1), (64, 1, 28, 28), False),
        ("conv_simplecnn2", "Conv2d(32, 64, 3, p1) 64x32x14x14",
         lambda: Conv2d(32, 64, 3, 1, 1), (64, 32, 14, 14), True),
        ("conv_convbn3", "Conv2d(64, 128, 3, p1) 64x64x7x7",
         lambda: Conv2d(64, 128, 3, 1, 1), (64, 64, 7, 7), True),
        ("conv_vgg", "Conv2d(64, 64, 3, p1) 64x64x32x32 (VGG-style)",
         lambda: Conv2d(64, 64, 3, 1, 1), (64, 64, 32, 32), True),
        ("maxpool", "MaxPool2d(2) 64x32x28x28", lambda: MaxPool2d(2, 2),
         (64, 32, 28, 28), True),
        ("batchnorm1d", "BatchNorm1d(512) N=256", lambda: BatchNorm1d(512), (256, 512), False),
        ("batchnorm2d", "BatchNorm2d(32) 64x32x28x28", lambda: BatchNorm2d(32),
         (64, 32, 28, 28), True),
        ("relu", "ReLU 256x512", lambda: tn.ReLU(), (256, 512), False),
        ("relu_conv", "ReLU 64x32x28x28", lambda: tn.ReLU(), (64, 32, 28, 28), True),
        ("tanh", "Tanh 256x512", lambda: tn.Tanh(), (256, 512), False),
        ("sigmoid", "Sigmoid 256x512", lambda: tn.Sigmoid(), (256, 512), False),
        ("leaky_relu", "LeakyReLU 256x512", lambda: tn.LeakyReLU(), (256, 512), False),
        ("elu", "ELU 256x512", lambda: tn.ELU(), (256, 512), False),
    ]
    if quick:
        keep = {"linear_784x512", "conv_simplecnn2", "maxpool", "batchnorm2d", "relu"}
        specs = [s for s in specs if s[0] in keep]
    modes = ("both",) if quick else ("fwd", "bwd", "both")
    cases = []
    for name, title, make, shape, cl in specs:
        for mode in modes:
            cases.append(_layer_case(name, title, make, shape, mode, cl))
    for mode in modes:
        cases.append(_loss_case(mode))
    return cases


# --------------------------------------------------------------------------- steps
def step_products(model, x_shape: tuple) -> list[tuple[str, tuple, tuple, tuple]]:
    """The matrix products of one training step of ``model`` on a batch of ``x_shape``.

    Returns ``(what, a_shape, b_shape, layout)`` per product, ``a @ b`` with a ``(M, K)``
    and b ``(K, N)``; ``layout`` says which operand is a transposed view, as in tinynet's
    kernels: Linear forward ``x @ W.T``, dW ``dy.T @ x``, dx ``dy @ W``; Conv2d the same
    with ``X_col (N*OH*OW, KH*KW*C)`` and ``W_mat (O, KH*KW*C)``. The first layer with
    parameters has no dx product (``backward(dy, input_grad=False)``).
    """
    from tinynet.layers import Conv2d, Linear
    x = numpy.zeros(x_shape, dtype=numpy.float32)
    prods = []
    first = True
    for layer in model:
        if isinstance(layer, Linear):
            n, din = x.shape
            dout = layer.out_features
            prods.append(("fwd", (n, din), (din, dout), ("N", "T")))
            prods.append(("dW", (dout, n), (n, din), ("T", "N")))
            if not first:
                prods.append(("dx", (n, dout), (dout, din), ("N", "N")))
            first = False
        elif isinstance(layer, Conv2d):
            n, _c, _h, _w = x.shape
            _, o, oh, ow = layer.output_shape(x.shape)
            k = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
            m = n * oh * ow
            prods.append(("fwd", (m, k), (k, o), ("N", "T")))
            prods.append(("dW", (o, m), (m, k), ("T", "N")))
            if not first:
                prods.append(("dx", (m, o), (o, k), ("N", "N")))
            first = False
        x = layer(x)
    return prods


def _gemm_callables(prods, device: str, seed: int = 2):
    """(tinynet-BLAS fn, torch fn, FLOPs) running ``prods`` with preallocated outputs.

    tinynet's side runs each product as one ``xp.matmul`` call, as its layers do.
    """
    torch = _torch()
    xp = _xp(device)
    rng = numpy.random.default_rng(seed)
    np_ops, th_ops, flops = [], [], 0
    for _what, (m, k), (_k, n), (la, lb) in prods:
        a_host = rng.standard_normal((k, m) if la == "T" else (m, k)).astype(numpy.float32)
        b_host = rng.standard_normal((n, k) if lb == "T" else (k, n)).astype(numpy.float32)
        a, b = xp.asarray(a_host), xp.asarray(b_host)
        a = a.T if la == "T" else a
        b = b.T if lb == "T" else b
        out = xp.empty((m, n), dtype=xp.float32)
        np_ops.append((a, b, out))
        at = torch.from_numpy(a_host).to(_tdev(device))
        bt = torch.from_numpy(b_host).to(_tdev(device))
        at = at.T if la == "T" else at
        bt = bt.T if lb == "T" else bt
        th_ops.append((at, bt, torch.empty((m, n), dtype=torch.float32, device=_tdev(device))))
        flops += 2 * m * k * n

    def run_np():
        for a, b, out in np_ops:
            xp.matmul(a, b, out=out)

    def run_torch():
        for a, b, out in th_ops:
            torch.mm(a, b, out=out)
    return run_np, run_torch, flops


def _step_case(model_name: str, batch: int, lr: float = 0.01, seed: int = 0) -> Case:
    def build(device: str) -> Built:
        torch = _torch()
        xp = _xp(device)
        import tinynet
        from tinynet import models
        tinynet.manual_seed(seed)
        model = models.build(model_name)
        rng = numpy.random.default_rng(seed)
        in_shape = (batch,) + models.INPUT_SHAPES[model_name]
        prods = step_products(model, in_shape)
        model.train()
        if device == "cuda":
            model.to("cuda")
        twin = _twin(model, device)
        twin.train()
        x_host = rng.random(in_shape, dtype=numpy.float32)
        t_host = rng.integers(0, 10, batch)
        x, t = xp.asarray(x_host), xp.asarray(t_host)
        xt = torch.from_numpy(x_host).to(_tdev(device))
        tt = torch.from_numpy(t_host).to(_tdev(device))
        loss_fn = tinynet.CrossEntropyLoss()
        opt = tinynet.SGD(model.parameters(), lr=lr)
        crit = torch.nn.CrossEntropyLoss()
        topt = torch.optim.SGD(twin.parameters(), lr=lr)

        def tn_step():
            y = model(x)
            loss = loss_fn(y, t)
            opt.zero_grad()
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            return loss

        def th_step():
            topt.zero_grad()
            loss = crit(twin(xt), tt)
            loss.backward()
            topt.step()
            return loss.item()

        gemm, gemm_torch, flops = _gemm_callables(prods, device)
        return Built(tn_step, th_step, gemm, gemm_torch, flops,
                     extra={"input": list(in_shape), "products": [
                         [w, list(a), list(b)] for w, a, b, _ in prods]})
    return Case(f"step/{model_name}/{batch}", "step", f"{MODEL_TITLES[model_name]} step",
                batch, build, model=model_name)


def step_cases(quick: bool = False, batches: tuple = STEP_BATCHES,
               models: tuple = MODEL_NAMES) -> list[Case]:
    if quick:
        batches = tuple(b for b in batches if b <= 256)[:1] or batches[:1]
    return [_step_case(m, b) for m in models for b in batches]


def all_cases(quick: bool = False, batches: tuple = STEP_BATCHES) -> list[Case]:
    return step_cases(quick, batches) + layer_cases(quick)


def select(cases: list[Case], only: list[str] | None) -> list[Case]:
    """Cases whose name contains any of the ``only`` substrings (all when None)."""
    if not only:
        return cases
    return [c for c in cases if any(o in c.name for o in only)]
