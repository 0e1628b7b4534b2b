"""The grader: run a student's layer on a battery of cases and explain what is wrong.

For every case (odd sizes, batch 1, conv strides and paddings, pooling ties, ...):

1. the student's layer and the reference solution get the same float64 parameters and
   input; their forward outputs must agree (the forward is given in the template);
2. the student's ``backward`` runs on a random upstream gradient ``dy`` (a loss has none),
   giving ``dx`` and each parameter's ``.grad``;
3. each gradient is checked against central finite differences of
   ``L = sum(forward(x) * dy)`` in float64 (skipped where the function has a kink, as
   pooling ties) and against PyTorch's autograd when torch is installed;
4. a wrong gradient is reported with its worst index, both values and the error, and a
   hint: a known mistake whose wrong gradient equals the student's (``hints.MISTAKES``),
   or a generic one (shape, constant factor);
5. a passing layer is run backward a second time: ``.grad`` must accumulate, and ``dy``
   must come back unchanged.
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TinynetError
from . import solutions
from .hints import Case, generic_hint, known_mistake


class ExerciseError(TinynetError, ValueError):
    """A student file or class that cannot be graded (missing, no exercise class...)."""


# ---------------------------------------------------------------------- the battery
@dataclass
class Spec:
    """One test of an exercise: constructor arguments, input shape and kind."""
    label: str
    args: tuple
    kwargs: dict
    shape: tuple
    kind: str = "normal"       # normal | away0 (no kinks) | wide (saturation) | ties
    fd: bool = True            # finite differences apply (no ties at a kink)


@dataclass
class Exercise:
    name: str
    params: tuple
    specs: list
    torch_fn: Callable | None = None
    is_loss: bool = False


def _t_linear(F, x, p, s):
    return F.linear(x, p["weight"], p.get("bias"))


def _t_conv(F, x, p, s):
    return F.conv2d(x, p["weight"], p.get("bias"), stride=s.kwargs.get("stride", 1),
                    padding=s.kwargs.get("padding", 0))


def _t_pool(F, x, p, s):
    k = s.args[0]
    return F.max_pool2d(x, k, s.kwargs.get("stride") or k)


def _t_bn(F, x, p, s):
    return F.batch_norm(x, None, None, p["weight"], p["bias"], training=True,
                        eps=s.kwargs.get("eps", 1e-5))


EXERCISES: dict[str, Exercise] = {e.name: e for e in [
    Exercise("Linear", ("weight", "bias"), [
        Spec("N=4, 5 -> 3", (5, 3), {}, (4, 5)),
        Spec("batch 1, 7 -> 2", (7, 2), {}, (1, 7)),
        Spec("square 6 -> 6 (catches transposes)", (6, 6), {}, (5, 6)),
        Spec("odd sizes 1 -> 1, N=3", (1, 1), {}, (3, 1)),
        Spec("no bias, 4 -> 5, N=2", (4, 5), {"bias": False}, (2, 4)),
    ], _t_linear),
    Exercise("ReLU", (), [
        Spec("(4, 7)", (), {}, (4, 7), "away0"),
        Spec("batch 1, (1, 5)", (), {}, (1, 5), "away0"),
        Spec("images (2, 3, 4, 5)", (), {}, (2, 3, 4, 5), "away0"),
    ], lambda F, x, p, s: F.relu(x)),
    Exercise("Sigmoid", (), [
        Spec("(4, 7)", (), {}, (4, 7)),
        Spec("batch 1, (1, 1)", (), {}, (1, 1)),
        Spec("saturated inputs in [-8, 8], (3, 2, 5)", (), {}, (3, 2, 5), "wide"),
    ], lambda F, x, p, s: F.sigmoid(x)),
    Exercise("SoftmaxCrossEntropy", (), [
        Spec("N=4, C=5", (), {}, (4, 5)),
        Spec("batch 1, C=3", (), {}, (1, 3)),
        Spec("N=7, C=10", (), {}, (7, 10)),
        Spec("N=6, C=2, large logits", (), {}, (6, 2), "wide"),
    ], None, is_loss=True),
    Exercise("Conv2d", ("weight", "bias"), [
        Spec("3x3, stride 1, no padding", (3, 4, 3), {}, (2, 3, 7, 7)),
        Spec("3x3, stride 2, padding 1", (2, 3, 3), {"stride": 2, "padding": 1}, (2, 2, 7, 6)),
        Spec("batch 1, 2x3 kernel, stride (2, 1), padding (1, 0)", (3, 2, (2, 3)),
             {"stride": (2, 1), "padding": (1, 0)}, (1, 3, 6, 5)),
        Spec("1x1 kernel, no bias", (4, 3, 1), {"bias": False}, (3, 4, 3, 3)),
        Spec("square channels 3 -> 3, 2x2", (3, 3, 2), {}, (2, 3, 4, 4)),
    ], _t_conv),
    Exercise("MaxPool2d", (), [
        Spec("2x2, stride 2", (2,), {}, (2, 3, 6, 6)),
        Spec("batch 1, 3x3, stride 2 (overlapping), odd size", (3,), {"stride": 2},
             (1, 2, 7, 7)),
        Spec("2x2, stride 1 (overlapping)", (2,), {"stride": 1}, (2, 2, 5, 5)),
        Spec("ties, 2x2, stride 2", (2,), {}, (2, 2, 6, 6), "ties", fd=False),
        Spec("ties, 3x3, stride 1 (overlapping)", (3,), {"stride": 1}, (1, 2, 6, 6), "ties",
             fd=False),
    ], _t_pool),
    Exercise("BatchNorm1d", ("weight", "bias"), [
        Spec("N=8, C=5", (5,), {}, (8, 5)),
        Spec("smallest batch N=2, C=3", (3,), {}, (2, 3)),
        Spec("N=7, C=1", (1,), {}, (7, 1)),
        Spec("N=5, C=4, eps=0.1", (4,), {"eps": 0.1}, (5, 4)),
    ], _t_bn),
]}


def _input(rng: np.random.Generator, spec: Spec) -> np.ndarray:
    if spec.kind == "away0":
        z = rng.standard_normal(spec.shape)
        return np.sign(z) * (0.1 + np.abs(z))
    if spec.kind == "wide":
        return rng.uniform(-8, 8, spec.shape)
    if spec.kind == "ties":
        return rng.integers(0, 3, spec.shape).astype(np.float64)
    return rng.standard_normal(spec.shape)


# ---------------------------------------------------------------------- comparisons
@dataclass
class Mismatch:
    index: tuple
    got: float
    want: float
    max_abs: float
    rel: float


def compare(got, want, rtol: float, atol_scale: float) -> Mismatch | None:
    """None when ``|got - want| <= atol + rtol |want|`` everywhere, with
    ``atol = atol_scale * max|want|``; else the worst offender."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = np.abs(got - want)
    tol = atol_scale * max(float(np.max(np.abs(want), initial=0.0)), 1e-12) + rtol * np.abs(want)
    if err.size == 0 or np.all(err <= tol) and np.all(np.isfinite(got)):
        return None
    excess = np.where(np.isfinite(err), err - tol, np.inf)
    idx = np.unravel_index(int(np.argmax(excess)), err.shape)
    g, w = float(got[idx]), float(want[idx])
    return Mismatch(tuple(int(i) for i in idx), g, w, float(np.max(err)),
                    abs(g - w) / max(abs(g) + abs(w), 1e-300))


