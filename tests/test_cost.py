"""The cost model (adapter_placement.cost): its formulas against hand counts and against what torch
itself saves on tiny models, its job counts against the paper's, and the SLURM profile against
its estimate of every rule of the paper DAG (a rule added without resources, or sized too small,
fails here)."""
import copy
from pathlib import Path

import pytest
import torch
import yaml

from adapter_placement import cost as C
from adapter_placement.flops import adapter_flops, forward_flops

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config/paper.yaml"
GiB = 2 ** 30


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER.read_text())


@pytest.fixture(scope="module")
def paper_rules():
    """The workflow's rules as Snakemake parses them with the paper config (offline, ~10 s)."""
    return C.workflow_rules(PAPER)


@pytest.fixture(scope="module")
def paper_estimates(paper, paper_rules):
    return C.estimate(paper, paper_rules, C.gpu_named(C.REFERENCE_GPU))


# ---------------------------------------------------------------- the model shapes

def test_shapes_have_the_parameters_of_the_real_architectures():
    """The hand-written shape table against the architectures themselves, built on the meta
    device (no weights, no memory, no network)."""
    import timm
    from transformers import RobertaConfig, RobertaModel

    with torch.device("meta"):
        for name, spec in [("vit_base_patch16_224", "timm/vit_base_patch16_224.augreg_in21k"),
                           ("vit_giant_patch14_clip_224", "timm/vit_giant_patch14_clip_224.laion2b")]:
            model, shape = timm.create_model(name, pretrained=False, num_classes=0), C.SHAPES[spec]
            assert shape.backbone_params == sum(p.numel() for p in model.parameters()), name
            assert shape.tokens == model.patch_embed.num_patches + model.num_prefix_tokens
            assert (shape.blocks, shape.hidden, shape.ffn, shape.heads) == (
                len(model.blocks), model.embed_dim, model.blocks[0].mlp.fc1.out_features, model.blocks[0].attn.num_heads)
        roberta = RobertaModel(RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1),
                               add_pooling_layer=False)
        assert C.SHAPES["hf/FacebookAI/roberta-base"].backbone_params == sum(p.numel() for p in roberta.parameters())
    assert C.SHAPES["timm/vit_base_patch16_224.augreg_in21k"].backbone_params == 85_798_656


def test_vitg_gradient_stack_is_52_gb():
    vitg = C.SHAPES["timm/vit_giant_patch14_clip_224.laion2b"]
    assert C.score_stack_bytes(vitg.num_nodes, vitg) == 81 * 81 * 1408 ** 2 * 4 == pytest.approx(52.0e9, rel=1e-3)


def test_unknown_model_spec_is_named(paper):
    config = copy.deepcopy(paper)
    config["models"]["vitb"]["spec"] = "timm/vit_huge_patch14_224"
    with pytest.raises(C.CostError, match=r"models\.vitb\.spec: no shape for 'timm/vit_huge_patch14_224'"):
        C.shape_of(config, "vitb")


# ---------------------------------------------------------------- activations: formula vs torch

def _saved_bytes(run, params) -> int:
    """Bytes of the distinct storages autograd saves for the backward during ``run()``, the
    parameters' own storages left out (they are not extra memory)."""
    own = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(seen.values())


def _tiny_vit(trains: bool):
    import timm

    model = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=64, depth=3, num_heads=4, num_classes=5).eval()
    for p in model.parameters():
        p.requires_grad_(trains)
    x = model._pos_embed(model.patch_embed(torch.randn(6, 3, 32, 32))).detach()
    return model, list(model.blocks), x


def _tiny_roberta(trains: bool):
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=256, max_position_embeddings=40, attn_implementation="eager")
    model = RobertaModel(config).eval()
    for p in model.parameters():
        p.requires_grad_(trains)
    x = model.embeddings(input_ids=torch.randint(5, 100, (6, 20))).detach()
    return model, list(model.encoder.layer), x


