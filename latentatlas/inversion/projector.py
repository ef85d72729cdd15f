"""The StyleGAN2 projector (Karras et al. 2020, Appendix D), batched, in W or W+, with a Gaussian prior.

Schedule and defaults as the official projector: 1000 steps of Adam (betas 0.9, 0.999);
learning rate 0.1 with a linear ramp-up over the first 5% and a cosine ramp-down over the
last 25%; w starts at the mean of 10k mapping samples (RandomState 123), Gaussian noise of
scale w_std * 0.05 * max(0, 1 - t / 0.75)^2 is added to w; every noise map is optimised too,
with the multi-scale auto-correlation regulariser (weight 1e5) and renormalised after each
step. Differences, each deliberate:
- a batch of images is projected at once, each with its own w and noise maps (Adam is
  element-wise, so images do not interact), which is what makes it fast on a GPU;
- space W+ optimises one w per layer; the prior term lambda * Mahalanobis distance in the
  Gaussianized space (summed over layers) keeps codes in-distribution (lambda = 0 is the plain
  projector);
- the optimised noise maps are returned and used for the reconstruction (the official
  code discards them in its outputs);
- `whiten` (needs the prior) optimises the whitened principal coordinates
  c = U^T (leaky_relu(w, 5) - mu) / sigma instead of w, starting at the prior's mode c = 0.
  The objective is the same function of w, but Adam moves every coordinate by about the
  learning rate whatever its gradient, so in w it drifts as far along directions the mapping
  network never uses (variance 1e-6 on faces64) as along the main ones, and a prior term on
  those directions is stiff; in c each direction moves in proportion to its own spread and
  the prior is simply lambda * ||c||^2, evenly conditioned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from latentatlas.inversion.losses import PerceptualFn, downsample_to, frozen, noise_regularizer
from latentatlas.io.errors import UserError, require_number
from latentatlas.latent.gaussian import GaussianPrior
from latentatlas.models.stylegan2 import Generator


@dataclass
class ProjectorConfig:
    space: str = "w"  # "w" or "w+"
    steps: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise_factor: float = 0.05
    noise_ramp: float = 0.75
    noise_weight: float = 1e5
    prior_weight: float = 0.0  # lambda for the Gaussian prior
    mse_weight: float = 0.0  # pixel MSE next to the perceptual term
    perceptual_weight: float = 1.0
    w_avg_samples: int = 10_000
    optimize_noise: bool = True
    whiten: bool = False  # optimise whitened prior coordinates instead of w (needs the prior)
    record_every: int = 0  # keep a frame every N steps (for a video); 0 = none
    # The forward pass and losses under bf16 autocast (the optimised codes, noise maps and Adam stay
    # fp32): on a GPU's tensor cores about twice TF32's rate; on CPUs without bf16 units it is slower.
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.space not in ("w", "w+"):
            raise UserError(f"projection space must be w or w+, got {self.space!r}")
        if self.steps < 1:
            raise UserError(f"steps must be >= 1, got {self.steps}")
        require_number("--prior", self.prior_weight, at_least=0, what="a prior weight >= 0 (0: plain projector)", example="0.01")


@dataclass
class Projection:
    ws: torch.Tensor  # [N, num_ws, D] (all layers equal in space w)
    w: torch.Tensor  # [N, D] in space w, [N, num_ws, D] in w+
    noise_maps: list[torch.Tensor]  # one per noise layer, [N, 1, r, r]
    images: torch.Tensor  # reconstructions [N, C, H, W] with the optimised noise
    losses: dict[str, list[list[float]]] = field(default_factory=dict)  # name -> per step -> per image
    frames: list[torch.Tensor] = field(default_factory=list)


def learning_rate(t: float, cfg: ProjectorConfig) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / cfg.lr_rampup)
    return cfg.lr * ramp


@torch.no_grad()
def w_statistics(generator: Generator, num: int = 10_000, seed: int = 123) -> tuple[torch.Tensor, float]:
    """Mean w and the scalar std sqrt(mean ||w - w_avg||^2) from `num` samples (official seeds)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num, generator.z_dim).astype(np.float32))
    ws = torch.cat([generator.mapping(z[i : i + 2048].to(generator.device))[:, 0] for i in range(0, num, 2048)])
    w_avg = ws.mean(0)
    w_std = float(((ws - w_avg).square().sum(1).mean()).sqrt())
    return w_avg, w_std


