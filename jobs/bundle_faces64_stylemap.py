"""Copy the latest faces64-stylemap training state into the package as a bundled model.

Reads runs/faces64-stylemap/portable (G_ema, E_ema and the training config; the GPU lease
returns it as portable.tar: `tar -xf portable.tar -C runs/faces64-stylemap/`) and writes
latentatlas/weights/faces64-stylemap.safetensors: generator and encoder in fp16 (loading
returns fp32), with the training config and kimg as metadata. Registering the name in
`models.bundled.BUNDLED` is a separate, deliberate step, taken once the model is good enough
(benchmarks/local_edit_quality.py and encoder_vs_projector.py say so).

    python jobs/bundle_faces64_stylemap.py [--run runs/faces64-stylemap]

It rewrites a tracked file of the package, so it parses its arguments before anything else: on
2026-11-29 a `--help` (which it then ignored) replaced the bundled 508 kimg model with the run's
547 kimg checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latentatlas.io.checkpoints import save_stylemap_model  # noqa: E402
from latentatlas.models.stylemap import Encoder, Generator  # noqa: E402
from latentatlas.training.stylemap import PORTABLE_DIR, StyleMapTrainConfig  # noqa: E402

WEIGHTS = ROOT / "latentatlas" / "weights"
NAME = "faces64-stylemap"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / NAME, help="the run folder whose portable/ checkpoint is bundled")
    args = ap.parse_args()
    portable = args.run / PORTABLE_DIR
    if not (portable / "train.safetensors").is_file():
        raise SystemExit(f"{portable}: no portable checkpoint (extract the lease's portable.tar into {args.run}/)")
    with safe_open(str(portable / "train.safetensors"), framework="pt") as f:
        meta = f.metadata()
    cfg = StyleMapTrainConfig(**json.loads(meta["config"]))
    generator, encoder = Generator(cfg.model_config()), Encoder(cfg.model_config())
    generator.load_state_dict(load_file(str(portable / "G_ema.safetensors")))
    encoder.load_state_dict(load_file(str(portable / "E_ema.safetensors")))
    kimg = int(meta["nimg"]) / 1000
    out = WEIGHTS / f"{NAME}.safetensors"
    save_stylemap_model(out, generator.eval(), encoder.eval(), dtype=torch.float16,
                        metadata={"name": NAME, "trained_on": "synthfaces (procedural, 64 px)", "kimg": kimg,
                                  "train_config": json.loads(meta["config"])})
    print(f"{NAME}: {kimg} kimg -> {out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
