"""Latent codes that know their space (z, w, w+ of StyleGAN2; stylemap of StyleMapGAN), and their files.

Every function that takes a code checks its space, so a z vector is never fed to the
synthesis network by mistake, and every file records the space and the model it came from.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError
from latentatlas.io.npzfile import read_npz
from latentatlas.models.stylegan2 import Generator, truncate

SPACES = ("z", "w", "w+", "stylemap")
# Dimensions of a batch of codes in each space: z, w [N, D]; w+ [N, layers, D]; stylemap [N, C, S, S].
_NDIM = {"z": 2, "w": 2, "w+": 3, "stylemap": 4}


@dataclass
class LatentCode:
    """A batch of latent codes: z and w are [N, D]; w+ is [N, num_ws, D]; stylemap is [N, C, S, S]."""

    space: str
    tensor: torch.Tensor

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise UserError(f"unknown latent space {self.space!r}: use one of {', '.join(SPACES)}")
        want = _NDIM[self.space]
        if self.tensor.ndim != want:
            raise UserError(f"a {self.space} code must have {want} dimensions, got shape {list(self.tensor.shape)}")
        if not torch.isfinite(self.tensor).all():
            raise UserError(f"the {self.space} code holds NaN or infinite values")

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, idx: int | slice | list[int]) -> "LatentCode":
        t = self.tensor[idx]
        if isinstance(idx, int):
            t = t.unsqueeze(0)
        return LatentCode(self.space, t)

    def to(self, device: str | torch.device) -> "LatentCode":
        return LatentCode(self.space, self.tensor.to(device))

    def require(self, *spaces: str) -> None:
        if self.space not in spaces:
            raise UserError(f"this operation needs a code in {' or '.join(spaces)}, got a {self.space} code")


def check_fits(code: LatentCode, generator: Generator) -> None:
    """The code's width (and layer count for w+) must match the generator; a stylemap code
    drives only a StyleMapGAN generator, of its stylemap shape, and the other codes only StyleGAN2."""
    stylemap_model = hasattr(generator, "stylemap_shape")
    if code.space == "stylemap" and not stylemap_model:
        raise UserError("a stylemap code (from `latentatlas encode`) needs a StyleMapGAN model, not a StyleGAN2 one")
    if stylemap_model:
        if code.space != "stylemap":
            raise UserError(f"a StyleMapGAN model takes stylemap codes (from `latentatlas encode`), not a {code.space} code")
        shape, want = list(code.tensor.shape[1:]), list(generator.stylemap_shape)
        if shape != want:
            raise UserError(f"the stylemap code is {'x'.join(map(str, shape))}, this model needs {'x'.join(map(str, want))}")
        return
    dim = code_width(generator, code.space)
    if code.tensor.shape[-1] != dim:
        raise UserError(f"the {code.space} code has width {code.tensor.shape[-1]}, this model needs {dim}")
    if code.space == "w+" and code.tensor.shape[1] != generator.num_ws:
        raise UserError(f"the w+ code has {code.tensor.shape[1]} layers, this model has {generator.num_ws}")


def code_width(generator: Generator, space: str) -> int:
    """The width of a z code of `generator`, or of a w code (each layer's, for w+): what codes,
    directions and warped paths in that space must have."""
    return generator.z_dim if space == "z" else generator.w_dim


def z_from_seeds(seeds: list[int], z_dim: int, device: str | torch.device = "cpu") -> LatentCode:
    """The official generate.py convention: RandomState(seed).randn(1, z_dim), float64 -> float32."""
    z = np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds]).astype(np.float32)
    return LatentCode("z", torch.from_numpy(z).to(device))


def to_w(
    code: LatentCode,
    generator: Generator,
    c: torch.Tensor | None = None,
    truncation_psi: float = 1.0,
) -> LatentCode:
    """z -> w through the mapping network (with the truncation trick); w stays w."""
    check_fits(code, generator)
    if code.space == "z":
        ws = generator.mapping(code.tensor.to(generator.device), c, truncation_psi=truncation_psi)
        return LatentCode("w", ws[:, 0])
    code.require("w")
    return truncate_code(code, generator, truncation_psi)


def to_wplus(code: LatentCode, generator: Generator, c: torch.Tensor | None = None) -> LatentCode:
    """Any code -> w+ (one w per synthesis layer)."""
    check_fits(code, generator)
    if code.space == "w+":
        return code
    w = to_w(code, generator, c)
    return LatentCode("w+", w.tensor.unsqueeze(1).repeat(1, generator.num_ws, 1))


def truncate_code(code: LatentCode, generator: Generator, psi: float, cutoff: int | None = None) -> LatentCode:
    """w_avg + psi (w - w_avg); in w+ optionally only on layers [0, cutoff)."""
    code.require("w", "w+")
    w_avg = generator.mapping.w_avg.to(code.tensor.device)
    if code.space == "w":
        if cutoff is not None:
            raise UserError("a truncation cutoff needs a w+ code (it acts on the first layers only)")
        return LatentCode("w", truncate(code.tensor, w_avg, psi))
    return LatentCode("w+", truncate(code.tensor, w_avg, psi, cutoff))


def synthesize(
    code: LatentCode,
    generator: Generator,
    noise_mode: str = "const",
    c: torch.Tensor | None = None,
    truncation_psi: float = 1.0,
    batch_size: int = 16,
) -> torch.Tensor:
    """Images [N, C, H, W] in about [-1, 1] for any code, in batches."""
    wplus = to_wplus(to_w(code, generator, c, truncation_psi) if code.space == "z" else code, generator)
    out = []
    with torch.no_grad():
        for i in range(0, len(wplus), batch_size):
            out.append(generator.synthesis(wplus.tensor[i : i + batch_size].to(generator.device), noise_mode=noise_mode))
    return torch.cat(out)


def save_codes(path: str | Path, code: LatentCode, model: str, seeds: list[int] | None = None,
               images: list[str] | None = None, source: str | None = None,
               noise_maps: Sequence[torch.Tensor] | None = None) -> None:
    """Write codes as .npz with their space and model named in it (atomically); `seeds` or the
    `images` they were encoded from are kept alongside when given.

    The projector's files (inversion/folder.py) add the one image the code was projected from
    (`source`) and its optimised noise maps (`noise_maps`, each [r, r], stored as noise_0,
    noise_1, ...): the code alone reproduces the image only up to the noise. One writer for
    every code file, so load_codes reads them all."""
    arrays = {
        "latents": code.tensor.detach().cpu().numpy().astype(np.float32),
        "space": np.array(code.space),
        "model": np.array(model),
    }
    if seeds is not None:
        arrays["seeds"] = np.array(seeds, dtype=np.int64)
    if images is not None:
        arrays["images"] = np.array(images)
    if source is not None:
        arrays["source"] = np.array(source)
    for k, m in enumerate(noise_maps or []):
        arrays[f"noise_{k}"] = m.detach().cpu().numpy()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_codes(path: str | Path, max_bytes: int | None = None) -> tuple[LatentCode, dict[str, object]]:
    """Read a .npz written by save_codes (the projector's too); returns the code and its info.
    `max_bytes` caps the file's unpacked size (read_npz; the web app ties it to its upload limit)."""
    data = read_npz(path, max_bytes)
    if "latents" not in data or "space" not in data:
        raise UserError(f"{path}: not a latent-code file (it needs 'latents' and 'space' arrays)")
    latents = data["latents"]
    info: dict[str, object] = {"space": str(data["space"]), "model": str(data["model"]) if "model" in data else ""}
    if "seeds" in data:
        info["seeds"] = data["seeds"].tolist()
    if "images" in data:
        info["images"] = data["images"].tolist()
    if latents.dtype.kind != "f":
        raise UserError(f"{path}: latents must be floating point, got {latents.dtype}")
    # Checked before the cast: a float64 value beyond float32's range turned into inf there, with
    # numpy's overflow warning printed above the one-line error (LatentCode's NaN check).
    f32_max = float(np.finfo(np.float32).max)
    if latents.dtype.itemsize > 4 and (np.abs(latents[np.isfinite(latents)]) > f32_max).any():
        raise UserError(f"{path}: the latents hold values beyond float32's range (±{f32_max:.3g}): "
                        "give a code file from generate, project or encode")
    try:
        return LatentCode(str(info["space"]), torch.from_numpy(latents.astype(np.float32))), info
    except UserError as e:  # a NaN, a wrong shape or space: say which file
        raise UserError(f"{path}: {e}") from None


def same_model(recorded: str, names: Collection[str]) -> bool:
    """Whether the model a code file names is one of `names` (compared by file stem, so the
    bundled name 'faces64', its file and a copy of it at another path all match)."""
    stem = Path(recorded).stem
    return any(stem == Path(n).stem for n in names if n)


def code_for_model(path: str | Path, generator: Generator, model_names: Collection[str] | None = None,
                   max_bytes: int | None = None) -> LatentCode:
    """The first code of a code file, checked against the generator it will drive.

    With `model_names` (the names the model goes by), a file that records another model is
    refused even when the shapes fit: a code means nothing in another model's space. Without
    them only the shapes are checked (a file of unknown origin, or a renamed copy of the model).
    """
    code, info = load_codes(path, max_bytes)
    if len(code) == 0:
        raise UserError(f"{Path(path).name}: the file holds no code")
    recorded = str(info.get("model") or "")
    if model_names is not None and recorded and not same_model(recorded, model_names):
        names = " / ".join(sorted({Path(n).stem for n in model_names if n}))
        raise UserError(f"{Path(path).name} is a code of the model {recorded!r}, not of {names}: use it with that model")
    code = code[0]
    try:
        check_fits(code, generator)
    except UserError as e:
        raise UserError(f"{Path(path).name}: {e} (a code of another model?)") from None
    return code
