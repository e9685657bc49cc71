"""What the workflow costs at paper scale, rule by rule: FLOPs, GPU and host memory, GPU-hours.

    python -m adapter_placement.cost --configfile config/paper.yaml [--gpu a100|h100|h200|l40s|v100]
    python -m adapter_placement.cost --configfile config/paper.yaml --check-profile slurm/config.yaml

The jobs of each rule come from the workflow itself (its rules, read with the Snakemake API) and
the planner that the rules call (``adapter_placement.plan``): nothing here re-derives the
experiment list. FLOPs are App. K's (``flops.py``); everything else is a pure function of shapes.

Assumptions (each is a constant below, with its reason):

- **FLOPs.** A training step is forward + backward. With a frozen backbone (adapters) the backward
  costs one forward (App. K: only input gradients); with full fine-tuning it costs two, since every
  weight needs its gradient as well; a linear probe has no backward through the backbone.
  Recurrent edges add one plain forward (the first pass). The classifier head is left out (App. K).
  Runs take the largest steps of their dataset's grid (VTAB: 2000 of {500, 2000}): an upper bound.
- **Time.** GPU-hours = FLOPs / (peak dense TFLOP/s x ``MFU``) / 3600. A job's wall time is the
  larger of that and the time its CPUs need to decode the images (``LOADER_IMAGES_PER_CORE``),
  plus a start-up (Python, CUDA, weights from the shared file system).
- **GPU memory** (``training_gpu_bytes``): float32 weights; for what trains, float32 weight,
  gradient and optimiser state (SGD momentum: 1 tensor, AdamW: 2); the activations autograd saves
  at the micro-batch (``activation_bytes_per_token``, counted tensor by tensor; the test measures
  them on tiny models); a workspace for the gradients in flight; the CUDA context.
- **Host memory**: the process (torch, CUDA, TensorFlow for tfds, MLflow), the weights twice (file
  and model, before they move to the GPU), the tf.data shuffle buffer of encoded examples and the
  decoded batches in flight.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

from .flops import Arch, forward_flops, pass_flops, score_flops
from .plan.placement import Placement

GiB = 2 ** 30

# ---------------------------------------------------------------- hardware

@dataclass(frozen=True)
class Gpu:
    """Peak dense tensor-core TFLOP/s (no sparsity) and memory as ``nvidia-smi`` reports it."""

    name: str
    bf16_tflops: float  # V100: fp16 (it has no bf16; bf16 there is emulated and slow)
    fp32_tflops: float  # TF32 tensor cores where the GPU has them (V100: plain fp32)
    memory_gib: float

    def peak_tflops(self, precision: str) -> float:
        return self.bf16_tflops if precision == "bf16" else self.fp32_tflops


GPUS = {
    "a100": Gpu("A100 SXM 80GB", 312.0, 156.0, 80.0),
    "h100": Gpu("H100 SXM 80GB", 989.0, 495.0, 79.6),
    "h200": Gpu("H200 SXM 141GB", 989.0, 495.0, 140.4),
    "l40s": Gpu("L40S 48GB", 362.0, 183.0, 45.0),
    "v100": Gpu("V100 SXM2 32GB (fp16 peak)", 125.0, 15.7, 32.0),
}
# The profile is sized for the A100 80GB: the slowest 80 GB GPU in the table, so its times hold on
# H100 / H200 too.
REFERENCE_GPU = "a100"
# Model FLOP utilisation, an assumption (no GPU measured it here): ViT-B/16 trains at the order of
# 1,000 images/s in mixed precision on an A100-class GPU (3 x 35 GFLOPs per image: ~105 TFLOP/s, a
# third of 312); frozen-backbone runs add small rank-r matmuls and memory-bound adapter layers.
MFU = 0.35
# Batched float64 SVDs (svdvals of every edge's d x d gradient) run far below any peak.
SVD_TFLOPS = 0.5
# tf.data decode + bicubic resize to 248 + centre crop 224 + normalise of an 800 x 600 JPEG (iNat18's
# size, 234 KB) measured 178 images per CPU-second on this project's CPU; 75 per core leaves room
# for the conversion to torch, pinning and slower cluster nodes, so that the runtimes are safe.
LOADER_IMAGES_PER_CORE = 75.0
STARTUP_SECONDS = 120.0  # Python, torch, CUDA and TensorFlow imports, MLflow run, tfds builder
LOAD_BYTES_PER_SECOND = 200e6  # weights read from a shared file system
CUDA_CONTEXT_BYTES = 0.75 * GiB  # CUDA context, cuBLAS/cuDNN workspaces (not seen by torch)
GPU_USABLE = 0.95  # of a GPU's memory, what a job may plan to use (the caching allocator fragments)
PROCESS_HOST_BYTES = 3.0 * GiB  # a Python process with torch (CUDA), TensorFlow and MLflow loaded
# Safety factors of the SLURM profile over the estimate: time (MFU and loader rate can be off by
# that much) and host memory (allocator and library overheads the model does not count).
RUNTIME_SAFETY = 2.0
MEMORY_SAFETY = 1.5
CPU_RULE_MINUTES = 15.0  # select_*, best_*, tables, figures, report: JSON/CSV and plots, no model
CPU_RULE_HOST_BYTES = 2.0 * GiB


class CostError(ValueError):
    """Bad input to the cost model, or a job that does not fit; the message names the value."""


def gpu_named(name: str) -> Gpu:
    if name not in GPUS:
        raise CostError(f"unknown GPU {name!r}; known: {', '.join(sorted(GPUS))}")
    return GPUS[name]


def gpu_seconds(flops: float, gpu: Gpu, precision: str, mfu: float = MFU) -> float:
    """Seconds of ``flops`` at ``mfu`` of the GPU's peak."""
    return flops / (gpu.peak_tflops(precision) * 1e12 * mfu)


def gpu_hours(flops: float, gpu: Gpu, precision: str, mfu: float = MFU) -> float:
    return gpu_seconds(flops, gpu, precision, mfu) / 3600.0


# ---------------------------------------------------------------- models (no network: shapes by hand)

