"""``python -m benchmarks.profile MODEL [BATCH]``: where a tinynet training step spends its time.

Runs the training step of ``fit`` layer by layer and times each layer's forward and
backward, the loss and the optimizer step separately (on the GPU with a device sync
around each), and prints per part the median over ``--steps`` steps, its share of the
step, and for Linear and Conv2d the GFLOP/s of the layer's matrix products, and the
minimum (on a busy machine the minimum is the better estimate of the cost). The parts
add up to about the whole step (the sum is printed beside the step timed whole).

Example::

    python -m benchmarks.profile simplecnn 64 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy

import benchmarks  # noqa: F401 -- CUPY_TF32=0 before tinynet imports cupy


def _layer_flops(layer, x_shape: tuple) -> tuple[int, int]:
    """(forward FLOPs, backward FLOPs with dx) of a Linear or Conv2d's products, else (0, 0)."""
    from tinynet.layers import Conv2d, Linear
    if isinstance(layer, Linear):
        f = 2 * x_shape[0] * layer.in_features * layer.out_features
        return f, 2 * f
    if isinstance(layer, Conv2d):
        _, o, oh, ow = layer.output_shape(x_shape)
        f = 2 * x_shape[0] * oh * ow * o * layer.in_channels * \
            layer.kernel_size[0] * layer.kernel_size[1]
        return f, 2 * f
    return 0, 0


def profile_step(model_name: str, batch: int, steps: int = 20, device: str = "cpu",
                 lr: float = 0.01, seed: int = 0) -> dict:
    """Per-part median seconds of ``steps`` training steps (after 3 warm-up steps)."""
    import tinynet
    from tinynet import models
    from tinynet.functional.fast import threads
    from tinynet.module import first_with_parameters

    from .timing import make_sync
    sync = make_sync(device)
    tinynet.manual_seed(seed)
    model = models.build(model_name)
    if device == "cuda":
        model.to("cuda")
    model.train()
    rng = numpy.random.default_rng(seed)
    shape = (batch,) + models.INPUT_SHAPES[model_name]
    xp = numpy
    if device == "cuda":
        from tinynet.backend import cupy_module
        xp = cupy_module()
    x = xp.asarray(rng.random(shape, dtype=numpy.float32))
    t = xp.asarray(rng.integers(0, 10, batch))
    loss_fn = tinynet.CrossEntropyLoss()
    opt = tinynet.SGD(model.parameters(), lr=lr)
    layers = list(model)
    first = first_with_parameters(layers)
    parts: dict[str, list] = {}
    shapes: dict[int, tuple] = {}

    def timed(key: str, fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        parts.setdefault(key, []).append(time.perf_counter() - t0)
        return out

    def step():
        h = x
        with threads.region(model):          # as Sequential.forward runs its layers
            for i, layer in enumerate(layers):
                shapes[i] = tuple(h.shape)
                h = timed(f"{i} fwd", lambda layer=layer, h=h: layer(h))
        timed("loss", lambda: loss_fn(h, t))
        g = timed("loss bwd", loss_fn.backward)
        timed("zero_grad", opt.zero_grad)
        with threads.region(model):
            for i in range(len(layers) - 1, first - 1, -1):
                g = timed(f"{i} bwd",
                          lambda i=i, g=g: layers[i].backward(g, input_grad=i != first))
        timed("sgd", opt.step)

    def whole():
        y = model(x)
        loss_fn(y, t)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()

    for _ in range(3):
        step()
    parts.clear()
    for _ in range(steps):
        step()
    wholes = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        whole()
        sync()
        wholes.append(time.perf_counter() - t0)
    rows = []
    for key, ts in parts.items():
        med = statistics.median(ts)
        name, flops = key, 0
        idx, _, kind = key.partition(" ")
        if idx.isdigit():
            layer = layers[int(idx)]
            name = f"{idx} {type(layer).__name__} {kind}"
            ff, fb = _layer_flops(layer, shapes[int(idx)])
            flops = ff if kind == "fwd" else (fb if int(idx) != first else fb // 2)
        rows.append({"part": name, "seconds": med, "min": min(ts), "flops": flops})
    return {"model": model_name, "batch": batch, "rows": rows,
            "sum": sum(r["seconds"] for r in rows), "step": statistics.median(wholes),
            "step_min": min(wholes), "sum_min": sum(r["min"] for r in rows)}


def format_profile(result: dict) -> str:
    lines = [(f"{result['model']} step at batch {result['batch']}: "
              f"{result['step'] * 1e3:.2f} ms timed whole, {result['sum'] * 1e3:.2f} ms as "
              f"the sum of its parts (medians; minima {result['step_min'] * 1e3:.2f} and "
              f"{result['sum_min'] * 1e3:.2f} ms)"),
             f"{'part':<24} {'median ms':>9} {'share':>6} {'GFLOP/s':>8} {'min ms':>9}"]
    for r in sorted(result["rows"], key=lambda r: -r["seconds"]):
        gf = f"{r['flops'] / r['seconds'] / 1e9:8.1f}" if r["flops"] else ""
        lines.append(f"{r['part']:<24} {r['seconds'] * 1e3:9.3f} "
                     f"{100 * r['seconds'] / result['sum']:5.1f}% {gf:>8} {r['min'] * 1e3:9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                description="per-layer time of a tinynet training step")
    p.add_argument("model", choices=("base", "bn", "simplecnn", "convbn", "wider", "deeper"))
    p.add_argument("batch", nargs="?", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    if args.batch < 2 or args.steps < 1:
        raise SystemExit("batch must be >= 2 and --steps >= 1")
    from .timing import set_threads
    threads = set_threads(args.threads)
    print(f"# {threads.count} threads ({threads.how})")
    print(format_profile(profile_step(args.model, args.batch, args.steps, args.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
