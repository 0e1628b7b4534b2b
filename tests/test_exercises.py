"""The grader passes the reference solutions and fails each usual mistake with its hint.

The broken layers below are written the way a student would get them wrong, independently
of the variants in tinynet.exercises.hints, so a hint that fires proves the detection.
"""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest

from tinynet.exercises import EXERCISES, ExerciseError, grade, main
from tinynet.exercises import solutions as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = {"Linear": "linear.py", "ReLU": "relu.py", "Sigmoid": "sigmoid.py",
             "SoftmaxCrossEntropy": "softmax_cross_entropy.py", "Conv2d": "conv2d.py",
             "MaxPool2d": "maxpool2d.py", "BatchNorm1d": "batchnorm1d.py"}


@pytest.mark.parametrize("name", list(S.EXERCISE_CLASSES))
def test_reference_solutions_pass_every_check(name):
    grades = grade(S.EXERCISE_CLASSES[name], verbose=False)
    report = grades[name]
    assert report.passed, str(report)
    assert len(report.results) == len(EXERCISES[name].specs)
    # finite differences are used wherever they apply (not on pooling ties)
    for spec, r in zip(EXERCISES[name].specs, report.results):
        assert ("finite differences" in r.checked_against) == spec.fd


@pytest.mark.parametrize("name", list(S.EXERCISE_CLASSES))
def test_reference_passes_torch_when_present(name):
    pytest.importorskip("torch", reason="PyTorch comparison")
    report = grade(S.EXERCISE_CLASSES[name], verbose=False)[name]
    assert all("PyTorch" in r.checked_against for r in report.results)


@pytest.mark.parametrize("name,filename", list(TEMPLATES.items()))
def test_templates_run_forward_and_ask_for_backward(name, filename):
    grades = grade(os.path.join(ROOT, "exercises", filename), verbose=False)
    report = grades[name]
    assert not report.passed
    assert [r.status for r in report.results] == ["not implemented"]
    assert "backward not written yet" in str(report)


# ---------------------------------------------------------------------- broken layers
class LinearTransposedW(S.Linear):
    def backward(self, dy, input_grad=True):
        self.weight.accumulate(self._x.T @ dy)   # (D_in, D_out): the transpose
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=0))
        return dy @ self.weight.data


class LinearMeanBias(S.Linear):
    def backward(self, dy, input_grad=True):
        self.weight.accumulate(dy.T @ self._x)
        if self.bias is not None:
            self.bias.accumulate(dy.mean(axis=0))
        return dy @ self.weight.data


class LinearOverwrites(S.Linear):
    def backward(self, dy, input_grad=True):
        self.weight.grad = dy.T @ self._x
        if self.bias is not None:
            self.bias.grad = dy.sum(axis=0)
        return dy @ self.weight.data


class ReLUInPlace(S.ReLU):
    def forward(self, x):
        x = x.copy()
        x[x < 0] = 0          # the in-place ReLU...
        self._x = x
        return x

    def backward(self, dy, input_grad=True):
        return dy * (self._x >= 0)   # ...then the mask: everything passes


class ReLUWritesDy(S.ReLU):
    def backward(self, dy, input_grad=True):
        dy[~self._mask] = 0
        return dy


class ReLUSignFlipped(S.ReLU):
    def backward(self, dy, input_grad=True):
        return -(dy * self._mask)


class SigmoidReturnsNothing(S.Sigmoid):
    def backward(self, dy, input_grad=True):
        self._dx = dy * self._y * (1 - self._y)


class SigmoidForgotOneMinus(S.Sigmoid):
    def backward(self, dy, input_grad=True):
        return dy * self._y


class CrossEntropyNoMean(S.SoftmaxCrossEntropy):
    def backward(self):
        p, t = self._cache
        dz = p.copy()
        dz[np.arange(len(t)), t] -= 1
        return dz


class ConvFlipped(S.Conv2d):
    def backward(self, dy, input_grad=True):
        w = self.weight.data
        self.weight.data = w[:, :, ::-1, ::-1].copy()   # "convolution flips the kernel"
        try:
            return super().backward(dy, input_grad)
        finally:
            self.weight.data = w


class ConvNoCrop(S.Conv2d):
    def backward(self, dy, input_grad=True):
        dx = super().backward(dy, input_grad)
        (ph, pw) = self.padding
        return np.pad(dx, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


class PoolAllTies(S.MaxPool2d):
    def forward(self, x):
        self._x = x
        self._y = y = super().forward(x)
        return y

    def backward(self, dy, input_grad=True):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = dy.shape[2:]
        dx = np.zeros_like(self._x)
        for i in range(kh):
            for j in range(kw):
                win = self._x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += dy * (win == self._y)
        return dx


class PoolAssigns(S.MaxPool2d):
    def backward(self, dy, input_grad=True):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = dy.shape[2:]
        dx = np.zeros(self._shape)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            view = dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
            view[self._argmax == k] = dy[self._argmax == k]
        return dx


class BNUnbiasedTerm(S.BatchNorm1d):
    def backward(self, dy, input_grad=True):   # only the template's cache, N/(N-1) added
        xhat, invstd = self._cache
        n = dy.shape[0]
        self.bias.accumulate(dy.sum(axis=0))
        self.weight.accumulate((dy * xhat).sum(axis=0))
        g = dy * self.weight.data
        return invstd / n * (n * g - g.sum(axis=0)
                             - xhat * (g * xhat).sum(axis=0) * n / (n - 1))


class BNUnbiased(S.BatchNorm1d):
    def forward(self, x):
        self._x = x
        return super().forward(x)

    def backward(self, dy, input_grad=True):
        x, n = self._x, dy.shape[0]
        var = x.var(axis=0, ddof=1)           # the N-1 variance in backward
        invstd = 1 / np.sqrt(var + self.eps)
        xhat = (x - x.mean(axis=0)) * invstd
        self.bias.accumulate(dy.sum(axis=0))
        self.weight.accumulate((dy * xhat).sum(axis=0))
        g = dy * self.weight.data
        return invstd / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))


