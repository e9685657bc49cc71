"""Where the nodes of the adapter graph live inside a timm ViT or a Hugging Face BERT/RoBERTa.

Everything model-specific is here: which module's input or output is node ``j``, and where an
adapter's output is added (DESIGN.md 1). ``tap_nodes`` registers plain PyTorch forward hooks on the
model's own sub-modules, so the wrapped model keeps its own ``forward`` (masks, class token, head)
and nothing in the library is patched.

- Pre-LN ViT: node ``2b+1`` is ``x + drop_path1(...)`` of block ``b``, node ``2b+2`` its output;
  adapters add into the residual stream by adding to the branch output ``drop_path{1,2}``.
- Post-LN BERT/RoBERTa: node ``j`` is the output of the LayerNorm that closes sub-layer ``j``
  (node 0: the embedding LayerNorm); adapters add to that LayerNorm's input, the residual sum.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch import nn

VIT, POST_LN = "vit", "post_ln"
SUPPORTED = (
    "timm VisionTransformer (pre-LN blocks), Hugging Face BertModel / RobertaModel and their "
    "...ForSequenceClassification"
)

# on_add(j, pre) -> tensor to add at node j, or None; ``pre()`` gives z_j, node j before adapters.
OnAdd = Callable[[int, Callable[[], torch.Tensor]], Optional[torch.Tensor]]
# on_node(j, x_j): observes the value of node j in this pass.
OnNode = Callable[[int, torch.Tensor], None]


@dataclass
class Backbone:
    """What the adapter graph needs to know of a wrapped model."""

    model: nn.Module
    family: str  # VIT (pre-LN) or POST_LN
    num_layers: int
    hidden_size: int
    head: Optional[nn.Module]  # trainable classifier, None for a bare encoder
    heads: int = 0  # attention heads
    ffn_size: int = 0  # feed-forward width
    tokens: Optional[int] = None  # tokens per example: fixed for a ViT, None for text (per batch)

    @property
    def num_nodes(self) -> int:
        return 2 * self.num_layers + 1

    @property
    def modality(self) -> str:
        return "vision" if self.family == VIT else "text"

    def arch(self, rank: int):
        """The FLOP model's shape (``flops.Arch``) of this encoder with adapters of ``rank``."""
        from .flops import Arch

        return Arch(self.num_layers, self.hidden_size, self.heads, self.ffn_size, rank, self.tokens)


def describe(model: nn.Module) -> Backbone:
    """Recognise a supported model; a ValueError names the type otherwise."""
    vit = _as_vit(model)
    if vit is not None:
        return vit
    bert = _as_bert(model)
    if bert is not None:
        return bert
    raise ValueError(f"unsupported model type {type(model).__name__}; supported: {SUPPORTED}")


def _as_vit(model: nn.Module) -> Optional[Backbone]:
    from timm.models.vision_transformer import Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        return None
    if not all(type(b) is Block for b in model.blocks):
        kinds = sorted({type(b).__name__ for b in model.blocks})
        raise ValueError(f"unsupported ViT block type(s) {kinds}; supported: timm's pre-LN Block")
    head = model.get_classifier()
    block = model.blocks[0]
    return Backbone(model, VIT, len(model.blocks), model.embed_dim, head if isinstance(head, nn.Linear) else None,
                    heads=block.attn.num_heads, ffn_size=block.mlp.fc1.out_features,
                    tokens=model.patch_embed.num_patches + model.num_prefix_tokens)


def _as_bert(model: nn.Module) -> Optional[Backbone]:
    from transformers import BertModel, RobertaModel

    base = getattr(model, "base_model", None)
    if not isinstance(base, (BertModel, RobertaModel)):
        return None
    head = getattr(model, "classifier", None) if model is not base else None
    config = base.config
    return Backbone(model, POST_LN, len(base.encoder.layer), config.hidden_size, head,
                    heads=config.num_attention_heads, ffn_size=config.intermediate_size)


@contextmanager
def tap_nodes(backbone: Backbone, on_add: OnAdd, on_node: OnNode) -> Iterator[None]:
    """Hook every node of ``backbone.model`` for the forward passes run inside the block."""
    install = _vit_hooks if backbone.family == VIT else _post_ln_hooks
    handles = install(backbone.model, on_add, on_node)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _vit_hooks(model, on_add: OnAdd, on_node: OnNode) -> list:
    last = {}  # the latest node value: the residual that the next branch is added to

    def node_input(j):  # pre-hook: this module's input is node j
        def hook(_module, args):
            x = args[0]
            if j == 0:
                a = on_add(0, lambda: x)
                if a is not None:
                    x = x + a
            last["x"] = x
            on_node(j, x)
            return (x,) + tuple(args[1:]) if j == 0 else None
        return hook

    def branch_output(j):  # forward hook on drop_path: x_j = x_{j-1} + branch + adapters
        def hook(_module, _args, branch):
            x_prev = last["x"]
            a = on_add(j, lambda: x_prev + branch)
            return None if a is None else branch + a
        return hook

    def last_output(j):
        def hook(_module, _args, x):
            on_node(j, x)
        return hook

    handles = []
    for b, block in enumerate(model.blocks):
        # a pre-hook on every block (not only the first) lets a pass start at any block
        handles.append(block.register_forward_pre_hook(node_input(2 * b)))
        handles.append(block.drop_path1.register_forward_hook(branch_output(2 * b + 1)))
        handles.append(block.norm2.register_forward_pre_hook(node_input(2 * b + 1)))
        handles.append(block.drop_path2.register_forward_hook(branch_output(2 * b + 2)))
    handles.append(model.blocks[-1].register_forward_hook(last_output(2 * len(model.blocks))))
    return handles


