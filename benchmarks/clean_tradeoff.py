"""Artifact removal on faces64: PCA compression (tau) vs truncation (psi), quality against diversity and identity.

The same N seeds (official convention, z = RandomState(seed).randn) are mapped to w and edited:
- compression: `GaussianPrior.compress(w, tau)` (what `latentatlas clean --tau` does: whitened
  principal components of leaky_relu(w, 5) beyond tau are log-compressed), over `--taus`;
- truncation: w_avg + psi (w - w_avg) (`latent.codes.truncate_code`), over `--psis`;
- matched truncation: for each tau, the psi `latentatlas clean` picks without --truncation
  (`latent.gaussian.matched_truncation`: same mean distance to w_avg as the compressed codes),
  to compare the two at equal strength;
- the unedited samples.
Rendered with constant noise. Per setting:
- quality: factor-feature FID (`latentatlas.metrics.fid.fid_from_features`, the bundled predictor's
  penultimate features) of the N samples vs N synthfaces renders (seeds from 2_000_000_000, as
  `latentatlas evaluate`); the floor is N renders vs another N renders (seeds from 3_000_000_000).
  With the default N = 500 the FID is biased upwards compared to the README's 5000-image figure:
  compare settings with each other and with the floor at the same N;
- diversity: std across samples of each predicted factor, averaged over the 20 factors
  (glasses as a probability), and that std relative to the renders' (mean of per-factor ratios);
- identity kept: mean abs change of the predicted factors of a seed vs its unedited sample
  (averaged over factors and seeds; 0 = nothing moved), and the mean factor-feature distance;
- the mean squared Mahalanobis distance of the edited codes under the prior.
Writes a plot (`--plot`, default docs/clean_tradeoff.png) and prints one JSON object (the table);
`--replot RESULT.json` redraws the plot from a saved output without recomputing.

    python benchmarks/clean_tradeoff.py > benchmarks/results_cpu_clean_tradeoff.json
    python benchmarks/clean_tradeoff.py --device cuda --num 10000 --taus 0.5,1,1.5,2,3 --psis 0.5,0.6,0.7,0.8,0.9
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from projection_quality import device_name, log, setup  # noqa: E402

from latentatlas.inversion.losses import factor_feature_distance  # noqa: E402
from latentatlas.runtime import pick_device  # noqa: E402
from latentatlas.latent.codes import LatentCode, synthesize, to_w, truncate_code, z_from_seeds  # noqa: E402
from latentatlas.latent.gaussian import matched_truncation  # noqa: E402
from latentatlas.metrics.evaluate import RENDER_SEED_A, RENDER_SEED_B, render_batches  # noqa: E402
from latentatlas.metrics.fid import fid_from_features  # noqa: E402


@torch.no_grad()
def read(predictor, images: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    feats, preds = [], []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        f = predictor.features(x)
        feats.append(f.cpu())
        preds.append(predictor.predict(x).cpu())
    return torch.cat(feats), torch.cat(preds)


def plot(rows: list[dict], floor: float, path: str, num: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = [("compression", "tau", "C0", "o-"), ("truncation", "psi", "C1", "s-"), ("matched truncation", "psi", "C2", "^--")]
    base = next(r for r in rows if r["method"] == "none")
    for ax, key, label in [(axes[0], "factor_fid", "factor-feature FID vs renders (lower: closer to the data)"), (axes[1], "diversity_ratio", "diversity: predicted-factor std / renders'")]:
        for method, param, colour, style in groups:
            pts = sorted((r for r in rows if r["method"] == method), key=lambda r: r["identity_change"])
            if not pts:
                continue
            xs, ys = [0.0] + [r["identity_change"] for r in pts], [base[key]] + [r[key] for r in pts]
            ax.plot(xs, ys, style, color=colour, label=method)
            for r in pts:
                if r["identity_change"] < 0.01:  # crowded near the unedited point: see the JSON
                    continue
                text = f"psi={r['psi']:.2f}" if method == "matched truncation" else f"{param}={r[param]:g}"
                below = method == "matched truncation"
                ax.annotate(text, (r["identity_change"], r[key]), fontsize=7, color=colour, xytext=(4, -10 if below else 4), textcoords="offset points")
        ax.plot([0], [base[key]], "k*", ms=10, label="unedited")
        ax.set_xlabel("identity change: mean |predicted factor change| vs unedited")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"faces64: artifact removal trade-off (N = {num} seeds; factor-feature FID floor, renders vs renders: {floor:.2f})", fontsize=10)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--taus", default="0.5,1,2,3")
    ap.add_argument("--psis", default="0.5,0.7,0.9")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "clean_tradeoff.png"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--replot", default=None, help="only redraw the plot from this script's JSON output")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            done = json.load(f)
        plot(done["rows"], done["factor_fid_renders_vs_renders"], args.plot, done["num"])
        return

    torch.set_num_threads(args.threads)
    device = torch.device(pick_device(args.device))
    t_start = time.perf_counter()
    generator, info, predictor, prior = setup(device)
    n = args.num
    dist = factor_feature_distance(predictor.features)
    res = generator.img_resolution

    renders_a = torch.cat(list(render_batches(n, args.batch, RENDER_SEED_A, res, device)))
    renders_b = torch.cat(list(render_batches(n, args.batch, RENDER_SEED_B, res, device)))
    fa, pa = read(predictor, renders_a, args.batch)
    fb, _ = read(predictor, renders_b, args.batch)
    floor = fid_from_features(fb, fa)
    render_std = pa.std(0)

    with torch.no_grad():
        w = to_w(z_from_seeds(list(range(n)), generator.z_dim, device), generator).tensor
    w_avg = generator.mapping.w_avg

    def truncated(psi: float) -> torch.Tensor:
        return truncate_code(LatentCode("w", w), generator, psi).tensor

    settings: list[tuple[str, dict, torch.Tensor]] = [("none", {}, w)]
    for tau in [float(t) for t in args.taus.split(",")]:
        wc = prior.compress(w.double(), tau).float()
        settings.append(("compression", {"tau": tau}, wc))
        psi = matched_truncation(w, wc, w_avg)  # what `latentatlas clean` picks without --truncation
        settings.append(("matched truncation", {"psi": psi, "matched_tau": tau}, truncated(psi)))
    for psi in [float(p) for p in args.psis.split(",")]:
        settings.append(("truncation", {"psi": psi}, truncated(psi)))

    rows, base_images, base_pred = [], None, None
    for method, params, codes in settings:
        t0 = time.perf_counter()
        images = synthesize(LatentCode("w", codes), generator, batch_size=args.batch)
        feats, preds = read(predictor, images, args.batch)
        if base_images is None:
            base_images, base_pred = images, preds
        with torch.no_grad():
            feat_move = torch.cat([dist(images[i : i + args.batch], base_images[i : i + args.batch]).cpu() for i in range(0, n, args.batch)])
        std = preds.std(0)
        row = {
            "method": method,
            **params,
            "factor_fid": fid_from_features(feats, fa),
            "diversity_std": float(std.mean()),
            "diversity_ratio": float((std / render_std).mean()),
            "identity_change": float((preds - base_pred).abs().mean()),
            "identity_feature_distance": float(feat_move.mean()),
            "mean_distance_to_w_avg": float((codes - w_avg).norm(dim=1).mean()),
            "mahalanobis_mean": float(prior.mahalanobis(codes.double().cpu()).mean()),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        log(json.dumps(row))
    plot(rows, floor, args.plot, n)
    print(json.dumps({
        "benchmark": "clean_tradeoff",
        "device": device_name(device),
        "torch": torch.__version__,
        "model": "faces64",
        "num": n,
        "noise_mode": "const",
        "factor_fid_renders_vs_renders": floor,
        "renders_diversity_std": float(render_std.mean()),
        "plot": os.path.relpath(args.plot, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")),
        "rows": rows,
        "total_seconds": time.perf_counter() - t_start,
    }, indent=1))


if __name__ == "__main__":
    main()
