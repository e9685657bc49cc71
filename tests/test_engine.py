"""The training engine: App. A recipes, one step against a hand-written update, micro-batches
against the full batch's gradient, bf16 autocast against fp32, resuming, hooks, bad devices."""
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import small_text_model, small_vit

from adapter_placement import engine
from adapter_placement.device import autocast, check_precision, resolve_device, to_device
from adapter_placement.engine import NonFiniteLossError, Recipe, fit, recipe_for
from adapter_placement.graph import AdapterGraph
from adapter_placement.placements import parallel_all

CPU = torch.device("cpu")


def test_recipes_are_those_of_appendix_a():
    vision = recipe_for("vision", 0.1, 2000)
    assert (vision.optimizer, vision.momentum, vision.weight_decay, vision.decay) == ("sgd", 0.9, 0.0, "cosine")
    assert vision.warmup == 200  # min(500, 2000 / 10)
    assert recipe_for("vision", 0.1, 20000).warmup == 500
    text = recipe_for("text", 1e-3, 1000)
    assert (text.optimizer, text.weight_decay, text.decay, text.warmup) == ("adamw", 0.1, "linear", 60)
    assert recipe_for("text", 1e-3, 1000, warmup=7).warmup == 7
    with pytest.raises(ValueError, match="'audio'"):
        recipe_for("audio", 1e-3, 10)
    with pytest.raises(ValueError, match="'adam'"):
        Recipe("adam", 1e-3, 10)
    with pytest.raises(ValueError, match="-1"):
        Recipe("sgd", -1, 10)


def _stream(inputs, labels):
    while True:
        yield inputs, labels, {}


def test_an_sgd_step_is_the_hand_written_update():
    """Momentum SGD with warm-up: w1 = w0 - lr_0 g0; w2 = w1 - lr_1 (0.9 g0 + g1), lr_s = lr (s+1)/warmup."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2, bias=False)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    w = net.weight.detach().clone()
    recipe = Recipe("sgd", 0.5, 10, warmup=4, decay="cosine")
    fit(net, net.parameters(), _stream(x, y), recipe, device=CPU, steps=2)

    def grad(weight):
        weight = weight.clone().requires_grad_(True)
        F.cross_entropy(x @ weight.T, y).backward()
        return weight.grad

    g0 = grad(w)
    w1 = w - 0.5 * 0.25 * g0
    g1 = grad(w1)
    w2 = w1 - 0.5 * 0.5 * (0.9 * g0 + g1)
    torch.testing.assert_close(net.weight.detach(), w2, rtol=1e-6, atol=1e-7)


def _graph(seed=0):
    model = small_vit(depth=2, embed_dim=32, num_classes=4, seed=seed)
    graph = AdapterGraph(model, parallel_all(5) + [(4, 1), (0, 3), (2, 2)], rank=4)
    with torch.no_grad():  # non-zero adapters, so that every gradient path carries something
        for p in graph.adapter_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return graph


def _gradients(net, params, inputs, labels, extras=None, micro_batch_size=None):
    """The gradients ``fit`` leaves after one step's backward (read in its after_backward hook)."""
    seen = {}
    recipe = Recipe("sgd", 1e-3, 1)
    fit(net, params, iter([(inputs, labels, extras or {})]), recipe, device=CPU, micro_batch_size=micro_batch_size,
        after_backward=lambda step: seen.update({i: p.grad.clone() for i, p in enumerate(params)}))
    return seen


