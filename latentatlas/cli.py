"""The `latentatlas` command: a thin layer that parses arguments and calls the library.

User errors (bad file, bad seed list, existing output) print one line and exit with 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from latentatlas.io.errors import UserError, require_at_least, require_file, require_number, require_seed
from latentatlas.runtime import pick_device, rank_device

if TYPE_CHECKING:  # the command imports torch only when it runs
    from latentatlas.inversion.folder import ProjectionProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Map, search and travel the latent space of style-based GANs.",
)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]
TRUNCATION_HELP = ("Truncation psi: codes are pulled towards the model's average code (1: none, 0: the average; "
                   "e.g. 0.7 gives fewer odd samples and less variety; above 1 exaggerates).")
TruncationOpt = Annotated[float, typer.Option("--truncation", "--trunc", help=TRUNCATION_HELP)]
ModelArg = Annotated[str, typer.Argument(help="A bundled model name or a model file (.safetensors, official .pkl, rosinality .pt).")]
# The commands that take a StyleMapGAN as well (info, generate, interpolate, evaluate).
AnyModelArg = Annotated[str, typer.Argument(help="A bundled model name or a model file: StyleGAN2 (.safetensors, official .pkl, "
                                                 "rosinality .pt) or StyleMapGAN (.safetensors, naver-ai .pt).")]



MAX_SEEDS = 100_000  # seeds one call takes
MAX_MIX_SIDE = 64  # rows or columns of a style-mixing grid, rows (seeds) of a traverse strip
MAX_GRID_TILES = 256  # seeds generate's grid.png shows: their images are held until it is written
MAX_GIF_FPS = 50  # a GIF frame lasts whole hundredths of a second; browsers slow delays under 20 ms to 100 ms


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"bad seed list {text!r}: use numbers and ranges like 0-7,12")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise UserError(f"bad seed range {part!r}: the end is before the start (write {hi}-{lo})")
        if hi >= 2**32:
            raise UserError(f"seed {hi} is too large: seeds must be below 2**32")
        seeds.extend(range(lo, hi + 1))
    if len(seeds) > MAX_SEEDS:
        raise UserError(f"seed list {text!r} holds {len(seeds)} seeds; one call takes at most {MAX_SEEDS}: split it over several calls")
    return seeds


def _check_unique_stems(files: list[Path]) -> None:
    """Outputs are named after each input's file stem: two inputs with one stem would overwrite each other's."""
    first: dict[str, Path] = {}
    for f in files:
        if f.stem in first:
            raise UserError(f"{first[f.stem]} and {f} share the name {f.stem!r}, after which the outputs are named: rename one")
        first[f.stem] = f


def _check_folder(folder: Path, option: str = "--out") -> None:
    """A folder a command writes into (its --out, or the folder of an output file): refused before
    any work when it, or a folder above it, is an existing file, or when the nearest existing one
    takes no files (check_folder_writable): making or writing it would fail after the work, with a
    traceback."""
    from latentatlas.io.atomic import check_folder_writable

    for p in (folder, *folder.parents):
        if p.is_dir():
            break
        if p.exists():
            raise UserError(f"{p}: is a file, not a folder: give a folder for {option}")
    check_folder_writable(folder)


def _safetensors_output(path: Path) -> None:
    """Our files are safetensors whatever their name; a directions file saved as p.npz or a
    predictor as p.png was written without a word and then read by nothing that expects those."""
    if path.suffix != ".safetensors" and not path.is_dir():  # a folder gets _outputs' own message
        raise UserError(f"{path}: the output must end in .safetensors")


def _outputs(paths: list[Path], force: bool, option: str = "--out", exists_advice: str | None = None) -> None:
    """The files a command will write, checked before any work: each in a folder that is one and
    takes files (_check_folder: a read-only folder or disk was a traceback after the work), none an
    existing folder, and none an existing file unless --force (`exists_advice`: what the refusal
    says to do instead). `option` names where they come from."""
    from latentatlas.io.atomic import check_writable

    tried: set[Path] = set()
    for p in paths:
        if p.parent not in tried:  # one trial file a folder, not one an output
            _check_folder(p.parent, option)
            tried.add(p.parent)
        if p.is_dir():
            raise UserError(f"{p}: is a folder, not a file: choose another {option}")
        check_writable(p, force, exists_advice)


def _labels(generator, class_idx: int | None, n: int):  # type: ignore[no-untyped-def]
    import torch

    if generator.c_dim == 0:
        if class_idx is not None:
            raise UserError("--class is only for conditional models; this one has no labels")
        return None
    if class_idx is None or not 0 <= class_idx < generator.c_dim:
        raise UserError(f"this model is conditional: give --class in 0..{generator.c_dim - 1}")
    c = torch.zeros(n, generator.c_dim, device=generator.device)
    c[:, class_idx] = 1
    return c


@app.command()
def info(model: AnyModelArg, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Describe a model: resolution, latent sizes, channels, parameters, training (where the file says).

    StyleGAN2 and StyleMapGAN models alike. Example: latentatlas info ffhq.pkl
    """
    from latentatlas.io.checkpoints import (STYLEMAP_KIND, describe, describe_stylemap, load_stylemap_any,
                                            model_kind, training_facts)
    from latentatlas.models.bundled import load_generator, resolve_model

    path = resolve_model(model)
    if model_kind(path) == STYLEMAP_KIND:
        generator, encoder, meta = load_stylemap_any(path)
        facts = describe_stylemap(generator, encoder)
    else:
        generator, meta = load_generator(model)
        facts = describe(generator)
    facts.update(training_facts(meta))
    facts["source"] = meta.get("source_format", "latentatlas")
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    width = max(map(len, facts))
    for k, v in facts.items():
        typer.echo(f"{k:>{width}}: {v}")


@app.command()
def generate(
    model: AnyModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-7,12.")] = "0-7",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out"),
    truncation: TruncationOpt = 1.0,
    truncation_cutoff: Annotated[int | None, typer.Option(help="Truncate only the first N layers.")] = None,
    noise_mode: Annotated[str, typer.Option(help="const, random or none.")] = "const",
    class_idx: Annotated[int | None, typer.Option("--class", help="Class index for conditional models.")] = None,
    grid: Annotated[bool, typer.Option(help=f"Write grid.png (at most {MAX_GRID_TILES} seeds; more need --no-grid).")] = True,
    per_seed: Annotated[bool, typer.Option(help="Write one PNG per seed, each batch's as it is made.")] = False,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Generate images from seeds: a grid, optional per-seed PNGs, and the latents (.npz).

    The grid shows at most 256 seeds (a longer list is refused before any work: pass --no-grid,
    with --per-seed for the images); per-seed PNGs are written batch by batch, so any number
    of them (up to 100,000 seeds a call) takes the memory of one batch, beside the codes.

    A StyleMapGAN model gives random stylemaps (truncated towards its mean stylemap by --trunc);
    its codes are stylemaps, and it has no noise inputs, classes or per-layer cutoff.

    Example: latentatlas generate ffhq.pkl --seeds 0-15 --trunc 0.7 --out samples
    """
    import torch

    from latentatlas.io.checkpoints import STYLEMAP_KIND, load_stylemap_any, model_kind
    from latentatlas.latent.codes import LatentCode, save_codes, z_from_seeds
    from latentatlas.models.bundled import load_generator, resolve_model

    seed_list = parse_seeds(seeds)
    if grid and len(seed_list) > MAX_GRID_TILES:
        raise UserError(f"--seeds holds {len(seed_list)} seeds; grid.png shows at most {MAX_GRID_TILES}: pass --no-grid "
                        "(and --per-seed for one PNG a seed), or fewer seeds")
    _check_truncation(truncation)
    if noise_mode not in ("const", "random", "none"):
        raise UserError(f"--noise-mode {noise_mode}: use const, random or none")
    files = [out / "latents.npz"] + ([out / "grid.png"] if grid else [])
    files += [out / f"seed{s:04d}.png" for s in seed_list] if per_seed else []
    _outputs(files, force)
    if model_kind(resolve_model(model)) == STYLEMAP_KIND:
        if truncation_cutoff is not None or class_idx is not None or noise_mode != "const":
            raise UserError("a StyleMapGAN model has no --truncation-cutoff, --class or noise inputs: leave them out")
        from latentatlas.editing.local import random_stylemaps

        sm, _, _ = load_stylemap_any(resolve_model(model), pick_device(device))
        mean = sm.mean_stylemap() if truncation != 1 else None
        samples, codes = _Samples(out, grid, per_seed), []
        with torch.no_grad():
            for i in range(0, len(seed_list), 16):
                code = random_stylemaps(sm, seed_list[i : i + 16], truncation, mean)
                codes.append(code.cpu())
                samples.add(seed_list[i : i + 16], sm(code).cpu())
        save_codes(out / "latents.npz", LatentCode("stylemap", torch.cat(codes)), model=model, seeds=seed_list)
        samples.finish()
        typer.echo(f"latents (stylemap): {out / 'latents.npz'}")
        return
    generator, meta = load_generator(model, pick_device(device))
    if truncation_cutoff is not None:
        _check_layer_index("--truncation-cutoff", truncation_cutoff, generator)
    z = z_from_seeds(seed_list, generator.z_dim, generator.device)
    c = _labels(generator, class_idx, len(seed_list))
    samples, ws = _Samples(out, grid, per_seed), []
    with torch.no_grad():
        for i in range(0, len(seed_list), 16):
            cc = None if c is None else c[i : i + 16]
            w = generator.mapping(z.tensor[i : i + 16], cc, truncation_psi=truncation, truncation_cutoff=truncation_cutoff)
            ws.append(w.cpu())
            samples.add(seed_list[i : i + 16], generator.synthesis(w, noise_mode=noise_mode).cpu())
    save_codes(out / "latents.npz", LatentCode("w+", torch.cat(ws)), model=meta["name"], seeds=seed_list)
    samples.finish()
    typer.echo(f"latents (w+): {out / 'latents.npz'}")


def _check_truncation(psi: float | None) -> None:
    """--trunc takes any finite psi (1: none, 0: the average, above 1: exaggerated); NaN would turn
    every code into NaN, and the error would come later, about a code the user never gave."""
    if psi is not None:
        require_number("--trunc", psi, what="a finite truncation psi (1: none)", example="0.7")


def _parse_range(option: str, text: str) -> tuple[float, float]:
    """Two finite numbers "lo,hi": a pattern of digits and dots let "1..2,3" through to float()'s
    traceback, and NaN would make every frame NaN."""
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{option} {text!r}: give two numbers like -3,3") from None
    for value in (lo, hi):
        require_number(option, value, what="two finite numbers like -3,3")
    return lo, hi


def _check_layer_index(option: str, value: int, generator) -> None:  # type: ignore[no-untyped-def]
    """A w+ layer boundary, 0..num_ws (generate --truncation-cutoff, mix --cutoff): a negative one
    would slice from the end and a larger one be clamped, both silently."""
    if not 0 <= value <= generator.num_ws:
        raise UserError(f"{option} {value}: this model has {generator.num_ws} layers; use 0..{generator.num_ws}")


class _Samples:
    """generate's images, batch by batch: each batch's per-seed PNGs written as it comes (holding
    every image of 100,000 seeds took gigabytes at 64 px), the grid's tiles (MAX_GRID_TILES at
    most) kept for finish() to write grid.png."""

    def __init__(self, out: Path, grid: bool, per_seed: bool) -> None:
        self.out, self.grid, self.per_seed = out, grid, per_seed
        self.tiles: list[Any] = []
        self.count = 0

    def add(self, seeds: list[int], images: Any) -> None:
        from latentatlas.io.images import make_grid, save_image

        if self.per_seed:
            for s, im in zip(seeds, images):
                save_image(self.out / f"seed{s:04d}.png", make_grid(im[None]))
        if self.grid:
            self.tiles.append(images)
        self.count += len(seeds)

    def finish(self) -> None:
        import torch

        from latentatlas.io.images import make_grid, save_image

        if self.grid:
            save_image(self.out / "grid.png", make_grid(torch.cat(self.tiles)))
            typer.echo(f"grid: {self.out / 'grid.png'}")
        if self.per_seed:
            typer.echo(f"{self.count} images: {self.out}/seed*.png")


def _single_seed(text: str) -> int | None:
    """A one-seed input ('7') as its number, checked as every seed is (below 2**32); None for anything else."""
    return parse_seeds(text)[0] if re.fullmatch(r"\d+", text) else None


def _endpoint(text: str, generator, space: str, truncation: float, model_names: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """A seed number or a .npz file -> one code in `space` ('z' or 'w'; w+ from files stays w+).

    A file that records another model is refused (`model_names`: the names this one goes by), as
    the app and the StyleMapGAN path refuse it: a code means nothing in another model's space."""
    from latentatlas.latent.codes import code_for_model, z_from_seeds
    from latentatlas.latent.paths import endpoint

    seed = _single_seed(text)
    if seed is not None:
        code = z_from_seeds([seed], generator.z_dim, generator.device)
    elif text.lower().endswith(".npz"):
        code = code_for_model(text, generator, model_names).to(generator.device)
    else:
        raise UserError(f"{text!r}: give a seed number or a .npz file of latent codes")
    try:
        return endpoint(code, generator, space, truncation)
    except UserError as e:
        raise UserError(f"{text}: {e} (--space w)") from None