@dataclass(frozen=True)
class Shape:
    """An encoder's shape. ``tokens``: fixed for vision, None for text (the task's max length).
    ``fused_attention``: attention through ``scaled_dot_product_attention`` (timm), which saves
    q, k, v and the output instead of the (heads x tokens x tokens) probabilities of the eager
    path (the HF models: ``models.load_model`` asks for ``attn_implementation="eager"``)."""

    blocks: int
    hidden: int
    heads: int
    ffn: int
    tokens: Optional[int]
    embedding_params: int  # everything outside the blocks but the head (final norm included)
    fused_attention: bool

    @property
    def num_nodes(self) -> int:
        return 2 * self.blocks + 1

    @property
    def block_params(self) -> int:
        h, f = self.hidden, self.ffn
        return 4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h  # qkv + proj, fc1 + fc2, two LayerNorms

    @property
    def backbone_params(self) -> int:
        return self.blocks * self.block_params + self.embedding_params

    def arch(self, rank: int) -> Arch:
        return Arch(self.blocks, self.hidden, self.heads, self.ffn, rank, self.tokens)


def _vit(blocks, hidden, heads, ffn, patch, image=224, clip=False) -> Shape:
    """timm's ViT: patch embedding (OpenCLIP's without bias), class token, positions, a LayerNorm
    before the blocks in OpenCLIP towers, the final LayerNorm."""
    tokens = (image // patch) ** 2 + 1
    patches = 3 * patch * patch * hidden + (0 if clip else hidden)
    embedding = patches + hidden + tokens * hidden + (2 * hidden if clip else 0) + 2 * hidden
    return Shape(blocks, hidden, heads, ffn, tokens, embedding, fused_attention=True)


def _roberta(blocks, hidden, heads, ffn, vocab=50265, positions=514) -> Shape:
    embedding = (vocab + positions + 1) * hidden + 2 * hidden  # word, position, type; LayerNorm (post-LN: no final)
    return Shape(blocks, hidden, heads, ffn, None, embedding, fused_attention=False)


# keyed by the config's model spec (config["models"][m]["spec"])
SHAPES = {
    "timm/vit_base_patch16_224.augreg_in21k": _vit(12, 768, 12, 3072, patch=16),       # 197 tokens
    "hf/FacebookAI/roberta-base": _roberta(12, 768, 12, 3072),
    "timm/vit_giant_patch14_clip_224.laion2b": _vit(40, 1408, 16, 6144, patch=14, clip=True),  # 257
}


def shape_of(config: Mapping, model: str) -> Shape:
    spec = config["models"][model].get("spec")
    if spec not in SHAPES:
        raise CostError(f"models.{model}.spec: no shape for {spec!r} in cost.SHAPES (known: {sorted(SHAPES)})")
    shape = SHAPES[spec]
    if shape.blocks != int(config["models"][model]["blocks"]):
        raise CostError(f"models.{model}.blocks: {config['models'][model]['blocks']}, but {spec!r} has "
                        f"{shape.blocks} blocks")
    return shape


# ---------------------------------------------------------------- tasks (public split sizes, tfds catalog)

@dataclass(frozen=True)
class TaskFacts:
    val: int  # the validation split the lr trials evaluate on (data.registry's hold-out)
    test: int  # the test split of the final runs
    encoded_bytes: int  # one stored example (JPEG/PNG or text), what tf.data's shuffle buffer holds


TASKS = {
    "inat2018": TaskFacts(val=4_375, test=24_426, encoded_bytes=400_000),  # 1% of 437,513 train
    "places365": TaskFacts(val=18_035, test=36_500, encoded_bytes=16_000),  # 1% of 1,803,460
    "clevr_count": TaskFacts(val=200, test=15_000, encoded_bytes=210_000),  # VTAB-1k val200
    "svhn": TaskFacts(val=200, test=26_032, encoded_bytes=3_000),
    "dsprites_location": TaskFacts(val=200, test=73_728, encoded_bytes=1_000),  # last 10% of 737,280
    "mnli": TaskFacts(val=39_270, test=9_815, encoded_bytes=1_000),  # 10% of 392,702; dev matched
    "sst2": TaskFacts(val=6_735, test=872, encoded_bytes=1_000),  # 10% of 67,349; dev
}


def _default(function_or_class, name: str):
    """A parameter's default as the code that runs the jobs has it (so the model cannot drift)."""
    import inspect

    return inspect.signature(function_or_class).parameters[name].default


def score_chunk() -> int:
    """Examples per scoring chunk (``pipeline._score_batches``)."""
    from .pipeline import _score_batches

    return int(_default(_score_batches, "chunk"))


def eval_batch() -> int:
    from .train import TrainConfig

    return int(_default(TrainConfig, "eval_batch_size"))


def task_facts(task: str) -> TaskFacts:
    if task not in TASKS:
        raise CostError(f"task {task!r}: no split sizes in cost.TASKS (known: {sorted(TASKS)})")
    return TASKS[task]


def task_tokens(shape: Shape, task: str) -> int:
    """Tokens per example: the ViT's patches + class token, or the text task's max length (an
    upper bound: batches are padded to their longest example)."""
    if shape.tokens is not None:
        return shape.tokens
    from .data import TFDS_TASKS
    from .data.text import TEXT_MAX_LENGTH

    return TFDS_TASKS[task].max_length if task in TFDS_TASKS else TEXT_MAX_LENGTH


def task_classes(task: str) -> int:
    from .data import num_classes_of

    return num_classes_of(task)


def decoded_bytes(shape: Shape, tokens: int) -> int:
    """One example as the model gets it: a float32 3 x 224 x 224 image, or int64 ids and mask."""
    return 3 * 224 * 224 * 4 if shape.tokens is not None else 2 * 8 * tokens


# ---------------------------------------------------------------- memory formulas (pure)

def element_bytes(precision: str) -> int:
    """Bytes of an activation that a matmul reads: bf16 under autocast, else float32."""
    if precision not in ("fp32", "bf16"):
        raise CostError(f"unknown precision {precision!r}; expected fp32 or bf16")
    return 2 if precision == "bf16" else 4


def activation_bytes_per_token(shape: Shape, tokens: int, precision: str, weights_train: bool,
                               softmax_fp32: bool = True) -> float:
    """Bytes autograd saves for the backward, per token and block (dropout off: eval-mode backbone).

    Always (the input gradient needs them): both LayerNorm inputs (the residual stream, float32
    under autocast too: 2 x 4h) with their means and 1/std; q, k, v (3h); the GELU input (ffn);
    attention: the output and the per-head log-sum-exp (fused), or the softmax probabilities
    (eager: heads x tokens; CUDA autocast runs softmax in float32 and keeps a bf16 copy for the
    matmul with v, ``softmax_fp32``; CPU autocast keeps one bf16 tensor). When the weights train
    (full fine-tuning), also the matmul inputs not saved already: the LayerNorm outputs (2h), the
    GELU output (ffn) and, eager, the attention output (h). PyTorch saves a linear layer's input
    only when its weight needs a gradient. tests/test_cost.py measures these on tiny models.
    """
    h, f, e = shape.hidden, shape.ffn, element_bytes(precision)
    saved = 4 * 2 * h + 4 * 4 + e * (3 * h + f)  # LayerNorm inputs, their means and 1/std
    if shape.fused_attention:
        saved += e * h + 4 * shape.heads
    else:
        saved += shape.heads * tokens * (4 + e if e != 4 and softmax_fp32 else e)
    if weights_train:
        saved += e * (2 * h + f + (0 if shape.fused_attention else h))
    return float(saved)


def autocast_weight_bytes(shape: Shape, precision: str) -> float:
    """bf16 autocast casts each matmul's float32 weight to bf16 and the backward keeps the copy
    (for the input gradient): 2 bytes per weight of the blocks' matmuls, once per forward."""
    if precision != "bf16":
        return 0.0
    return float(2 * shape.blocks * (4 * shape.hidden ** 2 + 2 * shape.hidden * shape.ffn))


def adapter_activation_bytes_per_token(hidden: int, rank: int, precision: str, kind: str) -> float:
    """A bottleneck adapter saves its LayerNorm input (float32), the down projection's input and
    the activation's and up projection's inputs (rank wide); a linear adapter its input."""
    e = element_bytes(precision)
    if kind == "linear":
        return float(e * hidden)
    return float(4 * hidden + e * hidden + 2 * e * rank)


def bottleneck_params(hidden: int, rank: int) -> int:
    """LayerNorm (2d), down (d r + r), up (r d + d) and the scalar alpha (Eq. 1)."""
    return 2 * hidden + hidden * rank + rank + rank * hidden + hidden + 1


@dataclass(frozen=True)
class RunShape:
    """What the cost of one training run (or lr trial) depends on."""

    shape: Shape
    tokens: int
    batch: int
    steps: int
    method: str  # adapters | linear_probe | full_ft
    adapters: int
    rank: int
    kind: str  # bottleneck | linear
    recurrent: bool
    classes: int
    optimizer_states: int  # SGD momentum: 1, AdamW: 2
    precision: str = "fp32"
    micro_batch: Optional[int] = None
    checkpoint: bool = False
    eval_examples: int = 0
    vision: bool = True

    @property
    def micro(self) -> int:
        return min(self.batch, self.micro_batch or self.batch)


def trainable_params(run: RunShape) -> int:
    head = run.shape.hidden * run.classes + run.classes
    if run.method == "full_ft":
        return run.shape.backbone_params + head
    if run.method == "linear_probe":
        return head
    per = run.shape.hidden ** 2 if run.kind == "linear" else bottleneck_params(run.shape.hidden, run.rank)
    return run.adapters * per + head


def training_gpu_bytes(run: RunShape) -> float:
    """Peak GPU memory of one training run, in bytes:

        weights      = 4 P_frozen + (4 + 4 + 4 s) P_train                 (s optimiser states)
        autocast     = 2 L (4 d^2 + 2 d ffn) + 2 P_train (bf16: the weights' bf16 copies)
        activations  = m T (L a_block + A a_adapter)                      (m micro-batch, T tokens)
                       checkpointed: m T (L 4 d + a_block + A a_adapter)  (block inputs + one block)
        first pass   = n m T d 4 (recurrent edges: the plain pass's node values)
        workspace    = 2 m T max(a_block, 4 ffn)   (gradients in flight through one block)
        evaluation   = 256 T (8 d + 4 ffn + eager: 4 heads T) (forward only, one block live)
        peak = weights + autocast + max(activations + first pass + workspace + logits, evaluation)
               + CUDA context
    A linear probe's backward stops at the head: no activations beyond one block's forward.
    """
    s, p_train = run.shape, trainable_params(run)
    frozen = 0 if run.method == "full_ft" else s.backbone_params
    weights = 4 * frozen + (8 + 4 * run.optimizer_states) * p_train
    autocast = autocast_weight_bytes(s, run.precision) + (2 * p_train if run.precision == "bf16" else 0)
    m, t = run.micro, run.tokens
    block = activation_bytes_per_token(s, t, run.precision, run.method == "full_ft")
    adapter = adapter_activation_bytes_per_token(s.hidden, run.rank, run.precision, run.kind)
    if run.method == "linear_probe":
        saved = 0.0
    elif run.checkpoint:
        saved = m * t * (s.blocks * 4 * s.hidden + block + run.adapters * adapter)
    else:
        saved = m * t * (s.blocks * block + run.adapters * adapter)
    first = s.num_nodes * m * t * s.hidden * 4 if run.recurrent else 0
    workspace = 0 if run.method == "linear_probe" else 2 * m * t * max(block, 4 * s.ffn)
    logits = 3 * run.batch * run.classes * 4
    evaluation = eval_working_bytes(s, t)
    return weights + autocast + max(saved + first + workspace + logits, evaluation) + CUDA_CONTEXT_BYTES


def eval_working_bytes(shape: Shape, tokens: int, batch: Optional[int] = None) -> float:
    """A no-grad forward keeps one block live: the residual and a LayerNorm output (8 d), the
    feed-forward hidden (4 ffn) and, eager, the attention probabilities."""
    eager = 0 if shape.fused_attention else 4 * shape.heads * tokens
    return float((batch or eval_batch()) * tokens * (8 * shape.hidden + 4 * shape.ffn + eager))


def largest_fitting_micro_batch(run: RunShape, memory_bytes: float) -> Optional[int]:
    """The largest micro-batch (a divisor of the batch) whose run fits ``memory_bytes``; None if
    not even one example fits."""
    for m in sorted((k for k in range(1, run.batch + 1) if run.batch % k == 0), reverse=True):
        if training_gpu_bytes(replace(run, micro_batch=m)) <= memory_bytes:
            return m
    return None


def score_stack_bytes(rows: int, shape: Shape) -> float:
    """A block of ``rows`` source rows of the gradient stack: rows x n x d^2 float32."""
    return float(rows * shape.num_nodes * shape.hidden ** 2 * 4)


def score_capture_bytes(shape: Shape, tokens: int, chunk: int, with_first_pass: bool = False) -> float:
    """One scoring chunk's node values, pre-adapter values and add-point gradients (3 x n x tokens
    x d x chunk float32), plus the side-by-side copy of the gradients and, for a graph, its
    first pass (``scores._capture_bytes``)."""
    return float((5 if with_first_pass else 4) * shape.num_nodes * tokens * shape.hidden * chunk * 4)


def scores_model_bytes(shape: Shape, precision: str, classes: int = 0) -> float:
    """What a scores job holds before scoring: float32 weights (and head), their bf16 copies, the
    CUDA context."""
    return (4 * (shape.backbone_params + shape.hidden * classes) + autocast_weight_bytes(shape, precision)
            + CUDA_CONTEXT_BYTES)


def scores_gpu_bytes(shape: Shape, tokens: int, precision: str, rows: int, chunk: Optional[int] = None,
                     with_first_pass: bool = False, classes: int = 0) -> float:
    """Peak GPU memory of a scores job accumulating ``rows`` source rows at a time:

        model (scores_model_bytes) + rows n d^2 4 (the block)
        + max(captures + the chunk's backward activations (frozen: c T L a_block),
              captures + 2 n d^2 4 (a row being formed), 4 n d^2 4 (a row in float64 and its SVD))
    """
    chunk = chunk or score_chunk()
    backward = chunk * tokens * shape.blocks * activation_bytes_per_token(shape, tokens, precision, False)
    capture, row = score_capture_bytes(shape, tokens, chunk, with_first_pass), score_stack_bytes(1, shape)
    return (scores_model_bytes(shape, precision, classes) + score_stack_bytes(rows, shape)
            + max(capture + backward, capture + 2 * row, 4 * row))


def score_rows(shape: Shape, tokens: int, precision: str, memory_bytes: float, chunk: Optional[int] = None,
               with_first_pass: bool = False, classes: int = 0) -> int:
    """The rows per block the scores job picks on a GPU of ``memory_bytes``: its budget is
    ``scores.MEMORY_FRACTION`` of the memory left beside the model (``scores.rows_that_fit``);
    0 when not even one row fits."""
    from .scores import MEMORY_FRACTION, rows_that_fit

    chunk = chunk or score_chunk()
    budget = int(MEMORY_FRACTION * (memory_bytes - scores_model_bytes(shape, precision, classes)))
    try:
        return rows_that_fit(budget, shape.num_nodes, shape.hidden,
                             int(score_capture_bytes(shape, tokens, chunk, with_first_pass)))
    except ValueError:
        return 0


# ---------------------------------------------------------------- FLOPs (App. K) of the work items

def train_step_flops(run: RunShape) -> float:
    """One optimiser step over the batch: forward + backward (module docstring)."""
    arch, b, t = run.shape.arch(run.rank), run.batch, run.tokens
    bottleneck = run.adapters if run.kind == "bottleneck" else 0
    flops = pass_flops(arch, b, t, bottleneck, backward=run.method != "linear_probe", first_pass=run.recurrent)
    if run.kind == "linear":
        flops += 2 * b * run.adapters * linear_adapter_flops(t, run.shape.hidden)
    backbone = b * forward_flops(t, run.shape.hidden, run.shape.heads, run.shape.ffn, run.shape.blocks)
    if run.method == "full_ft":
        flops += backbone  # weight gradients: a second forward's worth
    if run.checkpoint and run.method != "linear_probe":
        flops += backbone  # the blocks run forward again in the backward
    return flops


def linear_adapter_flops(tokens: int, d: int) -> float:
    """A d x d linear adapter's forward for one example: tokens (2d - 1) d products and sums."""
    return float(tokens * (2 * d - 1) * d)


def eval_flops(run: RunShape) -> float:
    arch = run.shape.arch(run.rank)
    bottleneck = run.adapters if run.kind == "bottleneck" else 0
    flops = pass_flops(arch, run.eval_examples, run.tokens, bottleneck, backward=False, first_pass=run.recurrent)
    if run.kind == "linear":
        flops += run.eval_examples * run.adapters * linear_adapter_flops(run.tokens, run.shape.hidden)
    return flops


def run_flops(run: RunShape) -> float:
    return run.steps * train_step_flops(run) + eval_flops(run)


# ---------------------------------------------------------------- jobs

@dataclass
class Work:
    """What one job computes: FLOPs (at the job's precision), SVD FLOPs, examples decoded, memory."""

    flops: float = 0.0
    svd_flops: float = 0.0
    images: float = 0.0  # images the loader decodes (text: 0, tokenising is cheap)
    gpu_bytes: float = 0.0
    host_bytes: float = 0.0
    precision: str = "fp32"
    load_bytes: float = 0.0  # weights read at start
    notes: list = field(default_factory=list)


def run_work(run: RunShape, shuffle_examples: int, encoded: int) -> Work:
    images = (run.steps * run.batch + run.eval_examples) if run.vision else 0
    host = (PROCESS_HOST_BYTES + 2 * 4 * run.shape.backbone_params + shuffle_examples * encoded
            + 8 * run.batch * decoded_bytes(run.shape, run.tokens))  # batches in flight: tf.data + pinned
    return Work(run_flops(run), 0.0, images, training_gpu_bytes(run), host, run.precision,
                4 * run.shape.backbone_params)


def job_seconds(work: Work, gpu: Gpu, cpus: int, mfu: float = MFU,
                loader_rate: float = LOADER_IMAGES_PER_CORE) -> float:
    """Wall seconds of a job: start-up and weights, then compute or image decoding, whichever is
    slower (they overlap), plus the SVDs."""
    compute = gpu_seconds(work.flops, gpu, work.precision, mfu) + work.svd_flops / (SVD_TFLOPS * 1e12)
    loader = work.images / (loader_rate * max(1, cpus))
    return STARTUP_SECONDS + work.load_bytes / LOAD_BYTES_PER_SECOND + max(compute, loader)


def merge(works: list[Work]) -> Work:
    """The runs of one job run one after the other: FLOPs add, memory is the largest."""
    out = Work(precision=works[0].precision if works else "fp32")
    for w in works:
        out.flops += w.flops
        out.svd_flops += w.svd_flops
        out.images += w.images
        out.gpu_bytes = max(out.gpu_bytes, w.gpu_bytes)
        out.host_bytes = max(out.host_bytes, w.host_bytes)
        out.load_bytes += w.load_bytes  # each run loads its model
        out.notes += w.notes
    return out


# ---------------------------------------------------------------- the config's runs as RunShapes

def run_knobs(config: Mapping, model: str) -> dict:
    """precision (the config's), micro_batch_size and checkpoint_activations (the model's entry),
    as ``plan.compute_settings`` hands them to the jobs."""
    from . import plan as X

    settings, entry = X.compute_settings(config, model), config["models"][model]
    return {"precision": settings["precision"], "micro_batch": settings["micro_batch_size"],
            "checkpoint": bool(entry.get("checkpoint_activations", False))}


def placement_size(config: Mapping, placement: Placement, model: str) -> tuple[int, bool]:
    """(number of adapters, whether any is recurrent) of a ``plan.Placement``. Placements that come
    from results (GGA, best_random, searches) have a known count; they are taken as recurrent (upper
    bound: the first pass)."""
    from . import plan as X

    if placement.method == "best_random":
        return X.random_size(config, X.dataset_model(config, placement.source),
                             config["experiments"]["table1"].get("random_size")), True
    if placement.from_results:
        return placement.size, True
    edges = placement.edges(X.num_nodes(config, model))
    return len(edges), any(i > j for i, j in edges)


def run_shape(config: Mapping, dataset: str, model: str, method: str,
              placement: Placement, rank: int, kind: str = "bottleneck", steps: Optional[int] = None,
              eval_split: str = "test") -> RunShape:
    entry = config["datasets"][dataset]
    shape, facts = shape_of(config, model), task_facts(entry["task"])
    count, recurrent = placement_size(config, placement, model)
    modality = config["models"][model]["modality"]
    return RunShape(shape=shape, tokens=task_tokens(shape, entry["task"]), batch=int(entry["batch_size"]),
                    steps=int(steps or max(entry["steps"])), method=method, adapters=count, rank=int(rank),
                    kind=kind, recurrent=recurrent, classes=task_classes(entry["task"]),
                    optimizer_states=1 if modality == "vision" else 2,
                    eval_examples=facts.val if eval_split == "val" else facts.test,
                    vision=modality == "vision", **run_knobs(config, model))


def shuffle_examples(config: Mapping, dataset: str) -> int:
    """Examples tf.data's shuffle buffer holds: ``data.tfds_loader.TfdsTask.shuffle_buffer``, or a VTAB-1k
    train split's 800 when that is fewer."""
    from .data import TFDS_TASKS
    from .data.registry import VtabSplits
    from .data.tfds_loader import TfdsTask

    buffer, spec = int(_default(TfdsTask, "shuffle_buffer")), TFDS_TASKS.get(config["datasets"][dataset]["task"])
    return min(buffer, spec.splits.num_train) if spec and isinstance(spec.splits, VtabSplits) else buffer


def _fit_note(run: RunShape, gpu: Gpu) -> list[str]:
    need, usable = training_gpu_bytes(run), GPU_USABLE * gpu.memory_gib * GiB
    if need <= usable:
        return []
    m = largest_fitting_micro_batch(run, usable)
    fix = (f"micro_batch_size {m} fits ({training_gpu_bytes(replace(run, micro_batch=m)) / GiB:.1f} GiB)"
           if m else "not even one example per micro-batch fits; try checkpoint_activations")
    return [f"{need / GiB:.1f} GiB at micro-batch {run.micro} of batch {run.batch} ({run.precision}, "
            f"checkpointing {'on' if run.checkpoint else 'off'}); {fix}"]


def training_job_work(config: Mapping, shapes: list[RunShape], datasets: list[str], gpu: Gpu) -> Work:
    works = []
    for run, dataset in zip(shapes, datasets):
        task = config["datasets"][dataset]["task"]
        work = run_work(run, shuffle_examples(config, dataset), task_facts(task).encoded_bytes)
        work.notes = _fit_note(run, gpu)
        works.append(work)
    return merge(works)


def scores_work(config: Mapping, dataset: str, model: str, gpu: Gpu) -> Work:
    """Head pre-training (forward only: the head alone trains) for each head length, then the
    gradient stack of all n^2 edges in as many passes over the scoring examples as the stack's
    row blocks need on ``gpu``, and one SVD per edge and head length."""
    from . import plan as X

    spec, entry = X.scores_spec(config, dataset, model), config["datasets"][dataset]
    shape = shape_of(config, model)
    tokens, classes = task_tokens(shape, entry["task"]), task_classes(entry["task"])
    precision = run_knobs(config, model)["precision"]
    lengths = [X.head_steps(spec["head_fraction"], max(entry["steps"]))] + list(spec["head_steps_grid"])
    rows = score_rows(shape, tokens, precision, gpu.memory_gib * GiB, classes=classes)
    notes = []
    if rows == 0:  # reported by check_fits with the one-row peak, which is above the GPU's memory
        capture = score_capture_bytes(shape, tokens, score_chunk())
        notes.append(f"{dataset}/{model}: not one row of the gradient stack fits beside a chunk of "
                     f"{score_chunk()} examples (captures {capture / GiB:.1f} GiB)")
        rows = 1
    passes = math.ceil(shape.num_nodes / rows)
    arch, n, d, examples = shape.arch(1), shape.num_nodes, shape.hidden, int(spec["score_examples"])
    head = sum(lengths) * pass_flops(arch, int(entry["batch_size"]), tokens, backward=False)
    per_length = passes * pass_flops(arch, examples, tokens) + score_flops(examples, n * n, tokens, d)
    svd = len(lengths) * n * n * (8 / 3) * d ** 3  # singular values of a d x d matrix (bidiagonalisation)
    images = (sum(lengths) * int(entry["batch_size"]) + examples) if shape.tokens else 0
    host = (PROCESS_HOST_BYTES + 8 * shape.backbone_params + shuffle_examples(config, dataset)
            * task_facts(entry["task"]).encoded_bytes + 2 * examples * decoded_bytes(shape, tokens))
    if passes > 1:
        notes.append(f"{dataset}/{model}: {rows} of {n} stack rows per pass, {passes} passes")
    return Work(head + len(lengths) * per_length, svd, images,
                scores_gpu_bytes(shape, tokens, precision, rows, classes=classes), host, precision,
                4 * shape.backbone_params, notes)


def search_work(config: Mapping, search, gpu: Gpu) -> Work:
    """A placement search: head pre-training, its own training phases (upper bound: all steps
    with every adapter it holds at once, recurrent) and its scoring rounds (``score_edges`` of
    the graph: first pass included)."""
    from . import plan as X

    spec, entry = config["experiments"]["search"], config["datasets"][search.dataset]
    shape = shape_of(config, search.model)
    item = X.search_item(config, search)
    n_edges = shape.num_nodes ** 2
    held = max(search.n, spec.get("candidates") or n_edges) if item["function"] == "edge_switch" else search.n
    rounds = {"iterative_gga": int(spec["rounds"]), "edge_switch": 1,
              "prune_regrow": int(spec["updates"]) + 1}[item["function"]]
    run = replace(run_shape(config, search.dataset, search.model, "adapters", Placement("none"),
                            X.dataset_rank(config, search.dataset), steps=int(spec["steps"])),
                  adapters=held, recurrent=True, eval_examples=0)
    examples, tokens = int(entry["score_examples"]), run.tokens
    arch = shape.arch(run.rank)
    scoring = rounds * pass_flops(arch, examples, tokens, held, first_pass=True, scored_edges=n_edges)
    head = item["options"]["head_steps"] * pass_flops(arch, run.batch, tokens, backward=False)
    rows = score_rows(shape, tokens, run.precision, gpu.memory_gib * GiB, with_first_pass=True,
                      classes=run.classes)
    passes = math.ceil(shape.num_nodes / max(1, rows))
    work = run_work(run, shuffle_examples(config, search.dataset), task_facts(entry["task"]).encoded_bytes)
    work.flops += head + passes * scoring
    work.svd_flops = rounds * n_edges * (8 / 3) * shape.hidden ** 3
    work.gpu_bytes = max(work.gpu_bytes, scores_gpu_bytes(shape, tokens, run.precision, max(1, rows),
                                                          with_first_pass=True, classes=run.classes))
    held_batches = int(spec.get("batches") or 0) * run.batch * decoded_bytes(shape, tokens)
    work.host_bytes += held_batches + 2 * examples * decoded_bytes(shape, tokens)
    work.notes = _fit_note(run, gpu)
    return work


# ---------------------------------------------------------------- rules -> jobs

@dataclass(frozen=True)
class RuleInfo:
    command: Optional[str]  # the `python -m adapter_placement.pipeline` command, None: no shell
    local: bool


TRAIN_COMMAND, CPU_COMMANDS = "train-batch", ("select-lr", "select-placements", "best-placement", "table",
                                              "figure", "report")
LOCAL_COMMANDS = ("prepare-data", "model-info")


def rule_jobs(config: Mapping, rule: str, info: RuleInfo, gpu: Gpu) -> tuple[list[Work], bool]:
    """The work of every job of ``rule`` and whether the rule uses a GPU. The jobs are the
    planner's (``adapter_placement.plan``), as the rule's input functions enumerate them."""
    from . import plan as X

    k, command = int(config["runs_per_job"]), info.command
    if command == TRAIN_COMMAND and rule == "lr_trials":
        jobs = []
        for dataset, model in X.lr_models(config):
            trials = X.dataset_trials(config, dataset, model)
            for b in range(X.num_batches(len(trials), k)):
                batch = X.batch_of(trials, b, k)
                shapes = [run_shape(config, t.dataset, t.model, t.method, t.placement, t.rank,
                                    steps=t.steps, eval_split="val") for t in batch]
                jobs.append(training_job_work(config, shapes, [t.dataset for t in batch], gpu))
        return jobs, True
    if command == TRAIN_COMMAND:
        experiment = "search" if rule == "search_runs" else rule.removesuffix("_runs")
        if experiment not in X.TRAINING_EXPERIMENTS or not rule.endswith("_runs"):
            raise CostError(f"rule {rule}: a training rule whose experiment the cost model does not know")
        jobs = []
        for dataset, b in X.training_batches(config, experiment):
            batch = X.batch_of(list(X.plan_dataset(config, experiment, dataset)), b, k)
            shapes = [run_shape(config, r.dataset, r.model, r.method, r.placement, r.rank, r.kind)
                      for r in batch]
            jobs.append(training_job_work(config, shapes, [r.dataset for r in batch], gpu))
        return jobs, True
    if command == "scores":
        return [scores_work(config, d, m, gpu) for d, m in X.score_targets(config)], True
    if command == "search-batch":
        jobs = []
        for dataset, b in X.search_batches(config):
            batch = X.batch_of(X.dataset_searches(config, dataset), b, k)
            jobs.append(merge([search_work(config, s, gpu) for s in batch]))
        return jobs, True
    if command == "pretrain":
        if X.pretrained_models(config):
            raise CostError(f"rule {rule}: the cost model has no shape for the pre-trained small ViT "
                            f"({X.pretrained_models(config)}); it covers paper-scale configs")
        return [], True
    if command in CPU_COMMANDS:
        return [Work(host_bytes=CPU_RULE_HOST_BYTES) for _ in range(_cpu_job_count(config, rule, command))], False
    if command in LOCAL_COMMANDS:
        count = len(X.used_datasets(config) if command == "prepare-data" else X.used_models(config))
        return [Work(host_bytes=CPU_RULE_HOST_BYTES) for _ in range(count)], False
    raise CostError(f"rule {rule}: command {command!r} has no cost model (add it to cost.rule_jobs)")


def _cpu_job_count(config: Mapping, rule: str, command: str) -> int:
    from . import plan as X

    if command == "select-lr":
        return len(X.lr_families(config))
    runs = X.planned_runs(config)
    if command == "select-placements":
        return len({(r.dataset, r.model) for r in runs if r.placement.method in ("gga", "topk")})
    if rule == "best_random":
        return len({r.placement.source for r in runs if r.placement.method == "best_random"})
    if command == "best-placement":
        raise CostError(f"rule {rule}: a best-placement rule the cost model does not know")
    return 1  # a table, a figure, the report: one job each


# ---------------------------------------------------------------- estimates per rule

@dataclass
class RuleEstimate:
    rule: str
    jobs: int
    gpu: bool
    local: bool
    flops: float  # all jobs
    gpu_bytes: float  # the largest job
    host_bytes: float  # the largest job
    gpu_hours: float  # compute-bound, all jobs: FLOPs / (peak x MFU)
    wall_hours: float  # all jobs: start-up, loader, SVDs included (what a GPU is held for)
    job_hours: float  # the longest job
    notes: list


def estimate_rule(config: Mapping, rule: str, info: RuleInfo, gpu: Gpu, cpus: int, mfu: float = MFU,
                  loader_rate: float = LOADER_IMAGES_PER_CORE) -> RuleEstimate:
    works, uses_gpu = rule_jobs(config, rule, info, gpu)
    if uses_gpu:
        hours = [job_seconds(w, gpu, cpus, mfu, loader_rate) / 3600 for w in works]
    else:
        hours = [CPU_RULE_MINUTES / 60 for _ in works]
    notes = sorted({n for w in works for n in w.notes})
    return RuleEstimate(rule, len(works), uses_gpu, info.local, sum(w.flops for w in works),
                        max((w.gpu_bytes for w in works), default=0.0), max((w.host_bytes for w in works), default=0.0),
                        sum(gpu_hours(w.flops, gpu, w.precision, mfu) for w in works) if uses_gpu else 0.0,
                        sum(hours) if uses_gpu else 0.0, max(hours, default=0.0), notes)


def estimate(config: Mapping, rules: Mapping[str, RuleInfo], gpu: Gpu, mfu: float = MFU,
             loader_rate: float = LOADER_IMAGES_PER_CORE) -> list[RuleEstimate]:
    """Every rule with a shell command, in the workflow's order."""
    if not 0 < mfu <= 1:
        raise CostError(f"mfu must be in (0, 1], got {mfu!r}")
    cpus = int(config["threads_per_job"])
    return [estimate_rule(config, rule, info, gpu, cpus, mfu, loader_rate)
            for rule, info in rules.items() if info.command is not None]


def check_fits(estimates: list[RuleEstimate], gpu: Gpu) -> list[str]:
    """A message per rule whose largest job needs more GPU memory than ``gpu`` has."""
    usable = GPU_USABLE * gpu.memory_gib * GiB
    return [f"rule {e.rule}: a job needs {e.gpu_bytes / GiB:.1f} GiB of GPU memory, more than "
            f"{GPU_USABLE:.0%} of the {gpu.name}'s {gpu.memory_gib:.1f} GiB"
            + (f" ({'; '.join(e.notes)})" if e.notes else "")
            for e in estimates if e.gpu and e.gpu_bytes > usable]


# ---------------------------------------------------------------- the SLURM profile against the estimates

def required_resources(e: RuleEstimate) -> dict:
    """What the profile must grant a job of the rule: the longest job's time x RUNTIME_SAFETY
    (minutes), the largest host memory x MEMORY_SAFETY (MiB, SLURM's MB), a GPU if it uses one."""
    return {"runtime": math.ceil(e.job_hours * 60 * RUNTIME_SAFETY),
            "mem_mb": math.ceil(e.host_bytes * MEMORY_SAFETY / 2 ** 20), "gpu": 1 if e.gpu else 0}


def runtime_minutes(value) -> float:
    """A profile's runtime: minutes as a number, or a string like "90", "90m", "2h", "1d"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    units = {"m": 1, "h": 60, "d": 1440}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise CostError(f"runtime {value!r}: not minutes or a number with m/h/d") from None


def profile_gpus(resources: Mapping) -> int:
    if resources.get("gpu"):
        return int(resources["gpu"])
    gres = str(resources.get("gres", ""))
    if gres.startswith("gpu"):
        return int(gres.rsplit(":", 1)[-1]) if gres.rsplit(":", 1)[-1].isdigit() else 1
    return 1 if resources.get("gpu_model") else 0


def check_profile(estimates: list[RuleEstimate], profile: Mapping) -> list[str]:
    """A message per rule (with jobs, submitted to SLURM) whose profile resources are below what
    the cost model needs; each names the rule, the resource and both numbers."""
    defaults, per_rule = profile.get("default-resources") or {}, profile.get("set-resources") or {}
    problems = []
    for e in estimates:
        if e.local or not e.jobs:
            continue
        have, need = {**defaults, **(per_rule.get(e.rule) or {})}, required_resources(e)
        runtime = runtime_minutes(have.get("runtime", 0))
        if runtime < need["runtime"]:
            problems.append(f"rule {e.rule}: runtime {runtime:g} min in the profile < {need['runtime']} min "
                            f"needed (longest job {e.job_hours:.2f} h x {RUNTIME_SAFETY:g})")
        if float(have.get("mem_mb", 0)) < need["mem_mb"]:
            problems.append(f"rule {e.rule}: mem_mb {have.get('mem_mb', 0)} in the profile < {need['mem_mb']} MB "
                            f"needed ({e.host_bytes / GiB:.1f} GiB x {MEMORY_SAFETY:g})")
        if profile_gpus(have) < need["gpu"]:
            problems.append(f"rule {e.rule}: {profile_gpus(have)} GPU in the profile < {need['gpu']} needed")
    return problems


# ---------------------------------------------------------------- the workflow's rules (Snakemake API)

_RULES_SCRIPT = """
import json, re, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, ResourceSettings

with SnakemakeApi() as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[2])]))
    w = wf._workflow
    out = {}
    for r in w.rules:
        m = re.search(r"adapter_placement\\.pipeline\\s+([\\w-]+)", r.shellcmd or "")
        out[r.name] = [m.group(1) if m else None, r.name in w._localrules]
    print("RULES " + json.dumps(out))
