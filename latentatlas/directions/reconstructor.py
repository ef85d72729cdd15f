"""The reconstructor of WarpedGANSpace, and reconstructor accuracy as a metric for any set of paths.

A reconstructor sees an image and the same image after its latent code moved along one path,
and must say which path (cross entropy) and how far, with sign (L1). WarpedGANSpace trains it
jointly with the paths, so paths that are easy to tell apart win. Trained alone, on frozen
paths, with the same budget for every method, its held-out accuracy says how distinguishable
a set of paths is: a method-agnostic score that needs no labels (the paper's Table 1 idea).

Shifts are measured in units of the latent space's scale (sqrt(z_dim) in Z, the typical
distance of w from its mean in W), so the same numbers mean the same thing in both spaces
and for every model; the reconstructor regresses the shift in those units too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.io.errors import UserError
from latentatlas.models.stylegan2 import Generator

# (codes [B, D], path indices [B]) -> unit directions [B, D]: where each code moves along its path
# (w+ codes [B, num_ws, D] -> [B, num_ws, D]).
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Paths are found in z or w; w+ is for scoring linear directions made for a layer range, whose
# field moves only those layers of the code (so a w code, which drives every layer, cannot carry it).
SPACES = ("z", "w", "w+")
# What the reconstructor sees of a pair. "pair": both images as 2C channels (the paper's
# ResNet-18 with a 6-channel first conv). "difference": the original and DIFFERENCE_GAIN x
# (shifted - original). A shift of 0.1-0.25 latent units changes the image little (RMS 0.04-0.16
# on faces64, whose images have a std of 0.46), and a small network handed both images must
# learn the subtraction before anything else. On the bundled faces64's 10 GANSpace paths, 300
# steps of batch 16 (chance 0.1): the pair 0.125 held-out accuracy, the difference 0.41, x 10
# 0.61 (0.57 with another seed), x 30 0.62 (README, "Directions").
RECONSTRUCTOR_INPUTS = ("pair", "difference")
DIFFERENCE_GAIN = 10.0
EVAL_SEED_OFFSET = 500_000_000  # held-out batches never share a seed with training batches


def check_inputs(inputs: str) -> None:
    if inputs not in RECONSTRUCTOR_INPUTS:
        raise UserError(f"reconstructor input (--reconstructor-input) {inputs!r}: use one of {', '.join(RECONSTRUCTOR_INPUTS)}")


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """Two 3x3 convs with a (strided) shortcut; GroupNorm so that small batches and eval mode agree."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(y)) + self.skip(x))


