"""The adapter modules that sit on the edges of the graph (Eq. 1 and DESIGN.md 1)."""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "identity": nn.Identity}
KINDS = ("bottleneck", "linear")


class BottleneckAdapter(nn.Module):
    """``A(x) = alpha * up(act(down(LN(x))))`` (Eq. 1), no biases, ``up`` zero-initialised.

    The zero ``up`` makes a new adapter add exactly zero, so a fresh graph computes the backbone's
    function; ``down`` keeps PyTorch's default (Kaiming-uniform) init so that ``up`` gets a
    non-zero gradient from the first step.
    """

    def __init__(self, dim: int, rank: int, activation: str = "gelu"):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, rank, bias=False)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(rank, dim, bias=False)
        self.alpha = nn.Parameter(torch.ones(()))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.up(self.act(self.down(self.norm(x))))


class LinearAdapter(nn.Module):
    """``A(x) = x W`` with a full, zero-initialised ``d x d`` matrix: the adapter the scores model."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def check_adapter_args(rank: int, activation: str, kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown adapter kind {kind!r}; expected one of {KINDS}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {tuple(ACTIVATIONS)}")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1, got {rank!r}")


def make_adapter(dim: int, rank: int = 8, activation: str = "gelu", kind: str = "bottleneck") -> nn.Module:
    check_adapter_args(rank, activation, kind)
    if kind == "linear":
        return LinearAdapter(dim)
    return BottleneckAdapter(dim, rank, activation)
