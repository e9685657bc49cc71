"""The adapter modules that sit on the edges of the graph (Eq. 1 and DESIGN.md 1)."""
from __future__ import annotations

import torch
from torch import nn

# GELU fitted by the rational R below: least squares on [-5, 5], then L-BFGS; the largest error
# is 2.8e-3 on [-3, 3] (where LN(x) W_down mostly lies) and 3.9e-3 on [-5, 5]. Far outside, R grows
# like (a5 / b4) x on both sides, as every degree-(5, 4) rational does.
GELU_NUMERATOR = (-2.6038729637e-3, 4.9941264679e-1, 4.1486501327e-1, 1.1798373622e-1, 1.2640219839e-2,
                  3.2047330689e-4)
GELU_DENOMINATOR = (-7.8893295128e-11, 2.3467098091e-1, 6.0219810090e-4, 5.6863316036e-4)


class RationalActivation(nn.Module):
    """A learnable rational activation, as in Adaptable Adapters (Moosavi et al. 2022).

    ``R(x) = (a_0 + a_1 x + ... + a_5 x^5) / (1 + |b_1| |x| + ... + |b_4| |x|^4)``: the "safe"
    Pade activation unit of Molina et al. (2020, their version A; the denominator is >= 1, so no
    pole), initialised to approximate GELU, so a fresh adapter behaves like a GELU adapter.
    Each adapter learns its own coefficients, shared over its hidden units.
    """

    def __init__(self):
        super().__init__()
        self.numerator = nn.Parameter(torch.tensor(GELU_NUMERATOR))
        self.denominator = nn.Parameter(torch.tensor(GELU_DENOMINATOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.zeros_like(x) + self.numerator[-1]
        for a in reversed(self.numerator[:-1]):  # Horner
            p = p * x + a
        ax = x.abs()
        q = torch.zeros_like(x) + self.denominator.abs()[-1]
        for b in reversed(self.denominator.abs()[:-1]):
            q = q * ax + b
        return p / (1.0 + q * ax)


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "identity": nn.Identity, "rational": RationalActivation}
KINDS = ("bottleneck", "linear")


def in_float32(forward):
    """Run an adapter's forward in float32, outside autocast. An adapter adds a small correction to a
    hidden state; summed in bf16 (8 bits of mantissa) a fresh adapter's output rounds away, and
    parallel adapters on SST-2's stand-in stayed at chance on one seed (loss ln 2; fp32: 91%). The
    float32 output makes the node's sum float32 too; adapters are a small part of the compute.
    A float64 graph (the tests' finite differences) stays float64."""
    def wrapped(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return forward(self, x.to(torch.promote_types(x.dtype, torch.float32)))
    wrapped.__doc__ = forward.__doc__
    return wrapped


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

    @in_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.up(self.act(self.down(self.norm(x))))


class LinearAdapter(nn.Module):
    """``A(x) = x W`` with a full, zero-initialised ``d x d`` matrix: the adapter the scores model."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim, dim))

    @in_float32
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