CHECKS = {"finite differences": (1e-5, 1e-6), "PyTorch": (1e-8, 1e-10),
          "reference solution": (1e-8, 1e-10)}


# ---------------------------------------------------------------------- results
@dataclass
class TestResult:
    label: str
    status: str                       # passed | failed | not implemented | error
    problems: list = field(default_factory=list)
    checked_against: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Report:
    """The grade of one exercise class: a ``TestResult`` per case."""
    exercise: str
    source: str
    results: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def hints(self) -> list[str]:
        return [p["hint"] for r in self.results for p in r.problems if p.get("hint")]

    def __str__(self) -> str:
        lines = [f"Grading {self.exercise} from {self.source}"]
        for r in self.results:
            tag = {"passed": "PASS", "failed": "FAIL", "not implemented": "TODO",
                   "error": "ERROR"}[r.status]
            against = f" (checked against {', '.join(r.checked_against)})" \
                if r.passed and r.checked_against else ""
            lines.append(f"  [{tag}] {r.label}{against}")
            for p in r.problems:
                lines.append("         " + p["text"].replace("\n", "\n         "))
                if p.get("hint"):
                    lines.append("         HINT: " + p["hint"])
        n_ok = sum(r.passed for r in self.results)
        verdict = "all tests passed, well done!" if self.passed else \
            f"{n_ok}/{len(self.results)} tests passed."
        if any(r.status == "not implemented" for r in self.results):
            verdict = "backward not written yet."
        lines.append(f"{self.exercise}: {verdict}")
        return "\n".join(lines)