"""


def workflow_rules(configfile: Path, snakefile: Optional[Path] = None) -> dict[str, RuleInfo]:
    """The workflow's rules (name -> pipeline command, local?) as Snakemake parses them with
    ``configfile``; in a subprocess, so that Snakemake's logging stays out of this one."""
    import os
    import subprocess

    snakefile = Path(snakefile or Path(__file__).resolve().parents[2] / "Snakefile")
    if not snakefile.exists():
        raise CostError(f"no Snakefile at {snakefile}")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run([sys.executable, "-c", _RULES_SCRIPT, str(snakefile), str(Path(configfile).resolve())],
                            cwd=snakefile.parent, env=env, capture_output=True, text=True, timeout=600)
    line = next((l for l in result.stdout.splitlines() if l.startswith("RULES ")), None)
    if result.returncode != 0 or line is None:
        raise CostError(f"the workflow did not parse with {configfile}:\n{(result.stdout + result.stderr)[-3000:]}")
    return {name: RuleInfo(command, local) for name, (command, local) in json.loads(line[6:]).items()}


# ---------------------------------------------------------------- the report

def table(estimates: list[RuleEstimate], gpu: Gpu, mfu: float) -> str:
    """A Markdown table: one line per GPU rule with jobs, one for the CPU-only rules together, one
    for the local rules, and the totals."""
    head = ("| rule | jobs | PFLOP | GPU GiB/job | host GiB/job | GPU-h (compute) | GPU-h (held) | "
            "longest job h | profile needs (min, MB, GPU) |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for e in estimates:
        if e.jobs and e.gpu:
            need = required_resources(e)
            lines.append(f"| {e.rule} | {e.jobs} | {e.flops / 1e15:,.1f} | {e.gpu_bytes / GiB:.1f} | "
                         f"{e.host_bytes / GiB:.1f} | {e.gpu_hours:,.1f} | {e.wall_hours:,.1f} | {e.job_hours:.2f} | "
                         f"{need['runtime']}, {need['mem_mb']}, 1 |")
    for label, group in (("CPU-only", [e for e in estimates if e.jobs and not e.gpu and not e.local]),
                         ("local (login node)", [e for e in estimates if e.jobs and e.local])):
        if group:
            need = max((required_resources(e) for e in group), key=lambda r: (r["runtime"], r["mem_mb"]))
            where = "not submitted" if group[0].local else f"{need['runtime']}, {need['mem_mb']}, 0"
            lines.append(f"| {label}: {len(group)} rules | {sum(e.jobs for e in group)} | 0 | 0 | "
                         f"{max(e.host_bytes for e in group) / GiB:.1f} | 0 | 0 | "
                         f"{max(e.job_hours for e in group):.2f} | {where} |")
    gpu_rules = [e for e in estimates if e.gpu]
    lines.append(f"| **total** | {sum(e.jobs for e in estimates):,} | {sum(e.flops for e in estimates) / 1e15:,.0f} | | | "
                 f"**{sum(e.gpu_hours for e in gpu_rules):,.0f}** | **{sum(e.wall_hours for e in gpu_rules):,.0f}** | | |")
    lines.append(f"\nOn one {gpu.name} ({gpu.bf16_tflops:g} bf16 / {gpu.fp32_tflops:g} TF32 TFLOP/s peak, "
                 f"{gpu.memory_gib:g} GiB) at {mfu:.0%} MFU. GPU-h (compute): FLOPs / (peak x MFU). GPU-h "
                 f"(held): the GPU jobs' wall time, start-up and image decoding ({LOADER_IMAGES_PER_CORE:g} "
                 f"images/s per core) included. Profile needs: {RUNTIME_SAFETY:g} x the longest job, "
                 f"{MEMORY_SAFETY:g} x its host memory.")
    lines += [f"- {e.rule}: {note}" for e in estimates for note in e.notes]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.cost", description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument("--gpu", default=REFERENCE_GPU, help=f"one of {', '.join(sorted(GPUS))}")
    parser.add_argument("--mfu", type=float, default=MFU, help="model FLOP utilisation (default %(default)s)")
    parser.add_argument("--loader-rate", type=float, default=LOADER_IMAGES_PER_CORE,
                        help="images/s one CPU core decodes and resizes (default %(default)s)")
    parser.add_argument("--check-profile", type=Path, help="a SLURM profile (slurm/config.yaml) to check")
    parser.add_argument("--json", action="store_true", help="print the estimates as JSON")
    args = parser.parse_args(argv)
    try:
        import yaml

        gpu = gpu_named(args.gpu)
        if not args.configfile.exists():
            raise CostError(f"--configfile {args.configfile}: no such file")
        config = yaml.safe_load(args.configfile.read_text())
        estimates = estimate(config, workflow_rules(args.configfile), gpu, args.mfu, args.loader_rate)
        problems = check_fits(estimates, gpu)
        if args.check_profile:
            problems += check_profile(estimates, yaml.safe_load(args.check_profile.read_text()))
    except CostError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([{**vars(e), "required": required_resources(e)} for e in estimates], indent=1))
    else:
        print(table(estimates, gpu, args.mfu))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
