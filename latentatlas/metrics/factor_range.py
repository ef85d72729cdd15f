"""How far a synthfaces model's samples reach along each factor, in figures and in one picture.

Why: a factor's std ratio (samples against renders) says that a model narrows it, not what the
narrowing looks like, and issue 3 asks that every factor visibly vary across samples. The
2nd-to-98th percentile spread of the predicted factor, samples over renders, is the span that
`benchmarks/factor_reach.py` compares with what projection reaches; the range sheet shows, for
each factor, the samples whose predicted factor lies nearest its 2nd, 50th and 98th percentile
beside the renders at the same percentiles of theirs: a row whose left half barely changes while
its right half does is a factor the model narrows.
"""

from __future__ import annotations

import torch

from latentatlas.data import synthfaces
from latentatlas.metrics.evaluate import factor_batches, generate_from, latent_batches
from latentatlas.models.stylegan2 import Generator
from latentatlas.models.stylemap import Generator as StyleMapGenerator

QUANTILES = (0.02, 0.5, 0.98)


def span(values: torch.Tensor) -> torch.Tensor:
    """[N, F] -> [F]: the spread between the 2nd and 98th percentile of each column."""
    ends = torch.tensor([QUANTILES[0], QUANTILES[-1]], dtype=torch.float64, device=values.device)
    q = torch.quantile(values.double(), ends, dim=0)
    return (q[1] - q[0]).float()


def span_ratios(samples: torch.Tensor, renders: torch.Tensor) -> dict[str, float]:
    """Each factor's span among the samples over its span among the renders (predicted factors, [N, F])."""
    ratios = span(samples) / span(renders)
    return {name: round(float(r), 3) for name, r in zip(synthfaces.FACTOR_NAMES, ratios)}


def quantile_rows(values: torch.Tensor) -> torch.Tensor:
    """[N, F] -> [F, len(QUANTILES)]: per column, the row whose value lies nearest each quantile."""
    q = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64, device=values.device), dim=0)  # [Q, F]
    return (values.double().T.unsqueeze(1) - q.T.unsqueeze(2)).abs().argmin(dim=2)  # [F, Q]


@torch.no_grad()
def range_sheet(generator: Generator | StyleMapGenerator, samples: torch.Tensor, renders: torch.Tensor,
                batch: int, seed: int, render_seed: int) -> torch.Tensor:
    """[F * (2Q + 1), 3, R, R] images, a row of 2Q + 1 per factor: samples at the quantiles, a white
    tile, renders at the quantiles. `samples` and `renders` are the predicted factors [N, F] of
    `sample_batches(generator, N, batch, seed)` and `render_batches(N, batch, render_seed, ...)`,
    whose rows are drawn again here alone (the same latents and factors, not the whole sets),
    `batch` at a time."""
    res = generator.img_resolution
    sample_rows, render_rows = quantile_rows(samples).cpu(), quantile_rows(renders).cpu()
    z = torch.cat(list(latent_batches(generator.z_dim, samples.shape[0], batch, seed)))[sample_rows.flatten()]
    factors = torch.cat(list(factor_batches(renders.shape[0], batch, render_seed)))[render_rows.flatten()]
    drawn = torch.cat([generate_from(generator, part).float().cpu() for part in z.split(batch)])
    rendered = torch.cat([synthfaces.render(part, res).cpu() for part in factors.split(batch)])
    q = len(QUANTILES)
    white = torch.ones(1, 3, res, res)
    rows = [torch.cat([drawn[f * q:(f + 1) * q], white, rendered[f * q:(f + 1) * q]]) for f in range(len(sample_rows))]
    return torch.cat(rows)