class BNConstants(S.BatchNorm1d):
    def backward(self, dy, input_grad=True):
        xhat, invstd = self._cache
        self.bias.accumulate(dy.sum(axis=0))
        self.weight.accumulate((dy * xhat).sum(axis=0))
        return dy * self.weight.data * invstd


BROKEN = [
    (LinearTransposedW, "Linear", "You computed x.T @ dy, its transpose"),
    (LinearTransposedW, "Linear", "a transposed matrix"),
    (LinearMeanBias, "Linear", "Forgot to sum over the batch"),
    (LinearOverwrites, "Linear", "Backward must ADD into .grad"),
    (ReLUInPlace, "ReLU", "mask were taken after the in-place ReLU"),
    (ReLUWritesDy, "ReLU", "Never modify dy in place"),
    (ReLUSignFlipped, "ReLU", "Sign flipped."),
    (SigmoidReturnsNothing, "Sigmoid", "backward returned None"),
    (SigmoidForgotOneMinus, "Sigmoid", "you multiplied by y only"),
    (CrossEntropyNoMean, "SoftmaxCrossEntropy", "Forgot the 1/N in cross-entropy"),
    (ConvFlipped, "Conv2d", "No kernel flip"),
    (ConvNoCrop, "Conv2d", "crop the padding"),
    (PoolAllTies, "MaxPool2d", "Pooling ties"),
    (PoolAssigns, "MaxPool2d", "Accumulate with +="),
    (BNUnbiased, "BatchNorm1d", "Biased vs unbiased variance"),
    (BNUnbiasedTerm, "BatchNorm1d", "an N/(N-1) in the variance term"),
    (BNConstants, "BatchNorm1d", "two extra terms"),
]


