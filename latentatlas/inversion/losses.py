"""Losses for projection: LPIPS-VGG from local weight files, factor features, pixels, noise.

LPIPS (Zhang et al. 2018, the distance the StyleGAN2 projector uses) needs two files that
cannot be downloaded here, so the user gives their paths:
- the torchvision VGG16 ImageNet weights (`vgg16-397923af.pth`: keys `features.N.weight/bias`),
- the LPIPS linear heads for VGG (`lpips/weights/v0.1/vgg.pth` from the lpips package:
  keys `linK.model.1.weight`).
Both are read with `torch.load(weights_only=True)`. The network itself is written here
(torchvision cannot be imported beside the CPU torch build we use).

For models trained on synthfaces the perceptual term is the distance of factor-predictor
features instead, plus pixel MSE.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.io.errors import UserError, require_file

# VGG16 "features" indices: conv layers, and the ReLU outputs LPIPS taps (relu1_2 ... relu5_3).
_VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
_VGG_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
_VGG_POOL_AFTER = {2, 7, 14, 21}  # conv index after which a max-pool follows (before the next conv)
_LPIPS_TAPS = {2, 7, 14, 21, 28}
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)

PerceptualFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LastTargetFeatures:
    """Features of a distance's second argument, kept while the same unchanged tensor returns.

    The projector compares every step against the same targets; recomputing their features
    cost a tenth of each step. The cache holds the tensor itself (so its identity cannot be
    reused) and its version counter (so an in-place change is seen); a tensor that needs a
    gradient is never cached. Meant for frozen feature networks.
    """

    def __init__(self, feature_fn: Callable[[torch.Tensor], Any]) -> None:
        self.feature_fn = feature_fn
        self._key: tuple[torch.Tensor, int, bool] | None = None
        self._value: Any = None

    def __call__(self, b: torch.Tensor) -> Any:
        if b.requires_grad:
            return self.feature_fn(b)
        # Under bf16 autocast the features differ from fp32 ones: the projector's --bf16 steps must
        # not hand their cached target features to the fp32 score made after it.
        amp = torch.is_autocast_enabled(b.device.type)
        if self._key is None or self._key[0] is not b or self._key[1:] != (b._version, amp):
            self._value = self.feature_fn(b)
            self._key = (b, b._version, amp)
        return self._value


class LPIPSVGG(nn.Module):
    """LPIPS distance with the VGG16 backbone: images in [-1, 1] -> one distance per pair."""

    def __init__(self) -> None:
        super().__init__()
        convs, in_ch = [], 3
        for out_ch in _VGG_CHANNELS:
            convs.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        self.lins = nn.ParameterList([nn.Parameter(torch.ones(1, c, 1, 1)) for c in (64, 128, 256, 512, 512)])
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).reshape(1, 3, 1, 1))
        self.target_taps = LastTargetFeatures(self.taps)

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised (over channels) features at the five LPIPS taps."""
        x = (x - self.shift) / self.scale
        out = []
        for conv, idx in zip(self.convs, _VGG_CONVS):
            x = F.relu(conv(x))
            if idx in _LPIPS_TAPS:
                out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
            if idx in _VGG_POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fb = self.target_taps(b)
        fa = self.taps(a)
        total = torch.zeros(a.shape[0], device=a.device, dtype=a.dtype)
        for x, y, lin in zip(fa, fb, self.lins):
            total = total + ((x - y).square() * lin).sum(dim=1).mean(dim=(1, 2))
        return total

    @classmethod
    def from_files(cls, vgg_path: str | Path, lin_path: str | Path) -> "LPIPSVGG":
        model = cls()
        vgg = _load_state(vgg_path, "VGG16 weights")
        lin = _load_state(lin_path, "LPIPS linear heads")
        try:
            with torch.no_grad():
                for conv, idx in zip(model.convs, _VGG_CONVS):
                    conv.weight.copy_(vgg[f"features.{idx}.weight"])
                    conv.bias.copy_(vgg[f"features.{idx}.bias"])
                for k, p in enumerate(model.lins):
                    p.copy_(lin[f"lin{k}.model.1.weight"])
        except KeyError as e:
            raise UserError(f"a weights file lacks {e.args[0]}: give torchvision's vgg16 weights and lpips' v0.1/vgg.pth") from None
        except RuntimeError as e:
            raise UserError(f"a weights file has tensors of the wrong shape ({str(e).splitlines()[0][:150]})") from None
        return model.eval().requires_grad_(False)


def _load_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    require_file(path, f"give the {what} file")
    try:
        with warnings.catch_warnings():
            # A plain pickle (not a torch.save file) drew torch's multi-line "Detected pickle protocol
            # 4" warning above the one-line error below; for a file it reads, the warning says nothing
            # the user can act on either.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is the file's fault here
        raise UserError(f"{path}: not a readable PyTorch weights file for the {what} ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict for the {what}")
    return state


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """The module with gradients off for its parameters while an optimiser works on its inputs,
    then each parameter's flag as it was: the caller's model (a trainer's G, the app's) is lent, not changed."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def downsample_to(images: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Area-downsample images larger than `size` (the official projector compares at 256 px)."""
    if images.shape[-1] > size:
        images = F.interpolate(images, size=(size, size), mode="area")
    return images


