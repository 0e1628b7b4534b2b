"""The guided tour (docs/tour/*.py) runs to the end in quick mode and converts to .ipynb."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "docs", "tour", "[0-9][0-9]_*.py")))
PLOTS = {"02": ["02_ce_gradient.png"], "03": ["03_activations.png", "03_vanishing.png"],
         "04": ["04_im2col.png"], "05": ["05_batchnorm.png"],
         "06": ["06_lr_divergence.png", "06_trace_lr1.png"], "07": ["07_v_curve.png"]}


def test_the_seven_topics_are_there():
    names = [os.path.basename(p)[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path):
    env = dict(os.environ, TINYNET_QUICK="1", TINYNET_TOUR_OUT=str(tmp_path),
               MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, path], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for png in PLOTS.get(os.path.basename(path)[:2], []):
        with open(tmp_path / png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", png


def test_a_raising_cell_fails_the_run(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("# %%\nx = 1\n\n# %%\nassert x == 2, 'cell 2 fails'\n")
    proc = subprocess.run([sys.executable, str(bad)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "cell 2 fails" in proc.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_converts_with_jupytext(path, tmp_path):
    jupytext = pytest.importorskip("jupytext", reason="jupytext converts the tour to .ipynb")
    nb = jupytext.read(path, fmt="py:percent")
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[0] == "markdown" and "code" in kinds and kinds.count("markdown") >= 3
    assert nb.cells[0].source.startswith("# ")          # a title
    out = tmp_path / (os.path.basename(path)[:-3] + ".ipynb")
    jupytext.write(nb, str(out))
    back = jupytext.read(str(out))
    assert [c.cell_type for c in back.cells] == kinds
