"""What the web app computes, without the web: one loaded model and the edits on its codes.

The Gradio layer (server.py) only turns widget values into an `ExploreParams` (or a `Picture`
and a mask) and shows the result, so everything here is tested directly, and the app does
nothing the library can't. Models, priors and directions are loaded once per model and kept;
every slider move then costs one mapping pass and one synthesis pass at batch 1. StyleMapGAN
models (`StyleMapSession`) encode each picture once and keep its stylemap, so a local-edit
update is one generator pass.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import torch

from latentatlas.app.uploads import UploadLimits, load_upload, upload_stat
from latentatlas.directions.warped import PathSet, load_paths
from latentatlas.inversion.losses import ProjectionLoss, projection_loss
from latentatlas.io.errors import MAX_SEED, UserError, require_number, require_seed
from latentatlas.latent.codes import LatentCode, code_for_model, synthesize, to_w, to_wplus, truncate_code, z_from_seeds
from latentatlas.latent.gaussian import GaussianPrior
from latentatlas.latent.paths import endpoint, style_mix, travel
from latentatlas.models.bundled import BUNDLED_DIRECTIONS, WEIGHTS_DIR, load_generator, resolve_model

MAX_FRAMES = 120
# Frames x pixels an interpolation in the app may make: 16 frames at 1024 px, the Frames slider's
# 60 up to 512 px (the float images while synthesised: 200 MB). The interpolate command has no cap.
MAX_INTERPOLATION_PIXELS = 2**24

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """The last `size` values made, by key (encoded pictures, projections): a repeated request is free."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The kept value, or make() kept (two callers racing on a new key may both make it: harmless)."""
        value = self.peek(key)
        return self.put(key, make()) if value is None else value


def file_key(path: str | Path) -> tuple[str, int, int]:
    """Identifies an uploaded file cheaply (the server names uploads by their content, so a new
    upload is a new path) without reading it."""
    st = upload_stat(path)
    return str(path), st.st_size, st.st_mtime_ns


def public_error(e: UserError, path: str | Path) -> UserError:
    """The same message with the server's path of an upload replaced by the file's name."""
    return UserError(str(e).replace(str(path), Path(path).name))


@dataclass
class DirectionSet:
    """Linear directions (strength in stds, layer ranges) or warped paths (strength in latent spread units)."""

    title: str
    paths: PathSet

    @property
    def names(self) -> list[str]:
        return self.paths.names

    @property
    def limit(self) -> float:
        """Slider range +-limit (`PathSet.strength_range`: 3 stds linear, one w_std of arc warped)."""
        return self.paths.strength_range

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class ExploreParams:
    seed: int = 0
    psi: float = 1.0
    tau: float = 0.0  # PCA compression threshold in stds; 0 = off
    strengths: dict[tuple[int, int], float] = field(default_factory=dict)  # (set, direction) -> strength in stds
    layers: tuple[int, int] | None = None  # override every direction's w+ layer range
    mix_seed: int | None = None
    mix_cutoff: int = 0
    base: np.ndarray | None = None  # a w+ code [L, D] (from a projection) instead of the seed

    def __post_init__(self) -> None:
        """The sliders as the page's API may send them: Gradio's bounds check passes NaN (it fails
        no comparison), and a NaN psi or strength would render a NaN picture without a word."""
        require_number("truncation psi", self.psi, what="a finite number (1: none)")
        require_number("tau", self.tau, at_least=0, what="a number of stds >= 0 (0: off)")
        for value in self.strengths.values():
            require_number("direction strength", value, what="a finite number of stds")


# Slider sets the Explore tab has room for: the bundled ones (GANSpace, supervised, warped for
# faces64) and two of the user's (`serve --directions`).
MAX_DIRECTION_SETS = 5


