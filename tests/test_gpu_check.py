"""benchmarks/gpu_check.py end to end on the CPU (--smoke), and its refusal without a GPU."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = ["a_vit_b_train_bf16", "a_vit_b_train_fp32", "b_vit_b_scores", "c_vit_g_scores", "d_vit_g_train_bf16"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "smoke.json"
    done = run("--smoke", "--device", "cpu", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(done.stdout[done.stdout.index("\n{") + 1:])  # the same object printed
    return report


def test_every_section_ran_with_its_seconds_and_memory(smoke):
    assert smoke["smoke"] is True and smoke["device"] == "cpu" and "errors" not in smoke
    for name in SECTIONS:
        assert smoke[name]["seconds"] > 0 and smoke[name]["peak_memory_gb"] > 0, name
    assert 0 < smoke["total_seconds"] < 300


@pytest.mark.parametrize("name", ["a_vit_b_train_bf16", "a_vit_b_train_fp32", "d_vit_g_train_bf16"])
def test_training_figures_are_finite_and_sane(smoke, name):
    run_ = smoke[name]
    assert run_["finite"] and math.isfinite(run_["final_loss"]) and math.isfinite(run_["first_loss"])
    assert run_["images_per_s"] > 0 and run_["step_ms"] > 0 and run_["tflops_per_s"] > 0
    assert run_["mfu_vs_peak_bf16"] is None  # no peak for a CPU
    if name.startswith("a_"):  # 8 steps on 4 fixed batches already learn (ViT-g's smoke has 3)
        assert run_["final_loss"] < run_["first_loss"]


def test_bf16_loss_agrees_with_fp32_within_the_stated_tolerance(smoke):
    agreement = smoke["a_loss_agreement"]
    assert agreement["tolerance"] == 0.05
    assert agreement["agree"] and agreement["relative_difference"] <= 0.05
    assert agreement["relative_difference"] > 0  # autocast really ran in bf16


def test_scores_cover_every_edge_and_vit_g_is_scored_in_blocks(smoke):
    vit_b, vit_g = smoke["b_vit_b_scores"], smoke["c_vit_g_scores"]
    assert vit_b["edges"] == 5 ** 2 and vit_b["finite"]  # smoke-B: 2 blocks, n = 5
    assert vit_g["edges"] == 7 ** 2 and vit_g["finite"]
    assert vit_g["blocks"] > 1 and vit_g["rows_per_block"] < 7  # the budget split the rows
    assert vit_g["srank_seconds_one_row"] >= 0
    assert smoke["d_vit_g_train_bf16"]["micro_batch"] < smoke["d_vit_g_train_bf16"]["batch"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_the_paper_shapes_refuse_with_a_clear_message(tmp_path):
    done = run("--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and not (tmp_path / "x.json").exists()
    assert "'cuda'" in done.stderr and "torch.cuda.is_available() is False" in done.stderr
    assert "--smoke" in done.stderr
    done = run("--device", "cpu", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "need a CUDA GPU" in done.stderr


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_check

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (pretend)")

    monkeypatch.setattr(gpu_check, "vit_g_scores", out_of_memory)
    monkeypatch.setattr(gpu_check, "vit_b_training", lambda *a: None)  # keep the test short
    out = tmp_path / "partial.json"
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--smoke", "--device", "cpu", "--out", str(out)]) == 1
    finally:
        torch.set_num_threads(threads)  # main sets 1 on a CPU
    report = json.loads(out.read_text())
    assert report["errors"] == {"c": "RuntimeError: CUDA out of memory (pretend)"}
    assert "b_vit_b_scores" in report and "d_vit_g_train_bf16" in report
