"""Hand-written forwards that apply DESIGN.md section 1 block by block.

They share no code with ``adapter_placement``: the adapter math, the ViT block and the whole BERT and RoBERTa
encoders are written out from their equations, reading only the weights of the real modules. The
tests compare ``AdapterGraph`` against them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def adapter_by_hand(adapter: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1 written out: alpha * act(LN(x) W_down) W_up, or x W for a linear adapter."""
    if hasattr(adapter, "weight") and not hasattr(adapter, "up"):
        return x @ adapter.weight
    h = F.layer_norm(x, x.shape[-1:], adapter.norm.weight, adapter.norm.bias, adapter.norm.eps)
    h = h @ adapter.down.weight.T
    h = {"GELU": F.gelu, "ReLU": F.relu, "Identity": lambda t: t}[type(adapter.act).__name__](h)
    return adapter.alpha * (h @ adapter.up.weight.T)


def _add_adapters(j, z, edges, adapters, nodes, first_pass):
    """x_j = z_j + sum_i A_ij(src_i), with the source of each edge kind from DESIGN.md 1."""
    out = z
    for (i, jj) in edges:
        if jj != j:
            continue
        source = z if i == j else (first_pass[i] if i > j else nodes[i])
        out = out + adapter_by_hand(adapters[(i, j)], source)
    return out