class ModelSession:
    """A generator with its prior and direction sets, ready for interactive use."""

    def __init__(self, name: str, source: str, device: str = "cpu", directions: list[str | Path] | None = None,
                 lpips_files: tuple[str | Path, str | Path] | None = None) -> None:
        self.name = name
        self.path = resolve_model(source)
        self.lpips_files = lpips_files  # (VGG16 weights, LPIPS heads) for the projection loss, or None
        self.generator, self.info = load_generator(source, device)
        if self.generator.c_dim > 0:  # every render, walk and projection would fail in the page: say so when `serve` starts
            raise UserError(f"{name} is conditional ({self.generator.c_dim} classes) and the app has no class picker: serve "
                            "unconditional models (`latentatlas generate --class K` renders this one)")
        self.generator.requires_grad_(False)
        self.prior: GaussianPrior | None = None
        try:
            self.prior = GaussianPrior.from_model_info(self.info, name)
        except UserError:
            pass  # no prior stored: the tau slider is disabled for this model
        bundled = [WEIGHTS_DIR / f for f in BUNDLED_DIRECTIONS.get(source, [])]
        bundled = [f for f in bundled if f.is_file()]
        files = bundled + [Path(p) for p in directions or []]
        if len(files) > MAX_DIRECTION_SETS:
            raise UserError(f"{len(files) - len(bundled)} directions files for {name}: the app shows at most "
                            f"{MAX_DIRECTION_SETS - len(bundled)} besides its {len(bundled)} bundled sets")
        self.sets: list[DirectionSet] = []
        for path in files:
            ps = load_paths(path, device).to(device)
            try:  # the model, the width and the layer range: a misfit file is refused here, when `serve` starts
                ps.check_model(self.generator)
            except UserError as e:  # which of the (up to five) files it is
                raise UserError(f"{path}: {e}") from None
            if ps.space != "w":
                raise UserError(f"{path}: directions in z, and the app's sliders edit w codes: make them with --space w")
            self.sets.append(DirectionSet(f"{ps.method} ({path.stem})", ps))
        self.lock = threading.Lock()  # one synthesis at a time per model (torch threads are shared anyway)
        self._loss: ProjectionLoss | None = None
        self.names = {name, str(source), str(self.info.get("name") or "")}  # what code files may call this model
        self.projections: Recent[Hashable, LatentCode] = Recent(16)  # uploaded image -> projected code (Interpolate)

    def projection_loss(self) -> ProjectionLoss:
        """The projections' loss, chosen as `project` chooses it (`inversion.losses.projection_loss`)
        and made on first use: LPIPS with the app's --vgg/--lpips-lin files, else factor features +
        pixel MSE for a synthfaces model, else pixel MSE alone (which `said` explains)."""
        if self._loss is None:
            vgg, lin = self.lpips_files or (None, None)
            self._loss = projection_loss(self.path, vgg=vgg, lpips_lin=lin, fallback="mse", device=self.generator.device)
        return self._loss

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def set_title(self, s: int) -> str | None:
        """Title of direction set s, None where the model has fewer sets than the page shows."""
        return self.sets[s].title if s < len(self.sets) else None

    def set_names(self, s: int) -> list[str]:
        """The direction names of set s (none where the model has fewer sets than the page shows)."""
        return list(self.sets[s].names) if s < len(self.sets) else []

    def slider(self, s: int, k: int) -> tuple[str, float]:
        """(name, +-range) of slider k of set s; an empty name where there is no such direction."""
        ds = self.sets[s] if s < len(self.sets) else None
        return (ds.names[k] if ds and k < len(ds) else "", ds.limit if ds else 3.0)

    def seed_z(self, seed: int) -> LatentCode:
        return z_from_seeds([require_seed("seed", seed)], self.generator.z_dim, self.generator.device)

    def seed_code(self, seed: int, psi: float = 1.0) -> LatentCode:
        return to_wplus(to_w(self.seed_z(seed), self.generator, truncation_psi=psi), self.generator)

    def code_file(self, path: str | Path, limits: UploadLimits | None = None) -> LatentCode:
        """The first code of an uploaded .npz, refused when it names another model, does not fit this
        one or unpacks to more than the upload limits allow."""
        try:
            max_bytes = (limits or UploadLimits()).max_npz_bytes
            return code_for_model(path, self.generator, self.names, max_bytes).to(self.generator.device)
        except UserError as e:
            raise public_error(e, path) from None

    def edited_code(self, p: ExploreParams) -> LatentCode:
        """The w+ code the sliders describe: seed (or projected code), truncation, mixing, directions, compression."""
        g = self.generator
        if p.base is not None:
            base = torch.as_tensor(np.asarray(p.base, dtype=np.float32), device=g.device).reshape(1, self.num_ws, g.w_dim)
            code = truncate_code(LatentCode("w+", base), g, p.psi)
        else:
            code = self.seed_code(p.seed, p.psi)
        if p.mix_seed is not None and 0 < p.mix_cutoff < self.num_ws:
            code = style_mix(code, self.seed_code(p.mix_seed, p.psi), p.mix_cutoff)
        for (s, k), strength in sorted(p.strengths.items()):
            if strength == 0 or s >= len(self.sets):
                continue
            code = self.sets[s].paths.apply(code, k, float(strength), p.layers)
        if p.tau > 0:
            if self.prior is None:
                raise UserError(f"{self.name} has no Gaussian prior: run `latentatlas stats` to add one")
            code = LatentCode("w+", self.prior.compress(code.tensor, p.tau).to(code.tensor))
        return code

    @torch.no_grad()
    def render(self, p: ExploreParams) -> tuple[np.ndarray, LatentCode]:
        """uint8 image [H, W, 3] and the code that made it."""
        with self.lock:
            code = self.edited_code(p)
            img = synthesize(code, self.generator)
        return to_rgb8(img[0]), code

    def check_frames(self, frames: int) -> None:
        """Refuse an interpolation of `frames` frames the app would not make (2..MAX_FRAMES, and frames x
        pixels within MAX_INTERPOLATION_PIXELS). The Interpolate tab calls it before projecting any
        uploaded end (up to 500 steps each), so a request too large is refused before that work."""
        if not 2 <= frames <= MAX_FRAMES:
            raise UserError(f"frames: use 2..{MAX_FRAMES}, got {frames}")
        side = self.generator.img_resolution
        if frames * side * side > MAX_INTERPOLATION_PIXELS:
            most = MAX_INTERPOLATION_PIXELS // side**2
            if most < 2:  # at 4096 px and over not even the two ends fit: "at most 1" would ask for the impossible
                raise UserError(f"{side}x{side} px frames are too large for the app to interpolate (even 2 are more than "
                                "it makes at once): use `latentatlas interpolate`")
            raise UserError(f"{frames} frames of {side}x{side} px are more than the app makes at once: at most "
                            f"{most} for this model (`latentatlas interpolate` makes more)")

    @torch.no_grad()
    def interpolation(self, a: int | LatentCode, b: int | LatentCode, frames: int, method: str, space: str,
                      psi: float = 1.0) -> np.ndarray:
        """Frames [T, H, W, 3] from a to b (seeds or codes), in z (then mapped) or in w (`latent.paths.travel`)."""
        self.check_frames(frames)
        g = self.generator
        ends = [endpoint(self.seed_z(x) if isinstance(x, int) else x, g, space, psi) for x in (a, b)]
        _, out = travel(ends[0], ends[1], g, frames, method, psi)
        return np.stack([to_rgb8(f) for f in out])


