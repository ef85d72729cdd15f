"""The Gaussianized latent space of Wulff & Torralba (2020).

The last mapping layer ends in a leaky ReLU (slope 0.2), which folds the distribution of w.
Undoing it, v = leaky_relu(w, 5), gives a space where w is close to Gaussian; a mean and
covariance fitted there make a prior that can regularise projection (negative log-likelihood
or Mahalanobis distance, summed over the layers of a w+ code) and a PCA basis in which large
components, the source of artifacts, can be compressed instead of truncating everything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from latentatlas.io.errors import UserError, require_at_least, require_number
from latentatlas.models.ops import LRELU_SLOPE
from latentatlas.models.stylegan2 import Generator

PRIOR_PREFIX = "prior."
# The mapping network ends in a leaky ReLU of slope 0.2 (models/ops.py); the Gaussianizing map is
# its inverse, a leaky ReLU of slope 1 / 0.2 = 5 (the design's "inverse leaky-ReLU slope 5").
MAPPING_LRELU_SLOPE = LRELU_SLOPE
GAUSSIANIZE_SLOPE = 1 / MAPPING_LRELU_SLOPE  # 5.0


def gaussianize(w: torch.Tensor) -> torch.Tensor:
    """v = leaky_relu(w, 5): undoes the mapping network's last activation."""
    return F.leaky_relu(w, GAUSSIANIZE_SLOPE)


def degaussianize(v: torch.Tensor) -> torch.Tensor:
    """w = leaky_relu(v, 0.2): back from the Gaussianized space, as the mapping network's activation."""
    return F.leaky_relu(v, MAPPING_LRELU_SLOPE)


def matched_truncation(w: torch.Tensor, edited: torch.Tensor, w_avg: torch.Tensor) -> float:
    """The truncation psi that pulls codes w [N, D] as far towards w_avg, on average, as `edited`
    (e.g. compressed: GaussianPrior.compress) pulled them: mean ||edited - w_avg|| / mean ||w - w_avg||.

    `clean` shows truncation at this psi beside compression, and benchmarks/clean_tradeoff.py
    compares the two at it, so that the comparison is at equal strength, not at an arbitrary psi."""
    return float((edited - w_avg).norm(dim=-1).mean() / (w - w_avg).norm(dim=-1).mean())


def check_tau(tau: float) -> float:
    """The compression threshold: a positive, finite number of standard deviations (NaN would compress nothing)."""
    return require_number("--tau", tau, above=0, what="a positive number of standard deviations", example="2")


