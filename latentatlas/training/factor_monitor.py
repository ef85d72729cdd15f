"""Factor coverage while a synthfaces model trains: what `latentatlas evaluate` measures, small and often.

Why: in issue 3's runs, how widely the samples spread each factor swings from checkpoint to
checkpoint (a 32 px run: face width's std ratio, samples against renders, 1.21 at 207 kimg and
0.44 at 285), so one evaluation at the end says little about a setting, and comparing two
settings (R1 weights) needs the history. As NVIDIA's training computes its metrics at every
snapshot: every `metrics_kimg`, rank 0 draws `metrics_num` samples of the EMA generator (the
same latents each time), the bundled factor predictor reads them, and one JSON line goes to
RUN/metrics.jsonl: the factor FID against as many renders (made once per run; at a few
thousand images it lies above the 10k figure of `evaluate`, so compare lines with lines), each
factor's std ratio, their mean (each capped at 1, so that no factor's excess hides another's
shortfall) and the factors under half. The log follows the checkpoints like stats.jsonl. Its
time counts in stats.jsonl's seconds per kimg.

Because coverage swings (a CPU run of faces64 went between 4 and 11 factors under half within
175 kimg, by up to 3 from one 10 kimg line to the next), the last checkpoint of a chunk is a draw from that swing.
`--keep-best` keeps the EMA generator of the best line so far as RUN/best.safetensors, as one
keeps NVIDIA's snapshot with the best FID: `fid` ranks lines by their factor FID, `coverage` by
the number of factors under half, then the FID. The ranking reads one line of `metrics_num`
samples, so the best of many lines is partly luck: `latentatlas evaluate` on 10k samples decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from latentatlas.metrics.evaluate import RENDER_SEED_A, coverage, factor_comparison, factor_features, render_batches, sample_batches
from latentatlas.models.stylegan2 import Generator
from latentatlas.models.stylemap import Generator as StyleMapGenerator
from latentatlas.training.stats_log import METRICS_FILE

SAMPLE_SEED = 0  # evaluate's
BATCH = 250


def _fid(line: dict[str, Any]) -> float:
    """The line's factor FID, a non-finite one ranked last (NaN compares below nothing, so a kept
    NaN line would have stayed for good; ranks_better keeps none in the first place)."""
    fid = float(line["factor_fid"])
    return fid if math.isfinite(fid) else math.inf


# --keep-best: how a line ranks, lower first.
BEST_RANKINGS: dict[str, Callable[[dict[str, Any]], tuple[float, ...]]] = {
    "fid": lambda line: (_fid(line),),
    "coverage": lambda line: (len(line["factors_under_half"]), _fid(line)),
}


def ranks_better(line: dict[str, Any], best: dict[str, Any] | None, ranking: str) -> bool:
    """Whether `line` replaces the kept best. A best measured on another number of samples is
    replaced: a factor FID of 1000 samples lies above one of 2000 of the same generator."""
    if not math.isfinite(float(line["factor_fid"])):  # a diverged generator: its NaN weights would not even load
        return False
    if best is None or best.get("num") != line["num"]:
        return True
    rank = BEST_RANKINGS[ranking]
    return rank(line) < rank(best)


class FactorMonitor:
    """Measures a generator against `num` renders at its resolution; the renders' features once."""

    def __init__(self, run_dir: Path, num: int, resolution: int, device: torch.device, predictor: str = "factors") -> None:
        from latentatlas.training.attributes import load_predictor

        self.path = Path(run_dir) / METRICS_FILE
        self.num = num
        self.predictor = load_predictor(predictor, device)
        with torch.no_grad():
            self.renders = factor_features(self.predictor, render_batches(num, BATCH, RENDER_SEED_A, resolution, device))

    @torch.no_grad()
    def measure(self, generator: Generator | StyleMapGenerator, kimg: float) -> dict[str, Any]:
        """One line for the generator as it is at `kimg`, appended to RUN/metrics.jsonl."""
        samples = factor_features(self.predictor, sample_batches(generator, self.num, BATCH, seed=SAMPLE_SEED))
        compared = factor_comparison(samples, self.renders, self.predictor.feature_dim)
        line = {"kimg": kimg, "num": self.num, "factor_fid": round(compared["factor_fid_samples_vs_renders"], 3),
                **coverage(compared["factors"])}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")
        return line