@dataclass
class Grades:
    """What ``grade`` returns: one ``Report`` per exercise class found."""
    reports: list

    @property
    def passed(self) -> bool:
        return bool(self.reports) and all(r.passed for r in self.reports)

    def __getitem__(self, name: str) -> Report:
        for r in self.reports:
            if r.exercise == name:
                return r
        raise KeyError(name)

    def __str__(self) -> str:
        return "\n\n".join(str(r) for r in self.reports)


# ---------------------------------------------------------------------- running a case
def _torch():
    try:
        import torch
        return torch
    except ImportError:
        return None


def _set_params(layer, values: dict, who: str) -> None:
    for name, v in values.items():
        p = getattr(layer, name, None)
        if p is None or not hasattr(p, "data"):
            raise ExerciseError(f"{who} has no parameter {name!r} (expected a "
                                f"tinynet.Parameter of shape {v.shape})")
        if tuple(p.data.shape) != v.shape:
            raise ExerciseError(f"{who}.{name} has shape {tuple(p.data.shape)}, expected {v.shape}")
        p.data = v.copy()
        p.grad = None


def _run(layer, x, target, dy, is_loss):
    """Forward then backward; returns (output, dx)."""
    if is_loss:
        out = layer(x.copy(), target.copy())
        return out, layer.backward()
    out = layer(x.copy())
    return out, layer.backward(dy)


def _finite_differences(ex: Exercise, spec: Spec, x, target, dy, params: dict,
                        h: float = 1e-6) -> dict:
    """Central differences of L = sum(forward(x) * dy) (or the loss) on the reference."""
    ref = solutions.EXERCISE_CLASSES[ex.name](*spec.args, **spec.kwargs)
    _set_params(ref, params, "reference")

    def loss(xv):
        if ex.is_loss:
            return ref(xv, target)
        return float(np.sum(ref(xv) * dy))

    def numeric(arr, f):
        g = np.zeros_like(arr)
        it = np.nditer(arr, flags=["multi_index"])   # host-side grader, not a kernel
        for _ in it:
            i = it.multi_index
            old = arr[i]
            arr[i] = old + h
            fp = f()
            arr[i] = old - h
            fm = f()
            arr[i] = old
            g[i] = (fp - fm) / (2 * h)
        return g

    xv = x.copy()
    grads = {"dx": numeric(xv, lambda: loss(xv))}
    for name in params:
        grads[name] = numeric(getattr(ref, name).data, lambda: loss(x.copy()))
    return grads


def _torch_grads(torch, ex: Exercise, spec: Spec, x, target, dy, params: dict) -> dict:
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    if ex.is_loss:
        F.cross_entropy(tx, torch.tensor(target)).backward()
    else:
        ex.torch_fn(F, tx, tp, spec).backward(torch.tensor(dy))
    out = {"dx": tx.grad.numpy()}
    out.update({k: v.grad.numpy() for k, v in tp.items()})
    return out


