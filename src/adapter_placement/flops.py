"""Analytic FLOPs of App. K: the encoder blocks, bottleneck adapters and the score products.

Pure functions of the shapes; ``products.costs.appk_table`` and the placement searches
(``search.pass_flops``) both count with these, so every FLOP figure of the project agrees.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


def forward_flops(tokens: int, d: int, heads: int, ffn: int, blocks: int) -> float:
    """Forward FLOPs of one example through the encoder blocks (App. K, footnote 8)."""
    d_k = d // heads
    f_ffn = tokens * (2 * d - 1) * ffn + tokens * (2 * ffn - 1) * d
    f_mha = (3 * tokens * (2 * d - 1) * d_k * heads + tokens ** 2 * 2 * d_k * heads
             + tokens * (2 * tokens - 1) * d_k * heads + tokens * (2 * d_k * heads - 1) * d)
    return float(blocks * (f_mha + f_ffn))


def adapter_flops(n_adapters: int, tokens: int, d: int, rank: int) -> float:
    """Forward FLOPs of the adapters for one example (App. K, Eq. 10)."""
    return float(n_adapters * (9 * d * tokens + 4 * d * tokens * rank + 4 * tokens * rank + tokens * d))


def score_flops(examples: int, edges: int, tokens: int, d: int) -> float:
    """FLOPs of ``edges`` gradient products X_i^T G_j over ``examples`` examples and their mean (App. K;
    the reduction f(G), an SVD per edge, is left out as there)."""
    return float(examples * edges * (2 * tokens - 1) * d ** 2 + examples * edges * d ** 2 + edges * d ** 2)


@dataclass(frozen=True)
class Arch:
    """What the FLOP model needs of an encoder; ``tokens`` is fixed for vision, None for text."""

    blocks: int
    hidden: int
    heads: int
    ffn: int
    rank: int
    tokens: Optional[int] = None


def pass_flops(arch: Arch, examples: int, tokens: int, adapters: int = 0, *, backward: bool = True,
               first_pass: bool = False, scored_edges: int = 0) -> float:
    """Analytic FLOPs of one pass of ``examples`` examples of ``tokens`` tokens (App. K).

    Forward: the encoder blocks (App. K, footnote 8) plus ``adapters`` bottleneck adapters of rank
    ``arch.rank`` (Eq. 10). ``backward``: as much again, App. K's estimate when no backbone
    weight needs a gradient. ``first_pass``: one more plain forward for the recurrent sources
    (App. K). ``scored_edges``: the gradient products ``X_i^T G_j`` of that many edges and their
    mean (``score_flops``). The classifier head and embeddings are left out, as in App. K.
    """
    backbone = forward_flops(tokens, arch.hidden, arch.heads, arch.ffn, arch.blocks)
    forward = backbone + adapter_flops(adapters, tokens, arch.hidden, arch.rank)
    per_example = forward * (2 if backward else 1) + (backbone if first_pass else 0)
    return examples * per_example + (score_flops(examples, scored_edges, tokens, arch.hidden) if scored_edges else 0.0)