@app.command()
def interpolate(
    model: AnyModelArg,
    start: Annotated[str, typer.Option("--from", help="Seed number or .npz file (first code used); StyleMapGAN: also an image.")] = "0",
    end: Annotated[str, typer.Option("--to", help="Seed number or .npz file; StyleMapGAN: also an image.")] = "1",
    frames: Annotated[int, typer.Option(help="Number of frames, ends included.")] = 16,
    method: Annotated[str, typer.Option(help="lerp or slerp.")] = "lerp",
    space: Annotated[str, typer.Option(help="z or w (codes from files keep w or w+).")] = "w",
    truncation: TruncationOpt = 1.0,
    fps: Annotated[int, typer.Option(help="Frames per second of the animations (1..50: a GIF plays no faster).")] = 12,
    refine: RefineOpt = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Interpolate between two seeds or saved codes: a strip PNG, a GIF and an MP4.

    With a StyleMapGAN model the ends may also be images (encoded in one pass, then refined with
    --refine N), and the path is linear in stylemap space (--space and slerp do not apply).

    Example: latentatlas interpolate ffhq.pkl --from 3 --to 8 --method slerp --space z --frames 24
    Example: latentatlas interpolate faces64-stylemap --from a.png --to b.png --frames 12 --refine 100
    """
    from latentatlas.io.checkpoints import STYLEMAP_KIND, load_stylemap_any, model_kind
    from latentatlas.io.images import make_grid, save_animation, save_image
    from latentatlas.latent.codes import LatentCode, save_codes
    from latentatlas.latent.paths import travel
    from latentatlas.models.bundled import load_generator, resolve_model

    if space not in ("z", "w"):
        raise UserError(f"--space {space}: use z or w")
    _check_truncation(truncation)
    if frames < 2 or frames > 2000:
        raise UserError(f"--frames {frames}: use 2..2000")
    require_at_least("--fps", fps, 1, "frames per second of the animations")
    if fps > MAX_GIF_FPS:
        # A GIF stores each frame's delay in whole hundredths of a second, and browsers play
        # delays under 2 of them at 10 fps: --fps 60 came out as a GIF slower than --fps 12.
        raise UserError(f"--fps {fps}: use at most {MAX_GIF_FPS} (browsers play faster GIFs at 10 frames per second)")
    _check_refine(refine)
    files = [out / "interpolation.png", out / "interpolation.gif", out / "interpolation.mp4", out / "interpolation.npz"]
    _outputs(files, force)
    if model_kind(resolve_model(model)) == STYLEMAP_KIND:
        if method != "lerp":
            raise UserError(f"--method {method}: StyleMapGAN stylemaps are interpolated linearly (lerp)")
        from latentatlas.editing.local import interpolate as interpolate_stylemaps

        sm, encoder, _ = load_stylemap_any(resolve_model(model), pick_device(device))
        mean = sm.mean_stylemap() if truncation != 1 else None
        names = (model, str(resolve_model(model)))
        a, b = (_stylemap_input(t, sm, encoder, names, truncation, mean, refine)[0] for t in (start, end))
        codes, images = interpolate_stylemaps(sm, a, b, frames)
        path, meta = LatentCode("stylemap", codes.cpu()), {"name": model}
    else:
        if refine:
            raise UserError("--refine refines StyleMapGAN encodings; for a StyleGAN2 model project the images "
                            "(latentatlas project) and interpolate between the .npz codes")
        generator, meta = load_generator(model, pick_device(device))
        names = (model, str(resolve_model(model)), meta["name"])
        path, images = travel(*(_endpoint(t, generator, space, truncation, names) for t in (start, end)),
                              generator, frames, method, truncation)
    images = images.cpu()
    save_image(out / "interpolation.png", make_grid(images, cols=frames))
    save_animation(out / "interpolation.gif", images, fps=fps)
    save_animation(out / "interpolation.mp4", images, fps=fps)
    save_codes(out / "interpolation.npz", LatentCode(path.space, path.tensor.cpu()), model=meta["name"])
    typer.echo(f"strip: {out / 'interpolation.png'}\nanimations: {out / 'interpolation.gif'}, {out / 'interpolation.mp4'}")


@app.command()
def mix(
    model: ModelArg,
    rows: Annotated[str, typer.Option(help="Seeds whose coarse styles (layers before the cutoff) are kept.")] = "0-3",
    cols: Annotated[str, typer.Option(help="Seeds whose fine styles (layers from the cutoff on) are used.")] = "10-13",
    cutoff: Annotated[int, typer.Option(help="First layer taken from the column seed.")] = 4,
    truncation: TruncationOpt = 1.0,
    out: Annotated[Path, typer.Option(help="Output PNG.")] = Path("out/mix.png"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Style-mixing grid: first row the column seeds, first column the row seeds, mixes inside.

    Example: latentatlas mix ffhq.pkl --rows 0-4 --cols 20-24 --cutoff 6 --out mix.png
    """
    import torch

    from latentatlas.io.images import image_format, make_grid, save_image
    from latentatlas.latent.codes import LatentCode, synthesize, to_wplus, z_from_seeds
    from latentatlas.latent.paths import style_mix
    from latentatlas.models.bundled import load_generator

    image_format(out)  # the suffix before the grid is rendered, not at its writing
    row_seeds, col_seeds = parse_seeds(rows), parse_seeds(cols)
    for option, seeds in (("--rows", row_seeds), ("--cols", col_seeds)):
        # Every tile is held until the grid is written, and a column's seeds are rendered as one batch.
        if len(seeds) > MAX_MIX_SIDE:
            raise UserError(f"{option} holds {len(seeds)} seeds; a style-mixing grid takes at most {MAX_MIX_SIDE} a side")
    _check_truncation(truncation)
    _outputs([out], force)
    generator, _ = load_generator(model, pick_device(device))
    _check_layer_index("--cutoff", cutoff, generator)

    def wplus(seeds: list[int]) -> LatentCode:
        z = z_from_seeds(seeds, generator.z_dim, generator.device)
        with torch.no_grad():
            return to_wplus(LatentCode("w", generator.mapping(z.tensor, None, truncation_psi=truncation)[:, 0]), generator)

    wr, wc = wplus(row_seeds), wplus(col_seeds)
    tiles = [torch.full((1, generator.img_channels, generator.img_resolution, generator.img_resolution), 1.0)]
    tiles.append(synthesize(wc, generator).cpu())
    for i in range(len(row_seeds)):
        tiles.append(synthesize(wr[i], generator).cpu())
        mixed = style_mix(LatentCode("w+", wr.tensor[i : i + 1].expand_as(wc.tensor)), wc, cutoff)
        tiles.append(synthesize(mixed, generator).cpu())
    save_image(out, make_grid(torch.cat(tiles), cols=len(col_seeds) + 1))
    typer.echo(f"style-mixing grid: {out}")


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Official .pkl, rosinality or naver-ai StyleMapGAN .pt, or latentatlas .safetensors.")],
    dst: Annotated[Path, typer.Argument(help="Output .safetensors file.")],
    fp16: Annotated[bool, typer.Option(help="Store weights as float16 (half the size).")] = False,
    force: ForceOpt = False,
) -> None:
    """Convert a StyleGAN2 or StyleMapGAN checkpoint to latentatlas's format (safetensors + JSON config).

    No code from the input file is executed. Example: latentatlas convert ffhq.pkl ffhq.safetensors
    """
    import torch

    from latentatlas.io.checkpoints import STYLEMAP_KIND, load_any, load_stylemap_any, model_kind, save_model, save_stylemap_model

    _safetensors_output(dst)
    _outputs([dst], force, "DST")
    dtype = torch.float16 if fp16 else None

    def provenance(meta: dict) -> dict:
        return {"converted_from": src.name, "source_format": meta.get("source_format", "latentatlas")}

    if model_kind(src) == STYLEMAP_KIND:
        generator, encoder, meta = load_stylemap_any(src)
        save_stylemap_model(dst, generator, encoder, metadata=provenance(meta), dtype=dtype)
    else:
        generator, meta = load_any(src)
        save_model(dst, generator, metadata=provenance(meta), dtype=dtype)
    typer.echo(f"wrote {dst} ({dst.stat().st_size / 2**20:.1f} MiB)")