def vit_forward(model, images, edges=(), adapters=None, first_pass=None):
    """A timm ViT with adapters: x_j = x_{j-1} + F_j(x_{j-1}) + sum_i A_ij(src_i) (Eqs. 2-5)."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    nodes = {}
    x = _add_adapters(0, x, edges, adapters, nodes, first_pass)
    nodes[0] = x
    for b, blk in enumerate(model.blocks):
        z = x + blk.ls1(blk.attn(blk.norm1(x)))
        x = nodes[2 * b + 1] = _add_adapters(2 * b + 1, z, edges, adapters, nodes, first_pass)
        z = x + blk.ls2(blk.mlp(blk.norm2(x)))
        x = nodes[2 * b + 2] = _add_adapters(2 * b + 2, z, edges, adapters, nodes, first_pass)
    return model.forward_head(model.norm(x)), nodes


def vit_with_adapters(model, images, edges, adapters):
    """Two passes: the plain first pass gives the recurrent sources (Sec. 4.1)."""
    _, first_pass = vit_forward(model, images)
    return vit_forward(model, images, edges, adapters, first_pass)[0]


def _layer_norm(module, x):
    return F.layer_norm(x, x.shape[-1:], module.weight, module.bias, module.eps)


def _attention(att, x, mask):
    """Multi-head self-attention from the query/key/value weights of an HF BertSelfAttention."""
    b, t, d = x.shape
    heads = att.num_attention_heads
    split = lambda y: y.view(b, t, heads, d // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
    logits = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    logits = logits.masked_fill(~mask[:, None, None, :].bool(), torch.finfo(x.dtype).min)
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)


def bert_forward(model, input_ids, attention_mask, edges=(), adapters=None, first_pass=None, token_type_ids=None):
    """A post-LN BERT for sequence classification with adapters added before each LayerNorm:
    x_j = LN(x_{j-1} + F_j(x_{j-1}) + sum_i A_ij(src_i)) (He et al. 2022)."""
    bert = model.bert
    emb = bert.embeddings
    positions = torch.arange(input_ids.shape[1])
    types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    z = emb.word_embeddings(input_ids) + emb.token_type_embeddings(types) + emb.position_embeddings(positions)[None]
    x, nodes = _post_ln_layers(emb.LayerNorm, bert.encoder.layer, z, attention_mask, edges, adapters, first_pass)
    pooled = torch.tanh(bert.pooler.dense(x[:, 0]))
    return model.classifier(pooled), nodes


def roberta_forward(model, input_ids, attention_mask, edges=(), adapters=None, first_pass=None):
    """RoBERTa: BERT's post-LN encoder; positions count the non-padding tokens from padding_idx + 1
    (a padding token keeps position padding_idx), token type 0, and the head is
    out_proj(tanh(dense(x[:, 0]))) on the last node (no pooler)."""
    roberta = model.roberta
    emb = roberta.embeddings
    pad = emb.padding_idx
    real = (input_ids != pad).long()
    positions = torch.cumsum(real, dim=1) * real + pad
    z = (emb.word_embeddings(input_ids) + emb.token_type_embeddings(torch.zeros_like(input_ids))
         + emb.position_embeddings(positions))
    x, nodes = _post_ln_layers(emb.LayerNorm, roberta.encoder.layer, z, attention_mask, edges, adapters, first_pass)
    head = model.classifier
    return head.out_proj(torch.tanh(head.dense(x[:, 0]))), nodes


def _post_ln_layers(embedding_norm, layers, z, attention_mask, edges, adapters, first_pass):
    """x_0 = LN(z_0 + adapters into 0); per layer, adapters join each residual sum before its LN."""
    nodes = {}
    x = nodes[0] = _layer_norm(embedding_norm, _add_adapters(0, z, edges, adapters, nodes, first_pass))
    for b, layer in enumerate(layers):
        att = layer.attention
        z = att.output.dense(_attention(att.self, x, attention_mask)) + x
        z = _add_adapters(2 * b + 1, z, edges, adapters, nodes, first_pass)
        x = nodes[2 * b + 1] = _layer_norm(att.output.LayerNorm, z)
        h = layer.intermediate.dense(x)
        z = layer.output.dense(F.gelu(h)) + x
        z = _add_adapters(2 * b + 2, z, edges, adapters, nodes, first_pass)
        x = nodes[2 * b + 2] = _layer_norm(layer.output.LayerNorm, z)
    return x, nodes


def bert_with_adapters(model, input_ids, attention_mask, edges, adapters, token_type_ids=None):
    _, first_pass = bert_forward(model, input_ids, attention_mask, token_type_ids=token_type_ids)
    return bert_forward(model, input_ids, attention_mask, edges, adapters, first_pass, token_type_ids)[0]


def roberta_with_adapters(model, input_ids, attention_mask, edges, adapters):
    _, first_pass = roberta_forward(model, input_ids, attention_mask)
    return roberta_forward(model, input_ids, attention_mask, edges, adapters, first_pass)[0]


class ParallelAdapterViT(nn.Module):
    """The usual way to write parallel adapters (He et al. 2022): one adapter beside every
    attention and every MLP sub-layer of a timm ViT, in a hand-written block loop."""

    def __init__(self, vit, rank: int = 8):
        super().__init__()
        self.vit = vit
        for p in vit.parameters():
            p.requires_grad_(False)
        for p in vit.get_classifier().parameters():
            p.requires_grad_(True)
        d = vit.embed_dim

        def make():
            a = nn.ModuleDict({"norm": nn.LayerNorm(d), "down": nn.Linear(d, rank, bias=False),
                               "up": nn.Linear(rank, d, bias=False)})
            nn.init.zeros_(a["up"].weight)
            a.alpha = nn.Parameter(torch.ones(()))
            return a

        self.attn_adapters = nn.ModuleList(make() for _ in vit.blocks)
        self.mlp_adapters = nn.ModuleList(make() for _ in vit.blocks)

    @staticmethod
    def _adapter(a, x):
        return a.alpha * a["up"](F.gelu(a["down"](a["norm"](x))))

    def forward(self, images):
        v = self.vit
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(images))))
        for blk, a1, a2 in zip(v.blocks, self.attn_adapters, self.mlp_adapters):
            x = x + blk.ls1(blk.attn(blk.norm1(x))) + self._adapter(a1, x)
            x = x + blk.ls2(blk.mlp(blk.norm2(x))) + self._adapter(a2, x)
        return v.forward_head(v.norm(x))
