"""The embedded default's small ViT: its architecture and its file format.

A timm ``VisionTransformer`` (``DEFAULT_VIT_KWARGS``), pre-trained by ``adapter_placement.pretrain``.
On disk: ``PATH`` (safetensors weights) and ``PATH`` with suffix ``.json`` next to it
(``{"model_kwargs", "data_config", "pretraining"}``), both written atomically.
``load_pretrained_vit(PATH, num_classes)`` rebuilds the model with a fresh zero-initialised head, as
the ViT paper does for transfer, and attaches the data config so that
``timm.data.resolve_data_config(model=model)`` returns it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch.nn as nn
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

from adapter_placement import atomic
from adapter_placement.data.render import EMBEDDED_VISION_DATA_CONFIG

DEFAULT_VIT_KWARGS: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "in_chans": 3,
    "num_classes": 10,
    "embed_dim": 64,
    "depth": 6,
    "num_heads": 4,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "class_token": True,
    "global_pool": "token",
}


def build_vit(**overrides: Any) -> VisionTransformer:
    return VisionTransformer(**{**DEFAULT_VIT_KWARGS, **overrides})


def config_path(weights_path: str | os.PathLike) -> Path:
    """The JSON of constructor kwargs and metadata that sits next to the weights."""
    return Path(weights_path).with_suffix(".json")


def save_pretrained_vit(model: VisionTransformer, path: str | os.PathLike,
                        vit_kwargs: Mapping[str, Any],
                        pretraining: Mapping[str, Any] | None = None) -> Path:
    """Weights (safetensors) and their JSON; the JSON first, so finished weights imply a config."""
    path = Path(path)
    record = {"model_kwargs": dict(vit_kwargs), "data_config": dict(EMBEDDED_VISION_DATA_CONFIG),
              "pretraining": dict(pretraining or {})}
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}

    atomic.write_json(config_path(path), record)
    atomic.save_safetensors(path, state)
    return path


def load_pretrained_vit(path: str | os.PathLike, num_classes: int | None = None) -> VisionTransformer:
    """Rebuild the saved ViT and load its weights; with `num_classes`, a fresh zero-initialised head.

    Zero initialisation (as in the ViT paper's transfer recipe) makes the new head independent of any
    random state. The data config is attached as ``model.pretrained_cfg``.
    """
    with open(config_path(path)) as handle:
        record = json.load(handle)
    model = VisionTransformer(**record["model_kwargs"])
    model.load_state_dict(load_file(str(path)))
    if num_classes is not None:
        model.reset_classifier(num_classes)
        nn.init.zeros_(model.head.weight)
        nn.init.zeros_(model.head.bias)
    data_config = dict(record["data_config"])
    data_config["input_size"] = tuple(data_config["input_size"])
    model.pretrained_cfg = data_config
    return model.eval()