@pytest.mark.parametrize("micro", [1, 3, 8])
def test_micro_batches_give_the_full_batch_gradient_vit(micro):
    images, labels = torch.randn(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    graph = _graph()
    params = list(graph.adapter_parameters()) + list(graph.head_parameters())
    F.cross_entropy(graph(images), labels).backward()  # the plain step, written out
    expected = {i: p.grad.clone() for i, p in enumerate(params)}
    graph.zero_grad(set_to_none=True)
    got = _gradients(graph, params, images, labels, micro_batch_size=micro)
    for i in expected:
        torch.testing.assert_close(got[i], expected[i], rtol=1e-4, atol=1e-7)


def test_micro_batches_give_the_full_batch_gradient_bert_with_padding():
    model = small_text_model("bert", layers=2, num_labels=3)
    graph = AdapterGraph(model, parallel_all(5) + [(3, 1)], rank=4)
    with torch.no_grad():
        for p in graph.adapter_parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 60, (6, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:], mask[4, 2:] = 0, 0
    inputs, labels = {"input_ids": ids, "attention_mask": mask}, torch.tensor([0, 1, 2, 0, 1, 2])
    params = list(graph.adapter_parameters()) + list(graph.head_parameters())
    F.cross_entropy(graph(**inputs).logits, labels).backward()
    expected = {i: p.grad.clone() for i, p in enumerate(params)}
    graph.zero_grad(set_to_none=True)
    got = _gradients(graph, params, inputs, labels, micro_batch_size=4)  # 4 + 2: unequal parts
    for i in expected:
        torch.testing.assert_close(got[i], expected[i], rtol=1e-4, atol=1e-7)


def _train_losses(net, params, inputs, labels, precision, steps=25, lr=0.05, optimizer="sgd"):
    torch.manual_seed(0)
    recipe = Recipe(optimizer, lr, steps, warmup=2, decay="cosine")
    return fit(net, params, _stream(inputs, labels), recipe, device=CPU, precision=precision)


def test_bf16_trains_a_vit_as_fp32_does():
    """bf16 autocast on the CPU: the loss falls as in fp32 and ends within 0.05 of it (measured:
    about 0.01); weights stay float32."""
    images = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    labels = torch.arange(16) % 4
    ends = {}
    for precision in ("fp32", "bf16"):
        model = small_vit(depth=2, embed_dim=32, num_classes=4).train()
        params = list(model.parameters())
        losses = _train_losses(model, params, images, labels, precision, lr=3e-3, optimizer="adamw")
        assert losses[-1] < 0.5 * losses[0], (precision, losses[0], losses[-1])
        assert all(p.dtype == torch.float32 for p in params)
        ends[precision] = losses[-1]
    assert ends["bf16"] == pytest.approx(ends["fp32"], abs=0.05)


def test_bf16_trains_a_bert_as_fp32_does():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 60, (12, 8), generator=g)
    inputs, labels = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.arange(12) % 3
    ends = {}
    for precision in ("fp32", "bf16"):
        model = small_text_model("bert", layers=2, num_labels=3)
        graph = AdapterGraph(model, parallel_all(5), rank=4)
        params = list(graph.adapter_parameters()) + list(graph.head_parameters())
        losses = _train_losses(graph, params, inputs, labels, precision, lr=1e-2, optimizer="adamw")
        assert losses[-1] < 0.7 * losses[0], (precision, losses[0], losses[-1])
        ends[precision] = losses[-1]
    assert ends["bf16"] == pytest.approx(ends["fp32"], abs=0.05)


def test_under_bf16_autocast_an_adapters_small_output_reaches_the_node_it_adds_to():
    """A young adapter adds about 1e-3 of a hidden state: summed in bf16 that rounds to nothing
    (one bf16 step at 1.0 is 2^-7). Adapters compute in float32, so the node's sum keeps it.
    (In bf16, parallel adapters on the SST-2 stand-in stayed at chance on one seed.)"""
    from adapter_placement.adapters import make_adapter

    hidden = torch.ones(4, 8, 16, dtype=torch.bfloat16) + torch.randn(4, 8, 16).to(torch.bfloat16) * 0.01
    for kind in ("bottleneck", "linear"):
        adapter = make_adapter(16, 4, kind=kind)
        with torch.no_grad():
            for p in adapter.parameters():
                if p.ndim == 2 and (p.abs().sum() == 0):
                    p.fill_(1e-4)  # the zero-initialised matrix, a few steps in
        reference = adapter(hidden.float())
        with autocast(CPU, "bf16"):
            out = adapter(hidden)
            summed = hidden + out
        assert out.dtype == summed.dtype == torch.float32
        assert torch.allclose(summed - hidden.float(), reference, rtol=1e-3, atol=1e-6)  # fp32 rounding at 1.0
        assert (hidden + out.to(torch.bfloat16) - hidden).abs().max() == 0  # what a bf16 sum would keep


