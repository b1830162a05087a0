"""The runtime's one setting: where the shipped models are.

    folder = models_dir()        # $ANIME_GAN_MODELS, else the project's demo/models/

The folder holds NAME.onnx files with their menu cards (NAME.json), steering directions
(NAME.directions.json) and, for some, an inversion encoder (NAME.encoder.onnx); scripts/ship_model.sh puts them in the project's demo/models/, and a
deployment can point the runtime, the CLI and the app anywhere else with ANIME_GAN_MODELS.
"""
from __future__ import annotations

import os
from pathlib import Path

MODELS_ENV = "ANIME_GAN_MODELS"
PROJECT_MODELS = Path(__file__).resolve().parents[1] / "demo" / "models"
DEFAULT_NAME = "generator"  # the default model's name in any models folder
ENCODER_SUFFIX = ".encoder.onnx"  # NAME.encoder.onnx: NAME.onnx's inversion encoder, not a model of its own


def models_dir() -> Path:
    """The models folder: ANIME_GAN_MODELS when set, else the project's demo/models/."""
    return Path(os.environ.get(MODELS_ENV) or PROJECT_MODELS)


def model_files(folder: Path) -> list[Path]:
    """The models in a folder: its .onnx files, by name, without the encoders beside them."""
    return sorted(p for p in Path(folder).glob("*.onnx") if not p.name.endswith(ENCODER_SUFFIX))


def encoder_of(model: Path) -> Path:
    """Where a model's inversion encoder lies: NAME.encoder.onnx beside NAME.onnx."""
    return model.with_name(model.stem + ENCODER_SUFFIX)