def noise_regularizer(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Per image: sum over maps and pyramid levels (down to 8 px) of squared auto-correlations.

    Maps of one size are stacked on the channel axis and handled together (each channel its own
    map, as before): half the small operations, which were 7 % of a 64 px projection step.
    """
    by_size: dict[tuple[int, int], list[torch.Tensor]] = {}
    for m in noise_maps:
        by_size.setdefault(tuple(m.shape[-2:]), []).append(m)
    total = torch.zeros(noise_maps[0].shape[0], device=noise_maps[0].device)
    for maps in by_size.values():
        noise = torch.cat(maps, dim=1)  # [N, k, r, r]
        while True:
            total = total + (noise * torch.roll(noise, shifts=1, dims=3)).mean(dim=(2, 3)).square().sum(1)
            total = total + (noise * torch.roll(noise, shifts=1, dims=2)).mean(dim=(2, 3)).square().sum(1)
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


def factor_feature_distance(feature_fn: Callable[[torch.Tensor], torch.Tensor]) -> PerceptualFn:
    """Squared distance of factor-predictor features; the targets' features are computed once."""
    target_features = LastTargetFeatures(feature_fn)

    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (feature_fn(a) - target_features(b)).square().sum(dim=1)

    return dist


LOSSES = ("auto", "lpips", "factor", "mse")


def auto_perceptual(lpips_files: bool, factor_domain: Callable[[], bool]) -> str | None:
    """The perceptual distance "auto" picks: one rule for projection (projection_loss) and for
    StyleMapGAN training (training.stylemap), so that the two never disagree on a model.

    'lpips' when LPIPS weight files are given (the user asked for it); else 'factor' when the
    factor predictor's features suit the images (`factor_domain()`: a predictor was given, or the
    images are synthfaces ones, the one domain the bundled predictor knows; asked only then, as
    projection reads it from the model file); else None, the caller's fallback (projection asks
    for a loss or takes pixel MSE, training takes none)."""
    if lpips_files:
        return "lpips"
    return "factor" if factor_domain() else None


@dataclass
class ProjectionLoss:
    """What a projection minimises: `perceptual_weight * perceptual + mse_weight * pixel MSE`."""

    name: str  # lpips, factor or mse
    perceptual: PerceptualFn | None
    perceptual_weight: float
    mse_weight: float
    said: str  # the choice in words, for a status line


def projection_loss(model_path: str | Path, loss: str = "auto", *, vgg: str | Path | None = None,
                    lpips_lin: str | Path | None = None, predictor: str | Path | None = None,
                    mse_weight: float | None = None, fallback: str | None = None,
                    device: str | torch.device = "cpu") -> ProjectionLoss:
    """The loss a projection of images into the model at `model_path` uses (`project` and the web app).

    `auto` picks LPIPS when LPIPS files are given, the factor predictor's features (plus pixel MSE)
    when a predictor is given or the model says it was trained on synthfaces (then the bundled
    predictor, which knows that domain and no other), and otherwise `fallback`: None refuses (the
    command line asks for a loss), "mse" is plain pixel MSE (the web app, which says so).
    Cartoon-face features are never used on a model that was not trained on synthfaces unless a
    predictor is asked for. `mse_weight` None: 0 beside LPIPS, 1 otherwise. Bad files fail here,
    before any work."""
    from latentatlas.io.checkpoints import trained_on_synthfaces

    if loss not in LOSSES:
        raise UserError(f"--loss {loss}: use {', '.join(LOSSES[:-1])} or {LOSSES[-1]}")
    if fallback not in (None, "mse"):
        raise ValueError(f"fallback {fallback!r}: None or 'mse'")
    fell_back = False
    if loss == "auto":
        picked = auto_perceptual(bool(vgg or lpips_lin), lambda: bool(predictor) or trained_on_synthfaces(model_path))
        if picked is not None:
            loss = picked
            if picked == "factor":  # the bundled models' own case: the bundled factor predictor knows their domain
                predictor = predictor or "factors"
        elif fallback is None:
            raise UserError("choose a loss: --vgg and --lpips-lin (LPIPS), --predictor (synthfaces models), or --loss mse")
        else:
            loss, fell_back = fallback, True
    if loss == "lpips":
        if not (vgg and lpips_lin):
            raise UserError("LPIPS needs both --vgg and --lpips-lin files")
        mse = 0.0 if mse_weight is None else mse_weight
        return ProjectionLoss("lpips", LPIPSVGG.from_files(vgg, lpips_lin).to(device), 1.0, mse,
                              "LPIPS-VGG" + (f" + {mse:g} pixel MSE" if mse else ""))
    mse = 1.0 if mse_weight is None else mse_weight
    if loss == "factor":
        if predictor is None:
            raise UserError("--loss factor needs --predictor")
        from latentatlas.training.attributes import load_predictor

        features = load_predictor(predictor, device).features
        return ProjectionLoss("factor", factor_feature_distance(features), 1.0, mse,
                              f"factor-predictor features + {mse:g} pixel MSE")
    why = "" if not fell_back else (
        " (the model was not trained on synthfaces, whose factor predictor knows only cartoon faces; "
        "LPIPS needs --vgg and --lpips-lin files)")
    return ProjectionLoss("mse", None, 0.0, mse, "pixel MSE only" + why)