def test_bf16_autocast_really_runs_matmuls_in_bfloat16():
    with autocast(CPU, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_the_text_optimiser_is_fused_adamw_and_steps_as_the_hand_written_update():
    """AdamW with decoupled weight decay (Loshchilov & Hutter), written out for three steps, against
    the fused kernel make_optimizer picks on the CPU."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(5, 4, generator=g)
    grads = [torch.randn(5, 4, generator=g) for _ in range(3)]
    recipe = Recipe("adamw", 1e-2, 3, warmup=0, decay="constant", weight_decay=0.1)
    param = torch.nn.Parameter(start.clone())
    opt = engine.make_optimizer(recipe, [param])
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"]
    lr, (b1, b2), eps = 1e-2, (0.9, 0.999), 1e-8
    w, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for t, grad in enumerate(grads, 1):
        param.grad = grad.clone()
        opt.step()
        w = w * (1 - lr * 0.1)
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad * grad
        w = w - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        torch.testing.assert_close(param.detach(), w, rtol=1e-5, atol=1e-6)


def test_resuming_continues_the_schedule_and_the_momentum():
    """Steps 0-9 at once equal steps 0-4, then 5-9 with the same optimiser (what a checkpoint holds)."""
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    recipe = Recipe("sgd", 0.1, 10, warmup=3, decay="cosine")
    once = _graph()
    fit(once, list(once.adapter_parameters()), _stream(images, labels), recipe, device=CPU)
    twice = _graph()
    params = list(twice.adapter_parameters())
    opt = engine.make_optimizer(recipe, params)
    fit(twice, params, _stream(images, labels), recipe, device=CPU, steps=5, optimizer=opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * engine.lr_factor(4, 10, 3, "cosine"))
    fit(twice, params, _stream(images, labels), recipe, device=CPU, first_step=5, optimizer=opt)
    for a, b in zip(once.adapter_parameters(), twice.adapter_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hooks_see_every_step_in_order():
    images, labels = torch.randn(4, 3, 16, 16), torch.arange(4)
    graph = _graph()
    calls = []
    fit(graph, list(graph.adapter_parameters()), _stream(images, labels), Recipe("sgd", 0.01, 5), device=CPU,
        first_step=2, before_step=lambda s: calls.append(("before", s)),
        after_backward=lambda s: calls.append(("backward", s)),
        on_step=lambda s, loss, opt: calls.append(("step", s, math.isfinite(loss))))
    assert calls == [e for s in (2, 3, 4) for e in (("before", s), ("backward", s), ("step", s, True))]


def test_a_nan_loss_stops_training():
    net = torch.nn.Linear(3, 2)
    x = torch.full((2, 3), float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 0"):
        fit(net, net.parameters(), _stream(x, torch.tensor([0, 1])), Recipe("sgd", 0.1, 3), device=CPU)


def test_accuracy_counts_correct_predictions():
    net = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
    batches = [(x[:2], torch.tensor([0, 1]), {}), (x[2:], torch.tensor([1, 1]), {})]
    assert engine.accuracy(net, batches, device=CPU) == 0.75


# ---------------------------------------------------------------- devices and precisions

def test_auto_is_the_cpu_on_a_machine_without_accelerators():
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    elif not (torch.backends.mps.is_available()):
        assert resolve_device("auto") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_one_names_the_device_and_what_torch_said():
    with pytest.raises(ValueError, match=r"'cuda:1'.*torch.cuda.is_available\(\) is False"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "CUDA", "tpu", ""])
def test_unknown_devices_are_named(bad):
    with pytest.raises(ValueError, match=f"unknown device {bad!r}"):
        resolve_device(bad)


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="'fp16'"):
        check_precision("fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_run_on_a_missing_gpu_fails_before_loading_anything(tmp_path, monkeypatch):
    from adapter_placement import models
    from adapter_placement.train import TrainConfig, train

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(models, "load_model", no_loading)
    cfg = TrainConfig(dataset="digits_location", model="vit.safetensors", edges=[(0, 1)], steps=2, device="cuda",
                      track=False, progress=False)
    with pytest.raises(ValueError, match="'cuda'.*is_available"):
        train(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="'fp16'"):
        TrainConfig(dataset="digits_location", model="m", edges=[(0, 1)], precision="fp16").check()
    with pytest.raises(ValueError, match="micro_batch_size.*65"):
        TrainConfig(dataset="digits_location", model="m", edges=[(0, 1)], batch_size=64, micro_batch_size=65).check()


def test_to_device_keeps_the_nesting():
    batch = {"ids": torch.ones(2), "pair": (torch.zeros(1), [torch.ones(1)]), "n": 3}
    moved = to_device(batch, CPU)
    assert moved["n"] == 3 and isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)
    assert moved["ids"] is batch["ids"]  # already there: no copy


def test_auto_precision_keeps_bf16_only_where_it_is_measured_faster(monkeypatch):
    from adapter_placement import device as D

    cpu = torch.device("cpu")
    seconds = D.measure_precisions(cpu, repeats=3)
    assert set(seconds) == {"fp32", "bf16"} and all(s > 0 for s in seconds.values())
    for timed, expected in (({"fp32": 1.0, "bf16": 0.6}, "bf16"), ({"fp32": 1.0, "bf16": 0.95}, "fp32"),
                            ({"fp32": 1.0, "bf16": 1.5}, "fp32")):
        monkeypatch.setattr(D, "measure_precisions", lambda device, threads=1, timed=timed: timed)
        assert D.choose_precision(cpu) == (expected, timed)
