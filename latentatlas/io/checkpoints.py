"""Model files: our own format (safetensors + JSON config) and importers for others.

Our format never holds pickles: tensors in a `.safetensors` file, the generator config and
provenance as JSON in its metadata. Tensor names are `generator.<official name>`, so other
parts of a model (Gaussian prior statistics, directions) can live in the same file under
their own prefixes.

Importers:
- official stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) network pickles, read with
  the restricted unpickler of `safe_pickle` (no code from the file ever runs);
- rosinality stylegan2-pytorch `.pt` checkpoints, read with `torch.load(weights_only=True)`
  and renamed to the official names.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from latentatlas.io import tensorfile
from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError, require_file
from latentatlas.io.safe_pickle import (
    DAMAGED_PICKLE_ERRORS,
    PersistentRecord,
    load_official_pickle,
    loaded_view_problem,
    safe_loader_refusal,
)
from latentatlas.models.ops import setup_filter
from latentatlas.models.stylegan2 import Generator, GeneratorConfig

FORMAT_NAME = "latentatlas"
FORMAT_VERSION = 1
GENERATOR_PREFIX = "generator."

# Synthesis kwargs of the official code that change nothing in the arithmetic we run.
_HARMLESS_SYNTHESIS_KWARGS = {"fp16_channels_last", "fused_modconv_default", "channels_last"}


# ---------------------------------------------------------------------------------------
# Our format


def save_model(
    path: str | Path,
    generator: Generator,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write the generator (and optional extra tensors) atomically as safetensors + JSON.

    dtype=torch.float16 halves the file; loading always returns float32 modules.
    """
    tensors = {}
    for name, t in generator.state_dict().items():
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[GENERATOR_PREFIX + name] = t.contiguous()
    for name, t in (extra_tensors or {}).items():
        tensors[name] = t.detach().cpu().contiguous()
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": "stylegan2",
        "generator_config": json.dumps(generator.config.to_dict()),
        "info": json.dumps(metadata or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


# Our other files, which a user may give where a model goes: what each is, and where it goes.
_NOT_MODELS = {
    "directions": ("a directions file", "directions files go to traverse, directions score and serve --directions"),
    "warped-directions": ("a warped-directions file", "directions files go to traverse, directions score and serve --directions"),
    "factor-predictor": ("a factor predictor", "a predictor goes to --predictor"),
}


def read_model_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of one of our model files, from the header alone, with clear errors for anything else:
    our other files (directions, predictors) are told by their 'kind' before any model field is
    looked for (a directions file was "the generator config in the file is missing")."""
    meta = tensorfile.read_metadata(path, "safetensors")
    if meta.get("format") != FORMAT_NAME:
        raise UserError(
            f"{path}: a safetensors file, but not a latentatlas model (no 'format' metadata); "
            "import it with `latentatlas convert` from its original checkpoint"
        )
    kind = meta.get("kind", "stylegan2")  # files from before 'kind' are StyleGAN2 models
    if kind not in ("stylegan2", STYLEMAP_KIND):
        what, where = _NOT_MODELS.get(kind, (f"a latentatlas file of kind {kind!r}", ""))
        raise UserError(f"{path}: {what}, not a model: give a model (a bundled name or a model file)" + (f"; {where}" if where else ""))
    return meta


def read_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of one of our model files, with clear errors for anything else."""
    meta = read_model_metadata(path)
    return tensorfile.load_tensors(path, "safetensors"), meta


def _config_from_metadata(meta: dict[str, str], key: str, cls: Any, what: str, path: str | Path) -> Any:
    """cls.from_dict of the JSON under `key`, or one line saying the file's config is unusable."""
    try:
        return cls.from_dict(json.loads(meta[key]))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise UserError(f"{path}: the {what} config in the file is missing or invalid ({e})") from None


def _info_from_metadata(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The JSON object under 'info' ({} when absent), or one line saying it is unusable: a file
    edited by hand or by another tool must not end in a JSONDecodeError traceback."""
    try:
        info = json.loads(meta.get("info") or "{}")
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: the 'info' metadata in the file is not valid JSON ({e}); make the file again") from None
    if not isinstance(info, dict):
        raise UserError(f"{path}: the 'info' metadata in the file is a JSON {type(info).__name__}, not an object; make the file again")
    return info


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Load one of our model files: the generator (eval mode, float32) and the file's info."""
    tensors, meta = read_model_file(path)
    if meta.get("kind") == STYLEMAP_KIND:
        raise stylemap_refused(path)
    cfg = _config_from_metadata(meta, "generator_config", GeneratorConfig, "generator", path)
    info = _info_from_metadata(meta, path)
    state = {k[len(GENERATOR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(GENERATOR_PREFIX)}
    generator = build_generator(cfg, state, source=str(path))
    info["extra_tensors"] = {k: v for k, v in tensors.items() if not k.startswith(GENERATOR_PREFIX)}
    return generator.to(device), info


def check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, misfit: str, tensor: str) -> None:
    """Every key of `module` present, nothing extra, shapes equal, values finite; else one UserError.

    `misfit` opens the message for wrong key sets, `tensor` names a tensor in the others.
    """
    expected = module.state_dict()
    odd = next(((k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise UserError(f"{source}: {tensor} {odd[0]!r} is a {type(odd[1]).__name__}, not a tensor")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"{source}: {misfit}: {'; '.join(parts)}")
    for name, t in state.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise UserError(f"{source}: {tensor} {name} has shape {list(t.shape)}, the config needs {list(expected[name].shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{source}: {tensor} {name} holds NaN or infinite values")


class AllocationBudget(TorchFunctionMode):
    """Stops a model's constructor once the tensors it makes hold more numbers than the file does.

    Why: the config comes from the file itself, and a few bytes of it can ask for a model of
    terabytes (z_dim 2**40) or tens of gigabytes (resolution 4096, 4096 channels). A model of a
    valid file holds about as many numbers as the file (its weights, its buffers), so the
    constructor may make twice that and a million more (filters, small temporaries); past that
    the request is refused before the allocation. Each tensor factory's size is read from its
    arguments. (A meta-device skeleton would do the same, but in this PyTorch any arithmetic on
    the meta device imports torch._dynamo: 2 s more for every command's first model.)
    """

    FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, torch.randn, torch.rand})

    def __init__(self, state: dict[str, torch.Tensor], source: str) -> None:
        super().__init__()
        self.held = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
        self.left = 2 * self.held + 2**20
        self.source = source

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if func in self.FACTORIES:
            size = args[0] if func is torch.full or (len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size))) else args
            self.left -= math.prod(int(n) for n in size)
            if self.left < 0:
                raise UserError(f"{self.source}: the config in the file asks for a model far larger than the "
                                f"{self.held:,} numbers the file holds: not a valid model file")
        return func(*args, **(kwargs or {}))


def build_checked(make: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """`make()` under the file's AllocationBudget; a config the model code rejects is one line too."""
    try:
        with AllocationBudget(state, source):
            return make()
    except (ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise UserError(f"{source}: the config in the file cannot build a model ({e})") from None


def build_generator(cfg: GeneratorConfig, state: dict[str, torch.Tensor], source: str) -> Generator:
    """A Generator from a config and an official-named state dict; every key must match."""
    generator = build_checked(lambda: Generator(cfg), state, source)
    check_state(generator, state, source, "the weights do not fit the generator config", "tensor")
    generator.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return generator.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------
# Official pickles


def config_from_official_kwargs(kwargs: dict[str, Any]) -> GeneratorConfig:
    """GeneratorConfig from a Generator's `_init_kwargs` (ADA nests synthesis kwargs, SG3 is flat)."""
    kwargs = dict(kwargs)
    mapping = _kwargs_dict(kwargs.pop("mapping_kwargs", None), "mapping_kwargs")
    synthesis = _kwargs_dict(kwargs.pop("synthesis_kwargs", None), "synthesis_kwargs")
    base = {k: kwargs.pop(k) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k in kwargs}
    synthesis.update(kwargs)  # stylegan3's StyleGAN2 Generator takes synthesis kwargs flat
    if len(base) != 5:
        raise UserError("the pickle's generator lacks z_dim/c_dim/w_dim/img_resolution/img_channels")
    cfg: dict[str, Any] = dict(base)
    mapping_names = {
        "num_layers": "mapping_layers",
        "lr_multiplier": "mapping_lr_multiplier",
        "embed_features": "mapping_embed_features",
        "layer_features": "mapping_layer_features",
        "w_avg_beta": "w_avg_beta",
    }
    for key, value in mapping.items():
        if key == "activation" and value == "lrelu":
            continue
        if key not in mapping_names:
            raise UserError(f"the pickle's mapping network uses {key}={value!r}, which latentatlas does not support")
        if value is not None:
            cfg[mapping_names[key]] = value
    for key, value in synthesis.items():
        if key in _HARMLESS_SYNTHESIS_KWARGS or (key == "use_noise" and value is True):
            continue
        if key == "activation" and value == "lrelu":
            continue
        if key == "resample_filter" and not isinstance(value, (list, tuple)):
            raise UserError(f"the pickle's synthesis network has resample_filter={value!r}, not a list of taps")
        if key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter"):
            cfg[key] = list(value) if key == "resample_filter" else value
        else:
            raise UserError(f"the pickle's synthesis network uses {key}={value!r}, which latentatlas does not support")
    try:
        for key in ("channel_base", "channel_max", "num_fp16_res"):
            if key in cfg:
                cfg[key] = int(cfg[key])
        return GeneratorConfig(**cfg)
    except (TypeError, ValueError, OverflowError) as e:  # int(inf), int('x'), a string where a count goes
        raise UserError(f"the pickle's generator config is not supported: {e}") from None


def _kwargs_dict(value: Any, what: str) -> dict[str, Any]:
    """A nested kwargs entry of the pickle's `_init_kwargs` as a dict ({} for None), or one line."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"the pickle's generator {what} is a {type(value).__name__}, not a dict")
    return dict(value)


def import_official_pickle(path: str | Path, network: str = "G_ema") -> Generator:
    """Generator from an official network pickle, without executing anything in it."""
    data = load_official_pickle(str(path))
    record = data.get(network)
    if not isinstance(record, PersistentRecord):
        have = ", ".join(k for k, v in data.items() if isinstance(v, PersistentRecord)) or "none"
        raise UserError(f"{path}: no network {network!r} in the pickle (networks present: {have})")
    if not record.class_name.endswith("Generator"):
        raise UserError(f"{path}: {network} is a {record.class_name}, not a StyleGAN2 Generator")
    try:
        cfg = config_from_official_kwargs(record.init_kwargs)
        state = record.named_tensors()
    except UserError as e:
        raise UserError(f"{path}: not a supported official StyleGAN2 pickle ({e})") from None
    return build_generator(cfg, state, source=str(path))


# ---------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch


def _rosinality_state(path: Path) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (*DAMAGED_PICKLE_ERRORS, zipfile.BadZipFile) as e:
        what = safe_loader_refusal(e)
        if what is not None:  # in our words: PyTorch's text advises turning the safe loader off; else damage
            raise UserError(f"{path}: not a model checkpoint: it holds {what}; refused, nothing in it ran; give a "
                            "latentatlas .safetensors file, an official StyleGAN2 .pkl, or a rosinality or StyleMapGAN "
                            ".pt checkpoint") from None
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}); is the file complete?") from None
    problem = loaded_view_problem(ckpt)  # torch.load lets a broadcast view of a few bytes stand for any size
    if problem:
        raise UserError(f"{path}: not a valid PyTorch checkpoint ({problem}); the file is damaged or crafted")
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: the checkpoint holds a {type(ckpt).__name__}, not a dict with 'g_ema'")
    return ckpt


def _tensor_dict(value: Any, what: str) -> dict[str, torch.Tensor]:
    """`value` when it is a dict of named tensors, else one line: the importers index it by name
    and read shapes, and a list or a number there failed as a TypeError or AttributeError traceback."""
    if not isinstance(value, dict):
        raise UserError(f"its {what} is a {type(value).__name__}, not a state dict")
    odd = next((k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if odd is not None:
        raise UserError(f"its {what} entry {odd!r} is a {type(value[odd]).__name__}, not a tensor")
    return value


def _size(sd: dict[str, torch.Tensor], name: str, dim: int, what: str = "the state dict") -> int:
    """sd[name].shape[dim], or one line saying the tensor is missing or has too few dimensions."""
    if name not in sd:
        raise UserError(f"{what} lacks {name}")
    if sd[name].dim() <= dim:
        raise UserError(f"{what}'s {name} has shape {list(sd[name].shape)}: too few dimensions")
    return int(sd[name].shape[dim])


def convert_rosinality_state(sd: dict[str, torch.Tensor], latent_avg: torch.Tensor | None) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Rename a rosinality `g_ema` state dict to official names and infer the config."""
    sd = _tensor_dict(sd, "g_ema")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise UserError(f"its latent_avg is a {type(latent_avg).__name__}, not a tensor")
    if "input.input" not in sd or "conv1.conv.weight" not in sd:
        raise UserError("the state dict is not a rosinality StyleGAN2 generator (no input.input / conv1.conv.weight)")
    style_ids = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    num_mapping = len(style_ids)
    if num_mapping == 0:
        raise UserError("the state dict has no mapping layers (style.N.weight)")
    w_dim = _size(sd, f"style.{style_ids[-1]}.weight", 0)
    num_blocks = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    resolution = 4 * 2**num_blocks
    channels = {4: _size(sd, "input.input", 1)}
    for k in range(num_blocks):
        channels[2 ** (k + 3)] = _size(sd, f"convs.{2 * k}.conv.weight", 1)
    channel_max = max(channels.values())
    # Smallest channel_base reproducing every resolution's channel count.
    channel_base = max(c * r for r, c in channels.items() if c < channel_max) if min(channels.values()) < channel_max else channel_max * resolution
    for r, c in channels.items():
        if min(channel_base // r, channel_max) != c:
            raise UserError(f"the generator's channel counts {channels} do not follow channel_base/channel_max")
    try:
        cfg = GeneratorConfig(
            z_dim=_size(sd, f"style.{style_ids[0]}.weight", 1),
            w_dim=w_dim,
            img_resolution=resolution,
            img_channels=_size(sd, "to_rgb1.conv.weight", 1),
            mapping_layers=num_mapping,
            channel_base=channel_base,
            channel_max=channel_max,
        )
    except ValueError as e:  # sizes read from the tensors: 0, or beyond the config's bounds
        raise UserError(f"its generator config is not supported: {e}") from None
    out: dict[str, torch.Tensor] = {}
    # The FIR filters, which rosinality does not store: the config's, like Generator(cfg) makes them.
    taps = setup_filter(cfg.resample_filter)

    def styled(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.resample_filter"] = taps

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    try:
        for i, sid in enumerate(style_ids):
            out[f"mapping.fc{i}.weight"] = sd[f"style.{sid}.weight"]
            out[f"mapping.fc{i}.bias"] = sd[f"style.{sid}.bias"]
        out["mapping.w_avg"] = (latent_avg if latent_avg is not None else torch.zeros(w_dim)).reshape(-1).float()
        out["synthesis.b4.const"] = sd["input.input"][0]
        out["synthesis.b4.resample_filter"] = taps
        styled("conv1", "synthesis.b4.conv1")
        torgb("to_rgb1", "synthesis.b4.torgb")
        for k in range(num_blocks):
            r = 2 ** (k + 3)
            out[f"synthesis.b{r}.resample_filter"] = taps
            styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0")
            styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1")
            torgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
        # Noise maps: rosinality's layer j runs at 2 ** ((j + 5) // 2) px; j = 0 is b4.conv1.
        for j in range(2 * num_blocks + 1):
            r = 2 ** ((j + 5) // 2)
            layer = "conv1" if j == 0 or j % 2 == 0 else "conv0"
            out[f"synthesis.b{r}.{layer}.noise_const"] = sd[f"noises.noise_{j}"].reshape(r, r)
    except KeyError as e:
        raise UserError(f"the state dict lacks {e.args[0]}") from None
    except (IndexError, RuntimeError) as e:  # [0] of a 0-d tensor, a reshape to the wrong size
        raise UserError(f"a tensor of the state dict has the wrong shape ({e})") from None
    return cfg, out


def import_rosinality(path: str | Path) -> Generator:
    path = Path(path)
    ckpt = _rosinality_state(path)
    if "g_ema" not in ckpt:
        raise UserError(f"{path}: no 'g_ema' in the checkpoint (keys: {', '.join(map(str, list(ckpt)[:6]))})")
    if "e_ema" in ckpt:
        raise stylemap_refused(path)
    try:
        cfg, state = convert_rosinality_state(ckpt["g_ema"], ckpt.get("latent_avg"))
    except UserError as e:
        raise UserError(f"{path}: not a supported rosinality StyleGAN2 checkpoint ({e})") from None
    return build_generator(cfg, state, source=str(path))


# ---------------------------------------------------------------------------------------
# Any supported file


# torch.save's format before PyTorch 1.6 (a pickle stream, not a zip file) opens with its magic
# number, pickled after the protocol header as LONG1 with 10 little-endian bytes. Such a file is
# a pickle too, but torch.load(weights_only=True) reads it as it reads the zip format; taken
# for an official network pickle it was refused for "holding an int".
TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def sniff_format(path: str | Path) -> str:
    """'latentatlas', 'pickle' or 'torch' (zip, or the legacy format: TORCH_LEGACY_MAGIC) from the
    file's first bytes."""
    path = Path(path)
    require_file(path)
    with open(path, "rb") as f:
        head = f.read(16)
    size = path.stat().st_size
    if head[:4] == b"PK\x03\x04" and _is_npz(path):  # a zip too, read as a PyTorch checkpoint that was not one
        raise UserError(f"{path}: a NumPy .npz file (latent codes or scores), not a model: give a model file "
                        "(codes go to interpolate --from/--to or edit-local --source)")
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[2:14] == TORCH_LEGACY_MAGIC):
        return "torch"
    # safetensors before pickle: its first 8 bytes are the header length, whose low byte may be
    # 0x80, a pickle's first byte (a 16x16 stylemap model's header was 0x2980 bytes long).
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "latentatlas"
    if head[:1] == b"\x80":
        return "pickle"
    raise UserError(
        f"{path}: unknown model format; expected a latentatlas .safetensors file, an official "
        "StyleGAN2 .pkl or a rosinality .pt checkpoint"
    )


def _is_npz(path: Path) -> bool:
    """A zip of .npy arrays and no pickle: what np.savez writes (a PyTorch zip holds data.pkl)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # a damaged zip raises more than BadZipFile (UnicodeDecodeError, NotImplementedError): torch's to judge
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def load_any(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Load a generator from any supported file: ours, an official pickle, a rosinality .pt."""
    kind = sniff_format(path)
    if kind == "latentatlas":
        return load_model(path, device)
    if kind == "pickle":
        return import_official_pickle(path).to(device), {"source": str(path), "source_format": "official-pickle"}
    return import_rosinality(path).to(device), {"source": str(path), "source_format": "rosinality"}


def model_kind(path: str | Path) -> str:
    """'stylegan2' or 'stylemap' (StyleMapGAN), read from the file without building the model:
    our files say it in their metadata, official pickles are StyleGAN2, and among PyTorch
    checkpoints a StyleMapGAN one carries an encoder ('e_ema')."""
    fmt = sniff_format(path)
    if fmt == "pickle":
        return "stylegan2"
    if fmt == "latentatlas":
        return STYLEMAP_KIND if read_model_metadata(path).get("kind") == STYLEMAP_KIND else "stylegan2"
    ckpt = _rosinality_state(Path(path))
    return STYLEMAP_KIND if "e_ema" in ckpt or "encoder" in ckpt else "stylegan2"


def trained_on_synthfaces(path: str | Path) -> bool:
    """Whether our model file says it was trained on synthfaces (the bundled models are), read
    from its metadata without loading weights: such a model's projection can default to the
    bundled factor predictor's loss."""
    if sniff_format(path) != "latentatlas":
        return False
    try:
        info = json.loads(read_model_metadata(path).get("info", "{}"))
    except json.JSONDecodeError:
        return False
    return isinstance(info, dict) and str(info.get("trained_on", "")).startswith("synthfaces")


def stylemap_refused(path: str | Path) -> UserError:
    """The one-line error of a StyleGAN2-only command given a StyleMapGAN model: which commands take it."""
    return UserError(f"{path}: a StyleMapGAN model: this command takes StyleGAN2 models; StyleMapGAN ones work with " + STYLEMAP_COMMANDS)


def require_stylegan2(path: str | Path) -> Path:
    """`path` if it holds a StyleGAN2 model, else stylemap_refused: lets a command say so before
    it checks its own options or loads anything (model_kind reads no weights)."""
    if model_kind(path) == STYLEMAP_KIND:
        raise stylemap_refused(path)
    return Path(path)


def describe(generator: Generator) -> dict[str, Any]:
    """Facts about a generator for `latentatlas info`."""
    cfg = generator.config
    return {
        "resolution": cfg.img_resolution,
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "c_dim": cfg.c_dim,
        "num_ws": generator.num_ws,
        "mapping_layers": cfg.mapping_layers,
        "channels": {
            r: min(cfg.channel_base // r, cfg.channel_max) for r in generator.synthesis.block_resolutions
        },
        "parameters": sum(p.numel() for p in generator.parameters()),
        "num_fp16_res": cfg.num_fp16_res,
        "conv_clamp": cfg.conv_clamp,
        "architecture": cfg.architecture,
        "w_avg_norm": round(float(generator.mapping.w_avg.norm()), 4),
        "log2_resolution": int(math.log2(cfg.img_resolution)),
    }


def describe_stylemap(generator: Any, encoder: Any) -> dict[str, Any]:
    """Facts about a StyleMapGAN model (generator and encoder) for `latentatlas info`."""
    cfg = generator.config
    s = cfg.latent_spatial_size
    return {
        "kind": "StyleMapGAN",
        "resolution": cfg.resolution,
        "z_dim": cfg.style_dim,
        "stylemap": f"{cfg.style_dim} x {s} x {s}",
        "num_stylemaps": generator.num_stylemaps,
        "mapping_layers": cfg.mapping_layers,
        "channels": {r: cfg.channels(r) for r in cfg.resolutions()},
        "normalize_mode": cfg.normalize_mode,
        "parameters": sum(p.numel() for p in generator.parameters()),
        "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
        "log2_resolution": int(math.log2(cfg.resolution)),
    }


def training_facts(info: dict[str, Any]) -> dict[str, Any]:
    """What a model file says of its training (our trainers write it), for `latentatlas info`."""
    facts: dict[str, Any] = {}
    if "kimg" in info:
        facts["trained_kimg"] = info["kimg"]
    if "trained_on" in info:
        facts["trained_on"] = info["trained_on"]
    return facts


# ---------------------------------------------------------------------------------------
# StyleMapGAN: our files (kind "stylemap": generator + encoder) and official checkpoints

STYLEMAP_KIND = "stylemap"
# The commands that take a StyleMapGAN model, named where a StyleGAN2-only one is given one.
STYLEMAP_COMMANDS = "info, generate, interpolate, encode, edit-local, evaluate and serve"
ENCODER_PREFIX = "encoder."


def save_stylemap_model(path: str | Path, generator: Any, encoder: Any, metadata: dict[str, Any] | None = None,
                        dtype: torch.dtype | None = None) -> None:
    """A StyleMapGAN generator and its encoder in one safetensors file (official names under
    `generator.` and `encoder.`), the config as JSON metadata; written atomically."""
    tensors = {}
    for prefix, module in ((GENERATOR_PREFIX, generator), (ENCODER_PREFIX, encoder)):
        for name, t in module.state_dict().items():
            t = t.detach().cpu()
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            tensors[prefix + name] = t.contiguous()
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": STYLEMAP_KIND,
        "stylemap_config": json.dumps(generator.config.to_dict()),
        "info": json.dumps(metadata or {}),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _check_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    check_state(module, state, source, f"the {what} weights do not fit the StyleMapGAN config", f"{what} tensor")


def build_stylemap(cfg: Any, g_state: dict[str, torch.Tensor], e_state: dict[str, torch.Tensor], source: str) -> tuple[Any, Any]:
    """Generator and Encoder from a StyleMapConfig and official-named state dicts; every key must match."""
    from latentatlas.models.stylemap import Encoder
    from latentatlas.models.stylemap import Generator as StyleMapGenerator

    generator = build_checked(lambda: StyleMapGenerator(cfg), g_state, source)
    encoder = build_checked(lambda: Encoder(cfg), e_state, source)
    _check_state(generator, g_state, source, "generator")
    _check_state(encoder, e_state, source, "encoder")
    generator.load_state_dict({k: v.to(torch.float32) for k, v in g_state.items()})
    encoder.load_state_dict({k: v.to(torch.float32) for k, v in e_state.items()})
    return generator.eval().requires_grad_(False), encoder.eval().requires_grad_(False)


def load_stylemap_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """One of our StyleMapGAN files: (generator, encoder, info), eval mode, float32."""
    from latentatlas.models.stylemap import StyleMapConfig

    tensors, meta = read_model_file(path)
    if meta.get("kind") != STYLEMAP_KIND:
        raise UserError(f"{path}: a {meta.get('kind', 'stylegan2')} model, not a StyleMapGAN model (train one with `latentatlas train-stylemap`)")
    cfg = _config_from_metadata(meta, "stylemap_config", StyleMapConfig, "StyleMapGAN", path)
    g = {k[len(GENERATOR_PREFIX):]: v for k, v in tensors.items() if k.startswith(GENERATOR_PREFIX)}
    e = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    info = _info_from_metadata(meta, path)
    generator, encoder = build_stylemap(cfg, g, e, str(path))
    info["source_format"] = "latentatlas"
    return generator.to(device), encoder.to(device), info


def stylemap_config_from_state(g: dict[str, torch.Tensor], train_args: dict[str, Any] | None = None) -> Any:
    """StyleMapConfig of an official `g_ema` state dict: sizes from the tensor shapes, the settings
    that shapes do not show (mapping lr multiplier, normalisation) from train_args or the official defaults.

    train_args' lr_mul sets the mapping's multiplier only: the official Generator passes it to
    its EqualLinear mapping layers and builds the Decoder with lr_mul 1, so the resizer
    (convs_latent) of an official checkpoint has none (see models.stylemap.Decoder)."""
    from latentatlas.models.stylemap import StyleMapConfig

    args = dict(train_args or {})
    g = _tensor_dict(g, "g_ema")
    ids = sorted(int(m.group(1)) for k in g if (m := re.fullmatch(r"mapping_z\.(\d+)\.weight", k)))
    if not ids:
        raise UserError("g_ema lacks mapping_z.N.weight (the mapping network)")
    style_dim = _size(g, f"mapping_z.{ids[0]}.weight", 1, "g_ema")
    s = math.isqrt(_size(g, f"mapping_z.{ids[-1]}.weight", 0, "g_ema") // style_dim) if style_dim else 0
    if s < 1:
        raise UserError(f"g_ema's mapping network gives no stylemap (style_dim {style_dim}, stylemap size {s})")
    blocks = len({m.group(1) for k in g if (m := re.fullmatch(r"decoder\.convs\.(\d+)\.conv1\.conv\.weight", k))})
    res = s * 2**blocks
    chans = {s: _size(g, "decoder.input.input", 1, "g_ema")}
    for i in range(blocks):
        chans[s * 2 ** (i + 1)] = _size(g, f"decoder.convs.{i}.conv2.conv.weight", 1, "g_ema")
    small = _size(g, "decoder.convs_latent.0.0.weight", 0, "g_ema") == style_dim and chans[s] != style_dim
    try:  # train_args is whatever the file says: int('x'), float(None), int(inf) must be one line
        cm = int(args.get("channel_multiplier", 0)) or None
        lr_mul = float(args.get("lr_mul", 0.01))
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"its train_args are malformed ({e})") from None
    candidates = [(16384, cm or m, 512) for m in ((cm,) if cm else (1, 2, 4, 8))]
    cmax = max(chans.values())
    candidates += [(c * r, 1, cmax) for r, c in chans.items()]  # other tables: smallest fitting base
    for base, mult, cmax_ in candidates:
        if all(min(base * mult // r, cmax_) == c for r, c in chans.items()):
            break
    else:
        raise UserError(f"the generator's channel counts {chans} do not follow min(base * multiplier / r, max)")
    try:
        return StyleMapConfig(
            resolution=res, latent_spatial_size=s, style_dim=style_dim, mapping_layers=len(ids),
            mapping_lr_multiplier=lr_mul, channel_base=base, channel_multiplier=mult,
            channel_max=cmax_, small_generator=bool(args.get("small_generator", small)),
            normalize_mode=str(args.get("normalize_mode", "LayerNorm")),
        )
    except ValueError as e:
        raise UserError(f"its config is not supported: {e}") from None


def import_stylemapgan(path: str | Path) -> tuple[Any, Any]:
    """(generator, encoder) from an official naver-ai/StyleMapGAN checkpoint (`g_ema`, `e_ema`,
    `train_args`), read with torch.load(weights_only=True): nothing in the file is executed."""
    path = Path(path)
    ckpt = _rosinality_state(path)
    g = ckpt.get("g_ema", ckpt.get("generator"))
    e = ckpt.get("e_ema", ckpt.get("encoder"))
    if not isinstance(g, dict) or not isinstance(e, dict):
        raise UserError(f"{path}: not a StyleMapGAN checkpoint: it needs 'g_ema' and 'e_ema' (keys: {', '.join(map(str, list(ckpt)[:8]))})")
    args = ckpt.get("train_args")
    args = vars(args) if isinstance(args, argparse.Namespace) else (args if isinstance(args, dict) else None)
    try:
        cfg = stylemap_config_from_state(g, args)
    except UserError as err:
        raise UserError(f"{path}: not a supported StyleMapGAN checkpoint ({err})") from None
    return build_stylemap(cfg, g, e, str(path))


def load_stylemap_any(path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, Any, dict[str, Any]]:
    """A StyleMapGAN model from our file or an official checkpoint."""
    kind = sniff_format(path)
    if kind == "latentatlas":
        return load_stylemap_model(path, device)
    if kind == "torch":
        generator, encoder = import_stylemapgan(path)
        return generator.to(device), encoder.to(device), {"source": str(path), "source_format": "stylemapgan"}
    raise UserError(f"{path}: a pickle; StyleMapGAN models are our .safetensors files or official .pt checkpoints")
