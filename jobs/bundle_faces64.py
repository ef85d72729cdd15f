"""Copy the latest faces64 training state into the package as the bundled models.

Reads runs/faces64/portable (G_ema and the training config) and runs/factors.safetensors,
writes latentatlas/weights/faces64.safetensors and factors.safetensors in fp16 (half the
size; loading returns fp32). Run after a GPU chunk: python jobs/bundle_faces64.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latentatlas.io.checkpoints import save_model  # noqa: E402
from latentatlas.models.stylegan2 import Generator  # noqa: E402
from latentatlas.training.attributes import load_predictor, save_predictor  # noqa: E402
from latentatlas.training.stylegan2 import TrainConfig  # noqa: E402

WEIGHTS = ROOT / "latentatlas" / "weights"


def main() -> None:
    portable = ROOT / "runs" / "faces64" / "portable"
    with safe_open(str(portable / "train.safetensors"), framework="pt") as f:
        meta = f.metadata()
    cfg = TrainConfig(**json.loads(meta["config"]))
    generator = Generator(cfg.generator_config())
    generator.load_state_dict(load_file(str(portable / "G_ema.safetensors")))
    kimg = int(meta["nimg"]) / 1000
    save_model(
        WEIGHTS / "faces64.safetensors", generator.eval(), dtype=torch.float16,
        metadata={"name": "faces64", "trained_on": "synthfaces (procedural, 64 px)", "kimg": kimg, "train_config": json.loads(meta["config"])},
    )
    print(f"faces64: {kimg} kimg -> {WEIGHTS / 'faces64.safetensors'}")
    src = ROOT / "runs" / "factors.safetensors"
    if src.exists():
        with safe_open(str(src), framework="pt") as f:
            info = json.loads(f.metadata()["info"])
        predictor = load_predictor(src).half()
        save_predictor(WEIGHTS / "factors.safetensors", predictor, info)
        print(f"factor predictor: {info.get('steps')} steps -> {WEIGHTS / 'factors.safetensors'}")


if __name__ == "__main__":
    main()