@pytest.mark.parametrize("build, fused", [(_tiny_vit, True), (_tiny_roberta, False)], ids=["vit", "roberta"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("trains", [False, True], ids=["frozen", "full_ft"])
def test_activation_formula_is_what_autograd_saves(build, fused, precision, trains):
    """An adapter at the input makes the gradient flow through every block (input requires grad);
    the bytes torch saves equal the formula's (bf16: plus the weights' bf16 copies). CPU autocast
    keeps the softmax in bf16 (CUDA: float32 plus a bf16 copy), hence softmax_fp32=False here."""
    torch.manual_seed(0)
    model, blocks, x = build(trains)
    x.requires_grad_(True)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            h = x
            for block in blocks:
                out = block(h)
                h = out[0] if isinstance(out, tuple) else out

    measured = _saved_bytes(run, list(model.parameters()))
    batch, tokens = x.shape[:2]
    shape = C.Shape(3, 64, 4, 256, tokens if fused else None, 0, fused)
    formula = (C.activation_bytes_per_token(shape, tokens, precision, trains, softmax_fp32=False)
               * batch * tokens * 3 + C.autocast_weight_bytes(shape, precision))
    if precision == "fp32":
        assert measured == formula
    else:  # HF's full fine-tuning under CPU autocast keeps 5% more (bf16 casts it re-saves)
        assert formula <= measured <= 1.06 * formula


# ---------------------------------------------------------------- memory and time, by hand

TINY = C.Shape(blocks=2, hidden=4, heads=2, ffn=8, tokens=3, embedding_params=10, fused_attention=True)


def _tiny_run(**kw):
    fields = dict(shape=TINY, tokens=3, batch=64, steps=10, method="adapters", adapters=1, rank=2,
                  kind="bottleneck", recurrent=False, classes=3, optimizer_states=1, precision="fp32")
    return C.RunShape(**{**fields, **kw})


def test_training_memory_of_a_tiny_arch_by_hand():
    # backbone: 2 blocks x (4*16 + 4*4 + 2*4*8 + 8 + 4 + 2*2*4 = 172) + 10 = 354 floats
    assert TINY.backbone_params == 354
    # trainable: adapter 2*4 + 4*2 + 2 + 2*4 + 4 + 1 = 31, head 4*3 + 3 = 15
    run = _tiny_run()
    assert C.trainable_params(run) == 46
    weights = 4 * 354 + (4 + 4 + 4) * 46  # frozen fp32; weight + grad + momentum
    block = 8 * 4 + 16 + 4 * (3 * 4 + 8) + 4 * 4 + 4 * 2  # LN inputs+stats, q k v + GELU in, out, lse
    assert C.activation_bytes_per_token(TINY, 3, "fp32", False) == block == 152
    adapter = 4 * 4 + 4 * 4 + 2 * 4 * 2  # its LN input, down input, act and up inputs
    saved = 64 * 3 * (2 * block + adapter)
    workspace = 2 * 64 * 3 * max(block, 4 * 8)
    logits = 3 * 64 * 3 * 4
    assert C.training_gpu_bytes(run) == weights + saved + workspace + logits + C.CUDA_CONTEXT_BYTES
    # batch 256 in micro-batches of 64: the activations of 64 examples, the logits of 256
    micro = C.training_gpu_bytes(_tiny_run(batch=256, micro_batch=64))
    assert micro == weights + saved + workspace + 4 * logits + C.CUDA_CONTEXT_BYTES
    # a linear probe keeps no activations: evaluation's working set (256 x 3 x (8*4 + 4*8)) is the peak
    probe = _tiny_run(method="linear_probe", adapters=0)
    assert C.training_gpu_bytes(probe) == 4 * 354 + 12 * 15 + 256 * 3 * 64 + C.CUDA_CONTEXT_BYTES


def test_checkpointing_keeps_block_inputs_and_one_block():
    plain, ckpt = _tiny_run(batch=1000), _tiny_run(batch=1000, checkpoint=True)
    block = C.activation_bytes_per_token(TINY, 3, "fp32", False)
    adapter = C.adapter_activation_bytes_per_token(4, 2, "fp32", "bottleneck")
    assert C.training_gpu_bytes(plain) - C.training_gpu_bytes(ckpt) == 1000 * 3 * (2 * block - (2 * 4 * 4 + block))
    assert C.train_step_flops(ckpt) - C.train_step_flops(plain) == 1000 * forward_flops(3, 4, 2, 8, 2)
    assert adapter == 48


def test_train_step_flops_follow_app_k():
    fwd = forward_flops(3, 4, 2, 8, 2)
    adapters = adapter_flops(1, 3, 4, 2)
    assert C.train_step_flops(_tiny_run(batch=5)) == 5 * 2 * (fwd + adapters)  # backward = forward
    assert C.train_step_flops(_tiny_run(batch=5, method="full_ft", adapters=0)) == 5 * 3 * fwd  # + weight grads
    assert C.train_step_flops(_tiny_run(batch=5, method="linear_probe", adapters=0)) == 5 * fwd
    assert C.train_step_flops(_tiny_run(batch=5, recurrent=True)) == 5 * (2 * (fwd + adapters) + fwd)


def test_gpu_hours_are_flops_over_peak_times_efficiency():
    a100 = C.gpu_named("a100")
    flops = 2 * 3600 * 312e12 * 0.35  # two hours of an A100 at 35% of its bf16 peak
    assert C.gpu_hours(flops, a100, "bf16", 0.35) == pytest.approx(2.0)
    assert C.gpu_hours(flops, a100, "fp32", 0.35) == pytest.approx(4.0)  # TF32: half the peak
    assert C.gpu_hours(flops, C.gpu_named("h100"), "bf16", 0.7) == pytest.approx(2 * 312 / 989 / 2)
    work = C.Work(flops=flops, images=0, precision="bf16")
    assert C.job_seconds(work, a100, cpus=8, mfu=0.35) == pytest.approx(C.STARTUP_SECONDS + 7200)
    slow_loader = C.Work(flops=flops, images=8 * 100 * 10_000, precision="bf16")  # 10,000 s of decoding
    assert C.job_seconds(slow_loader, a100, cpus=8, mfu=0.35, loader_rate=100) == pytest.approx(
        C.STARTUP_SECONDS + 10_000)


def test_score_rows_follow_the_scores_jobs_budget():
    from adapter_placement.scores import MEMORY_FRACTION, score_memory_bytes

    vitb, vitg = C.SHAPES["timm/vit_base_patch16_224.augreg_in21k"], C.SHAPES["timm/vit_giant_patch14_clip_224.laion2b"]
    assert C.score_rows(vitb, 197, "bf16", 80 * GiB) == 25  # ViT-B's whole 1.5 GB stack in one pass
    rows = C.score_rows(vitg, 257, "bf16", 80 * GiB)
    budget = MEMORY_FRACTION * (80 * GiB - C.scores_model_bytes(vitg, "bf16"))
    capture = C.score_capture_bytes(vitg, 257, 64)
    assert 1 <= rows < 81
    assert score_memory_bytes(rows, 81, 1408, int(capture)) <= budget < score_memory_bytes(rows + 1, 81, 1408, int(capture))
    assert C.score_rows(vitg, 257, "bf16", 32 * GiB) == 0  # a V100: not one row beside a chunk's captures


# ---------------------------------------------------------------- bad input

def test_unknown_gpu_is_named(capsys):
    with pytest.raises(C.CostError, match=r"unknown GPU 'tpu-v5'; known: a100, h100, h200, l40s, v100"):
        C.gpu_named("tpu-v5")
    assert C.main(["--configfile", str(PAPER), "--gpu", "tpu-v5"]) == 2
    assert "unknown GPU 'tpu-v5'" in capsys.readouterr().err


def test_unknown_precision_is_named():
    with pytest.raises(C.CostError, match="unknown precision 'fp16'"):
        C.training_gpu_bytes(_tiny_run(precision="fp16"))


def test_a_job_above_the_gpus_memory_names_the_rule_and_both_numbers(paper):
    """ViT-g at batch 128 in float32 without micro-batches: 109 GiB; the message says which
    micro-batch fits the A100."""
    config = copy.deepcopy(paper)
    config["precision"] = "fp32"
    config["models"]["vitg"].pop("micro_batch_size", None)
    a100 = C.gpu_named("a100")
    estimates = [C.estimate_rule(config, "fig6c_runs", C.RuleInfo("train-batch", False), a100, cpus=8)]
    [problem] = C.check_fits(estimates, a100)
    assert problem.startswith("rule fig6c_runs: a job needs 109.1 GiB of GPU memory, more than 95% of the "
                              "A100 SXM 80GB's 80.0 GiB")
    assert "micro_batch_size 64 fits" in problem


def test_a_rule_the_cost_model_does_not_know_fails(paper):
    with pytest.raises(C.CostError, match=r"rule fig99_runs: a training rule"):
        C.rule_jobs(paper, "fig99_runs", C.RuleInfo("train-batch", False), C.gpu_named("a100"))
    with pytest.raises(C.CostError, match=r"rule distill: command 'distill' has no cost model"):
        C.rule_jobs(paper, "distill", C.RuleInfo("distill", False), C.gpu_named("a100"))


# ---------------------------------------------------------------- the paper DAG and the profile

def test_paper_job_counts_are_the_papers(paper):
    a100 = C.gpu_named("a100")
    count = lambda rule, command="train-batch": len(C.rule_jobs(paper, rule, C.RuleInfo(command, False), a100)[0])  # noqa: E731
    assert count("fig1_runs") == 7 * 24 * 3
    assert count("fig3_runs") == 7 * 81 * 3
    assert count("table1_runs") == 7 * 104 * 3
    assert count("fig6c_runs") == 4 * 3 * 2
    assert count("search_runs") == 2 * (1 + 4 * 6) * 3
    assert count("search_placements", "search-batch") == 2 * (3 * 4 + 1) * 3


def test_every_rule_of_the_paper_dag_is_estimated_and_fits_the_reference_gpu(paper_rules, paper_estimates):
    estimated = {e.rule for e in paper_estimates}
    assert estimated == {r for r, info in paper_rules.items() if info.command is not None}
    assert not C.check_fits(paper_estimates, C.gpu_named(C.REFERENCE_GPU))
    gpu_rules = {e.rule for e in paper_estimates if e.gpu}
    assert {"lr_trials", "scores", "fig3_runs", "fig6c_runs", "search_placements"} <= gpu_rules
    total = sum(e.gpu_hours for e in paper_estimates)
    assert 1_000 < total < 10_000, total  # the order of magnitude of 5,000 runs of 86M-1B models


def test_slurm_profile_grants_every_rule_what_the_cost_model_needs(paper_estimates):
    profile = yaml.safe_load((ROOT / "slurm/config.yaml").read_text())
    problems = C.check_profile(paper_estimates, profile)
    assert not problems, "\n".join(problems)


def test_profile_check_names_the_rule_and_both_numbers(paper_estimates):
    profile = yaml.safe_load((ROOT / "slurm/config.yaml").read_text())
    small = copy.deepcopy(profile)
    small["set-resources"]["fig6c_runs"] = {**small["set-resources"]["fig6c_runs"], "runtime": 60, "mem_mb": 1000}
    del small["set-resources"]["scores"]  # a GPU rule without an entry gets the CPU defaults
    problems = C.check_profile(paper_estimates, small)
    need = C.required_resources(next(e for e in paper_estimates if e.rule == "fig6c_runs"))
    assert f"rule fig6c_runs: runtime 60 min in the profile < {need['runtime']} min needed" in "\n".join(problems)
    assert f"rule fig6c_runs: mem_mb 1000 in the profile < {need['mem_mb']} MB needed" in "\n".join(problems)
    assert "rule scores: 0 GPU in the profile < 1 needed" in problems


@pytest.mark.parametrize("value, minutes", [(90, 90), ("90", 90), ("45m", 45), ("2h", 120), ("1d", 1440)])
def test_runtime_spellings(value, minutes):
    assert C.runtime_minutes(value) == minutes


def test_runtime_spelling_error():
    with pytest.raises(C.CostError, match="runtime 'soon'"):
        C.runtime_minutes("soon")


def dry_run_job_counts(output: str) -> dict[str, int]:
    """rule -> jobs, from the "Job stats" table of `snakemake -n` (the target rule `all` left out)."""
    import re

    counts = {}
    for line in output.split("Job stats:", 1)[1].splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return {rule: n for rule, n in counts.items() if rule not in ("total", "all")}


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_job_counts_equal_the_paper_dags_dry_run(tmp_path, paper_estimates):
    """Every rule's job count, as the cost model enumerates it, equals Snakemake's own DAG of the
    paper (offline dry run, ~10 min on 2 busy cores)."""
    import os
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([str(bin_dir / "snakemake"), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                             "--configfile", str(PAPER), "-n", "--quiet", "rules"],
                            capture_output=True, text=True, env=env, timeout=2400)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert dry_run_job_counts(result.stdout + result.stderr) == {e.rule: e.jobs for e in paper_estimates if e.jobs}
