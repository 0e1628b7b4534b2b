"""Smoke test of the benchmark suite: a tiny run writes its three outputs.

Timings are never asserted (speed is measured by the benchmark itself, not by tests).
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch", reason="the benchmarks compare tinynet with PyTorch")
pytest.importorskip("matplotlib", reason="the benchmarks draw a PNG chart")


def test_tiny_run_writes_markdown_json_png(tmp_path, capsys):
    from benchmarks.__main__ import main
    rc = main(["--quick", "--repeats", "1", "--pause", "0", "--min-block", "0.001",
               "--threads", "1", "--batches", "8", "--only", "step/base",
               "--only", "layer/relu/", "--out", str(tmp_path), "--name", "smoke"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| base MLP step | 8 |" in out
    assert "ReLU 256x512 both" in out
    md = (tmp_path / "smoke.md").read_text()
    assert md.startswith("# tinynet vs PyTorch, cpu")
    assert "threads: 1 on both sides" in md
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["header"]["threads"] == 1
    names = [r["name"] for r in data["results"]]
    assert names == ["step/base/8", "layer/relu/both"]
    step = data["results"][0]
    # the products of the base MLP step: 3 forward, 3 dW, 2 dx (none for the first layer)
    assert [w for w, _, _ in step["extra"]["products"]].count("dx") == 2
    assert step["flops"] == 2 * 8 * (784 * 512 * 2 + 512 * 512 * 3 + 512 * 10 * 3)
    for r in data["results"]:
        assert r["tinynet"]["median"] > 0 and r["torch"]["median"] > 0
        assert r["ratio"] == pytest.approx(r["tinynet"]["median"] / r["torch"]["median"])
    png = (tmp_path / "smoke.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_unknown_only_is_a_clear_error(tmp_path):
    from benchmarks.__main__ import main
    with pytest.raises(SystemExit, match="no case matches"):
        main(["--only", "no-such-case", "--out", str(tmp_path)])


def test_list_names_every_case(capsys):
    from benchmarks.__main__ import main
    assert main(["--list"]) == 0
    names = capsys.readouterr().out.split()
    for model in ("base", "bn", "simplecnn", "convbn"):
        for batch in (64, 256, 1024):
            assert f"step/{model}/{batch}" in names
    for layer in ("linear_784x512", "conv_simplecnn1", "conv_simplecnn2", "conv_convbn3",
                  "conv_vgg", "maxpool", "batchnorm1d", "batchnorm2d", "relu", "tanh",
                  "cross_entropy"):
        for mode in ("fwd", "bwd", "both"):
            assert f"layer/{layer}/{mode}" in names


def test_profile_names_every_part_of_the_step():
    from benchmarks.profile import format_profile, profile_step
    result = profile_step("base", 4, steps=1)
    parts = [r["part"] for r in result["rows"]]
    for part in ("1 Linear fwd", "2 ReLU fwd", "5 Linear bwd", "1 Linear bwd", "loss", "sgd"):
        assert part in parts
    assert "0 Flatten bwd" not in parts   # fit's backward stops at the first Linear
    first = next(r for r in result["rows"] if r["part"] == "1 Linear bwd")
    assert first["flops"] == 2 * 4 * 784 * 512          # dW only: no dx for the first layer
    text = format_profile(result)
    assert text.startswith("base step at batch 4:") and "sgd" in text


def test_default_output_is_a_run_folder_not_the_committed_results(tmp_path, monkeypatch):
    """Without --out or --record nothing under benchmarks/results changes."""
    from benchmarks import report
    head = {"device": "cpu", "cpu": "Some CPU", "cores": 2}
    monkeypatch.chdir(tmp_path)
    assert report.output_folder(head, None, False) == \
        os.path.join("runs", "benchmarks", "cpu-some-2c")
    assert report.output_folder(head, None, True) == \
        os.path.join(report.REPO, "benchmarks", "results", "cpu-some-2c")
    assert report.output_folder(head, "elsewhere", True) == "elsewhere"


def test_help_names_the_command_and_explains_missed(capsys):
    from benchmarks.__main__ import main
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: tinynet bench") and "MISSED" in out and "--record" in out


def test_variants_time_every_setting(tmp_path, capsys):
    from benchmarks.variants import main
    rc = main(["--models", "base", "--batches", "8", "--no-layers", "--repeats", "1",
               "--pause", "0", "--min-block", "0.001", "--threads", "2", "--out",
               str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "variants.json").read_text())
    (row,) = data["results"]
    assert set(row["seconds"]) == {"torch", "fast", "fast, 1 thread", "reference"}
    assert row["fast_over_one_thread"] == pytest.approx(
        row["seconds"]["fast"] / row["seconds"]["fast, 1 thread"])
    assert "| base MLP step | 8 |" in (tmp_path / "variants.md").read_text()