@app.command()
def stats(
    model: ModelArg,
    out: Annotated[Path | None, typer.Option(help="Model file to write (default: update a MODEL file in place, needs --force; a bundled model needs --out).")] = None,
    num: Annotated[int, typer.Option(help="Mapping-network samples for the fit.")] = 100_000,
    batch: Annotated[int, typer.Option()] = 4096,
    fp16: Annotated[bool, typer.Option(help="Store the generator weights as float16.")] = False,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Fit the Gaussianized prior (leaky_relu(w, 5): mean, covariance, PCA) and store it in a model file.

    Also writes a Gaussianity plot (per-dimension skew and kurtosis of w and of the transform).
    Example: latentatlas stats ffhq.pkl --out ffhq.safetensors --num 100000
    """
    import torch

    from latentatlas.io.atomic import atomic_path
    from latentatlas.io.checkpoints import save_model
    from latentatlas.latent.gaussian import PRIOR_PREFIX, GaussianPrior, gaussianity_report
    from latentatlas.models.bundled import WEIGHTS_DIR, load_generator, resolve_model

    target = out if out is not None else resolve_model(model)
    if target.resolve().parent == WEIGHTS_DIR:  # a bundled model's own file: --force would rewrite the installed package
        raise UserError(f"{model if out is None else target}: a bundled model's file, part of the installed package: "
                        "give --out NAME.safetensors for a copy with the prior")
    if target.suffix != ".safetensors":
        raise UserError(f"{target}: the prior is stored in a latentatlas model file; give --out NAME.safetensors")
    plot = target.with_name(target.stem + "_gaussianity.png")
    _outputs([target, plot], force)
    require_at_least("--num", num, 2, "mapping-network samples for the fit")  # before the model loads
    generator, info = load_generator(model, pick_device(device))
    if num <= generator.w_dim:  # GaussianPrior.fit's own message did not name the option
        raise UserError(f"--num {num}: the covariance of {generator.w_dim}-d w needs more samples than that; use 100000")
    prior = GaussianPrior.fit(generator, num_samples=num, batch=batch)
    report, png = gaussianity_report(generator)
    extra = {k: v for k, v in info.get("extra_tensors", {}).items() if not k.startswith(PRIOR_PREFIX)}
    extra.update(prior.tensors())
    meta = {k: v for k, v in info.items() if k not in ("extra_tensors", "name")}
    meta.update(prior.metadata())
    meta["gaussianity"] = report
    save_model(target, generator, extra_tensors=extra, metadata=meta, dtype=torch.float16 if fp16 else None)
    with atomic_path(plot) as tmp:  # after the model: a failed save leaves no plot behind
        tmp.write_bytes(png)
    typer.echo(json.dumps(report))
    typer.echo(f"prior ({num} samples) stored in {target}\nGaussianity plot: {plot}")


@app.command()
def clean(
    model: ModelArg,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0-7.")] = "0-7",
    tau: Annotated[float, typer.Option(help="Compress whitened principal components beyond tau std.")] = 2.0,
    truncation: Annotated[float | None, typer.Option("--truncation", "--trunc", help="Truncation psi to compare (default: matched).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Remove artifacts by log-compressing large principal components (Gaussianized w), next to truncation.

    Rows of clean.png: original, compressed (tau), truncated (psi). Without --truncation, psi is
    matched: it gives the same mean distance to w_avg as the compressed codes.
    Example: latentatlas clean faces64.safetensors --seeds 0-15 --tau 1.5
    """
    import torch

    from latentatlas.io.images import make_grid, save_image
    from latentatlas.latent.codes import LatentCode, save_codes, synthesize, to_w, truncate_code, z_from_seeds
    from latentatlas.latent.gaussian import GaussianPrior, check_tau, matched_truncation
    from latentatlas.models.bundled import load_generator

    seed_list = parse_seeds(seeds)
    check_tau(tau)
    _check_truncation(truncation)
    _outputs([out / "clean.png", out / "clean.npz"], force)
    generator, info = load_generator(model, pick_device(device))
    prior = GaussianPrior.from_model_info(info, model)
    with torch.no_grad():
        w = to_w(z_from_seeds(seed_list, generator.z_dim, generator.device), generator).tensor
        wc = prior.compress(w.double(), tau).float()
        psi = truncation if truncation is not None else matched_truncation(w, wc, generator.mapping.w_avg)
        wt = truncate_code(LatentCode("w", w), generator, psi).tensor
        rows = [synthesize(LatentCode("w", x), generator).cpu() for x in (w, wc, wt)]
    save_image(out / "clean.png", make_grid(torch.cat(rows), cols=len(seed_list)))
    save_codes(out / "clean.npz", LatentCode("w", wc.cpu()), model=info["name"], seeds=seed_list)
    typer.echo(f"rows: original, compressed (tau {tau}), truncated (psi {psi:.3f}): {out / 'clean.png'}\ncompressed codes: {out / 'clean.npz'}")


@app.command()
def project(
    model: ModelArg,
    images: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("projected"),
    space: Annotated[str, typer.Option(help="w (one w for all layers) or w+ (one per layer).")] = "w",
    prior: Annotated[float, typer.Option("--prior", help="Weight lambda of the Gaussian prior (0: plain projector).")] = 0.0,
    whiten: Annotated[bool, typer.Option(help="Optimise whitened prior coordinates instead of w, from the prior's mode (needs the prior).")] = False,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 1000,
    loss: Annotated[str, typer.Option(help="auto, lpips (needs --vgg, --lpips-lin), factor (--predictor; auto picks it, with the bundled predictor, for models trained on synthfaces) or mse.")] = "auto",
    vgg: Annotated[Path | None, typer.Option(help="torchvision VGG16 weights (vgg16-397923af.pth).")] = None,
    lpips_lin: Annotated[Path | None, typer.Option(help="lpips linear heads for VGG (lpips/weights/v0.1/vgg.pth).")] = None,
    predictor: Annotated[Path | None, typer.Option(help="synthfaces factor predictor (.safetensors), or 'factors' (bundled).")] = None,
    mse_weight: Annotated[float | None, typer.Option(help="Pixel MSE weight (default: 1 with factor or mse loss, 0 with lpips).")] = None,
    batch: Annotated[int, typer.Option(help="Images projected at once.")] = 8,
    bf16: Annotated[bool, typer.Option("--bf16", help="Forward pass and losses in bf16 autocast (GPU tensor cores: faster; codes stay fp32).")] = False,
    video: Annotated[bool, typer.Option(help="Also write an MP4 of the optimisation per image.")] = False,
    seed: Annotated[int, typer.Option(help="Image k (in the order given; a folder's files sorted by name) draws its noise from seed + k, whatever the batch or process.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Go on with an interrupted run: skip the images whose .npz (written last) is there, redo the rest.")] = False,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Project real images into the latent space (StyleGAN2 projector, optionally with the Gaussian prior).

    Writes per image: NAME.npz (code, its space, the optimised noise maps), NAME_projected.png,
    NAME_compare.png (target | projection) and NAME_losses.json; the .npz last, so that --resume
    knows which images are done. Every image is read before the first batch: a corrupt one is
    refused before any work. Under torchrun each process takes a shard of the images. Example:
    latentatlas project ffhq.safetensors photos/ --space w+ --whiten --vgg vgg16.pth --lpips-lin vgg.pth
    """
    from latentatlas.inversion.folder import output_paths, process_share, project_files, unfinished
    from latentatlas.inversion.losses import projection_loss
    from latentatlas.inversion.projector import ProjectorConfig
    from latentatlas.io.checkpoints import require_stylegan2
    from latentatlas.io.images import list_images
    from latentatlas.latent.gaussian import GaussianPrior
    from latentatlas.models.bundled import load_generator, resolve_model

    require_at_least("--steps", steps, 1, "optimisation steps")
    require_at_least("--batch", batch, 1, "images projected at once")
    require_seed("--seed", seed)
    if mse_weight is not None:
        require_number("--mse-weight", mse_weight, at_least=0, what="a pixel MSE weight >= 0", example="1")
    cfg = ProjectorConfig(space=space, steps=steps, prior_weight=prior, whiten=whiten, bf16=bf16,
                          record_every=max(steps // 100, 1) if video else 0)
    files, skipped = list_images(images)
    if skipped:
        typer.echo(f"warning: skipped {len(skipped)} non-image files (e.g. {skipped[0]})", err=True)
    _check_unique_stems(files)
    numbered = process_share(files)  # under torchrun, this process's share
    if resume:
        todo = unfinished(numbered, out)
        typer.echo(f"resuming: {len(numbered) - len(todo)} of {len(numbered)} images already projected in {out}", err=True)
        numbered = todo
    _outputs(output_paths([f for _, f in numbered], out, video), force or resume,  # resuming: an unfinished image's leftovers are this run's own
             exists_advice="pass --resume to go on with an interrupted run (or --force to redo every image), or choose another --out")
    model_path = require_stylegan2(resolve_model(model))  # before the loss options, which a StyleMapGAN model cannot use anyway
    dev = rank_device(pick_device(device))  # under torchrun each rank projects its share of the files on its own GPU
    chosen = projection_loss(model_path, loss, vgg=vgg, lpips_lin=lpips_lin, predictor=predictor, mse_weight=mse_weight, device=dev)
    cfg.perceptual_weight, cfg.mse_weight = chosen.perceptual_weight, chosen.mse_weight
    generator, info = load_generator(model, dev)
    gprior = GaussianPrior.from_model_info(info, model) if (prior > 0 or whiten) else None
    diverged = project_files(generator, numbered, out, cfg, chosen.perceptual, model_name=info["name"], loss_name=chosen.name,
                             prior=gprior, seed=seed, batch=batch, progress=_projection_printer(steps))
    if diverged:
        names = [f.name for f in diverged]
        raise UserError(f"{len(names)} of {len(numbered)} projections diverged ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}): "
                        "run them again without --bf16, or with another --loss or --prior")


def _projection_printer(steps: int) -> ProjectionProgress:
    """What `project` prints as it goes: a tqdm bar of `steps` per batch, warnings, a line per written image."""
    from tqdm import tqdm

    from latentatlas.inversion.folder import ProjectionProgress

    class Bars(ProjectionProgress):
        bar: Any = None

        def image_read(self, file: Path, notes: list[str]) -> None:
            if notes:
                typer.echo(f"warning: {file}: {'; '.join(notes)}", err=True)

        def batch_started(self, first: int, last: int, total: int) -> None:
            self.bar = tqdm(total=steps, desc=f"project {first}-{last}/{total}", unit="step")

        def step(self, step: int, losses: dict[str, float]) -> None:
            self.bar.update(1)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{losses['total']:.4f}", refresh=False)

        def batch_finished(self) -> None:
            self.bar.close()

        def image_written(self, file: Path, mse: float, code: Path, compare: Path) -> None:
            typer.echo(f"{file.name}: mse {mse:.4f} -> {code}, {compare}")

        def image_diverged(self, file: Path) -> None:
            typer.echo(f"warning: {file.name}: the projection diverged (NaN or inf): nothing written for it", err=True)

    return Bars()


directions_app = typer.Typer(no_args_is_help=True, help="Find, and score, edit directions in W.")
app.add_typer(directions_app, name="directions")


LAYERS_HELP = "start-end with the end excluded, e.g. 0-4 (layers 0..3)"


def _layer_range(text: str | None, generator) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    """--layers start-end (end excluded), checked against the model's number of ws."""
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)-(\d+)", text.strip())
    if not m or int(m.group(2)) <= int(m.group(1)):
        raise UserError(f"--layers {text!r}: give a range start-end with end > start, e.g. 0-4 (end excluded)")
    start, end = int(m.group(1)), int(m.group(2))
    if end > generator.num_ws:
        raise UserError(f"--layers {start}-{end}: this model has {generator.num_ws} layers; give start-end within "
                        f"0-{generator.num_ws} (end excluded), e.g. 0-{min(4, generator.num_ws)}")
    return start, end


def _find_directions(model: str, out: Path, layers: str | None, device: str, force: bool, method: str,
                     find: Callable[[Any, tuple[int, int] | None], Any]) -> Any:
    """The unsupervised finders' common course: check the output, load, find on the --layers range, save;
    returns the directions."""
    from latentatlas.directions.files import save_directions
    from latentatlas.models.bundled import load_generator

    _safetensors_output(out)
    _outputs([out], force)
    generator, _ = load_generator(model, pick_device(device))
    d = find(generator, _layer_range(layers, generator))
    save_directions(out, d)
    typer.echo(f"{len(d)} {method} directions: {out}")
    return d


@directions_app.command("pca")
def directions_pca(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="Directions file (.safetensors).")],
    samples: Annotated[int, typer.Option(help="W samples for the incremental PCA.")] = 300_000,
    components: Annotated[int, typer.Option()] = 80,
    layers: Annotated[str | None, typer.Option(help=f"W+ layers the edits apply to, {LAYERS_HELP} (default: all).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """GANSpace: principal components of W. Example: latentatlas directions pca faces64 --out pca.safetensors"""
    from latentatlas.directions.pca import ganspace

    _find_directions(model, out, layers, device, force, "GANSpace",
                     lambda g, rng: ganspace(g, num_samples=samples, components=components, layers=rng))


@directions_app.command("sefa")
def directions_sefa(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="Directions file (.safetensors).")],
    layers: Annotated[str | None, typer.Option(help=f"Conv layers whose affine weights are factorised (and edited), {LAYERS_HELP}; the end is at most the number of ws - 1 (the last w feeds only the final ToRGB) (default: all conv layers factorised, every layer edited).")] = None,
    components: Annotated[int, typer.Option(help="Directions to keep; at most the rank of the stacked weights (a note says when fewer).")] = 80,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """SeFa: eigenvectors of the stacked style-affine weights. Example: latentatlas directions sefa faces64 --out sefa.safetensors"""
    from latentatlas.directions.sefa import sefa

    d = _find_directions(model, out, layers, device, force, "SeFa", lambda g, rng: sefa(g, layers=rng, components=components))
    if len(d) < components:
        typer.echo(f"note: {len(d)} directions, not {components}: the stacked affine weights have rank {d.info['rank']}; "
                   "further eigenvectors would change no style", err=True)


@directions_app.command("supervised")
def directions_supervised(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="Directions file (.safetensors).")],
    predictor: Annotated[Path | None, typer.Option(help="Factor predictor ('factors': bundled): scores sampled codes by synthfaces factors.")] = None,
    scores: Annotated[Path | None, typer.Option(help="Or an .npz with 'latents' (w, [N, D]), 'scores' [N, F] and 'names' [F].")] = None,
    samples: Annotated[int, typer.Option(help="Codes to sample and score (with --predictor).")] = 10_000,
    method: Annotated[str, typer.Option(help="svm (InterFaceGAN) or mean (vector arithmetic).")] = "svm",
    fraction: Annotated[float, typer.Option(help="Top and bottom fraction used.")] = 0.1,
    conditional: Annotated[str | None, typer.Option(help="Comma-separated attributes to hold fixed, e.g. yaw,light.")] = None,
    layers: Annotated[str | None, typer.Option(help=f"W+ layers the edits apply to, {LAYERS_HELP} (default: all).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Supervised directions from attribute scores. Example: latentatlas directions supervised faces64 --predictor p.safetensors --out sup.safetensors"""
    from latentatlas.data.synthfaces import FACTOR_NAMES
    from latentatlas.directions.files import model_fingerprint, save_directions
    from latentatlas.directions.supervised import check_conditional, check_method, factor_directions, load_scores, supervised
    from latentatlas.models.bundled import load_generator

    if (predictor is None) == (scores is None):
        raise UserError("give exactly one of --predictor or --scores")
    check_method(method)  # before the codes are sampled and scored
    if not 0 < fraction <= 0.5:
        raise UserError(f"--fraction {fraction}: use a value in (0, 0.5]")
    cond = [c.strip() for c in conditional.split(",")] if conditional else None
    if predictor is not None:  # the predictor's attributes are known now, before the codes are sampled and scored
        check_conditional(cond, list(FACTOR_NAMES))
        require_at_least("--samples", samples, 4, "codes to sample and score: the top and the bottom --fraction take two each")
    _safetensors_output(out)
    _outputs([out], force)
    generator, _ = load_generator(model, pick_device(device))
    rng = _layer_range(layers, generator)
    if predictor is not None:
        from latentatlas.training.attributes import load_predictor

        pred = load_predictor(predictor, generator.device)
        d = factor_directions(generator, pred, samples, method=method, fraction=fraction, conditional_on=cond, layers=rng, progress=True)
    else:
        codes, sc, names = load_scores(scores)
        if codes.ndim != 2 or codes.shape[1] != generator.w_dim:
            raise UserError(f"{scores}: latents must be w codes [N, {generator.w_dim}]")
        d = supervised(codes, sc, names, model_fingerprint(generator), method=method, fraction=fraction, conditional_on=cond, layers=rng)
    save_directions(out, d)
    typer.echo(f"{len(d)} supervised directions ({d.method}): {out}")


warped_app = typer.Typer(no_args_is_help=True, help="WarpedGANSpace: non-linear RBF paths (train them; traverse and score them with the other commands).")
directions_app.add_typer(warped_app, name="warped")


@warped_app.command("train")
def directions_warped(
    model: ModelArg,
    out: Annotated[Path, typer.Option(help="Warped-directions file (.safetensors); OUT.state.pt holds the resumable state.")],
    sets: Annotated[int, typer.Option(help="K: support sets, one path each.")] = 32,
    dipoles: Annotated[int | None, typer.Option(help="N: dipoles per support set (default 16; 1 with --linear).")] = None,
    steps: Annotated[int, typer.Option(help="Total training steps (a resumed run continues the count).")] = 20_000,
    space: Annotated[str, typer.Option(help="z or w.")] = "w",
    linear: Annotated[bool, typer.Option("--linear", help="The paper's linear baseline: one dipole per set, constant directions.")] = False,
    learn_alphas: Annotated[bool, typer.Option("--learn-alphas", help="Learn the RBF weights too (fixed at +1/-1 by default).")] = False,
    batch: Annotated[int, typer.Option(help="Image pairs per step.")] = 12,
    lr: Annotated[float, typer.Option(help="Adam learning rate for support sets and reconstructor.")] = 1e-4,
    width: Annotated[int, typer.Option(help="Reconstructor width (channels of its first stage).")] = 32,
    reconstructor_input: Annotated[str, typer.Option(help="What the reconstructor sees: 'difference' (the original and the change) or 'pair' (both images, the paper's; files from before 2026-11-27 were trained so).")] = "difference",
    seed: Annotated[int, typer.Option()] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after N minutes (state saved; run again to resume).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """WarpedGANSpace: non-linear paths along the gradients of RBF warpings, found with a reconstructor.

    Run the same command again to resume from OUT.state.pt (the file is rewritten at the end of
    every run, marked incomplete until all steps are done). With --linear it trains the
    paper's linear baseline (one dipole per set) the same way. The reconstructor's weights are stored in
    OUT too (tensors prefixed "reconstructor.").

    Example: latentatlas directions warped train faces64 --out warped.safetensors --sets 20 --dipoles 16 --steps 5000
    """
    from latentatlas.directions.warped import WarpedConfig, train_warped
    from latentatlas.io.atomic import state_path
    from latentatlas.models.bundled import load_generator

    require_at_least("--steps", steps, 1, "training steps: with none the paths stay at their random start")
    if dipoles is None:
        dipoles = 1 if linear else 16
    cfg = WarpedConfig(sets=sets, dipoles=dipoles, steps=steps, space=space, linear=linear, learn_alphas=learn_alphas,
                       batch=batch, lr=lr, width=width, seed=seed, reconstructor_input=reconstructor_input)
    _safetensors_output(out)
    if not state_path(out).exists():
        _outputs([out], force)
    generator, _ = load_generator(model, pick_device(device))
    res = train_warped(generator, out, cfg, max_minutes=max_minutes)
    done = "done" if res.complete else f"stopped at step {res.step}/{steps}; run the same command again to resume"
    acc = f", running accuracy {res.stats['accuracy']:.2f}" if res.stats else ""
    typer.echo(f"{sets} {res.paths.method} paths in {space} ({done}{acc}): {out}  state: {res.state}")


@directions_app.command("score")
def directions_score(
    model: ModelArg,
    directions: Annotated[Path, typer.Argument(help="Directions file: linear (pca, sefa, supervised) or warped.")],
    predictor: Annotated[Path, typer.Option(help="Factor predictor (.safetensors), or 'factors' (bundled).")] = Path("factors"),
    out: Annotated[Path, typer.Option(help="Output folder: score.json and heatmap.png.")] = Path("score"),
    starts: Annotated[int, typer.Option(help="Start codes per path.")] = 64,
    steps: Annotated[int, typer.Option("--frames", "--steps", help="Frames per path (--steps: its earlier name).")] = 9,
    length: Annotated[float, typer.Option(help="Half path length in units of w_std (typical distance of w from its mean).")] = 0.5,
    top: Annotated[int, typer.Option(help="Score the first N directions.")] = 20,
    reconstructor_steps: Annotated[int, typer.Option(help="Also train a fresh reconstructor on the frozen paths for N steps and report its held-out accuracy (0: skip).")] = 0,
    reconstructor_batch: Annotated[int, typer.Option(help="Image pairs per reconstructor step.")] = 16,
    reconstructor_input: Annotated[str, typer.Option(help="What the reconstructor sees: 'difference' (the original and the change) or 'pair' (both images, the paper's).")] = "difference",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Score directions against the synthfaces ground truth: response heat-map, disentanglement, completeness.

    With --reconstructor-steps, also the accuracy of a freshly trained reconstructor at telling
    the paths apart (the same budget for every method makes the figures comparable).

    Example: latentatlas directions score faces64 warped.safetensors --top 10 --reconstructor-steps 500
    """
    import torch

    from latentatlas.directions.score import check_score_settings, score_paths
    from latentatlas.directions.warped import load_paths
    from latentatlas.io.atomic import write_json
    from latentatlas.metrics.paths import heatmap
    from latentatlas.models.bundled import load_generator
    from latentatlas.training.attributes import load_predictor

    check_score_settings(starts, steps, length, top, reconstructor_steps, reconstructor_batch, reconstructor_input)
    _outputs([out / "score.json", out / "heatmap.png"], force)
    generator, _ = load_generator(model, pick_device(device))
    d = load_paths(directions, generator.device)
    d.check_model(generator)
    pred = load_predictor(predictor, generator.device)
    summary = score_paths(generator, pred, d, starts=starts, steps=steps, length=length, top=top,
                          reconstructor_steps=reconstructor_steps, reconstructor_batch=reconstructor_batch,
                          reconstructor_input=reconstructor_input)
    slopes = torch.tensor(summary["slopes"])
    heatmap(slopes, [f"{d.names[i]}: {p['name']}" for i, p in enumerate(summary["paths"])], str(out / "heatmap.png"), d.method)
    write_json(out / "score.json", summary)
    typer.echo(f"{'path':<12}{'main factor':<18}{'steep':>8}{'drift':>8}")
    for i, p in enumerate(summary["paths"]):
        typer.echo(f"{d.names[i]:<12}{p['name']:<18}{p['steepness']:>8.3f}{p['off_target_drift']:>8.3f}")
    typer.echo(f"disentanglement {summary['disentanglement']:.3f}  completeness {summary['completeness']:.3f}")
    if "reconstructor" in summary:
        r = summary["reconstructor"]
        typer.echo(f"reconstructor accuracy {r['accuracy']:.3f} (chance {r['chance']:.3f}, {r['steps']} steps x {r['batch']})")
    typer.echo(f"json: {out / 'score.json'}  heat-map: {out / 'heatmap.png'}")


@app.command()
def traverse(
    model: ModelArg,
    directions: Annotated[Path, typer.Argument(help="Directions file: linear or warped.")],
    path: Annotated[str, typer.Option("--path", help="Direction index or name.")] = "0",
    seeds: Annotated[str, typer.Option(help=f"Start seeds (rows of the strip; at most {MAX_MIX_SIDE}, and seeds x frames at most {MAX_MIX_SIDE**2}).")] = "0-3",
    strength: Annotated[str | None, typer.Option(help="Range of strengths, e.g. -2,2: stds for linear directions (default -3,3); for warped paths arc length in per-dimension stds (default +-sqrt(dim), one w_std: -16,16 in a 256-d W).")] = None,
    steps: Annotated[int, typer.Option("--frames", "--steps", help="Frames per row (--steps: its earlier name).")] = 9,
    truncation: TruncationOpt = 1.0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Walk one direction from several seeds: a strip PNG (a row per seed) and a GIF.

    Example: latentatlas traverse faces64 pca.safetensors --path 3 --seeds 0-5 --strength -2,2
    """
    import torch

    from latentatlas.directions.warped import load_paths
    from latentatlas.io.images import make_grid, save_animation, save_image, side_by_side
    from latentatlas.latent.codes import synthesize, to_w, z_from_seeds
    from latentatlas.models.bundled import load_generator

    strength_range = _parse_range("--strength", strength) if strength is not None else None
    if steps < 2 or steps > 200:
        raise UserError(f"--frames {steps}: use 2..200")
    _check_truncation(truncation)
    seed_list = parse_seeds(seeds)
    # Every frame of every row is held until the strip and the GIF (a row's frames side by side) are written.
    if len(seed_list) > MAX_MIX_SIDE:
        raise UserError(f"--seeds holds {len(seed_list)} seeds; a traverse strip takes at most {MAX_MIX_SIDE} (a row each)")
    if len(seed_list) * steps > MAX_MIX_SIDE**2:
        raise UserError(f"{len(seed_list)} seeds x --frames {steps} make {len(seed_list) * steps} frames; a traverse strip "
                        f"holds at most {MAX_MIX_SIDE**2}: give fewer seeds or frames")
    d = load_paths(directions)
    k = d.index(path)
    lo, hi = strength_range or (-d.strength_range, d.strength_range)
    stem = "traverse_" + re.sub(r"[^A-Za-z0-9_+-]+", "_", d.names[k])  # bundled names have spaces ("pc0 hair_colour+")
    _outputs([out / f"{stem}.png", out / f"{stem}.gif"], force)
    generator, _ = load_generator(model, pick_device(device))
    d.check_model(generator)
    d.to(generator.device)
    z = z_from_seeds(seed_list, generator.z_dim, generator.device)
    base = z if d.space == "z" else to_w(z, generator, truncation_psi=truncation)
    frames = []
    for code in d.frames(base, k, torch.linspace(lo, hi, steps), generator):
        frames.append(synthesize(code, generator, truncation_psi=truncation if code.space == "z" else 1.0).cpu())
    grid = torch.stack(frames, dim=1).reshape(-1, *frames[0].shape[1:])  # row per seed
    save_image(out / f"{stem}.png", make_grid(grid, cols=steps))
    save_animation(out / f"{stem}.gif", torch.stack([side_by_side(f) for f in frames]), fps=8)
    typer.echo(f"strip: {out / (stem + '.png')}  animation: {out / (stem + '.gif')}")


MetricsKimgOpt = Annotated[float, typer.Option(help="synthfaces: factor coverage of N samples every N kimg into OUT/metrics.jsonl (0: off).")]
MetricsNumOpt = Annotated[int, typer.Option(help="Samples (and renders) per --metrics-kimg measurement.")]
KeepBestOpt = Annotated[str, typer.Option(help="With --metrics-kimg: keep the EMA model of the best measurement so far as OUT/best.safetensors, "
                                               "ranked by 'fid' (factor FID) or 'coverage' (fewest factors under half the renders' spread, then FID); none: off.")]
MirrorOpt = Annotated[bool, typer.Option("--mirror", help="Flip half of a folder's images left to right at random (NVIDIA's --mirror); a resumed run may change it.")]
SnapshotKimgOpt = Annotated[float, typer.Option(help="Checkpoint every N kimg (0: only every 15 minutes and at the end).")]
SampleKimgOpt = Annotated[float, typer.Option(help="Sample sheet every N kimg (0: only at the end).")]
RunMinutesOpt = Annotated[float | None, typer.Option(help="Stop this run after N minutes (checkpointed; run again to resume). Ctrl-C or SIGTERM also stop it, checkpointed, after the step in flight.")]


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Run folder: state.pt (resumable), sample grids, model.safetensors.")],
    data: Annotated[str, typer.Option(help="'synthfaces' (rendered on the fly) or a folder of images.")] = "synthfaces",
    resolution: Annotated[int, typer.Option(help="Image size.")] = 64,
    kimg: Annotated[float, typer.Option(help="Total training images, in thousands.")] = 1000.0,
    batch: Annotated[int, typer.Option(help="Total batch over all processes (a resumed run may change it).")] = 64,
    channel_base: Annotated[int, typer.Option(help="Generator channels at r px: min(base / r, max).")] = 8192,
    channel_max: Annotated[int, typer.Option()] = 128,
    d_channel_base: Annotated[int | None, typer.Option(help="The discriminator's own channel_base (default: the generator's); a narrow generator can keep a wide critic.")] = None,
    z_dim: Annotated[int, typer.Option()] = 256,
    w_dim: Annotated[int, typer.Option()] = 256,
    mapping_layers: Annotated[int, typer.Option()] = 8,
    gamma: Annotated[float | None, typer.Option(help="R1 weight (default 0.0002 * resolution^2 / batch); a resumed run may change it.")] = None,
    lr: Annotated[float, typer.Option()] = 0.0025,
    seed: Annotated[int, typer.Option()] = 0,
    snapshot_kimg: SnapshotKimgOpt = 50.0,
    sample_kimg: SampleKimgOpt = 50.0,
    metrics_kimg: MetricsKimgOpt = 0.0,
    metrics_num: MetricsNumOpt = 2000,
    keep_best: KeepBestOpt = "none",
    mirror: MirrorOpt = False,
    max_minutes: RunMinutesOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train a StyleGAN2 generator; run the same command again to resume. Several GPUs: torchrun.

    The defaults are the earlier faces64 config (8192 x 128, 2.3 M parameters); the bundled faces64
    is --channel-base 2048 --d-channel-base 8192 --batch 128 (jobs/faces64_gpu.sh). OUT/stats.jsonl
    holds the mean losses and critic scores of every 4 kimg; with --metrics-kimg on synthfaces,
    OUT/metrics.jsonl the factor FID and each factor's spread against the renders' as training goes.

    Example: latentatlas train --out runs/faces64 --kimg 5000 --batch 64 --max-minutes 8
    Example: torchrun --nproc_per_node 4 -m latentatlas.cli train --out runs/ffhq --data ~/ffhq --resolution 256
    """
    from latentatlas.training.common import finish_distributed
    from latentatlas.training.stylegan2 import TrainConfig, init_distributed
    from latentatlas.training.stylegan2 import train as run_training

    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"--resolution {resolution}: use a power of two >= 8")
    _check_folder(out)
    cfg = TrainConfig(
        data=data, resolution=resolution, batch=batch, total_kimg=kimg, z_dim=z_dim, w_dim=w_dim,
        mapping_layers=mapping_layers, channel_base=channel_base, channel_max=channel_max, d_channel_base=d_channel_base,
        lr=lr, r1_gamma=gamma, seed=seed, snapshot_kimg=snapshot_kimg, sample_kimg=sample_kimg,
        metrics_kimg=metrics_kimg, metrics_num=metrics_num, keep_best=keep_best, mirror=mirror,
    )
    dev = init_distributed(pick_device(device))
    result = run_training(cfg, out, dev, max_minutes=max_minutes)
    finish_distributed()
    typer.echo(json.dumps(result))


@app.command("train-stylemap")
def train_stylemap(
    out: Annotated[Path, typer.Option(help="Run folder: state.pt (resumable), portable/, sample sheets, model.safetensors (G_ema + E_ema).")],
    data: Annotated[str, typer.Option(help="'synthfaces' (rendered on the fly) or a folder of images.")] = "synthfaces",
    resolution: Annotated[int, typer.Option(help="Image size.")] = 64,
    kimg: Annotated[float, typer.Option(help="Total training images, in thousands.")] = 1000.0,
    batch: Annotated[int, typer.Option(help="Total batch over all processes (a resumed run may change it).")] = 16,
    latent_spatial_size: Annotated[int, typer.Option(help="Stylemap size S (S x S).")] = 8,
    style_dim: Annotated[int, typer.Option(help="Stylemap channels (and z size).")] = 64,
    mapping_layers: Annotated[int, typer.Option()] = 8,
    channel_base: Annotated[int, typer.Option(help="Channels at r px: min(base * multiplier / r, max).")] = 1024,
    channel_multiplier: Annotated[int, typer.Option()] = 1,
    channel_max: Annotated[int, typer.Option()] = 64,
    small_generator: Annotated[bool, typer.Option(help="Per-layer stylemaps keep style_dim channels (official option).")] = False,
    lr: Annotated[float, typer.Option()] = 0.002,
    gamma: Annotated[float, typer.Option(help="R1 weight.")] = 10.0,
    perceptual: Annotated[str, typer.Option(help="auto (lpips with --vgg/--lpips-lin, factors for synthfaces, else none), factors, lpips, none.")] = "auto",
    vgg: Annotated[Path | None, typer.Option(help="torchvision VGG16 weights, for LPIPS.")] = None,
    lpips_lin: Annotated[Path | None, typer.Option(help="lpips linear heads for VGG, for LPIPS.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    snapshot_kimg: SnapshotKimgOpt = 50.0,
    sample_kimg: SampleKimgOpt = 50.0,
    metrics_kimg: MetricsKimgOpt = 0.0,
    metrics_num: MetricsNumOpt = 2000,
    keep_best: KeepBestOpt = "none",
    mirror: MirrorOpt = False,
    max_minutes: RunMinutesOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train a StyleMapGAN (generator + encoder); run the same command again to resume. Several GPUs: torchrun.

    The defaults are the faces64-stylemap config (64 px, 8x8x64 stylemap). With --metrics-kimg on
    synthfaces, OUT/metrics.jsonl gets the EMA generator's factor FID and each factor's spread
    against the renders' as training goes, as for `train`.

    Example: latentatlas train-stylemap --out runs/faces64-stylemap --kimg 2000 --max-minutes 8
    """
    from latentatlas.training.common import finish_distributed, init_distributed
    from latentatlas.training.stylemap import StyleMapTrainConfig
    from latentatlas.training.stylemap import train as run_training

    if resolution < 8 or resolution & (resolution - 1):
        raise UserError(f"--resolution {resolution}: use a power of two >= 8")
    if perceptual not in ("auto", "factors", "lpips", "none"):
        raise UserError(f"--perceptual {perceptual}: use auto, factors, lpips or none")
    for f in (vgg, lpips_lin):
        if f is not None:
            require_file(f)
    _check_folder(out)
    cfg = StyleMapTrainConfig(
        data=data, resolution=resolution, batch=batch, total_kimg=kimg, latent_spatial_size=latent_spatial_size,
        style_dim=style_dim, mapping_layers=mapping_layers, channel_base=channel_base, channel_multiplier=channel_multiplier,
        channel_max=channel_max, small_generator=small_generator, lr=lr, r1_gamma=gamma, perceptual=perceptual,
        vgg=str(vgg) if vgg else None, lpips_lin=str(lpips_lin) if lpips_lin else None, seed=seed,
        snapshot_kimg=snapshot_kimg, sample_kimg=sample_kimg, metrics_kimg=metrics_kimg, metrics_num=metrics_num, keep_best=keep_best,
        mirror=mirror,
    )
    dev = init_distributed(pick_device(device))
    result = run_training(cfg, out, dev, max_minutes=max_minutes)
    finish_distributed()
    typer.echo(json.dumps(result))


StyleMapArg = Annotated[str, typer.Argument(help="A StyleMapGAN model: our .safetensors (train-stylemap) or an official naver-ai/StyleMapGAN .pt.")]
RefineOpt = Annotated[int, typer.Option(help="StyleMapGAN, inputs given as images: optimise each encoded stylemap this many "
                                        "steps on pixel MSE first, as `encode --refine` (0: the encoder's answer as it is).")]


def _read_for_model(path: Path, resolution: int) -> "object":
    from latentatlas.io.images import read_image

    img, notes = read_image(path, resolution)
    for n in notes:
        typer.echo(f"note: {path.name}: {n}", err=True)
    return img


@app.command()
def encode(
    model: StyleMapArg,
    images: Annotated[list[Path], typer.Argument(help="Images or folders of images.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("encoded"),
    refine: Annotated[int, typer.Option(help="Then optimise each stylemap this many steps on pixel MSE "
                                        "(plus LPIPS with --vgg and --lpips-lin), from the encoder's answer (0: the encoder alone).")] = 0,
    vgg: Annotated[Path | None, typer.Option(help="torchvision VGG16 weights (vgg16-397923af.pth), for LPIPS in --refine.")] = None,
    lpips_lin: Annotated[Path | None, typer.Option(help="lpips linear heads for VGG (lpips/weights/v0.1/vgg.pth), for LPIPS in --refine.")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Encode images into stylemaps in one forward pass; write each code (.npz), its reconstruction, and a comparison sheet.

    Example: latentatlas encode runs/faces64-stylemap/model.safetensors photos/ --out codes [--refine 100]
    Example: latentatlas encode stylemapgan_celeba_hq.pt photos/ --refine 200 --vgg vgg16.pth --lpips-lin vgg.pth
    """
    import torch

    from latentatlas.inversion.encoder import encode as encode_images
    from latentatlas.inversion.encoder import refine as refine_stylemaps
    from latentatlas.inversion.losses import LPIPSVGG
    from latentatlas.io.checkpoints import load_stylemap_any
    from latentatlas.latent.codes import LatentCode, save_codes
    from latentatlas.io.images import list_images, make_grid, save_image
    from latentatlas.models.bundled import resolve_model

    _check_refine(refine)
    if (vgg or lpips_lin) and not refine:
        raise UserError("--vgg and --lpips-lin are the loss of --refine: give --refine N too")
    if bool(vgg) != bool(lpips_lin):
        raise UserError("LPIPS needs both --vgg and --lpips-lin files")
    files, skipped = list_images(images)
    for s in skipped:
        typer.echo(f"note: skipped {s} (not an image)", err=True)
    _check_unique_stems(files)
    stems = [f.stem for f in files]
    outputs = [out / f"{s}.npz" for s in stems] + [out / f"{s}_rec.png" for s in stems] + [out / "comparison.png"]
    _outputs(outputs, force)
    lpips = LPIPSVGG.from_files(vgg, lpips_lin) if vgg and lpips_lin else None  # bad files fail before the work
    generator, encoder, _ = load_stylemap_any(resolve_model(model), pick_device(device))
    res = generator.img_resolution
    x = torch.stack([_read_for_model(f, res) for f in files])  # type: ignore[misc]
    codes = encode_images(encoder, x)

    def render(c: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([generator(c[i : i + 16]) for i in range(0, len(c), 16)]).cpu()

    summary: dict[str, Any] = {"images": len(files), "stylemap_shape": list(codes.shape[1:])}
    if refine:
        if lpips is not None:
            lpips.to(codes.device)
        summary["mse_encoder"] = round(float((render(codes) - x).square().mean()), 5)
        codes = refine_stylemaps(generator, codes, x, refine, progress=True, perceptual=lpips)
        summary["refine_steps"], summary["refine_loss"] = refine, "MSE + LPIPS" if lpips else "MSE"
    rec = render(codes)
    for i, s in enumerate(stems):
        save_codes(out / f"{s}.npz", LatentCode("stylemap", codes[i : i + 1].cpu()), model=model, images=[files[i].name])
        save_image(out / f"{s}_rec.png", make_grid(rec[i : i + 1]))
    save_image(out / "comparison.png", make_grid(torch.stack([x, rec], 1).reshape(-1, *x.shape[1:]), cols=2))
    summary["mse"] = round(float((rec - x).square().mean()), 5)
    typer.echo(json.dumps({**summary, "out": str(out)}))


def _check_refine(steps: int) -> None:
    """--refine is checked before any work, and also where no input is an image (it would be ignored)."""
    if steps < 0:
        raise UserError(f"--refine {steps}: give a number of steps >= 0 (0: no refinement)")


def _stylemap_input(text: str, generator: "object", encoder: "object", model_names: tuple[str, ...],
                    truncation: float = 1.0, mean: "object" = None, refine: int = 0) -> tuple["object", "object"]:
    """A StyleMapGAN input -> (stylemap [1, C, S, S] on the model's device, image [3, R, R] on CPU):
    a seed number, a stylemap code (.npz from `encode`) or an image file, read here and made into
    a stylemap as the app's Local edit makes one (`editing.local.stylemap_input`, which says how)."""
    from latentatlas.editing.local import stylemap_input

    g: Any = generator
    seed = _single_seed(text)
    source = seed if seed is not None else text if text.lower().endswith(".npz") else _read_for_model(Path(text), g.img_resolution)[None]  # type: ignore[index]
    code, image = stylemap_input(g, encoder, source, model_names, truncation, mean, refine=refine, progress=True)  # type: ignore[arg-type]
    return code, image[0]


@app.command("edit-local")
def edit_local(
    model: StyleMapArg,
    source: Annotated[str, typer.Option(help="The image to edit: a file, its stylemap (.npz from `encode`) or a seed (a model sample).")],
    reference: Annotated[str, typer.Option(help="The image the region comes from: a file, a stylemap .npz or a seed.")],
    mask: Annotated[str, typer.Option(help="A mask PNG (white = take from the reference; square) or a synthfaces region: eyes, mouth, hair.")],
    shift: Annotated[str | None, typer.Option(help="dx,dy in pixels: move the reference's region (transplantation).")] = None,
    per_layer: Annotated[bool, typer.Option(help="Blend every per-layer stylemap (sharper outline) instead of the input stylemap.")] = False,
    strength: Annotated[float, typer.Option(help="Blend strength in [0, 1]: the mask is scaled by it (1: take the region, 0: keep the source).")] = 1.0,
    grow: Annotated[int, typer.Option(help="Grow the mask by this many pixels, below the model's resolution: a margin of "
                                      "neighbouring stylemap cells carries more of the part (and changes more around it).")] = 0,
    refine: RefineOpt = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("edit"),
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Local editing: the masked region of the reference, blended into the source in stylemap space.

    Writes strip.png (source, reference, mask, result) and result.png. A mask PNG is read from its
    alpha when that is not fully opaque, else from its grey value (8- or 16-bit). An empty mask is
    refused (the result would be the source), judged by the chosen edit's rule: with --shift a
    stylemap cell counts only where the mask averages above 0.5 over it, so a mask of values at or
    below 0.5 is empty there. A mask covering everything gives the reference's reconstruction.
    A stylemap .npz saved by `encode` skips the encoder (encode once, edit many times), and a seed
    number stands for a model sample; the strip then shows the model's rendering of them. With
    --refine N, images are encoded and then refined N steps (as `encode --refine`): the source and
    reference are reconstructed more closely; the swap carries the region about as far (README).

    Example: latentatlas edit-local model.safetensors --source a.png --reference b.png --mask eyes --grow 4 --out edit
    Example: latentatlas edit-local model.safetensors --source a.png --reference b.png --mask m.png --shift 8,-4
    """
    import torch

    from latentatlas.editing.local import check_shift, check_strength, edit, edit_coverage, grow_mask, region_or_file_mask
    from latentatlas.io.checkpoints import load_stylemap_any
    from latentatlas.io.images import make_grid, save_image
    from latentatlas.models.bundled import resolve_model

    d = None
    if shift is not None:
        m = re.fullmatch(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*", shift)
        if not m:
            raise UserError(f"--shift {shift!r}: give two integers dx,dy in pixels, e.g. 8,-4")
        d = (int(m.group(1)), int(m.group(2)))
    check_strength(strength)
    _check_refine(refine)
    _outputs([out / "strip.png", out / "result.png"], force)
    generator, encoder, _ = load_stylemap_any(resolve_model(model), pick_device(device))
    res = generator.img_resolution
    if d is not None:
        check_shift(d, res)
    m_img, notes = region_or_file_mask(mask, res)
    m_img = grow_mask(m_img, grow)
    for n in notes:
        typer.echo(f"note: {n}", err=True)
    frac, degenerate = edit_coverage(generator, m_img, d)  # by the rule the chosen edit applies (--shift: its threshold)
    if degenerate and frac == 0:
        if d is None:
            hint = "draw a region in white on black"
        elif float(m_img.max()) <= 0.5:
            hint = "mark the region with values above 0.5 (white), or edit without --shift"
        else:
            hint = "give a smaller --shift"
        raise UserError(f"{degenerate}; {hint}")
    if degenerate:
        typer.echo(f"note: {degenerate}", err=True)
    names = (model, str(resolve_model(model)))
    inputs = [_stylemap_input(t, generator, encoder, names, refine=refine) for t in (source, reference)]
    codes = torch.cat([c for c, _ in inputs])
    x = torch.stack([im for _, im in inputs])  # type: ignore[misc]
    m_img = m_img.to(codes.device)
    result = edit(generator, codes[:1], codes[1:], m_img, shift=d, per_layer=per_layer, strength=strength).cpu()
    strip = torch.cat([x, (m_img.cpu() * 2 - 1).expand(1, 3, res, res), result])
    save_image(out / "strip.png", make_grid(strip, cols=4, pad=2))
    save_image(out / "result.png", make_grid(result))
    typer.echo(json.dumps({"strip": str(out / "strip.png"), "result": str(out / "result.png"), "mask_fraction": round(frac, 4)}))


@app.command("train-predictor")
def train_predictor(
    out: Annotated[Path, typer.Option(help="Predictor file (.safetensors); OUT.state.pt holds the resumable state.")],
    steps: Annotated[int, typer.Option(help="Total optimisation steps (the cosine schedule spans them).")] = 20_000,
    batch: Annotated[int, typer.Option(help="Rendered faces per step.")] = 128,
    lr: Annotated[float, typer.Option()] = 2e-3,
    width: Annotated[int, typer.Option(help="Channels of the first layer (doubled at each of 4 stages).")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Stop after N minutes; writes the weights anyway (marked incomplete).")] = None,
    eval_num: Annotated[int, typer.Option(help="Held-out renders for the per-factor R^2 / accuracy report (0: skip).")] = 2000,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Train the synthfaces factor predictor on fresh renders; run again to resume.

    An existing OUT is refused without --force unless its own run's state (OUT.state.pt) is beside
    it: then the run resumes.

    It scores every method against the ground-truth factors, and its features define the
    factor-feature FID. Prints per-factor R^2 (continuous) and accuracy (binary) as JSON.

    Example: latentatlas train-predictor --out runs/factors.safetensors --steps 12000 --batch 256
    """
    from latentatlas.io.atomic import state_path
    from latentatlas.training.attributes import TrainConfig, evaluate
    from latentatlas.training.attributes import train as run_training

    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, width=width, seed=seed)
    require_at_least("--eval-num", eval_num, 0, "held-out renders; 0: skip the report")
    if eval_num == 1:
        raise UserError("--eval-num 1: an R^2 needs at least 2 held-out renders; use 2 or more, or 0 to skip the report")
    _safetensors_output(out)
    if not state_path(out).exists():  # else it resumes its own run, which wrote OUT (or will)
        _outputs([out], force)
    dev = pick_device(device)
    model = run_training(out, cfg, dev, max_minutes=max_minutes)
    if not out.exists():
        typer.echo(f"stopped before the last step; run the same command again to resume from {state_path(out)}")
        return
    typer.echo(f"predictor: {out}")
    if eval_num > 0:
        typer.echo(json.dumps({"held_out_scores": evaluate(model.eval(), n=eval_num)}))


@app.command()
def evaluate(
    model: AnyModelArg,
    predictor: Annotated[Path, typer.Option(help="Factor predictor (.safetensors) trained on synthfaces, or 'factors' (bundled).")] = Path("factors"),
    num: Annotated[int, typer.Option(help="Images per side of each FID.")] = 10_000,
    ppl_samples: Annotated[int, typer.Option(help="Samples for the path length.")] = 10_000,
    inception: Annotated[Path | None, typer.Option(help="Inception TorchScript file for the standard FID (optional). A TorchScript "
                                                 "file is a program that PyTorch runs, unlike a model file: give only NVIDIA's "
                                                 "inception-2015-12-05.pt or a port from a source you trust.")] = None,
    batch: Annotated[int, typer.Option()] = 250,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Also write the figures as JSON here.")] = None,
    range_sheet: Annotated[Path | None, typer.Option(help="Also draw each factor's range here (.png/.jpg): per row, the "
                                                     "samples nearest its 2nd, 50th and 98th percentile, then renders at the same.")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Score a synthfaces model: factor-feature FID vs renders (and renders vs renders), factor stats, PPL in w.

    Coverage: each factor's std ratio and 2-98 % span ratio (samples over renders), the capped
    mean of the std ratios and the factors under half; --range-sheet shows the spans.

    A StyleMapGAN model gets PPL in its stylemap and its encoder's reconstruction of N held-out renders too.
    --inception FILE is loaded with torch.jit.load and run: a TorchScript program, not data, so give
    only NVIDIA's inception-2015-12-05.pt or a port you trust (model files are never run; this is).

    Example: latentatlas evaluate faces64 --num 10000 --json-out eval.json
    Example: latentatlas evaluate faces64-stylemap --num 10000
    """
    from latentatlas.data.synthfaces import FACTOR_NAMES
    from latentatlas.io.atomic import write_json
    from latentatlas.io.checkpoints import STYLEMAP_KIND, load_any, load_stylemap_any, model_kind
    from latentatlas.io.images import image_format
    from latentatlas.metrics.evaluate import evaluate_model
    from latentatlas.models.bundled import resolve_model
    from latentatlas.training.attributes import load_predictor

    if num < 2 or ppl_samples < 1:
        raise UserError("--num must be >= 2 and --ppl-samples >= 1")
    if json_out is not None:
        _outputs([json_out], force, "--json-out")
    if range_sheet is not None:
        image_format(range_sheet)
        _outputs([range_sheet], force, "--range-sheet")
    dev = pick_device(device)
    path = resolve_model(model)
    encoder = None
    if model_kind(path) == STYLEMAP_KIND:
        generator, encoder, _ = load_stylemap_any(path, dev)
    else:
        generator, _ = load_any(path, dev)
    pred = load_predictor(predictor, dev)
    res = evaluate_model(generator, pred, num=num, batch=batch, ppl_samples=ppl_samples,
                         inception_path=str(inception) if inception else None, encoder=encoder, range_sheet=range_sheet)
    typer.echo(f"{'factor-feature FID, samples vs renders':<44}{res['factor_fid_samples_vs_renders']:.4f}")
    typer.echo(f"{'factor-feature FID, renders vs renders':<44}{res['factor_fid_renders_vs_renders']:.4f}")
    if "inception_fid_samples_vs_renders" in res:
        typer.echo(f"{'Inception FID, samples vs renders':<44}{res['inception_fid_samples_vs_renders']:.3f}")
    if encoder is None:
        typer.echo(f"{'PPL in w (factor features, eps 1e-4)':<44}{res['ppl_w_factor_features']:.4f}")
    else:
        rec = res["reconstruction"]
        typer.echo(f"{'PPL in stylemap (factor features, eps 1e-4)':<44}{res['ppl_stylemap_factor_features']:.4f}")
        typer.echo(f"{'encoder reconstruction, pixel MSE':<44}{rec['mse']:.5f}")
        typer.echo(f"{'reconstruction factor error (its floor)':<44}{rec['factor_mae_vs_truth']:.4f} ({rec['predictor_floor_mae']:.4f})")
    typer.echo(f"{'mean std ratio, each capped at 1':<44}{res['mean_std_ratio_capped']:.3f}")
    typer.echo(f"{'factors under half':<44}{len(res['factors_under_half'])} {' '.join(res['factors_under_half'])}".rstrip())
    typer.echo(f"{'factor':<16}{'samples mean':>14}{'std':>8}{'renders mean':>14}{'std':>8}{'std ratio':>11}{'span ratio':>12}")
    for name, st in res["factors"].items():
        typer.echo(f"{name:<16}{st['samples_mean']:>14.3f}{st['samples_std']:>8.3f}{st['renders_mean']:>14.3f}{st['renders_std']:>8.3f}"
                   f"{res['std_ratio'][name]:>11.3f}{res['span_ratio_2_98'][name]:>12.3f}")
    if json_out is not None:
        write_json(json_out, res, indent=2)
        typer.echo(f"json: {json_out}")
    if range_sheet is not None:
        typer.echo(f"range sheet (rows: {', '.join(FACTOR_NAMES)}; samples left, renders right): {range_sheet}")


@app.command()
def synthfaces(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("docs"),
    seed: Annotated[int, typer.Option(help="Seed of the gallery and of the strips' base faces.")] = 0,
    resolution: Annotated[int, typer.Option(help="Image size in pixels.")] = 64,
    steps: Annotated[int, typer.Option("--frames", "--steps", help="Images per factor strip (--steps: its earlier name).")] = 8,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Render the synthfaces gallery (64 samples) and one strip per factor (factor swept, others fixed).

    The factors come from the seed alone; --device only says where they are rendered.
    Example: latentatlas synthfaces --out docs --resolution 128
    """
    import torch

    from latentatlas.data.synthfaces import FACTOR_NAMES, render, sample, sample_factors
    from latentatlas.io.images import make_grid, save_image

    if resolution < 16 or resolution > 1024:
        raise UserError(f"--resolution {resolution}: use 16..1024")
    require_at_least("--frames", steps, 2, "images per factor strip: a sweep needs two")
    if steps > 64:  # every factor's strip is rendered and held at once
        raise UserError(f"--frames {steps}: use at most 64 images per factor strip")
    require_seed("--seed", seed)
    gallery, strips = out / "synthfaces_gallery.png", out / "synthfaces_factors.png"
    _outputs([gallery, strips], force)
    dev = pick_device(device)
    images, _ = sample(64, seed, resolution, device=dev)
    save_image(gallery, make_grid(images.cpu(), cols=8, pad=2))
    base = sample_factors(1, seed + 1, dev)
    rows = []
    for i in range(len(FACTOR_NAMES)):
        f = base.repeat(steps, 1)
        f[:, i] = torch.linspace(0, 1, steps, device=dev)
        rows.append(render(f, resolution).cpu())
    save_image(strips, make_grid(torch.cat(rows), cols=steps, pad=2))
    typer.echo(f"gallery: {gallery}\nfactor strips (one row per factor, in order: {', '.join(FACTOR_NAMES)}): {strips}")


@app.command()
def serve(
    models: Annotated[list[str] | None, typer.Argument(help="Models to offer: bundled names or model files, StyleGAN2 or StyleMapGAN (default: faces64 and faces64-stylemap).")] = None,
    directions: Annotated[list[Path] | None, typer.Option("--directions", help="Extra directions files (linear or warped) for the first StyleGAN2 model: more slider sets.")] = None,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the app on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 7860,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted.")] = 10.0,
    max_pixels: Annotated[int, typer.Option(help="Largest image (width x height) decoded.")] = 4096 * 4096,
    vgg: Annotated[Path | None, typer.Option(help="torchvision VGG16 weights (vgg16-397923af.pth): with --lpips-lin, projections in the page use LPIPS, as `project` does.")] = None,
    lpips_lin: Annotated[Path | None, typer.Option(help="lpips linear heads for VGG (lpips/weights/v0.1/vgg.pth).")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """The web app: explore a model with sliders, interpolate, project your images; local edits with StyleMapGAN models.

    StyleGAN2 models drive the Explore, Interpolate and Project tabs, StyleMapGAN models (train-stylemap's .safetensors, official .pt) the Local edit tab; the kind is read from each file.
    Projections in the page use `project`'s automatic loss: LPIPS with --vgg and --lpips-lin, else factor features for models trained on synthfaces, else pixel MSE alone (the page says which).

    Example: latentatlas serve faces64 mymodel.pkl runs/faces64-stylemap/model.safetensors --port 7860
    """
    from latentatlas.models.bundled import DEFAULT_MODEL, DEFAULT_STYLEMAP_MODEL, resolve_model

    names = models or [DEFAULT_MODEL, DEFAULT_STYLEMAP_MODEL]
    table: dict[str, str] = {}
    for m in names:
        resolve_model(m)  # a missing file is an error now, not in the page
        name = Path(m).stem if Path(m).suffix else m  # what the page's model pickers show
        if name in table:
            raise UserError(f"{m} is given twice" if table[name] == m else
                            f"{table[name]} and {m} would both be called {name!r} in the page: rename one file")
        table[name] = m
    require_number("--max-upload-mb", max_upload_mb, above=0, what="a positive number of megabytes", example="10")
    require_at_least("--max-pixels", max_pixels, 1, "pixels of the largest image accepted")
    if not 1 <= port <= 65535:  # before the models load, not as a bind() traceback after
        raise UserError(f"--port {port}: use 1..65535")
    from latentatlas.app.server import STYLEGAN2, Sessions
    from latentatlas.app.server import serve as run_server
    from latentatlas.app.uploads import UploadLimits

    if bool(vgg) != bool(lpips_lin):
        raise UserError("LPIPS needs both --vgg and --lpips-lin files")
    lpips_files = (str(vgg), str(lpips_lin)) if vgg and lpips_lin else None
    sessions = Sessions(table, pick_device(device), {}, lpips_files)  # reads each file's kind (headers only for our files)
    kinds = sessions.kinds
    gan = sessions.names(STYLEGAN2)
    if directions and not gan:
        raise UserError("--directions are for StyleGAN2 models; none is served")
    if directions:
        sessions.directions[gan[0]] = [str(d) for d in directions]
    if lpips_files and not gan:
        raise UserError("--vgg and --lpips-lin are the projections' loss, for StyleGAN2 models; none is served")
    sessions.load_all()  # every model, its directions and loss files: bad ones fail now, and no request waits for a load
    if host not in ("127.0.0.1", "localhost"):
        typer.echo(f"warning: binding {host}: anyone who can reach this machine can use the app", err=True)
    served = ", ".join(f"{n} ({kinds[n]})" for n in table)
    run_server(sessions, host, port, UploadLimits(int(max_upload_mb * 2**20), max_pixels),
               announce=lambda url: typer.echo(f"serving {served} at {url} (Ctrl+C to stop)"))


DEMO_FACES_SEED = 10_000_003  # held-out renders (projection_quality's in-domain seeds), hair colours that differ


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-out"),
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Write into an output folder that already holds files (overwriting the demo's own).")] = False,
) -> None:
    """Run the main job end to end on the bundled models: faces64's sample grid, interpolation,
    style mixing and walks along its bundled directions (a supervised one and a WarpedGANSpace
    path), and a local edit with faces64-stylemap (the hair of one encoded render into another).

    It writes a dozen files into OUT; an OUT that already holds files needs --force (make demo passes it).

    Example: latentatlas demo --out demo-out --force"""
    from latentatlas.models.bundled import BUNDLED_DIRECTIONS, DEFAULT_MODEL, DEFAULT_STYLEMAP_MODEL, WEIGHTS_DIR

    _check_folder(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserError(f"{out} already holds files (an earlier demo?): pass --force to overwrite the demo's files in it, or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    model = DEFAULT_MODEL
    generate(model, seeds="0-31", out=out, truncation=1.0, truncation_cutoff=None, noise_mode="const", class_idx=None, grid=True, per_seed=False, device=device, force=True)
    interpolate(model, start="0", end="1", frames=12, method="slerp", space="z", truncation=1.0, fps=12, out=out, device=device, force=True)
    mix(model, rows="0-3", cols="10-13", cutoff=4, truncation=1.0, out=out / "mix.png", device=device, force=True)
    for file, path in (("faces64_supervised.safetensors", "hair_colour"), ("faces64_warped.safetensors", "0")):
        if file in BUNDLED_DIRECTIONS.get(model, []):  # each walked over its set's default range (PathSet.strength_range)
            traverse(model, WEIGHTS_DIR / file, path=path, seeds="0-3", strength=None, steps=9, truncation=1.0,
                     out=out / "directions", device=device, force=True)
    # StyleMapGAN edits real images: two held-out synthfaces renders, encoded, the reference's hair blended in.
    from latentatlas.data.synthfaces import sample
    from latentatlas.io.images import make_grid, save_image

    faces, _ = sample(2, seed=DEMO_FACES_SEED, resolution=64)
    edit_dir = out / "local-edit"
    for name, face in zip(("source", "reference"), faces):
        save_image(edit_dir / f"{name}.png", make_grid(face[None]))
    edit_local(DEFAULT_STYLEMAP_MODEL, source=str(edit_dir / "source.png"), reference=str(edit_dir / "reference.png"),
               mask="hair", shift=None, per_layer=False, strength=1.0, out=edit_dir, device=device, force=True)
    typer.echo(f"demo done: see {out}/")


def main() -> None:
    from latentatlas.runtime import keep_freed_cpu_memory

    keep_freed_cpu_memory()
    try:
        app()
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