def to_rgb8(img: torch.Tensor) -> np.ndarray:
    """One image [C, H, W] in [-1, 1] as uint8 [H, W, 3]."""
    from latentatlas.io.images import to_uint8

    arr = to_uint8(img.unsqueeze(0).cpu())[0]
    return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr


def enlarge(arr: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour enlargement of small images for display (shows the true pixels)."""
    f = max(1, size // arr.shape[0])
    return arr.repeat(f, axis=0).repeat(f, axis=1) if f > 1 else arr


def reduce(arr: np.ndarray, size: int) -> np.ndarray:
    """A uint8 image [H, W, C] at most `size` px high (aspect kept, area-averaged); smaller ones as they are."""
    from PIL import Image

    h, w = arr.shape[:2]
    if h <= size:
        return arr
    return np.asarray(Image.fromarray(arr).resize((max(1, round(w * size / h)), size), Image.Resampling.BOX))


def fit_display(arr: np.ndarray, size: int = 256) -> np.ndarray:
    """An image for display at about `size` px: small ones enlarged (`enlarge`), large ones reduced (`reduce`)."""
    return enlarge(arr, size) if arr.shape[0] <= size else reduce(arr, size)


# ---------------------------------------------------------------------------------------
# StyleMapGAN: local editing

PICTURE_KINDS = {"synthfaces": "a synthfaces face", "sample": "a sample of the model", "upload": "an uploaded image"}
MASK_DRAWN = "drawn"


@dataclass(frozen=True)
class Picture:
    """Where a source or reference image comes from: a synthfaces render or a model sample (from
    a seed), or an uploaded file (a server path that Gradio made; never one a user typed)."""

    kind: str = "synthfaces"
    seed: int = 0
    path: str | None = None


@dataclass
class LocalEdit:
    image: np.ndarray  # uint8 [R, R, 3]
    coverage: float  # fraction of stylemap cells taken from the reference
    note: str | None  # the empty or full mask said in words
    ms: float


class StyleMapSession:
    """A StyleMapGAN generator and encoder; pictures are encoded once (kept by key), so each change
    of the mask, shift or strength costs one generator pass (`editing.local.edit`)."""

    def __init__(self, name: str, source: str, device: str = "cpu") -> None:
        from latentatlas.io.checkpoints import load_stylemap_any

        self.name = name
        self.generator, self.encoder, self.info = load_stylemap_any(resolve_model(source), device)
        # What an uploaded stylemap code may name as its model (`latentatlas encode` records the
        # MODEL argument it was given: a bundled name or a path).
        self.names = (name, str(source), str(resolve_model(source)))
        self.lock = threading.Lock()
        self._pictures: Recent[Hashable, tuple[torch.Tensor, torch.Tensor]] = Recent(64)

    @property
    def resolution(self) -> int:
        return self.generator.img_resolution

    def picture(self, p: Picture, limits: UploadLimits | None = None, refine: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(image [1, 3, R, R] in [-1, 1], stylemap [1, C, S, S]) of a picture; uploads go through
        the upload limits (`uploads.load_upload`) and are named by file name in messages. With
        `refine`, an encoded picture's stylemap is then optimised that many steps
        (`inversion.encoder.refine`; kept apart from the plain one)."""
        if p.kind not in PICTURE_KINDS:
            raise UserError(f"unknown picture kind {p.kind!r}: use one of {', '.join(PICTURE_KINDS)}")
        if p.kind == "upload":
            if p.path is None:
                raise UserError("upload an image first")
            key: Hashable = ("upload", file_key(p.path))
        else:
            key = (p.kind, require_seed("seed", p.seed))
        if refine and p.kind != "sample":
            image, code = self.picture(p, limits)
            if str(p.path).lower().endswith(".npz"):
                return image, code  # a code is no encoder's guess: nothing to refine
            return self._pictures.get((*key, "refine", refine), lambda: self._refined(image, code, refine))
        return self._pictures.get(key, lambda: self._make_picture(p, limits))

    def _refined(self, image: torch.Tensor, code: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        from latentatlas.inversion.encoder import refine

        with self.lock:
            return image, refine(self.generator, code, image.to(code.device), steps)

    def _make_picture(self, p: Picture, limits: UploadLimits | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A picture's (image, stylemap) as the commands make them (`editing.local.stylemap_input`);
        a synthfaces face is rendered, then encoded as an image is."""
        from latentatlas.data import synthfaces
        from latentatlas.editing.local import stylemap_input

        g, limits = self.generator, limits or UploadLimits()
        source: int | str | torch.Tensor
        try:
            if p.kind == "sample":
                source = p.seed
            elif p.kind == "synthfaces":
                source, _ = synthfaces.sample(1, seed=p.seed, resolution=self.resolution)
            elif str(p.path).lower().endswith(".npz"):  # a stylemap from `latentatlas encode`: no encoder pass
                source = str(p.path)
            else:
                source, _ = load_upload(p.path, self.resolution, limits)
            with self.lock:
                code, image = stylemap_input(g, self.encoder, source, self.names, max_npz_bytes=limits.max_npz_bytes)
        except UserError as e:
            raise public_error(e, p.path or "") if p.path else e from None
        return image, code

    def mask(self, kind: str, drawn: np.ndarray | None = None, grow: int = 0) -> torch.Tensor:
        """[1, 1, R, R] in [0, 1]: the drawn strokes (alpha or grey [H, W], any square size) or a face
        region, grown by `grow` pixels (editing.local.grow_mask)."""
        from latentatlas.editing.local import grow_mask, mask_from_grey, region_mask

        res = self.resolution
        if kind == MASK_DRAWN:
            if drawn is None:
                return torch.zeros(1, 1, res, res)
            return grow_mask(mask_from_grey(drawn, res, name="the drawn mask")[0], grow)
        return grow_mask(region_mask(kind, res)[0], grow)

    def edit(self, src: Picture, ref: Picture, mask: torch.Tensor, shift: tuple[int, int] = (0, 0),
             per_layer: bool = False, strength: float = 1.0, limits: UploadLimits | None = None, refine: int = 0) -> LocalEdit:
        """The source with the masked region of the reference; a shift other than (0, 0) transplants it.
        `refine`: encoded pictures are refined that many steps first (once each, then kept)."""
        import time

        from latentatlas.editing.local import edit, edit_coverage

        t = time.perf_counter()
        _, a = self.picture(src, limits, refine)
        _, b = self.picture(ref, limits, refine)
        moved = None if tuple(shift) == (0, 0) else tuple(shift)
        coverage, note = edit_coverage(self.generator, mask, moved)  # the rule the edit applies (a shift: its threshold)
        with self.lock:
            out = edit(self.generator, a, b, mask.to(a.device), shift=moved, per_layer=per_layer, strength=strength)
        return LocalEdit(to_rgb8(out[0]), coverage, note, (time.perf_counter() - t) * 1000)
