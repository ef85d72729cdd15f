"""Copy the latest faces64 training state into the package as the bundled models.

Reads runs/faces64/portable (G_ema and the training config) and runs/factors.safetensors,
writes into latentatlas/weights/:
- faces64.safetensors: G_ema in fp16 (loading returns fp32) with its Gaussian prior (100k w);
- factors.safetensors: the factor predictor in fp16;
- faces64_ganspace.safetensors: 10 GANSpace directions named by their main factor;
- faces64_supervised.safetensors: one InterFaceGAN direction per synthfaces factor.
Run after a GPU chunk (a few minutes on 2 CPU cores): python jobs/bundle_faces64.py
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
from latentatlas.latent.gaussian import GaussianPrior  # noqa: E402
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
    generator = generator.eval().requires_grad_(False)
    # The prior is fitted on the fp16-rounded weights that users will load.
    generator.load_state_dict({k: v.half().float() for k, v in generator.state_dict().items()})
    prior = GaussianPrior.fit(generator, num_samples=100_000)
    save_model(
        WEIGHTS / "faces64.safetensors", generator, dtype=torch.float16, extra_tensors=prior.tensors(),
        metadata={"name": "faces64", "trained_on": "synthfaces (procedural, 64 px)", "kimg": kimg,
                  "train_config": json.loads(meta["config"]), **prior.metadata()},
    )
    print(f"faces64: {kimg} kimg -> {WEIGHTS / 'faces64.safetensors'}")
    src = ROOT / "runs" / "factors.safetensors"
    if src.exists():
        with safe_open(str(src), framework="pt") as f:
            info = json.loads(f.metadata()["info"])
        predictor = load_predictor(src).half()
        save_predictor(WEIGHTS / "factors.safetensors", predictor, info)
        print(f"factor predictor: {info.get('steps')} steps -> {WEIGHTS / 'factors.safetensors'}")
    bundle_directions(generator, load_predictor(WEIGHTS / "factors.safetensors"))


def bundle_directions(generator: Generator, predictor) -> None:  # type: ignore[no-untyped-def]
    """GANSpace named by what each component does, and supervised directions per factor."""
    from latentatlas.data.synthfaces import FACTOR_NAMES
    from latentatlas.directions.files import sample_w, save_directions
    from latentatlas.directions.pca import ganspace
    from latentatlas.directions.supervised import supervised
    from latentatlas.directions.files import model_fingerprint
    from latentatlas.inversion.projector import w_statistics
    from latentatlas.metrics.paths import factors_of_w, linear_path, path_responses, summarize

    pca = ganspace(generator, num_samples=100_000, components=10)
    _, w_std = w_statistics(generator, 5000)
    starts = sample_w(generator, 32, seed=7)
    slopes, signed, _ = path_responses(generator, predictor, [linear_path(v) for v in pca.vectors], starts, 0.5 * w_std, 7)
    summary = summarize(slopes, signed)
    pca.names = [f"pc{i} {p['name']}" for i, p in enumerate(summary["paths"])]
    pca.info["auto_names"] = "main factor of each component, from `latentatlas directions score`"
    save_directions(WEIGHTS / "faces64_ganspace.safetensors", pca)
    print("GANSpace:", ", ".join(pca.names))
    codes = sample_w(generator, 8000, seed=11)
    scores = factors_of_w(generator, predictor, codes)
    sup = supervised(codes, scores, list(FACTOR_NAMES), model_fingerprint(generator), method="svm")
    save_directions(WEIGHTS / "faces64_supervised.safetensors", sup)
    print(f"supervised: {len(sup)} directions")


if __name__ == "__main__":
    main()
