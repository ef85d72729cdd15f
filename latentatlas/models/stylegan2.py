"""StyleGAN2 generator (mapping + synthesis) and discriminator with the official parameter names.

Module and parameter names follow NVIDIA's stylegan2-ada-pytorch `G_ema` state dict
(`mapping.fc0.weight`, `synthesis.b64.conv0.affine.bias`, ...) so official weights copy
over by name, and the arithmetic follows `training/networks.py` so the same weights give
the same images (checked against fixtures made with the official code, see tests).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from latentatlas.io.errors import UserError
from latentatlas.models.ops import (
    Conv2dLayer,
    FullyConnectedLayer,
    modulated_conv2d,
    minibatch_stddev,
    normalize_2nd_moment,
    setup_filter,
    upsample2d,
)

NOISE_MODES = ("const", "random", "none")

# Upper bounds of the sizes in a config. A config is read from a model file's own JSON, and a
# few bytes there must not ask for terabytes (z_dim 2**40) or tens of gigabytes (resolution
# 32768) before the file's tensors are compared with it. Far above any published StyleGAN2 or
# StyleMapGAN model (1024 px, 512 channels and widths, 8 mapping layers).
MAX_RESOLUTION = 4096
MAX_WIDTH = 4096
MAX_MAPPING_LAYERS = 32


def require_at_most(cfg: Any, limits: dict[str, int]) -> None:
    """ValueError naming the first field of `cfg` above its limit in `limits` (None passes)."""
    for name, most in limits.items():
        value = getattr(cfg, name)
        if value is not None and value > most:
            raise ValueError(f"{name} must be at most {most}, got {value}")


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored as JSON next to the weights."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_embed_features: int | None = None
    mapping_layer_features: int | None = None
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    architecture: str = "skip"
    resample_filter: list[int] = field(default_factory=lambda: [1, 3, 3, 1])

    def __post_init__(self) -> None:
        res = self.img_resolution
        if res < 4 or res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
        if self.architecture not in ("skip", "orig"):
            raise ValueError(f"architecture {self.architecture!r} is not supported: use 'skip' or 'orig'")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.c_dim < 0:
            raise ValueError(f"c_dim must be >= 0, got {self.c_dim}")
        require_at_most(self, {"img_resolution": MAX_RESOLUTION, "z_dim": MAX_WIDTH, "w_dim": MAX_WIDTH,
                               "mapping_embed_features": MAX_WIDTH, "mapping_layer_features": MAX_WIDTH,
                               "channel_max": MAX_WIDTH, "mapping_layers": MAX_MAPPING_LAYERS})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GeneratorConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


class MappingNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig, num_ws: int) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, num_ws
        self.num_layers = cfg.mapping_layers
        self.w_avg_beta = cfg.w_avg_beta
        embed = cfg.mapping_embed_features if cfg.mapping_embed_features is not None else cfg.w_dim
        if cfg.c_dim == 0:
            embed = 0
        layer = cfg.mapping_layer_features if cfg.mapping_layer_features is not None else cfg.w_dim
        features = [cfg.z_dim + embed] + [layer] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim > 0:
            self.embed = FullyConnectedLayer(cfg.c_dim, embed)
        for idx in range(cfg.mapping_layers):
            fc = FullyConnectedLayer(
                features[idx], features[idx + 1], activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier
            )
            setattr(self, f"fc{idx}", fc)
        self.register_buffer("w_avg", torch.zeros([cfg.w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """z [N, z_dim] (and labels c [N, c_dim]) -> ws [N, num_ws, w_dim]."""
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.shape[-1] != self.c_dim:
                # A user error, not a bug: a conditional model reaches commands that give no labels
                # (mix, interpolate, stats, project...), and the CLI turns this into one line.
                raise UserError(f"this model is conditional ({self.c_dim} classes): it needs class labels c of shape "
                                f"[N, {self.c_dim}]; of the commands only `latentatlas generate --class K` gives them so far")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """w_avg + psi (w - w_avg), on all layers or on ws[:, :cutoff] (the official truncation trick)."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
        resample_filter: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("resample_filter", setup_filter(resample_filter or [1, 3, 3, 1]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        gain: float = 1.0,
        noise_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if noise_map is not None:  # explicit maps [N or 1, 1, r, r], e.g. optimised by the projector
            noise = noise_map * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            padding=1,
            resample_filter=self.resample_filter,
            noise=noise,
            bias=self.bias,
            act="lrelu",
            gain=gain,
            clamp=clamp,
        )


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False, bias=self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str,
        use_fp16: bool,
        conv_clamp: float | None,
        resample_filter: list[int],
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp, resample_filter=resample_filter
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, resample_filter=resample_filter
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        noise_maps: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if use_fp16 else torch.float32
        w_iter = iter(ws.unbind(dim=1))
        n_iter = iter(noise_maps if noise_maps is not None else [None] * self.num_conv)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.conv1(x, next(w_iter), noise_mode, noise_map=next(n_iter))
        else:
            assert x is not None
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode, noise_map=next(n_iter))
            x = self.conv1(x, next(w_iter), noise_mode, noise_map=next(n_iter))
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter)).to(torch.float32)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.w_dim = cfg.w_dim
        self.img_resolution = cfg.img_resolution
        log2 = int(math.log2(cfg.img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {r: min(cfg.channel_base // r, cfg.channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - cfg.num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            if channels[res] <= 0:
                raise ValueError(
                    f"channel_base {cfg.channel_base} gives no channels at {res} px: raise channel_base"
                )
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                cfg.w_dim,
                res,
                cfg.img_channels,
                is_last=res == cfg.img_resolution,
                architecture=cfg.architecture,
                use_fp16=res >= fp16_resolution,
                conv_clamp=cfg.conv_clamp,
                resample_filter=cfg.resample_filter,
            )
            self.num_ws += block.num_conv
            if res == cfg.img_resolution:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def block_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Split ws per block: each block's torgb shares its w with the next block's conv0."""
        out, idx = [], 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            out.append(ws.narrow(1, idx, block.num_conv + block.num_torgb))
            idx += block.num_conv
        return out

    def noise_layers(self) -> list[tuple[str, SynthesisLayer]]:
        """The layers that take noise, in order: (name in the state dict, layer)."""
        out = []
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for name in ("conv0", "conv1"):
                if hasattr(block, name):
                    out.append((f"b{res}.{name}", getattr(block, name)))
        return out

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        force_fp32: bool = False,
        noise_maps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images. noise_maps (one per noise layer, [N or 1, 1, r, r]) override noise_mode."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        per_block: list[list[torch.Tensor] | None] = [None] * len(self.block_resolutions)
        if noise_maps is not None:
            layers = self.noise_layers()
            if len(noise_maps) != len(layers):
                raise ValueError(f"need {len(layers)} noise maps, got {len(noise_maps)}")
            for (name, layer), m in zip(layers, noise_maps):
                if m.shape[-2:] != (layer.resolution, layer.resolution):
                    raise ValueError(f"noise map for {name} must be {layer.resolution}x{layer.resolution}, got {list(m.shape)}")
            i = 0
            for b, res in enumerate(self.block_resolutions):
                k = getattr(self, f"b{res}").num_conv
                per_block[b] = list(noise_maps[i : i + k])
                i += k
        x = img = None
        for b, (res, cur_ws) in enumerate(zip(self.block_resolutions, self.block_ws(ws))):
            x, img = getattr(self, f"b{res}")(x, img, cur_ws, noise_mode=noise_mode, force_fp32=force_fp32, noise_maps=per_block[b])
        assert img is not None
        return img


class Generator(nn.Module):
    """z (and labels) -> mapping -> ws -> synthesis -> image in [-1, 1] (roughly), NCHW."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg, self.num_ws)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        force_fp32: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32)

    @property
    def device(self) -> torch.device:
        return self.mapping.w_avg.device


@dataclass
class DiscriminatorConfig:
    img_resolution: int = 1024
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    conv_clamp: float | None = None
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromrgb), conv0, conv1 with down-sampling, 1x1 skip (official resnet D)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int, conv_clamp: float | None) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        assert x is not None
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels: int, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.group_size, self.num_channels = cfg.mbstd_group_size, cfg.mbstd_num_channels
        self.conv = Conv2dLayer(in_channels + cfg.mbstd_num_channels, in_channels, 3, activation="lrelu", conv_clamp=cfg.conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * 16, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_channels > 0:
            x = minibatch_stddev(x, self.group_size, self.num_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """The official residual StyleGAN2 discriminator (unconditional), same parameter names."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = cfg
        log2 = int(math.log2(cfg.img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        channels = {r: min(cfg.channel_base // r, cfg.channel_max) for r in self.block_resolutions + [4]}
        for res in self.block_resolutions:
            in_ch = channels[res] if res < cfg.img_resolution else 0
            block = DiscriminatorBlock(in_ch, channels[res], channels[res // 2], cfg.img_channels, cfg.conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(channels[4], cfg)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        assert x is not None
        return self.b4(x)
