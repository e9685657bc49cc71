"""What a task is (``Task``), the in-memory task of the embedded default, and batching of tensors.

``inputs`` is a float tensor (B, 3, H, W) for vision and a dict of int64 tensors (``input_ids``,
``attention_mask``[, ``token_type_ids``]) for text; ``labels`` is int64 (B,). Every task has the splits
``train``, ``val``, ``test`` and ``train+val`` (the paper selects hyper-parameters on ``val``, then
trains on ``train+val`` and reports ``test``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F

from .registry import check_split

Inputs = Any  # a tensor (vision) or a dict of tensors (text)


@runtime_checkable
class Task(Protocol):
    """What training, the prefix cache, scoring and tracking use of a task, at both scales.

    ``InMemoryTask`` (embedded) and ``tfds_loader.TfdsTask`` (paper scale) provide it.
    """

    name: str
    modality: str  # "vision" | "text"
    num_classes: int

    @property
    def split_sizes(self) -> dict[str, int]:
        """Examples per split, ``train+val`` included."""

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """One pass over the split as model inputs and labels; the order is a function of `seed`."""

    def tensors(self, split: str) -> tuple[Inputs, torch.Tensor]:
        """The whole split as model inputs and labels."""

    def digest(self, split: str) -> str:
        """A short digest of the split's model inputs and labels (what the prefix cache keys on)."""


# ---------------------------------------------------------------------------------------------------
# Batching in-memory tensors
# ---------------------------------------------------------------------------------------------------

def index_inputs(inputs: Inputs, index: torch.Tensor) -> Inputs:
    """Rows `index` of a tensor or of every tensor of a dict (text inputs)."""
    if isinstance(inputs, Mapping):
        return {key: value[index] for key, value in inputs.items()}
    return inputs[index]


def trim_padding(inputs: Inputs, extras: Mapping | None = None) -> tuple[Inputs, dict]:
    """Text inputs (and the cached hidden states of ``extras``) cut after the last column that any
    example of the batch attends to. A split is padded to its longest example, a batch need only be
    padded to its own: the columns cut are padding that no attention mask lets through, so the
    outputs at the remaining positions are the same; parallel adapters on the MNLI stand-in step in
    0.76x the time (benchmarks/bench_text_step.py). Vision inputs (tensors) pass unchanged."""
    extras = dict(extras or {})
    if not isinstance(inputs, Mapping) or "attention_mask" not in inputs:
        return inputs, extras
    mask = inputs["attention_mask"]
    attended = torch.nonzero(mask.any(dim=0))
    width = int(attended[-1]) + 1 if len(attended) else mask.shape[1]
    if width == mask.shape[1]:
        return inputs, extras

    def cut(value):
        if isinstance(value, Mapping):
            return {key: cut(v) for key, v in value.items()}
        return value[:, :width] if torch.is_tensor(value) and value.dim() >= 2 else value
    return cut(inputs), cut(extras)


def tensors_digest(inputs: Inputs, labels: torch.Tensor) -> str:
    """A short digest of model inputs (a tensor, or a dict of them for text) and labels."""
    digest = hashlib.blake2b(digest_size=8)
    tensors = sorted(inputs.items()) if isinstance(inputs, Mapping) else [("inputs", inputs)]
    for name, tensor in tensors + [("labels", labels)]:
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def concat_inputs(parts: Sequence[Inputs]) -> Inputs:
    """Concatenate tensors or dicts of tensors along the first axis; text is right-padded with 0."""
    if isinstance(parts[0], Mapping):
        width = max(part["input_ids"].shape[1] for part in parts)
        return {key: torch.cat([F.pad(part[key], (0, width - part[key].shape[1])) for part in parts])
                for key in parts[0]}
    return torch.cat(list(parts))


def batches(inputs: Inputs, labels: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            seed: int = 0, drop_last: bool = False) -> Iterator[tuple[Inputs, torch.Tensor]]:
    """One pass over (inputs, labels) in batches; the order is a function of `seed` when shuffling.

    Pass a different seed per epoch (e.g. ``seed * 1000 + epoch``) for a fresh order each epoch.
    """
    n = len(labels)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if drop_last and len(index) < batch_size:
            break
        yield index_inputs(inputs, index), labels[index]


@dataclass(frozen=True)
class ImageNormaliser:
    """uint8 (B, 3, h, w) -> float (B, 3, H, W): scale to [0, 1], resize if H, W differ, normalise.

    Stored images stay uint8 (a quarter of the memory); batches are converted on the way out.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int]

    @classmethod
    def from_data_config(cls, data_config: Mapping[str, Any]) -> "ImageNormaliser":
        _, height, width = data_config["input_size"]
        return cls(tuple(data_config["mean"]), tuple(data_config["std"]), (height, width))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std


# ---------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------

class SplitDigests:
    """``digest(split)`` for a task with ``tensors(split)`` and a ``_digests`` memo field."""

    def digest(self, split: str) -> str:
        """A short digest of the split's model inputs and labels (what the prefix cache keys on)."""
        if split not in self._digests:
            self._digests[split] = tensors_digest(*self.tensors(split))
        return self._digests[split]


def _identity(x):
    return x


@dataclass
class InMemoryTask(SplitDigests):
    """A task whose splits are tensors in memory (the embedded default).

    `splits` holds the stored form (uint8 images or token dicts); `to_model_input` turns a stored
    batch into what the model eats. ``train+val`` is the concatenation of ``train`` and ``val``.
    """

    name: str
    modality: str  # "vision" | "text"
    num_classes: int
    splits: dict[str, tuple[Inputs, torch.Tensor]]
    to_model_input: Callable[[Inputs], Inputs] = _identity
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def stored(self, split: str) -> tuple[Inputs, torch.Tensor]:
        check_split(split)
        if split == "train+val":
            parts = [self.splits["train"], self.splits["val"]]
            return concat_inputs([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self.splits[split]

    @property
    def split_sizes(self) -> dict[str, int]:
        sizes = {name: len(labels) for name, (_, labels) in self.splits.items()}
        sizes["train+val"] = sizes["train"] + sizes["val"]
        return sizes

    def tensors(self, split: str) -> tuple[Inputs, torch.Tensor]:
        """The whole split as model inputs and labels."""
        inputs, labels = self.stored(split)
        return self.to_model_input(inputs), labels

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> Iterator[tuple[Inputs, torch.Tensor]]:
        inputs, labels = self.stored(split)
        for batch_inputs, batch_labels in batches(inputs, labels, batch_size, shuffle=shuffle,
                                                  seed=seed, drop_last=drop_last):
            yield self.to_model_input(batch_inputs), batch_labels


def in_memory_task(name: str, modality: str, num_classes: int, splits: Mapping[str, tuple[Any, Any]],
                   data_config: Mapping[str, Any] | None = None) -> InMemoryTask:
    """An ``InMemoryTask`` from a builder's splits: numpy int64 labels with uint8 numpy images
    (vision, normalised per batch as `data_config` says) or token tensors (text)."""
    if modality == "text":
        stored = {split: (tokens, torch.from_numpy(labels)) for split, (tokens, labels) in splits.items()}
        return InMemoryTask(name, "text", num_classes, stored)
    stored = {split: (torch.from_numpy(images), torch.from_numpy(labels))
              for split, (images, labels) in splits.items()}
    return InMemoryTask(name, "vision", num_classes, stored, ImageNormaliser.from_data_config(data_config))
