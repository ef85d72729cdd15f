"""A set of linear edit directions, how to apply them, and their files.

Every method (GANSpace, SeFa, supervised) produces the same object: unit vectors in a named
space, a scale per direction (the std of the samples along it, so strength 1 means one
standard deviation for every method), a name per direction, an optional layer range for W+
edits, and the fingerprint of the model it was made for. Files are safetensors with JSON
metadata; a file made for another model or space is refused with a clear message.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from latentatlas.io import tensorfile
from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode, code_width
from latentatlas.models.stylegan2 import Generator

KIND = "directions"


def model_fingerprint(generator: Generator) -> str:
    """Identifies a model across fp16/fp32 copies: its config and a slice of its weights in fp16.

    Rounding to fp16 is idempotent, so an fp32 model and its fp16 file hash alike (decimal
    rounding is not: values near a rounding boundary fall either way).
    """
    h = hashlib.sha1(json.dumps(generator.config.to_dict(), sort_keys=True).encode())
    sample = generator.mapping.fc0.weight.detach().flatten()[:256].to(torch.float16).cpu().numpy()
    h.update(sample.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Directions:
    vectors: torch.Tensor  # [K, D], unit norm
    scales: torch.Tensor  # [K]: std of sample codes along each vector
    names: list[str]
    space: str  # "w" (edits apply to w and to every layer of w+) or "z"
    method: str
    model: str  # fingerprint
    layers: tuple[int, int] | None = None  # [start, end) of w+ layers to edit; None = all
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.scales.shape != (self.vectors.shape[0],) or len(self.names) != self.vectors.shape[0]:
            raise UserError("directions: vectors [K, D], scales [K] and K names must agree")
        if self.space not in ("w", "z"):
            raise UserError(f"directions live in w or z, not {self.space!r}")

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def check_model(self, generator: Generator) -> None:
        """Refuse directions that do not fit `generator`: made for another model, or (a file edited by
        hand, or from another version, under the right fingerprint) vectors of another width or a layer
        range past the model's ws. Checked here, where every command and the app meet the model, so
        a misfit file fails before any work with one line, not in `apply` with a size mismatch (or,
        for a range past the end, silently clamped by the slice)."""
        fp = model_fingerprint(generator)
        if fp != self.model:
            raise UserError(
                f"these directions were made for another model (fingerprint {self.model}, this one is {fp}): "
                "compute them again for this model"
            )
        dim = code_width(generator, self.space)
        if self.vectors.shape[1] != dim:
            raise UserError(f"these directions are {self.vectors.shape[1]}-d and this model's {self.space} is {dim}-d: "
                            "compute them again for this model")
        if self.layers is not None and self.layers[1] > generator.num_ws:
            start, end = self.layers
            raise UserError(f"these directions edit w+ layers {start}-{end} (end excluded) and this model has "
                            f"{generator.num_ws}: compute them again with --layers within 0-{generator.num_ws}")

    def index(self, path: int | str) -> int:
        if isinstance(path, str) and not path.lstrip("-").isdigit():
            if path not in self.names:
                raise UserError(f"no direction named {path!r}; have: {', '.join(self.names[:12])}")
            return self.names.index(path)
        k = int(path)
        if not 0 <= k < len(self):
            raise UserError(f"direction {k} does not exist: this file has {len(self)} (0..{len(self) - 1})")
        return k

    def apply(self, code: LatentCode, path: int | str, strength: float | torch.Tensor, num_ws: int | None = None) -> LatentCode:
        """code + strength * scale * vector; strength may be [N] (one per code) or a scalar.

        In w+ only the layers in self.layers move. z directions need z codes; w directions
        take w or w+ codes.
        """
        k = self.index(path)
        v = (self.vectors[k] * self.scales[k]).to(code.tensor)
        s = torch.as_tensor(strength, dtype=code.tensor.dtype, device=code.tensor.device).reshape(-1)
        if self.space == "z":
            code.require("z")
            return LatentCode("z", code.tensor + s[:, None] * v)
        code.require("w", "w+")
        if code.space == "w":
            if self.layers is not None:
                raise UserError("these directions edit a layer range: give a w+ code (to_wplus) to edit")
            return LatentCode("w", code.tensor + s[:, None] * v)
        start, end = self.layers if self.layers is not None else (0, code.tensor.shape[1])
        out = code.tensor.clone()
        out[:, start:end] += s[:, None, None] * v
        return LatentCode("w+", out)


def save_directions(path: str | Path, d: Directions) -> None:
    """Write `d` atomically; refused if a vector or scale is not finite (load_directions would refuse
    the file anyway, so it is better not written, and the user told now, where it was made)."""
    bad = [n for n, t in (("vectors", d.vectors), ("scales", d.scales)) if not torch.isfinite(t).all()]
    if bad:
        raise UserError(f"{path}: not written: the directions' {' and '.join(bad)} hold NaN or infinite values; "
                        "check the codes and scores they were made from")
    meta = {
        "format": "latentatlas",
        "kind": KIND,
        "space": d.space,
        "method": d.method,
        "model": d.model,
        "names": json.dumps(d.names),
        "layers": json.dumps(list(d.layers) if d.layers is not None else None),
        "info": json.dumps(d.info),
    }
    with atomic_path(path) as tmp:
        save_file({"vectors": d.vectors.float().contiguous(), "scales": d.scales.float().contiguous()}, str(tmp), metadata=meta)


def load_directions(path: str | Path) -> Directions:
    meta, t = tensorfile.read_tensors(path, "directions")
    if meta.get("kind") != KIND:
        raise UserError(f"{path}: not a latentatlas directions file")
    return directions_from(meta, t, path)


def directions_from(meta: dict[str, str], t: dict[str, torch.Tensor], path: str | Path) -> Directions:
    """Directions from a file's metadata and tensors, already read (load_directions, warped.load_paths).

    The names and the layer range are checked here, with the file's path, since a file edited by
    hand or written by another version reached the commands as tracebacks (an int name in `re.sub`,
    layers [5] in an unpack) or did nothing without a word (layers [7, 3]); integer or all-zero
    vectors too (a unit step along a zero vector is NaN). The tensors are finite already
    (tensorfile refuses NaN); whether their width fits a model is `Directions.check_model`'s.
    """
    with tensorfile.fields(path, "directions"):
        vectors = t["vectors"]
        if vectors.ndim != 2:
            raise UserError(f"{path}: its vectors must be [K, D], not {list(vectors.shape)}: "
                            "make the file again with this version of latentatlas")
        if not vectors.is_floating_point():
            raise UserError(f"{path}: its vectors are {str(vectors.dtype).removeprefix('torch.')}, not floats: "
                            "make the file again with this version of latentatlas")
        zero = (vectors.abs().amax(dim=1) == 0).nonzero().flatten().tolist()
        if zero:  # a unit step along it divides by its length: NaN frames
            raise UserError(f"{path}: direction {zero[0]} is all zeros, so it points nowhere: make the file again")
        return Directions(
            vectors=vectors, scales=t["scales"], names=file_names(meta, vectors.shape[0], path),
            space=meta["space"], method=meta["method"], model=meta["model"], layers=file_layers(meta, path),
            info=json.loads(meta["info"]),
        )


def file_names(meta: dict[str, str], count: int, path: str | Path) -> list[str]:
    """The names of a directions or warped-directions file: a JSON list of `count` strings, one per
    direction, and at least one direction. Names become output file names, slider labels and
    --path choices, and a file with no direction left `directions score` a torch traceback."""
    if count < 1:
        raise UserError(f"{path}: holds no directions: make it again with at least one")
    names = json.loads(meta["names"])
    if not (isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names)):
        raise UserError(f"{path}: its names must be a list of {count} strings, one per direction, not {json.dumps(names)[:60]}: "
                        "make the file again with this version of latentatlas")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # --path NAME would reach the first alone, and traverse's output files would collide
        raise UserError(f"{path}: names a direction {json.dumps(twice[0])} more than once: give each direction its own name")
    return names


def file_layers(meta: dict[str, str], path: str | Path) -> tuple[int, int] | None:
    """The w+ layer range of a directions file: null (every layer) or [start, end] with 0 <= start < end,
    as `--layers start-end` gives it (whether the end fits a model is `Directions.check_model`'s)."""
    layers = json.loads(meta["layers"])
    if layers is None:
        return None
    if not (isinstance(layers, list) and len(layers) == 2 and all(type(x) is int for x in layers) and 0 <= layers[0] < layers[1]):
        raise UserError(f"{path}: its layers must be null (every layer) or [start, end] with 0 <= start < end, not "
                        f"{json.dumps(layers)[:60]}: make the file again (e.g. with --layers 0-4)")
    return layers[0], layers[1]


@torch.no_grad()
def sample_w(generator: Generator, num: int, seed: int = 0, batch: int = 4096, progress: bool = False) -> torch.Tensor:
    """num w vectors [num, w_dim] on the CPU, in batches."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, num, batch), disable=not progress, desc="sampling w", unit="batch"):
        z = torch.randn(min(batch, num - i), generator.z_dim, generator=g).to(generator.device)
        out.append(generator.mapping(z)[:, 0].cpu())
    return torch.cat(out)


def scales_along(vectors: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Std of the samples projected on each (unit) vector."""
    return (samples.double() @ vectors.double().T).std(dim=0).float()
