"""Copy the latest faces64 training state into the package as the bundled models.

Reads RUN/portable (G_ema and the training config; RUN is --run, default runs/faces64-narrow,
the narrower faces64 of jobs/faces64_gpu.sh) and runs/factors.safetensors, writes into
latentatlas/weights/:
- faces64.safetensors: G_ema in fp16 (loading returns fp32) with its Gaussian prior (100k w);
- factors.safetensors: the factor predictor in fp16;
- faces64_ganspace.safetensors: 10 GANSpace directions named by their main factor;
- faces64_supervised.safetensors: one InterFaceGAN direction per synthfaces factor;
- faces64_warped.safetensors: 10 WarpedGANSpace paths in W named by their main factor, steepest
  first (1000 steps, about 6 minutes on 2 CPU cores for the 2048 x 128 model; a cut run resumes
  from its state in runs/).
--warped-only makes just the warped file, for the bundled faces64 as it is.
--model-only PATH writes the checkpoint's G_ema (with --weights G the raw generator) as a model file at PATH and nothing else (no
prior, no directions, the package untouched): to measure a run before deciding to bundle it,
e.g. `latentatlas evaluate PATH --num 10000 --ppl-samples 10000 --device cpu`.
--model FILE takes the generator from a model file that training wrote instead of RUN/portable:
the best monitor line's G_ema that `train --keep-best` kept (RUN/best.safetensors), once a 10k
evaluation says it beats the last one.
Run after a GPU chunk (8 minutes on 2 CPU cores for the 2048 x 128 model): python jobs/bundle_faces64.py --run runs/faces64-narrow
Bundling another model changes what every faces64 table in the README was measured on: measure them
again (bash jobs/measure_faces64_cpu.sh).
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

from latentatlas.io.checkpoints import load_model, save_model  # noqa: E402
from latentatlas.latent.gaussian import GaussianPrior  # noqa: E402
from latentatlas.models.stylegan2 import Generator  # noqa: E402
from latentatlas.training.attributes import load_predictor, save_predictor  # noqa: E402
from latentatlas.training.stylegan2 import TrainConfig  # noqa: E402

WEIGHTS = ROOT / "latentatlas" / "weights"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/faces64-narrow", help="training run folder (its portable/ checkpoint is read)")
    ap.add_argument("--warped-only", action="store_true", help="only the warped paths file, for the bundled faces64")
    ap.add_argument("--model-only", metavar="PATH", help="only write the checkpoint's G_ema as a model file here (fp16)")
    ap.add_argument("--model", metavar="FILE", help="the generator from this model file of a training run (e.g. RUN/best.safetensors) instead of RUN/portable")
    ap.add_argument("--weights", choices=("G_ema", "G"), default="G_ema",
                    help="with --model-only: which generator; G, the raw one, tells whether the EMA narrows the samples")
    args = ap.parse_args()
    if args.weights != "G_ema" and not args.model_only:
        raise SystemExit("--weights G: only with --model-only (the bundled model is always G_ema)")
    if args.model and (args.weights != "G_ema" or args.warped_only):
        raise SystemExit("--model: a model file holds G_ema alone; not with --weights G or --warped-only")
    if args.warped_only:
        from latentatlas.models.bundled import load_generator

        bundle_warped(load_generator("faces64", "cpu")[0].eval().requires_grad_(False), load_predictor("factors"))
        return
    if args.model:
        generator, info = load_model(args.model)
        kimg = info["kimg"]
        training = {"trained_on": "synthfaces (procedural, 64 px)", "kimg": kimg, "train_config": info["train_config"],
                    **{k: info[k] for k in ("kept_by", "monitor") if k in info}}
    else:
        portable = ROOT / args.run / "portable"
        if not (portable / "train.safetensors").exists():
            raise SystemExit(f"{portable}: no portable checkpoint (train.safetensors); give the run folder with --run")
        with safe_open(str(portable / "train.safetensors"), framework="pt") as f:
            meta = f.metadata()
        cfg = TrainConfig(**json.loads(meta["config"]))
        generator = Generator(cfg.generator_config())
        generator.load_state_dict(load_file(str(portable / f"{args.weights}.safetensors")))
        kimg = int(meta["nimg"]) / 1000
        training = {"trained_on": "synthfaces (procedural, 64 px)", "kimg": kimg, "train_config": json.loads(meta["config"])}
    generator = generator.eval().requires_grad_(False)
    if args.model_only:
        source = args.model or args.run
        save_model(args.model_only, generator, dtype=torch.float16,
                   metadata={"name": Path(source).resolve().parent.name if args.model else Path(args.run).name, "weights": args.weights, **training})
        print(f"{source}: {args.weights} at {kimg} kimg -> {args.model_only}")
        return
    # The prior is fitted on the fp16-rounded weights that users will load.
    generator.load_state_dict({k: v.half().float() for k, v in generator.state_dict().items()})
    prior = GaussianPrior.fit(generator, num_samples=100_000)
    save_model(
        WEIGHTS / "faces64.safetensors", generator, dtype=torch.float16, extra_tensors=prior.tensors(),
        metadata={"name": "faces64", **training, **prior.metadata()},
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
    from latentatlas.directions.files import sample_w, save_directions
    from latentatlas.directions.pca import ganspace
    from latentatlas.directions.supervised import factor_directions
    from latentatlas.inversion.projector import w_statistics
    from latentatlas.metrics.paths import linear_path, path_responses, summarize

    pca = ganspace(generator, num_samples=100_000, components=10)
    _, w_std = w_statistics(generator, 5000)
    starts = sample_w(generator, 32, seed=7)
    slopes, signed, _ = path_responses(generator, predictor, [linear_path(v) for v in pca.vectors], starts, 0.5 * w_std, 7)
    summary = summarize(slopes, signed)
    pca.names = [f"pc{i} {p['name']}" for i, p in enumerate(summary["paths"])]
    pca.info["auto_names"] = "main factor of each component, from `latentatlas directions score`"
    save_directions(WEIGHTS / "faces64_ganspace.safetensors", pca)
    print("GANSpace:", ", ".join(pca.names))
    sup = factor_directions(generator, predictor, 8000, seed=11, method="svm")
    save_directions(WEIGHTS / "faces64_supervised.safetensors", sup)
    print(f"supervised: {len(sup)} directions")
    bundle_warped(generator, predictor)


def bundle_warped(generator: Generator, predictor) -> None:  # type: ignore[no-untyped-def]
    """WarpedGANSpace paths for the app's third slider set, named by the main factor each moves.

    The reconstructor is left out of the bundled file (the sliders only walk the paths)."""
    from dataclasses import replace

    from latentatlas.directions.files import model_fingerprint
    from latentatlas.directions.score import score_paths
    from latentatlas.directions.warped import PathSet, WarpedConfig, save_warped, train_warped
    from latentatlas.metrics.paths import number_repeats

    cfg = WarpedConfig(sets=10, dipoles=16, space="w", steps=1000, batch=12, seed=0)
    # Its state file makes a cut run resumable; one per model, so a new faces64 starts afresh.
    run = ROOT / "runs" / f"faces64_warped-{model_fingerprint(generator)[:12]}.safetensors"
    result = train_warped(generator, run, cfg, resume=True)
    if not result.complete:
        raise SystemExit(f"warped paths stopped at step {result.step} of {cfg.steps}: run again to resume")
    summary = score_paths(generator, predictor, PathSet(result.paths), starts=32, top=cfg.sets)
    # Steepest first, so that warp0 (the demo's walk, the first slider) shows the most.
    order = sorted(range(cfg.sets), key=lambda i: -summary["paths"][i]["steepness"])
    support = result.paths.support
    with torch.no_grad():
        for t in (support.support, support.alphas, support.log_gamma):
            t.copy_(t[order].clone())
    # Repeated names numbered again in the new order (jaw-, jaw-2, ...).
    names = number_repeats([summary["paths"][k]["name"].rstrip("0123456789") for k in order])
    names = [f"warp{i} {name}" for i, name in enumerate(names)]
    paths = replace(result.paths, names=names, reconstructor=None,
                    info={**result.paths.info, "auto_names": "main factor of each path, from `latentatlas directions score`",
                          "order": "steepest first", "disentanglement": round(summary["disentanglement"], 4)})
    save_warped(WEIGHTS / "faces64_warped.safetensors", paths)
    print("warped:", ", ".join(paths.names))


if __name__ == "__main__":
    main()
