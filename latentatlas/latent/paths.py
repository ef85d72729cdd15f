"""Travelling between codes: interpolation, style mixing, vector arithmetic.

Each function says which spaces it accepts; results keep the space of their inputs.
"""

from __future__ import annotations

import torch

from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode, check_fits, synthesize, to_w, to_wplus
from latentatlas.models.stylegan2 import Generator

INTERPOLATIONS = ("lerp", "slerp")


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (a.ndim - 1)))
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation of the directions, with the norm interpolated linearly.

    For Gaussian z this keeps samples on the shell where the prior mass is; the norm is
    interpolated so that slerp(a, b, 0) == a and slerp(a, b, 1) == b exactly.
    """
    shape = a.shape
    a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    t = t.reshape(-1, 1)
    na, nb = a2.norm(dim=1, keepdim=True), b2.norm(dim=1, keepdim=True)
    ua, ub = a2 / na.clamp_min(eps), b2 / nb.clamp_min(eps)
    dot = (ua * ub).sum(dim=1, keepdim=True).clamp(-1 + eps, 1 - eps)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) / so) * ua + (torch.sin(t * omega) / so) * ub
    norm = na + (nb - na) * t
    out = direction * norm
    return out.reshape(t.shape[0], *shape[1:])


def interpolate(a: LatentCode, b: LatentCode, frames: int, method: str = "lerp") -> LatentCode:
    """`frames` codes from a to b inclusive (a and b hold one code each)."""
    if a.space != b.space:
        raise UserError(f"cannot interpolate a {a.space} code with a {b.space} code: convert one first")
    if len(a) != 1 or len(b) != 1:
        raise UserError("interpolate takes one code at each end")
    if frames < 2:
        raise UserError(f"need at least 2 frames, got {frames}")
    if method not in INTERPOLATIONS:
        raise UserError(f"unknown interpolation {method!r}: use lerp or slerp")
    t = torch.linspace(0, 1, frames, device=a.tensor.device)
    ea = a.tensor.expand(frames, *a.tensor.shape[1:])
    eb = b.tensor.expand(frames, *b.tensor.shape[1:])
    fn = slerp if method == "slerp" else lerp
    return LatentCode(a.space, fn(ea, eb, t))


def endpoint(code: LatentCode, generator: Generator, space: str, truncation_psi: float = 1.0) -> LatentCode:
    """One end of an interpolation in `space` ('z' or 'w').

    A z code stays z, or is mapped to w with the truncation; w and w+ codes (saved or projected)
    stay as they are, and cannot go back to z.
    """
    if space not in ("z", "w"):
        raise UserError(f"interpolation space {space!r}: use z or w")
    check_fits(code, generator)
    if code.space == "z":
        return to_w(code, generator, truncation_psi=truncation_psi) if space == "w" else code
    if space == "z":
        raise UserError(f"a {code.space} code (saved or projected) has no z: interpolate it in w")
    return code


@torch.no_grad()
def travel(a: LatentCode, b: LatentCode, generator: Generator, frames: int, method: str = "lerp",
           truncation_psi: float = 1.0) -> tuple[LatentCode, torch.Tensor]:
    """The path from a to b (ends from `endpoint`) and its images [frames, C, H, W].

    Ends in different spaces (w and w+) meet in w+. The truncation applies here only to a z path
    (w ends were truncated when `endpoint` mapped them).
    """
    if a.space != b.space:
        a, b = to_wplus(a, generator), to_wplus(b, generator)
    path = interpolate(a, b, frames, method)
    return path, synthesize(path, generator, truncation_psi=truncation_psi if path.space == "z" else 1.0)


def style_mix(coarse: LatentCode, fine: LatentCode, cutoff: int) -> LatentCode:
    """w+ codes taking layers [0, cutoff) from `coarse` and [cutoff, num_ws) from `fine`.

    Inputs are w+ codes of the same batch size (or one of them a single code, broadcast).
    """
    coarse.require("w+")
    fine.require("w+")
    num_ws = coarse.tensor.shape[1]
    if fine.tensor.shape[1:] != coarse.tensor.shape[1:]:
        raise UserError("style mixing needs two w+ codes of the same shape")
    if not 0 <= cutoff <= num_ws:
        raise UserError(f"the mixing cutoff must lie in 0..{num_ws}, got {cutoff}")
    a, b = torch.broadcast_tensors(coarse.tensor, fine.tensor)
    out = b.clone()
    out[:, :cutoff] = a[:, :cutoff]
    return LatentCode("w+", out)


def mean_difference(group_a: LatentCode, group_b: LatentCode) -> torch.Tensor:
    """Vector arithmetic: mean of group A minus mean of group B (e.g. smiling - neutral)."""
    if group_a.space != group_b.space:
        raise UserError("both groups must be in the same space")
    group_a.require("w", "w+", "z")
    return group_a.tensor.mean(dim=0) - group_b.tensor.mean(dim=0)


def add_direction(code: LatentCode, direction: torch.Tensor, strength: float = 1.0) -> LatentCode:
    """code + strength * direction (direction of the code's own shape, without the batch)."""
    if direction.shape != code.tensor.shape[1:]:
        if code.space == "w+" and direction.shape == code.tensor.shape[2:]:
            direction = direction.unsqueeze(0)
        else:
            raise UserError(
                f"the direction has shape {list(direction.shape)}, the {code.space} code needs "
                f"{list(code.tensor.shape[1:])}"
            )
    return LatentCode(code.space, code.tensor + strength * direction.to(code.tensor))
