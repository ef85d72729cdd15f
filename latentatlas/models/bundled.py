"""Models shipped inside the package, found by name, and the model argument of every command.

A MODEL argument is either the name of a bundled model or a path to a model file in any
supported format (ours, an official pickle, a rosinality checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentatlas.io.checkpoints import load_any
from latentatlas.io.errors import UserError
from latentatlas.models.stylegan2 import Generator, GeneratorConfig

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# name -> file under latentatlas/weights/ (jobs/bundle_faces64.py and jobs/bundle_faces64_stylemap.py
# write them after training). The kind of each (StyleGAN2 or StyleMapGAN) is read from its file.
BUNDLED: dict[str, str] = {"faces64": "faces64.safetensors", "faces64-stylemap": "faces64-stylemap.safetensors"}
# The synthfaces factor predictor that scores faces64 (and anything trained on synthfaces).
BUNDLED_PREDICTORS: dict[str, str] = {"factors": "factors.safetensors"}
# Direction files made for a bundled model (jobs/bundle_faces64.py): the app's sliders.
BUNDLED_DIRECTIONS: dict[str, list[str]] = {
    "faces64": ["faces64_ganspace.safetensors", "faces64_supervised.safetensors", "faces64_warped.safetensors"],
}
DEFAULT_MODEL = "faces64"
DEFAULT_STYLEMAP_MODEL = "faces64-stylemap"  # the web app's Local edit tab, encode and edit-local examples
DEFAULT_PREDICTOR = "factors"


def bundled_path(name: str) -> Path | None:
    file = BUNDLED.get(name)
    return None if file is None else WEIGHTS_DIR / file


def resolve_predictor(predictor: str | Path) -> Path:
    """Path of a bundled predictor name ('factors'), or the given path."""
    name = str(predictor)
    if name in BUNDLED_PREDICTORS:
        return WEIGHTS_DIR / BUNDLED_PREDICTORS[name]
    return Path(predictor)


def resolve_model(model: str) -> Path:
    """Path of a bundled model name, or the given path if it exists."""
    path = bundled_path(model)
    if path is not None:
        if not path.is_file():
            raise UserError(f"bundled model {model!r} is registered but its file {path} is missing: reinstall latentatlas")
        return path
    candidate = Path(model)
    if candidate.exists():
        return candidate
    names = ", ".join(sorted(BUNDLED)) or "none yet"
    if model in BUNDLED_PREDICTORS:  # bundled too, but a predictor: it reads images, it makes none
        raise UserError(f"{model} is the bundled factor predictor, not a model: give it as --predictor {model} "
                        f"(bundled models: {names})")
    raise UserError(f"{model}: no such file, and not a bundled model (bundled: {names})")


def load_generator(model: str, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Load MODEL (bundled name or path) onto `device`, in eval mode, gradients off."""
    generator, info = load_any(resolve_model(model), device)
    info.setdefault("name", model)
    return generator, info


def tiny_random_generator(seed: int = 0, resolution: int = 32) -> Generator:
    """A small randomly initialised generator: for the demo before a trained model is bundled, and tests."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig(
        z_dim=64, w_dim=64, img_resolution=resolution, mapping_layers=4, channel_base=1024, channel_max=64
    )
    generator = Generator(cfg)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return generator.eval().requires_grad_(False)
