"""The three numeric verdicts on one tensor: elements, directions and the Taylor test.

Each compares the analytic gradient ``grad`` of one tensor with differences of the loss
``p.loss()`` of a :class:`~tinynet.gradcheck.problem.Problem`, skipping probes that cross
a kink, and records the result in the tensor's :class:`TensorCheck` row.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from .kinks import patterns_equal
from .problem import Problem, host
from .report import TensorCheck

__all__ = ["directions", "elements", "taylor"]


def _probe(p: Problem, move, restore, base_loss: float, opts):
    """Central difference with kink detection; returns the quotient, or None at a kink.

    ``move(s)`` displaces the probed value(s) by ``s`` along the probe and returns the
    displacement actually taken; ``restore()`` puts the original back.
    """
    eps = opts["eps"]
    step_p = move(eps)
    lp, pat_p = p.loss()
    step_m = -move(-eps)
    lm, pat_m = p.loss()
    restore()
    if not patterns_equal(pat_p, pat_m):
        return None
    if _one_sided_kink(p, lp, lm, base_loss, step_p, step_m, move, restore, opts):
        return None
    return (lp - lm) / (step_p + step_m)


def _one_sided_kink(p: Problem, lp: float, lm: float, base_loss: float, step_p: float,
                    step_m: float, move, restore, opts) -> bool:
    """The layer-agnostic kink test, for kinks no recorded pattern shows.

    The one-sided quotients differ by ``eps |L''|`` for a smooth L, by the jump of the
    slope (independent of eps) at a kink within eps. When they differ by more than
    twice the tolerance band (enough to move the central quotient by a band), the
    probe is repeated at 10 eps: a smooth L's gap grows ~10x, a kink's stays put.
    """
    fwd = (lp - base_loss) / step_p
    bwd = (base_loss - lm) / step_m
    gap = abs(fwd - bwd)
    band = max(opts["rtol"] * max(abs(fwd), abs(bwd)), opts["atol"])
    if gap <= 2 * band:
        return False
    wide = 10 * opts["eps"]
    sp = move(wide)
    lp10, pat_p = p.loss()
    sm = -move(-wide)
    lm10, pat_m = p.loss()
    restore()
    if not patterns_equal(pat_p, pat_m):
        return False       # a recorded kink within 10 eps: the eps probe itself was clean
    gap10 = abs((lp10 - base_loss) / sp - (base_loss - lm10) / sm)
    return gap10 < 3 * gap


def _record(row: TensorCheck, index, a: float, n: float, opts) -> None:
    abs_err = abs(a - n)
    floor = opts["atol"] / opts["rtol"]
    rel_err = abs_err / max(abs(a), abs(n), floor)
    if rel_err >= row.max_rel_err or row.worst_index is None:
        row.worst_index, row.analytic, row.numeric = index, a, n
    row.max_rel_err = max(row.max_rel_err, rel_err)
    row.max_abs_err = max(row.max_abs_err, abs_err)
    if rel_err > opts["rtol"]:
        row.status = "FAIL"


def elements(p: Problem, row: TensorCheck, get, grad, base_loss: float, opts) -> None:
    arr = get()
    size = int(arr.size)
    if size == 0:
        return
    if size <= opts["max_elements"]:
        order, want = numpy.arange(size), size
    else:
        order = p.rng.choice(size, min(size, 4 * opts["samples"]), replace=False)
        want = opts["samples"]
    done = 0
    for flat in order:
        if done >= want:
            break
        idx = tuple(int(i) for i in numpy.unravel_index(int(flat), arr.shape))
        orig = arr[idx].copy()
        w0 = float(host(orig))

        def move(step, idx=idx, w0=w0):
            arr[idx] = w0 + step
            return float(host(arr[idx])) - w0

        numeric = _probe(p, move, lambda idx=idx, orig=orig: arr.__setitem__(idx, orig),
                         base_loss, opts)
        if numeric is None:
            row.skipped += 1
            if size <= opts["max_elements"]:
                done += 1
            continue
        _record(row, idx, float(grad[idx]), numeric, opts)
        row.checked += 1
        done += 1


def _random_direction(p: Problem, shape) -> numpy.ndarray:
    v = p.rng.standard_normal(shape)
    return v / max(float(numpy.linalg.norm(v)), 1e-300)


def directions(p: Problem, row: TensorCheck, get, grad, base_loss: float, opts) -> None:
    arr = get()
    if arr.size == 0:
        return
    xp = get_array_module(arr)
    eps = opts["eps"]
    base = arr.copy()
    base64 = host(base)
    tries = 0
    k = 0
    while k < opts["directions"] and tries < 3 * opts["directions"]:
        tries += 1
        v = _random_direction(p, arr.shape)
        taken = {}

        def move(step, v=v, taken=taken):
            moved = (base64 + step * v).astype(arr.dtype)
            arr[...] = xp.asarray(moved)
            taken[step] = moved
            return step

        numeric = _probe(p, move, lambda: arr.__setitem__(Ellipsis, base), base_loss, opts)
        if numeric is None:
            row.skipped_directions += 1
            continue
        # the displacement actually taken, after rounding to the dtype
        vr = (taken[eps].astype(numpy.float64) - taken[-eps]) / (2 * eps)
        analytic = float(numpy.sum(vr * grad))
        k += 1
        row.directions += 1
        _record(row, f"dir {k}", analytic, numeric, opts)


def taylor(p: Problem, row: TensorCheck, get, grad, base_loss: float, base_pattern,
            opts) -> None:
    """The Taylor test along one random unit direction v of this tensor.

    r(h) = |L(w + h v) - L(w) - d(h) . grad|, with d(h) the displacement actually taken
    after rounding. The round-off level is measured, not assumed: r at three steps 16 to
    64 times below the sweep (where h^2 is negligible) samples the rounding noise of the
    forward; only points with r above 10x that level enter the fit of log r on log h.
    A wrong gradient adds h |v . (grad_true - grad)| to r, which shows at every h, so
    the noise probe cannot hide it (it only raises the level by a constant factor).
    """
    arr = get()
    if arr.size == 0:
        return
    xp = get_array_module(arr)
    u = float(numpy.finfo(p.dtype).eps) / 2
    base = arr.copy()
    base64 = host(base)
    v = _random_direction(p, arr.shape)
    if str(p.dtype) == "float64":
        hs = 0.5 * 4.0 ** -numpy.arange(8)       # 0.5 .. 3e-5
    else:
        hs = 0.5 * 2.0 ** -numpy.arange(8)       # 0.5 .. 4e-3
    tiny = hs[-1] / numpy.array([16.0, 32.0, 64.0])

    def remainder(h):
        moved = (base64 + h * v).astype(arr.dtype)
        arr[...] = xp.asarray(moved)
        lh, pat = p.loss()
        arr[...] = base
        if not patterns_equal(pat, base_pattern):
            return None
        first = float(numpy.sum((moved.astype(numpy.float64) - base64) * grad))
        return abs(lh - base_loss - first), abs(lh) + abs(base_loss) + abs(first), \
            lh - base_loss - first

    noise = 0.0
    for h in tiny:
        got = remainder(h)
        if got is not None:
            noise = max(noise, got[0], 100 * u * got[1])
    points = []
    for h in hs:
        got = remainder(h)
        if got is not None:
            points.append((h, got[0], max(10 * noise, 100 * u * got[1]), got[2]))
    if not points:
        row.taylor = "n/a"
        return
    clear = [(h, r) for h, r, level, _ in points if r > level]
    if len(clear) < 3:
        row.taylor = "linear" if not clear else "n/a"
        return
    lh = numpy.log([h for h, _ in clear])
    lr = numpy.log([r for _, r in clear])
    slope = float(numpy.polyfit(lh, lr, 1)[0])
    row.taylor_slope = slope
    if slope < opts["taylor_min_slope"]:
        if _kink_along(points, remainder, opts):
            row.taylor = "kink"        # an unknown kink at w itself: no verdict
        else:
            row.taylor = "FAIL"
            row.status = "FAIL"
    else:
        row.taylor = "ok"


def _kink_along(points, remainder, opts) -> bool:
    """True when L has a kink at w along v (a slope of 1 that is not grad's fault).

    The symmetric sum ``R(h) + R(-h)``, with ``R(h) = L(w + h v) - L(w) - d(h) . grad``,
    cancels the first-order term, and with it any error in grad: it is
    ``h^2 v^T H v`` (slope 2) for a smooth L but ``h |D+ - D-|`` (slope 1) when the two
    one-sided derivatives along v differ. Only run when the Taylor slope failed.
    """
    sums = []
    for h, _, level, signed in points:
        got = remainder(-h)
        if got is None:
            continue
        total = abs(signed + got[2])
        if total > level:
            sums.append((h, total))
    if len(sums) < 3:
        return False
    slope = float(numpy.polyfit(numpy.log([h for h, _ in sums]),
                                numpy.log([t for _, t in sums]), 1)[0])
    return slope < opts["taylor_min_slope"]