@dataclass
class GaussianPrior:
    """Mean, covariance and their derived forms in v = leaky_relu(w, 5)."""

    mean: torch.Tensor  # [D]
    cov: torch.Tensor  # [D, D]
    num_samples: int
    chol: torch.Tensor | None = None
    precision: torch.Tensor | None = None
    eigvals: torch.Tensor | None = None  # descending
    eigvecs: torch.Tensor | None = None  # columns, same order

    def __post_init__(self) -> None:
        self.mean = self.mean.double()
        self.cov = self.cov.double()
        d = self.mean.shape[0]
        if self.cov.shape != (d, d):
            raise UserError(f"prior covariance has shape {list(self.cov.shape)}, expected [{d}, {d}]")
        if self.chol is None:
            jitter = 1e-8 * self.cov.diagonal().mean()
            self.chol = torch.linalg.cholesky(self.cov + jitter * torch.eye(d, dtype=torch.float64))
        if self.precision is None:
            self.precision = torch.cholesky_inverse(self.chol)
        if self.eigvals is None or self.eigvecs is None:
            vals, vecs = torch.linalg.eigh(self.cov)
            self.eigvals, self.eigvecs = vals.flip(0).clamp_min(0), vecs.flip(1)
        self.chol, self.precision = self.chol.double(), self.precision.double()
        self.eigvals, self.eigvecs = self.eigvals.double(), self.eigvecs.double()

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # ---------------------------------------------------------------- scores
    def mahalanobis(self, w: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of w [N, D] (or w+ [N, L, D], summed over layers), per code."""
        d2 = self._d2_per_layer(w)
        return d2.sum(-1) if w.ndim == 3 else d2

    def nll(self, w: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in v (w+ summed over layers), per code; includes the Jacobian of v(w)."""
        v_logdet = 2 * torch.log(self.chol.diagonal()).sum()
        const = 0.5 * (self.dim * math.log(2 * math.pi) + float(v_logdet))
        # log |dv/dw| = sum over negative entries of log 5.
        log_jac = (w < 0).to(w.dtype).sum(-1) * math.log(GAUSSIANIZE_SLOPE)
        per = 0.5 * self._d2_per_layer(w) + const - log_jac
        return per.sum(-1) if w.ndim == 3 else per

    def _d2_per_layer(self, w: torch.Tensor) -> torch.Tensor:
        """||L^-1 (v - mu)||^2 with the Cholesky factor L: stable and differentiable."""
        v = gaussianize(w)
        flat = (v - self.mean.to(v)).reshape(-1, self.dim)
        y = torch.linalg.solve_triangular(self.chol.to(v), flat.T, upper=False)
        return y.square().sum(0).reshape(v.shape[:-1])

    # ---------------------------------------------------------------- PCA and compression
    def to_pca(self, w: torch.Tensor) -> torch.Tensor:
        """Whitened principal coordinates c = U^T (v - mu) / sigma, per code (and layer)."""
        v = gaussianize(w)
        sigma = self.eigvals.sqrt().clamp_min(1e-12).to(v)
        return ((v - self.mean.to(v)) @ self.eigvecs.to(v)) / sigma

    def from_pca(self, c: torch.Tensor) -> torch.Tensor:
        sigma = self.eigvals.sqrt().to(c)
        v = (c * sigma) @ self.eigvecs.to(c).T + self.mean.to(c)
        return degaussianize(v)

    def compress(self, w: torch.Tensor, tau: float) -> torch.Tensor:
        """Log-compress every whitened component beyond tau: c -> sign(c) (tau + log(1 + |c| - tau)).

        Components within tau standard deviations are untouched, so typical codes keep their
        identity; only the rare large excursions, where artifacts live, are pulled in.
        """
        check_tau(tau)
        c = self.to_pca(w)
        a = c.abs()
        squashed = torch.where(a > tau, tau + torch.log1p((a - tau).clamp_min(0)), a)  # the clamp: no inf gradient from the unused branch
        return self.from_pca(torch.sign(c) * squashed)

    # ---------------------------------------------------------------- fitting and files
    @classmethod
    @torch.no_grad()
    def fit(cls, generator: Generator, num_samples: int = 100_000, batch: int = 4096, seed: int = 0, progress: bool = True) -> "GaussianPrior":
        """Fit from mapping-network samples, accumulating sums in float64 (any N, batched)."""
        from tqdm import tqdm

        if num_samples < generator.w_dim + 1:
            raise UserError(f"need more samples than dimensions ({generator.w_dim}) to fit a covariance, got {num_samples}")
        require_at_least("--batch", batch, 1, "mapping samples per step")
        g = torch.Generator().manual_seed(seed)
        d = generator.w_dim
        s1 = torch.zeros(d, dtype=torch.float64)
        s2 = torch.zeros(d, d, dtype=torch.float64)
        done = 0
        with tqdm(total=num_samples, disable=not progress, desc="prior", unit="w") as bar:
            while done < num_samples:
                n = min(batch, num_samples - done)
                z = torch.randn(n, generator.z_dim, generator=g).to(generator.device)
                v = gaussianize(generator.mapping(z)[:, 0]).double().cpu()
                s1 += v.sum(0)
                s2 += v.T @ v
                done += n
                bar.update(n)
        mean = s1 / done
        cov = (s2 - done * torch.outer(mean, mean)) / (done - 1)
        return cls(mean=mean, cov=cov, num_samples=done)

    def tensors(self) -> dict[str, torch.Tensor]:
        assert self.chol is not None and self.precision is not None and self.eigvals is not None and self.eigvecs is not None
        return {
            PRIOR_PREFIX + "mean": self.mean.float(),
            PRIOR_PREFIX + "cov": self.cov.float(),
            PRIOR_PREFIX + "chol": self.chol.float(),
            PRIOR_PREFIX + "precision": self.precision.float(),
            PRIOR_PREFIX + "eigvals": self.eigvals.float(),
            PRIOR_PREFIX + "eigvecs": self.eigvecs.float(),
        }

    def metadata(self) -> dict[str, Any]:
        return {"prior": {"num_samples": self.num_samples, "space": "leaky_relu(w, 5)"}}

    @classmethod
    def from_model_info(cls, info: dict[str, Any], source: str) -> "GaussianPrior":
        t = info.get("extra_tensors", {})
        if PRIOR_PREFIX + "mean" not in t:
            raise UserError(f"{source} has no Gaussian prior yet: run `latentatlas stats {source} --out FILE` first")
        return cls(
            mean=t[PRIOR_PREFIX + "mean"], cov=t[PRIOR_PREFIX + "cov"], chol=t[PRIOR_PREFIX + "chol"],
            precision=t[PRIOR_PREFIX + "precision"], eigvals=t[PRIOR_PREFIX + "eigvals"], eigvecs=t[PRIOR_PREFIX + "eigvecs"],
            num_samples=int(info.get("prior", {}).get("num_samples", 0)),
        )


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension skewness and excess kurtosis of samples x [N, D]."""
    x = x.double()
    c = x - x.mean(0)
    var = c.square().mean(0)
    skew = c.pow(3).mean(0) / var.pow(1.5)
    kurt = c.pow(4).mean(0) / var.square() - 3
    return skew, kurt


@torch.no_grad()
def gaussianity_report(generator: Generator, num_samples: int = 20_000, seed: int = 1) -> tuple[dict[str, float], bytes]:
    """Skew and kurtosis per dimension of w and of v = leaky_relu(w, 5), and their histograms as a
    PNG, not yet written: stats stores the numbers in the model file and writes the plot only once
    that file is written, so a failed save (a full disk) leaves no plot of a model that is not there."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, generator.z_dim, generator=g).to(generator.device)
    w = generator.mapping(z)[:, 0].cpu()
    v = gaussianize(w)
    sw, kw = moments(w)
    sv, kv = moments(v)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (a, b, label) in zip(axes, [(sw, sv, "skewness"), (kw, kv, "excess kurtosis")]):
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        bins = torch.linspace(lo, hi, 40).numpy()
        ax.hist(a.numpy(), bins=bins, alpha=0.6, label="w")
        ax.hist(b.numpy(), bins=bins, alpha=0.6, label="leaky_relu(w, 5)")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"per-dimension {label}")
        ax.legend()
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    plt.close(fig)
    report = {
        "mean_abs_skew_w": float(sw.abs().mean()),
        "mean_abs_skew_v": float(sv.abs().mean()),
        "mean_abs_kurtosis_w": float(kw.abs().mean()),
        "mean_abs_kurtosis_v": float(kv.abs().mean()),
        "num_samples": num_samples,
    }
    return report, png.getvalue()


def prior_summary(prior: GaussianPrior) -> str:
    assert prior.eigvals is not None
    ev = prior.eigvals
    return json.dumps({"dim": prior.dim, "num_samples": prior.num_samples, "top5_std": ev[:5].sqrt().tolist(), "explained_by_top10": float(ev[:10].sum() / ev.sum())})