class Reconstructor(nn.Module):
    """(original, shifted) images -> path logits [B, K] and signed shift [B] (in units of the latent scale).
    `inputs` says how the pair enters (RECONSTRUCTOR_INPUTS).

    A small ResNet at the generator's resolution: the pair enters as 2C channels, each stage
    halves the size down to 4x4 (so its depth follows the resolution), channels double up
    to 8x the width.
    """

    def __init__(self, num_paths: int, resolution: int, channels: int = 3, width: int = 32, inputs: str = "difference") -> None:
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise UserError(f"the reconstructor needs a power-of-two resolution >= 4, got {resolution}")
        if num_paths < 1 or width < 1:
            raise UserError("the reconstructor needs at least one path and a width >= 1")
        check_inputs(inputs)
        self.num_paths, self.resolution, self.channels, self.width, self.inputs = num_paths, resolution, channels, width, inputs
        self.stem = nn.Sequential(nn.Conv2d(2 * channels, width, 3, padding=1, bias=False), nn.GroupNorm(_groups(width), width), nn.SiLU())
        blocks: list[nn.Module] = []
        cin, res, i = width, resolution, 0
        while res > 4:
            cout = width * min(2 ** (i + 1), 8)
            blocks.append(ResBlock(cin, cout, stride=2))
            cin, res, i = cout, res // 2, i + 1
        self.blocks = nn.Sequential(*blocks)
        self.features = cin
        self.path_head = nn.Linear(cin, num_paths)
        self.shift_head = nn.Linear(cin, 1)

    def forward(self, original: torch.Tensor, shifted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        second = DIFFERENCE_GAIN * (shifted - original) if self.inputs == "difference" else shifted
        x = self.blocks(self.stem(torch.cat([original, second], dim=1)))
        h = x.mean(dim=(2, 3))
        return self.path_head(h), self.shift_head(h).squeeze(1)


def step_seed(seed: int, step: int) -> int:
    """The seed of training batch `step`: a resumed run draws exactly the batches a straight run would."""
    return seed * 1_000_003 + step


def sample_shifts(
    seed: int, batch: int, num_paths: int, z_dim: int, shift_min: float, shift_max: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z [B, z_dim], path indices [B] and signed shifts [B] with |shift| ~ U[min, max] (the paper's sampling).

    Drawn on the CPU from their own generator, so the same seed gives the same batch on any device.
    """
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, z_dim, generator=g)
    k = torch.randint(0, num_paths, (batch,), generator=g)
    mag = shift_min + (shift_max - shift_min) * torch.rand(batch, generator=g)
    sign = torch.randint(0, 2, (batch,), generator=g).float() * 2 - 1
    return z, k, sign * mag


def check_space(space: str, generator: Generator) -> None:
    if space not in SPACES:
        raise UserError(f"paths live in z, w or w+, not {space!r}")
    if generator.c_dim > 0:
        raise UserError("paths are found for unconditional models only; this one needs class labels")


def latent_codes(generator: Generator, z: torch.Tensor, space: str) -> torch.Tensor:
    """Start codes in the path space: z itself, w = mapping(z), or that w on every layer of w+
    (no gradient: nothing learnable is upstream)."""
    z = z.to(generator.device)
    if space == "z":
        return z
    with torch.no_grad():
        ws = generator.mapping(z)
        return ws if space == "w+" else ws[:, 0]


def render(generator: Generator, codes: torch.Tensor, space: str) -> torch.Tensor:
    """Images of z, w (broadcast to every layer) or w+ codes, differentiable w.r.t. the codes."""
    if space == "z":
        ws = generator.mapping(codes)
    else:
        ws = codes if space == "w+" else codes.unsqueeze(1).repeat(1, generator.num_ws, 1)
    return generator.synthesis(ws, noise_mode="const")


def shift_codes(codes: torch.Tensor, directions: torch.Tensor, amounts: torch.Tensor) -> torch.Tensor:
    """codes [B, ...] + amounts [B] x directions [B, ...]: one amount per code, whatever the code's shape (w or w+)."""
    return codes + amounts.reshape(-1, *[1] * (codes.ndim - 1)) * directions


def pair_loss(
    generator: Generator,
    reconstructor: Reconstructor,
    field: Field,
    codes: torch.Tensor,
    index: torch.Tensor,
    shift: torch.Tensor,
    scale: float,
    space: str,
    lambda_reg: float = 0.25,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(path) + lambda_reg * L1(shift) for one batch; gradients reach the field's parameters through G(shifted)."""
    index, shift = index.to(codes.device), shift.to(codes.device)
    shifted = shift_codes(codes, field(codes, index), shift * scale)
    with torch.no_grad():
        original = render(generator, codes, space)
    logits, predicted = reconstructor(original, render(generator, shifted, space))
    ce = F.cross_entropy(logits, index)
    l1 = (predicted - shift).abs().mean()
    loss = ce + lambda_reg * l1
    acc = (logits.argmax(1) == index).float().mean()
    return loss, {"loss": loss.item(), "ce": ce.item(), "l1": l1.item(), "accuracy": acc.item()}


@torch.no_grad()
def evaluate(
    generator: Generator,
    reconstructor: Reconstructor,
    field: Field,
    num_paths: int,
    space: str,
    scale: float,
    samples: int,
    shift_min: float,
    shift_max: float,
    seed: int = 0,
    batch: int = 32,
) -> dict[str, float]:
    """Held-out path accuracy and shift MAE on fresh batches (seeds apart from every training batch)."""
    was_training = reconstructor.training
    reconstructor.eval()
    correct, err, n = 0.0, 0.0, 0
    for i in range(0, samples, batch):
        b = min(batch, samples - i)
        z, k, eps = sample_shifts(step_seed(seed, EVAL_SEED_OFFSET + i), b, num_paths, generator.z_dim, shift_min, shift_max)
        codes = latent_codes(generator, z, space)
        k, eps = k.to(codes.device), eps.to(codes.device)
        shifted = shift_codes(codes, field(codes, k), eps * scale)
        logits, predicted = reconstructor(render(generator, codes, space), render(generator, shifted, space))
        correct += float((logits.argmax(1) == k).sum())
        err += float((predicted - eps).abs().sum())
        n += b
    reconstructor.train(was_training)
    return {"accuracy": correct / n, "shift_mae": err / n}


def reconstructor_accuracy(
    generator: Generator,
    field: Field,
    num_paths: int,
    space: str,
    scale: float,
    steps: int,
    batch: int = 16,
    shift_min: float = 0.1,
    shift_max: float = 0.25,
    eval_samples: int = 256,
    lr: float = 1e-3,
    width: int = 32,
    seed: int = 0,
    progress: bool = True,
    inputs: str = "difference",
) -> dict[str, Any]:
    """Train a fresh reconstructor on frozen paths for `steps` x `batch` pairs; held-out accuracy and shift MAE.

    Give every method the same budget, shift range and seed: the figures are then comparable
    (chance is 1 / num_paths). The field is called under no_grad: the paths stay as they are.
    """
    from tqdm import tqdm

    check_space(space, generator)
    if steps < 1 or batch < 1 or eval_samples < 1:
        raise UserError("reconstructor accuracy needs steps, batch and eval samples >= 1")
    if num_paths < 2:
        raise UserError("reconstructor accuracy needs at least 2 paths to tell apart")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        recon = Reconstructor(num_paths, generator.img_resolution, generator.img_channels, width, inputs)
    recon = recon.to(generator.device).train()
    opt = torch.optim.Adam(recon.parameters(), lr=lr)

    def frozen(codes: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return field(codes, index)

    for step in tqdm(range(steps), disable=not progress, desc="reconstructor accuracy", unit="step"):
        z, k, eps = sample_shifts(step_seed(seed, step), batch, num_paths, generator.z_dim, shift_min, shift_max)
        loss, _ = pair_loss(generator, recon, frozen, latent_codes(generator, z, space), k, eps, scale, space)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    held_out = evaluate(generator, recon, field, num_paths, space, scale, eval_samples, shift_min, shift_max, seed, batch=max(batch, 32))
    return {
        **held_out,
        "chance": 1.0 / num_paths,
        "num_paths": num_paths,
        "steps": steps,
        "batch": batch,
        "eval_samples": eval_samples,
        "shift_range": [shift_min, shift_max],
        "space": space,
        "inputs": inputs,
    }