def grade_case(cls, ex: Exercise, spec: Spec, seed: int, use_torch: bool = True) -> TestResult:
    rng = np.random.default_rng(seed)
    res = TestResult(spec.label, "passed")
    ref = solutions.EXERCISE_CLASSES[ex.name](*spec.args, **spec.kwargs)
    params = {}
    for name in ex.params:
        p = getattr(ref, name, None)
        if p is not None:
            v = rng.standard_normal(p.data.shape) * 0.5
            params[name] = v + 1.0 if (ex.name == "BatchNorm1d" and name == "weight") else v
    x = _input(rng, spec)
    target = rng.integers(0, spec.shape[1], spec.shape[0]) if ex.is_loss else None
    _set_params(ref, params, "reference")

    def fail(text, hint=""):
        res.problems.append({"text": text, "hint": hint})

    # ---- the student's layer
    try:
        stu = cls(*spec.args, **spec.kwargs)
        if hasattr(stu, "double") and ex.params:
            stu.double()
        _set_params(stu, params, cls.__name__)
    except ExerciseError as e:
        res.status = "error"
        fail(str(e))
        return res
    except Exception as e:  # noqa: BLE001 (student code may raise anything)
        res.status = "error"
        fail(f"constructing {cls.__name__}{spec.args} failed: {type(e).__name__}: {e}")
        return res

    y_ref = ref(x.copy(), target) if ex.is_loss else ref(x.copy())
    dy = None if ex.is_loss else rng.standard_normal(np.shape(y_ref))
    given = None if dy is None else dy.copy()    # the student's copy: dy stays as drawn
    try:
        if ex.is_loss:
            y = stu(x.copy(), target.copy())
        else:
            y = stu(x.copy())
    except Exception as e:  # noqa: BLE001 (student code may raise anything)
        res.status = "error"
        fail(f"forward raised {type(e).__name__}: {e}")
        return res
    bad = compare(y, y_ref, 1e-10, 1e-12) if np.shape(y) == np.shape(y_ref) else \
        Mismatch((), np.nan, np.nan, np.nan, np.nan)
    if bad is not None:
        res.status = "failed"
        fail(f"forward output differs from the reference (shape {np.shape(y)} vs "
             f"{np.shape(y_ref)}; worst index {bad.index}: {bad.got:.6g} vs {bad.want:.6g}).",
             "The forward is given in the template; restore it and write only backward.")
        return res
    try:
        dx = stu.backward() if ex.is_loss else stu.backward(given)
    except NotImplementedError:
        res.status = "not implemented"
        fail("backward raises NotImplementedError: write it (see the docstring).")
        return res
    except Exception as e:  # noqa: BLE001 (student code may raise anything)
        res.status = "error"
        frames = traceback.extract_tb(e.__traceback__)
        pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        mine = [f for f in frames if not os.path.abspath(f.filename).startswith(pkg)]
        tb = (mine or frames)[-1]   # the student's line, not tinynet's
        hint = ""
        if "broadcast" in str(e) or "shape" in str(e) or "aligned" in str(e):
            hint = ("A shape does not fit: write the shape of every array next to it. Each "
                    "gradient has the shape of what it is the gradient of (a transposed "
                    "matrix, or a sum over the wrong axis, is the usual cause).")
        fail(f"backward raised {type(e).__name__}: {e} (line {tb.lineno} of {tb.filename})",
             hint)
        return res
    if ex.is_loss:                      # a second call must give the same: no cache edited
        first = np.array(dx, copy=True)
        try:
            again = stu.backward()
        except Exception:  # noqa: BLE001 - a backward may free its cache, as PyTorch's does
            again = first
    if ex.is_loss and not (np.shape(again) == np.shape(first)
                           and np.array_equal(np.asarray(again), first)):
        res.status = "failed"
        fail("a second backward() returned a different gradient: backward changed what "
             "forward cached (p[rows, t] -= 1 on the cached p).",
             "Leave the cache as forward left it: start from a copy (dz = p.copy()) or "
             "build a new array (dz = p - onehot).")
        return res
    got = {"dx": dx}
    for name in params:
        g = getattr(stu, name).grad
        got[name] = None if g is None else np.array(g)

    # ---- what is right: the reference, finite differences and PyTorch
    expected = dict(zip(["dx"], [ref.backward() if ex.is_loss else ref.backward(dy.copy())]))
    for name in params:
        expected[name] = np.array(getattr(ref, name).grad)
    checks: dict[str, dict] = {}
    if spec.fd:
        checks["finite differences"] = _finite_differences(ex, spec, x, target, dy, params)
    torch = _torch() if use_torch else None
    if torch is not None:
        checks["PyTorch"] = _torch_grads(torch, ex, spec, x, target, dy, params)
    if not checks:
        checks["reference solution"] = expected
    res.checked_against = list(checks)

    case = Case(x=x, dy=dy, params=params, kwargs=dict(spec.kwargs), expected=expected,
                target=target, extra={})
    if ex.name == "MaxPool2d":
        k = spec.args[0]
        case.extra = {"kernel": (k, k), "stride": (spec.kwargs.get("stride") or k,) * 2,
                      "y": y_ref, "argmax": ref._argmax}
    n = x.shape[0]
    for gname in ["dx", *params]:
        g = got[gname]
        label = "dL/dx" if gname == "dx" else f"{gname}.grad"
        if g is None or np.shape(g) != np.shape(expected[gname]):
            res.status = "failed"
            fail(f"{label} is wrong.", generic_hint(gname, g, expected[gname], n))
            continue
        for source, want in checks.items():
            bad = compare(g, want[gname], *CHECKS[source])
            if bad is None:
                continue
            res.status = "failed"
            m = known_mistake(ex.name, gname, np.asarray(g, dtype=np.float64), case)
            hint = m.hint if m is not None else generic_hint(gname, g, expected[gname], n)
            fail(f"{label} is wrong at index {bad.index}: yours {bad.got:.6g}, expected "
                 f"{bad.want:.6g} ({source}); off by {abs(bad.got - bad.want):.3g} "
                 f"(relative error {bad.rel:.2g}; largest error {bad.max_abs:.3g})", hint)
            break
    if dy is not None and not np.array_equal(dy, given):
        res.status = "failed"
        fail("backward wrote into the dy it was given.",
             "Never modify dy in place (dy *= mask): another layer may still need it. "
             "Compute a new array (dx = dy * mask).")
    if res.status != "passed" or not params:
        return res

    # ---- gradients must accumulate
    try:
        _run(stu, x, target, None if dy is None else dy.copy(), ex.is_loss)
    except Exception as e:  # noqa: BLE001 (student code may raise anything)
        res.status = "error"
        fail(f"a second forward/backward raised {type(e).__name__}: {e}")
        return res
    for name in params:
        g2 = getattr(stu, name).grad
        if g2 is None or compare(g2, 2 * expected[name], 1e-8, 1e-10) is not None:
            res.status = "failed"
            hint = ("Backward must ADD into .grad (PyTorch accumulates until zero_grad): "
                    f"use self.{name}.accumulate(g) or .grad += g, not .grad = g.") \
                if g2 is not None and close_enough(g2, expected[name]) else ""
            fail(f"after two backward passes {name}.grad is not twice the gradient.", hint)
    return res