def _post_ln_hooks(model, on_add: OnAdd, on_node: OnNode) -> list:
    base = model.base_model
    norms = [base.embeddings.LayerNorm]
    for layer in base.encoder.layer:
        norms += [layer.attention.output.LayerNorm, layer.output.LayerNorm]

    def residual_sum(j):  # pre-hook: the LayerNorm's input is z_j, adapters add to it
        def hook(_module, args):
            z = args[0]
            a = on_add(j, lambda: z)
            return None if a is None else (z + a,) + tuple(args[1:])
        return hook

    def node_output(j):
        def hook(_module, _args, x):
            on_node(j, x)
        return hook

    def layer_input(j):  # node j again, seen by a pass that starts at this layer (start_at_block)
        def hook(_module, args):
            on_node(j, args[0])
        return hook

    handles = []
    for j, norm in enumerate(norms):
        handles.append(norm.register_forward_pre_hook(residual_sum(j)))
        handles.append(norm.register_forward_hook(node_output(j)))
    for b, layer in enumerate(base.encoder.layer):
        if b > 0:
            handles.append(layer.register_forward_pre_hook(layer_input(2 * b)))
    return handles


def closing_norm(backbone: Backbone, j: int) -> Optional[nn.Module]:
    """The LayerNorm whose output is node j in a post-LN model (None for a pre-LN ViT, where
    node j is the residual sum itself): node j = norm(z_j + adapters)."""
    if backbone.family == VIT:
        return None
    base = backbone.model.base_model
    if j == 0:
        return base.embeddings.LayerNorm
    layer = base.encoder.layer[(j - 1) // 2]
    return layer.attention.output.LayerNorm if j % 2 else layer.output.LayerNorm


def close_node(backbone: Backbone, j: int, residual: torch.Tensor) -> torch.Tensor:
    """Node j's value from its residual sum (z_j plus the adapters into j), as the sub-layer that
    ends at node j computes it. Called outside ``tap_nodes``: the norm's hooks must not add again."""
    norm = closing_norm(backbone, j)
    return residual if norm is None else norm(residual)


@contextmanager
def start_at_node(backbone: Backbone, node: int, hidden: torch.Tensor) -> Iterator[None]:
    """Run the model's own forward from block input ``node`` (even) on, with ``hidden`` its value.

    The blocks before it are left out of the model's block list for the duration, and the value
    that reaches block ``node // 2`` is replaced by ``hidden`` (e.g. from a cache). With
    ``node = 2L`` no block runs and ``hidden`` goes straight to what follows the blocks (the
    final norm, the pooler, the head). The embedding layer still runs (it is cheap) so that the
    model builds its own attention masks.
    """
    if node % 2 or not 0 <= node < backbone.num_nodes:
        raise ValueError(f"a pass starts at a block input, an even node in 0..{backbone.num_nodes - 1}, "
                         f"got {node}")
    block = node // 2
    vit = backbone.family == VIT
    owner, name = ((backbone.model, "blocks") if vit else (backbone.model.base_model.encoder, "layer"))
    blocks = getattr(owner, name)
    replace_input = lambda _m, args: (hidden,) + tuple(args[1:])  # noqa: E731
    if block < len(blocks):
        handle = blocks[block].register_forward_pre_hook(replace_input, prepend=True)
    elif vit:  # timm's forward_features always calls norm after the blocks (an Identity if unused)
        handle = backbone.model.norm.register_forward_pre_hook(replace_input, prepend=True)
    else:  # an encoder without layers returns its input
        def replace(_m, args, kwargs):
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": hidden}
            return (hidden,) + tuple(args[1:]), kwargs
        handle = owner.register_forward_pre_hook(replace, prepend=True, with_kwargs=True)
    kept = list(blocks)[block:]
    setattr(owner, name, nn.Sequential(*kept) if isinstance(blocks, nn.Sequential) else nn.ModuleList(kept))
    try:
        yield
    finally:
        setattr(owner, name, blocks)
        handle.remove()


def logits_of(output):
    """The tensor a loss is computed on: the model's output, or its ``.logits`` (HF)."""
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "logits", None) is not None:
        return output.logits
    return output[0] if isinstance(output, (tuple, list)) else output


def call_model(model: nn.Module, inputs, **extras):
    """Call a model on a tensor (vision) or on a dict of keyword arguments (text)."""
    return model(**inputs, **extras) if isinstance(inputs, dict) else model(inputs, **extras)