@pytest.mark.parametrize("cls,exercise,hint", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_variant_fails_with_the_right_hint(cls, exercise, hint):
    report = grade(cls, exercise=exercise, verbose=False, use_torch=False)[exercise]
    assert not report.passed
    assert any(hint in h for h in report.hints()), str(report)
    text = str(report)
    assert "[FAIL]" in text and "HINT: " in text


class LinearHalvesDy(S.Linear):
    def backward(self, dy, input_grad=True):    # right gradients, then dy edited in place
        dx = S.Linear.backward(self, dy.copy(), input_grad)
        dy /= 2
        return dx


class CrossEntropyInPlace(S.SoftmaxCrossEntropy):
    def backward(self):                         # p[rows, t] -= 1 on the cached p
        p, t = self._cache
        p[np.arange(len(t)), t] -= 1
        return p / len(t)


def test_editing_dy_after_use_is_named_alone():
    """The expected gradients come from the dy as drawn, not the one the student edited:
    right gradients get no false 'twice the right value' hint."""
    report = grade(LinearHalvesDy, exercise="Linear", verbose=False, use_torch=False)["Linear"]
    text = str(report)
    assert "backward wrote into the dy it was given" in text
    assert "is wrong" not in text and "Twice the right value" not in text


class CrossEntropyFreesCache(S.SoftmaxCrossEntropy):
    def backward(self):                         # right, then frees what forward kept
        dz = S.SoftmaxCrossEntropy.backward(self)
        self._kernel_cache = None
        return dz


def test_a_loss_backward_that_frees_its_cache_passes():
    report = grade(CrossEntropyFreesCache, exercise="SoftmaxCrossEntropy", verbose=False,
                   use_torch=False)["SoftmaxCrossEntropy"]
    assert report.passed, str(report)


def test_a_loss_backward_that_edits_its_cache_fails():
    report = grade(CrossEntropyInPlace, exercise="SoftmaxCrossEntropy", verbose=False,
                   use_torch=False)["SoftmaxCrossEntropy"]
    assert not report.passed
    assert "a second backward() returned a different gradient" in str(report)
    assert any("p.copy()" in h for h in report.hints())


def test_failure_names_gradient_index_and_values():
    report = grade(LinearMeanBias, exercise="Linear", verbose=False, use_torch=False)["Linear"]
    first = report.results[0]
    assert first.status == "failed"
    line = first.problems[0]["text"]
    assert line.startswith("bias.grad is wrong at index (")
    assert "yours" in line and "expected" in line and "finite differences" in line
    # the weight gradient is right, so only the bias is reported
    assert all("weight" not in p["text"] for p in first.problems)
    # batch 1: the mean equals the sum, so that test passes
    assert report.results[1].passed


def test_pool_ties_only_caught_where_there_are_ties():
    report = grade(PoolAllTies, exercise="MaxPool2d", verbose=False, use_torch=False)
    statuses = {r.label: r.status for r in report["MaxPool2d"].results}
    assert all(s == "passed" for label, s in statuses.items() if not label.startswith("ties"))
    assert all(s == "failed" for label, s in statuses.items() if label.startswith("ties"))


def _write(tmp_path, body, name="student.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_grade_file_and_cli(tmp_path, capsys):
    path = _write(tmp_path, """
        from tinynet.exercises import solutions
        class ReLU(solutions.ReLU):
            pass
        class Sigmoid(solutions.Sigmoid):
            def backward(self, dy, input_grad=True):
                return dy * self._y
    """)
    grades = grade(path, verbose=False, use_torch=False)
    assert [r.exercise for r in grades.reports] == ["ReLU", "Sigmoid"]
    assert grades["ReLU"].passed and not grades["Sigmoid"].passed
    assert main([path, "--only", "ReLU", "--no-torch"]) == 0
    assert "ReLU: all tests passed" in capsys.readouterr().out
    assert main([path, "--only", "Sigmoid", "--no-torch"]) == 1


def test_clear_errors_for_missing_file_class_and_broken_module(tmp_path):
    with pytest.raises(ExerciseError, match="no such file"):
        grade(str(tmp_path / "missing.py"), verbose=False)
    empty = _write(tmp_path, "from tinynet.exercises.solutions import Linear\nX = 1\n", "e.py")
    with pytest.raises(ExerciseError, match="no exercise class found"):
        grade(empty, verbose=False)
    only = _write(tmp_path, """
        from tinynet.exercises import solutions
        class ReLU(solutions.ReLU):
            pass
    """, "o.py")
    with pytest.raises(ExerciseError, match="class 'Conv2d' not found"):
        grade(only, only="Conv2d", verbose=False)
    with pytest.raises(ExerciseError, match="unknown exercise"):
        grade(only, only="Dense", verbose=False)
    bad = _write(tmp_path, "def oops(:\n", "bad.py")
    with pytest.raises(ExerciseError, match="SyntaxError"):
        grade(bad, verbose=False)
    with pytest.raises(ExerciseError, match="not an exercise"):
        grade(dict, verbose=False)


def test_a_folder_is_named_as_a_folder_with_its_python_files(tmp_path, capsys):
    """``tinynet grade exercises``: not "no such file" but the .py files to pick from."""
    (tmp_path / "linear.py").write_text("")
    (tmp_path / "relu.py").write_text("")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "README.md").write_text("")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"tinynet grade: error: {tmp_path}: is a folder; expected one Python "
                   f"file, e.g. one of {tmp_path / 'linear.py'}, {tmp_path / 'relu.py'} "
                   f"(see tinynet grade --help)\n")
    with pytest.raises(ExerciseError, match="is a folder; expected one Python file"):
        grade(str(tmp_path), verbose=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        main([str(empty)])
    assert (f"{empty}: is a folder, with no .py file in it; expected your Python file"
            in capsys.readouterr().err)


def test_student_errors_are_reported_not_raised():
    class Crashes(S.Linear):
        def backward(self, dy, input_grad=True):
            return dy @ self.weight.data.T   # shape error in matmul on non-square cases

    report = grade(Crashes, exercise="Linear", verbose=False, use_torch=False)["Linear"]
    assert {r.status for r in report.results} >= {"error"}
    assert any("backward raised ValueError" in p["text"] for r in report.results
               for p in r.problems)


def test_help_explains_workflow_in_five_lines(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.strip()[:2] in
             ("1.", "2.", "3.", "4.", "5.")]
    assert len(steps) == 5 and "tinynet grade" in out


def test_filled_in_templates_pass(tmp_path):
    """The student workflow end to end: fill in the template's backward, grade the file."""
    answers = {
        "relu.py": ("        raise NotImplementedError(\"ReLU.backward: write it, then run "
                    "tinynet grade\")", "        return dy * self._mask"),
        "linear.py": ("        raise NotImplementedError(\"Linear.backward: write it, then run "
                      "tinynet grade\")",
                      "        self.weight.accumulate(dy.T @ x)\n"
                      "        if self.bias is not None:\n"
                      "            self.bias.accumulate(dy.sum(axis=0))\n"
                      "        return dy @ self.weight.data if input_grad else None"),
    }
    for filename, (old, new) in answers.items():
        with open(os.path.join(ROOT, "exercises", filename)) as f:
            text = f.read()
        assert old in text
        path = tmp_path / filename
        path.write_text(text.replace(old, new))
        assert main([str(path), "--no-torch"]) == 0


def test_solutions_file_grades_as_a_student_file():
    grades = grade(S.__file__, only="MaxPool2d", verbose=False, use_torch=False)
    assert grades.passed and grades.reports[0].source == S.__file__