def close_enough(a, b) -> bool:
    return np.shape(a) == np.shape(b) and compare(a, b, 1e-8, 1e-10) is None


# ---------------------------------------------------------------------- entry points
def folder_problem(folder: str) -> str:
    """What to say when a folder is given where one Python file is expected: the
    ``.py`` files it holds (``exercises`` -> ``exercises/linear.py, ...``), if any."""
    try:
        files = sorted(f for f in os.listdir(folder)
                       if f.endswith(".py") and not f.startswith("_"))
    except OSError:
        files = []
    if not files:
        return (f"{folder}: is a folder, with no .py file in it; expected your Python "
                f"file, e.g. exercises/linear.py")
    return (f"{folder}: is a folder; expected one Python file, e.g. one of "
            + ", ".join(os.path.join(folder, f) for f in files))


def load_student(path: str):
    """Execute a student's file as a module (that is all: no other side effects)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ExerciseError(folder_problem(path))
    if not os.path.isfile(path):
        raise ExerciseError(f"no such file: {path!r} (expected a Python file such as "
                            f"exercises/linear.py)")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"tinynet_student_{stem}_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ExerciseError(f"cannot load {path!r} as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # student code may raise anything
        raise ExerciseError(f"running {path!r} failed: {type(e).__name__}: {e}") from e
    return module


def exercise_classes(module, only: str | None = None) -> list:
    """The classes of ``module`` named like an exercise and defined in it."""
    found = [obj for name, obj in vars(module).items()
             if name in EXERCISES and isinstance(obj, type)
             and obj.__module__ == module.__name__]
    src = getattr(module, "__file__", module.__name__)
    if only is not None:
        if only not in EXERCISES:
            raise ExerciseError(f"unknown exercise {only!r}: expected one of "
                                f"{', '.join(EXERCISES)}")
        found = [c for c in found if c.__name__ == only]
        if not found:
            raise ExerciseError(f"class {only!r} not found in {src}")
    if not found:
        raise ExerciseError(f"no exercise class found in {src}: expected a class named one of "
                            f"{', '.join(EXERCISES)}")
    return found


def grade(layer_or_path: Any, only: str | None = None, exercise: str | None = None,
          verbose: bool = True, use_torch: bool = True, seed: int = 0) -> Grades:
    """Grade a student's layer; print and return the report.

    Args:
        layer_or_path: a path to a student's ``.py`` file (every exercise class in it is
            graded, or ``only`` that one), a layer class, or a layer instance (its class
            is graded: the battery builds its own instances).
        exercise: which exercise a class is for (default: its class name).
        use_torch: also compare with PyTorch when it is installed.
        seed: seed of the random parameters, inputs and ``dy``.
    """
    if isinstance(layer_or_path, (str, os.PathLike)):
        module = load_student(layer_or_path)
        classes = exercise_classes(module, only)
        pairs = [(c, c.__name__) for c in classes]
        source = os.fspath(layer_or_path)
    else:
        cls = layer_or_path if isinstance(layer_or_path, type) else type(layer_or_path)
        name = exercise or cls.__name__
        if name not in EXERCISES:
            raise ExerciseError(f"{cls.__name__} is not an exercise: pass exercise= one of "
                                f"{', '.join(EXERCISES)}")
        pairs = [(cls, name)]
        source = f"{cls.__module__}.{cls.__qualname__}"
    reports = []
    for cls, name in pairs:
        ex = EXERCISES[name]
        report = Report(name, source)
        for i, spec in enumerate(ex.specs):
            result = grade_case(cls, ex, spec, seed=seed * 1000 + i, use_torch=use_torch)
            report.results.append(result)
            if result.status == "not implemented":  # no point repeating it per case
                result.label = f"{len(ex.specs)} tests, first: {result.label}"
                break
        reports.append(report)
        if verbose:
            print(report)
    return Grades(reports)