def project(
    generator: Generator,
    targets: torch.Tensor,
    perceptual: PerceptualFn | None,
    cfg: ProjectorConfig,
    prior: GaussianPrior | None = None,
    seed: int = 0,
    progress: Callable[[int, dict[str, float]], bool | None] | None = None,
    preview: Callable[[int, torch.Tensor], None] | None = None,
    preview_every: int = 10,
    image_seeds: Sequence[int] | None = None,
) -> Projection:
    """Project target images [N, C, H, W] in [-1, 1].

    Each image draws its noise maps and its per-step code noise from its own generator, seeded
    `image_seeds[i]` (default `seed + i`), so its result does not depend on the batch it was
    projected in, its place there, or the torchrun rank that took it.
    `progress(step, mean losses)` is called every step and may return True to stop early;
    `preview(step, images)` gets the current reconstructions every `preview_every` steps
    (and at the last step), for live displays.
    """
    if targets.ndim != 4 or targets.shape[1:] != (generator.img_channels, generator.img_resolution, generator.img_resolution):
        raise UserError(
            f"targets must be [N, {generator.img_channels}, {generator.img_resolution}, {generator.img_resolution}], "
            f"got {list(targets.shape)}"
        )
    if not torch.isfinite(targets).all():
        raise UserError("target images hold NaN or infinite values")
    if (cfg.prior_weight > 0 or cfg.whiten) and prior is None:
        what = "a prior weight" if cfg.prior_weight > 0 else "whitened optimisation"
        raise UserError(f"{what} needs a model with a Gaussian prior: run `latentatlas stats` first")
    if perceptual is None and cfg.mse_weight == 0:
        raise UserError("no loss: give a perceptual distance or a pixel MSE weight")
    device = generator.device
    n, num_ws = targets.shape[0], generator.num_ws
    targets = targets.to(device)
    seeds = list(image_seeds) if image_seeds is not None else [seed + i for i in range(n)]
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} image seeds for {n} images")
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]

    def draw(*shape: int) -> torch.Tensor:
        """Standard normal [N, *shape], image i's part from its own generator."""
        return torch.cat([torch.randn(1, *shape, generator=g) for g in gens]).to(device)

    layers = 1 if cfg.space == "w" else num_ws
    if cfg.whiten:
        assert prior is not None
        # The prior's mode, and the spread of whitened samples: sqrt(E ||c||^2) = sqrt(rank).
        start = torch.zeros(prior.dim, device=device)
        x_std = float((prior.eigvals > 1e-12 * prior.eigvals[0]).sum()) ** 0.5
        to_w: Callable[[torch.Tensor], torch.Tensor] = prior.from_pca
    else:
        start, x_std = w_statistics(generator, cfg.w_avg_samples)
        to_w = _identity
    x_opt = start.reshape(1, 1, -1).repeat(n, layers, 1).clone().requires_grad_(True)
    noise_maps = [
        draw(1, layer.resolution, layer.resolution).requires_grad_(cfg.optimize_noise)
        for _, layer in generator.synthesis.noise_layers()
    ]
    params = [x_opt] + (noise_maps if cfg.optimize_noise else [])
    # foreach: one multi-tensor update instead of a Python loop over the code and the noise maps
    # (on CPU PyTorch loops unless asked; 2.5 ms of a 60 ms faces64 step at batch 1).
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), foreach=True)
    target_small = downsample_to(targets)
    history: dict[str, list[list[float]]] = {"total": [], "perceptual": [], "mse": [], "prior": [], "noise": []}
    frames: list[torch.Tensor] = []
    with frozen(generator):
        for step in range(cfg.steps):
            t = step / cfg.steps
            noise_scale = x_std * cfg.noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
            for group in opt.param_groups:
                group["lr"] = learning_rate(t, cfg)
            x_noise = draw(*x_opt.shape[1:]) * noise_scale
            w_noisy = to_w(x_opt + x_noise)
            ws = w_noisy.expand(n, num_ws, -1) if layers == 1 else w_noisy
            zeros = torch.zeros(n, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                synth = generator.synthesis(ws, noise_maps=noise_maps)
                synth_small = downsample_to(synth)
                perc = perceptual(synth_small, target_small).float() if perceptual is not None else zeros
            synth = synth.float()
            mse = (synth - targets).square().mean(dim=(1, 2, 3)) if cfg.mse_weight > 0 else zeros
            if prior is not None and cfg.prior_weight > 0:
                # Whitened, the squared Mahalanobis distance is ||c||^2 (summed over w+ layers).
                pri = x_opt.square().sum(dim=(1, 2)) if cfg.whiten else prior.mahalanobis(x_opt if layers > 1 else x_opt[:, 0])
            else:
                pri = zeros
            reg = noise_regularizer(noise_maps) if cfg.optimize_noise else zeros
            per_image = cfg.perceptual_weight * perc + cfg.mse_weight * mse + cfg.prior_weight * pri.to(perc.dtype) + cfg.noise_weight * reg
            opt.zero_grad(set_to_none=True)
            per_image.sum().backward()
            opt.step()
            if cfg.optimize_noise:
                renormalize_noise(noise_maps)
            for name, value in (("total", per_image), ("perceptual", perc), ("mse", mse), ("prior", pri), ("noise", reg)):
                history[name].append([float(v) for v in value.detach().cpu()])
            if cfg.record_every and step % cfg.record_every == 0:
                frames.append(synth.detach().cpu())
            if preview is not None and (step % max(preview_every, 1) == 0 or step == cfg.steps - 1):
                preview(step, synth.detach().cpu())
            if progress is not None:
                stop = progress(step, {k: float(np.mean(v[-1])) for k, v in history.items()})
                if stop:
                    break

    with torch.no_grad():
        w_final = to_w(x_opt.detach())
        ws_final = w_final.expand(n, num_ws, -1).clone() if layers == 1 else w_final.clone()
        maps = [m.detach() for m in noise_maps]
        images = generator.synthesis(ws_final, noise_maps=maps)
    return Projection(
        ws=ws_final,
        w=w_final[:, 0] if layers == 1 else w_final,
        noise_maps=maps,
        images=images,
        losses=history,
        frames=frames,
    )


@torch.no_grad()
def renormalize_noise(noise_maps: list[torch.Tensor]) -> None:
    """Each map to zero mean and unit variance per image, in place (official projector), in
    multi-tensor operations: a loop of five small operations per map was 45 per step."""
    means = [m.mean(dim=(1, 2, 3), keepdim=True) for m in noise_maps]
    torch._foreach_sub_(noise_maps, means)
    scales = torch._foreach_rsqrt([m.square().mean(dim=(1, 2, 3), keepdim=True) for m in noise_maps])
    torch._foreach_mul_(noise_maps, scales)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x
