"""StyleMapGAN (Kim et al., CVPR 2021): a generator driven by a spatial stylemap, and its encoder.

The latent code is a stylemap [N, C, S, S] instead of a vector: the mapping MLP turns z
(C numbers) into C*S*S numbers, reshaped. A *resizer* (3x3 convolutions with leaky ReLU and
transposed-convolution up-sampling with the FIR blur) turns it into one stylemap per synthesis
layer, at that layer's resolution. Each synthesis layer normalises its input over (C, H, W)
without affine parameters, then applies a spatially varying affine transform whose gamma and
beta are 3x3 convolutions of the layer's stylemap, then a plain convolution and leaky ReLU.
There is no noise input. The encoder is a StyleGAN2 discriminator trunk (residual blocks,
no minibatch-stddev) that stops at S x S and ends in a 3x3 convolution to C channels: one
forward pass maps an image to its stylemap.

Module and parameter names follow naver-ai/StyleMapGAN's `training/model.py`
(`mapping_z.1.weight`, `decoder.convs_latent.2.1.kernel`, `decoder.convs.0.conv1.conv.gamma.weight`,
`convs.0.conv2.0.kernel`, ...), so the `g_ema` / `e_ema` state dicts of their checkpoints load
by name. The arithmetic reuses the pure-PyTorch building blocks of `ops` (FIR resampling,
bias + scaled leaky ReLU, equalised layers).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.models import derived
from latentatlas.models.stylegan2 import MAX_MAPPING_LAYERS, MAX_RESOLUTION, MAX_WIDTH, require_at_most
from latentatlas.models.ops import (
    FullyConnectedLayer,
    bias_act,
    conv2d_up2,
    downsample_conv2d,
    normalize_2nd_moment,
    setup_filter,
    upfirdn2d,
)

NORMALIZE_MODES = ("LayerNorm", "InstanceNorm2d")

# How the per-image LayerNorm over (C, H, W) runs:
#   "fused":    F.layer_norm, one kernel; on CUDA PyTorch gives each image (row) one thread block,
#               so at a small batch one SM reads millions of values (a 256 px layer: 8.4 M);
#   "parallel": torch.var_mean over the image, then the normalisation: two more kernels, but the
#               reduction spreads over the whole GPU;
#   "auto":     parallel on CUDA when the batch is smaller than the SM count and an image's row is
#               long (at least 2**16 values), else fused (on CPU F.layer_norm wins at every size:
#               a 128x128x128 image 1.4 ms against 11.4 ms on 2 cores).
LAYER_NORM_IMPL = "auto"
_PARALLEL_LAYER_NORM_MIN_ROW = 1 << 16


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def layer_norm_chw(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm of each image over (C, H, W), no affine parameters (StyleMapGAN's "LayerNorm").

    Under autocast the parallel form keeps the input's dtype (bf16 stays bf16; its reductions
    accumulate in fp32), where F.layer_norm returns fp32.
    """
    impl = LAYER_NORM_IMPL
    if impl == "auto":
        long_rows = x[0].numel() >= _PARALLEL_LAYER_NORM_MIN_ROW
        impl = "parallel" if x.is_cuda and long_rows and x.shape[0] < _sm_count(x.device.index or 0) else "fused"
    if impl == "fused":
        return F.layer_norm(x, x.shape[1:], eps=eps)
    if impl != "parallel":
        raise ValueError(f"LAYER_NORM_IMPL must be 'auto', 'fused' or 'parallel', got {LAYER_NORM_IMPL!r}")
    var, mean = torch.var_mean(x, dim=tuple(range(1, x.dim())), keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + eps)


@dataclass
class StyleMapConfig:
    """Everything needed to rebuild a StyleMapGAN generator and encoder (stored as JSON).

    Channels at resolution r: min(channel_base * channel_multiplier // r, channel_max). With
    the official constants (16384, 512) this is the official table for channel multipliers 1
    and 2 (e.g. 512 up to 32 px, 256 * multiplier at 64 px, 128 * multiplier at 128 px).
    """

    resolution: int = 256
    latent_spatial_size: int = 8  # S: the stylemap is style_dim x S x S
    style_dim: int = 64  # z size and stylemap channels (official `latent_channel_size`)
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    channel_multiplier: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    small_generator: bool = False  # official option: every per-layer stylemap keeps style_dim channels
    normalize_mode: str = "LayerNorm"
    blur_kernel: list[int] = field(default_factory=lambda: [1, 3, 3, 1])

    def __post_init__(self) -> None:
        res, s = self.resolution, self.latent_spatial_size
        if res < 4 or res & (res - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {res}")
        if s < 1 or s & (s - 1) or s >= res:
            raise ValueError(f"latent_spatial_size must be a power of two below the resolution {res}, got {s}")
        for name in ("style_dim", "mapping_layers", "channel_multiplier", "channel_base", "channel_max"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        require_at_most(self, {"resolution": MAX_RESOLUTION, "style_dim": MAX_WIDTH, "channel_max": MAX_WIDTH,
                               "mapping_layers": MAX_MAPPING_LAYERS})
        if self.normalize_mode not in NORMALIZE_MODES:
            raise ValueError(f"normalize_mode {self.normalize_mode!r} is not supported: use one of {NORMALIZE_MODES}")
        for r in self.resolutions():
            if self.channels(r) <= 0:
                raise ValueError(f"no channels at {r} px: raise channel_base")

    def channels(self, r: int) -> int:
        return min(self.channel_base * self.channel_multiplier // r, self.channel_max)

    def resolutions(self) -> list[int]:
        """Synthesis resolutions, from the stylemap size up to the image size."""
        out, r = [], self.latent_spatial_size
        while r <= self.resolution:
            out.append(r)
            r *= 2
        return out

    @property
    def stylemap_shape(self) -> tuple[int, int, int]:
        return (self.style_dim, self.latent_spatial_size, self.latent_spatial_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StyleMapConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown StyleMapGAN config keys: {sorted(unknown)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------
# Layers with the official names (rosinality-style modules, as StyleMapGAN uses them)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_2nd_moment(x)


class EqualConv2d(nn.Module):
    """Equalised convolution weights [out, in, k, k] (and bias); the parent decides how to apply them."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full([out_channels], float(bias_init))) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.kernel_size = kernel_size

    def scaled_weight(self, like: torch.Tensor) -> torch.Tensor:
        """The scaled weight for a convolution of `like` (its dtype; cached, channels-last on CPU)."""
        return conv_weight(self.weight, lambda w: w * self.scale, like, "scaled")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a plain same-size convolution
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.scaled_weight(x), b, padding=self.kernel_size // 2)


def conv_weight(weight: torch.Tensor, make: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, name: str,
                depends_on: tuple[torch.Tensor | None, ...] = ()) -> torch.Tensor:
    """make(weight) in like's dtype, kept on a frozen weight (models.derived); on CPU in
    channels-last layout: oneDNN's convolutions run faster on channels-last tensors, and a
    channels-last weight makes every activation after it channels-last too (faces64-stylemap
    encode + generate at batch 1 on 2 cores: 33 -> 29 ms)."""
    if like.device.type != "cpu" or like.dim() != 4:
        return derived.cached(weight, f"{name}_{like.dtype}", lambda w: make(w).to(like.dtype), depends_on)
    return derived.cached(weight, f"{name}_{like.dtype}",
                          lambda w: make(w).to(like.dtype).contiguous(memory_format=torch.channels_last), depends_on)


class Blur(nn.Module):
    """Holds the FIR kernel as the official `kernel` buffer (times 4 when it follows an up-sampling)."""

    def __init__(self, taps: list[int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", setup_filter(taps) * gain)


class FusedLeakyReLU(nn.Module):
    """bias + leaky ReLU(0.2) * sqrt(2): the official FusedLeakyReLU (parameter `bias`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, act="lrelu")


class _ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, None, act="lrelu")


def _upsample_conv(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Transposed stride-2 convolution (weight transposed, not flipped), then the blur: the official
    up-sampling convolution; `kernel` is the stored blur kernel (already times 4). Output 2H x 2W."""
    k = weight.shape[-1]
    if k == 3:  # same padding (1, 1); FIR folded on CUDA (ops.RESAMPLE_IMPL)
        return conv2d_up2(x, weight, derived.cached(kernel, "quarter", lambda t: t / 4))
    p = (kernel.shape[-1] - 2) - (k - 1)
    p0, p1 = (p + 1) // 2 + 1, p // 2 + 1
    x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    return upfirdn2d(x, kernel, padding=(p0, p1, p0, p1))


class ConvLayer(nn.Module):
    """The official ConvLayer (an nn.Sequential there, hence children named 0, 1, 2).

    down-sampling: 0 = Blur, 1 = EqualConv2d (stride 2), [2 = activation];
    up-sampling:   0 = EqualConv2d (transposed, stride 2), 1 = Blur, [2 = activation];
    otherwise:     0 = EqualConv2d, [1 = activation].
    The activation is FusedLeakyReLU (with the bias) when bias and activate, else the conv has the bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: list[int] | None = None,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        super().__init__()
        assert not (upsample and downsample)
        taps = blur_kernel or [1, 3, 3, 1]
        self.upsample, self.downsample, self.kernel_size = upsample, downsample, kernel_size
        mods: list[nn.Module] = []
        if downsample:
            mods.append(Blur(taps))
        mods.append(EqualConv2d(in_channels, out_channels, kernel_size, bias=bias and not activate))
        if upsample:
            mods.append(Blur(taps, gain=4.0))
        if activate:
            mods.append(FusedLeakyReLU(out_channels) if bias else _ScaledLeakyReLU())
        for i, m in enumerate(mods):
            self.add_module(str(i), m)
        # Positions of the parts; the modules themselves stay registered only under their numbers.
        self._conv_idx = 1 if downsample else 0
        self._blur_idx = 0 if downsample else (1 if upsample else None)
        self._act_idx = len(mods) - 1 if activate else None

    @property
    def conv(self) -> EqualConv2d:
        return self._modules[str(self._conv_idx)]  # type: ignore[return-value]

    @property
    def blur(self) -> Blur | None:
        return None if self._blur_idx is None else self._modules[str(self._blur_idx)]  # type: ignore[return-value]

    @property
    def act(self) -> nn.Module | None:
        return None if self._act_idx is None else self._modules[str(self._act_idx)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.scaled_weight(x)
        if self.downsample:
            assert self.blur is not None
            x = downsample_conv2d(x, w, self.blur.kernel, padding=self.kernel_size // 2)
        elif self.upsample:
            assert self.blur is not None
            x = _upsample_conv(x, w, self.blur.kernel)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.conv.bias is not None:
            x = x + self.conv.bias.to(x.dtype).reshape(1, -1, 1, 1)
        if self.act is not None:
            x = self.act(x)
        return x


class ResBlock(nn.Module):
    """Encoder / discriminator residual block: conv1, conv2 (down), 1x1 skip (down), sum / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: list[int]) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


class ModulatedConv2d(nn.Module):
    """Spatially varying modulation, then a plain convolution (the official `ModulatedConv2d`).

    x = norm(x) * gamma(s) + beta(s), with gamma, beta 3x3 convolutions of the layer's stylemap
    s (bias init 1 and 0) and norm over (C, H, W) (LayerNorm) or per channel (InstanceNorm2d),
    without affine parameters; then a convolution (x2 up-sampling with the blur when asked).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 normalize_mode: str | None, blur_kernel: list[int], upsample: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample, self.normalize_mode = upsample, normalize_mode
        if upsample:
            self.blur = Blur(blur_kernel, gain=4.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.gamma = EqualConv2d(style_dim, in_channels, 3, bias=True, bias_init=1.0)
        self.beta = EqualConv2d(style_dim, in_channels, 3, bias=True, bias_init=0.0)

    def forward(self, x: torch.Tensor, stylemap: torch.Tensor) -> torch.Tensor:
        if stylemap.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"the layer's stylemap is {list(stylemap.shape[-2:])}, its input {list(x.shape[-2:])}")
        # gamma and beta in one convolution; for frozen weights the concatenation is kept too
        # (on gamma's weight, with beta's tensors as dependencies): 16 concatenations were 1 ms
        # of a 30 ms faces64-stylemap encode + generate on 2 cores.
        g, b = self.gamma, self.beta
        deps = (b.weight, b.bias, g.bias)
        w = conv_weight(g.weight, lambda gw: torch.cat([gw * g.scale, b.weight * b.scale]), x, "gamma_beta", depends_on=deps)
        bias = derived.cached(g.weight, f"gamma_beta_bias_{x.dtype}", lambda _: torch.cat([g.bias, b.bias]).to(x.dtype),  # type: ignore[list-item]
                              depends_on=deps)
        gamma, beta = F.conv2d(stylemap.to(x.dtype), w, bias, padding=1).split(self.in_channels, dim=1)
        if self.normalize_mode == "LayerNorm":
            x = layer_norm_chw(x)
        elif self.normalize_mode == "InstanceNorm2d":
            x = F.instance_norm(x)
        x = torch.addcmul(beta, x, gamma)
        weight = conv_weight(self.weight, lambda w: w[0] * self.scale, x, "scaled")
        if self.upsample:
            return _upsample_conv(x, weight, self.blur.kernel)
        return F.conv2d(x, weight, padding=self.kernel_size // 2)


class StyledConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 normalize_mode: str | None, blur_kernel: list[int], upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, normalize_mode, blur_kernel, upsample)
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, stylemap: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x, stylemap))


class StyledResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, style_dims: tuple[int, int], normalize_mode: str,
                 blur_kernel: list[int]) -> None:
        super().__init__()
        self.conv1 = StyledConv(in_channels, out_channels, 3, style_dims[0], normalize_mode, blur_kernel, upsample=True)
        self.conv2 = StyledConv(out_channels, out_channels, 3, style_dims[1], normalize_mode, blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, upsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x, s1), s2)
        return (out + self.skip(x)) * (1 / math.sqrt(2))


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class Decoder(nn.Module):
    """Stylemap resizer (`convs_latent`) and synthesis (`input`, `conv1`, `convs`, `to_rgb`).

    The resizer's convolutions carry no learning-rate multiplier, in official checkpoints too:
    the official ConvLayer hands its lr_mul to the equalised convolution only when it
    up-samples, but the official Generator builds its Decoder with lr_mul fixed at 1
    (naver-ai/StyleMapGAN training/model.py @9b92e68, "always 1"), so train_args' lr_mul
    reaches only the mapping MLP (mapping_lr_multiplier). Scaling the up-sampling convs_latent
    by it would move the s64 parity fixture's image by 7.4 (tests/test_stylemap_parity.py).
    """

    def __init__(self, cfg: StyleMapConfig) -> None:
        super().__init__()
        s, ch, sd, bk = cfg.latent_spatial_size, cfg.channels, cfg.style_dim, cfg.blur_kernel
        res = cfg.resolutions()
        code_dim = (lambda r: sd) if cfg.small_generator else ch  # channels of the per-layer stylemap at r
        self.input = ConstantInput(ch(s), s)
        self.conv1 = StyledConv(ch(s), ch(s), 3, code_dim(s), cfg.normalize_mode, bk)
        self.convs_latent = nn.ModuleList([ConvLayer(sd, code_dim(s), 3, blur_kernel=bk), ConvLayer(code_dim(s), code_dim(s), 3, blur_kernel=bk)])
        self.convs = nn.ModuleList()
        for r in res[1:]:
            self.convs_latent.append(ConvLayer(code_dim(r // 2), code_dim(r), 3, upsample=True, blur_kernel=bk))
            self.convs_latent.append(ConvLayer(code_dim(r), code_dim(r), 3, blur_kernel=bk))
            self.convs.append(StyledResBlock(ch(r // 2), ch(r), (code_dim(r // 2), code_dim(r)), cfg.normalize_mode, bk))
        self.to_rgb = StyledConv(ch(cfg.resolution), 3, 1, code_dim(cfg.resolution), cfg.normalize_mode, bk)
        self.num_stylemaps = len(self.convs_latent)
        # Resolution of each per-layer stylemap: S, S, 2S, 2S, ..., R, R.
        self.stylemap_resolutions = [r for r in res for _ in range(2)]

    def resize(self, stylemap: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer in self.convs_latent:
            stylemap = layer(stylemap)
            out.append(stylemap)
        return out

    def synthesize(self, stylemaps: list[torch.Tensor]) -> torch.Tensor:
        if len(stylemaps) != self.num_stylemaps:
            raise ValueError(f"need {self.num_stylemaps} per-layer stylemaps, got {len(stylemaps)}")
        x = self.input.input.expand(stylemaps[0].shape[0], -1, -1, -1)
        x = self.conv1(x, stylemaps[0])
        for i, block in enumerate(self.convs):
            x = block(x, stylemaps[2 * i + 1], stylemaps[2 * i + 2])
        return self.to_rgb(x, stylemaps[-1])


class Generator(nn.Module):
    """z [N, C] -> mapping -> stylemap [N, C, S, S] -> resizer -> per-layer stylemaps -> image [N, 3, R, R]."""

    def __init__(self, cfg: StyleMapConfig) -> None:
        super().__init__()
        self.config = cfg
        self.style_dim, self.latent_spatial_size, self.img_resolution = cfg.style_dim, cfg.latent_spatial_size, cfg.resolution
        self.z_dim = cfg.style_dim
        s = cfg.latent_spatial_size
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(cfg.mapping_layers):
            out = cfg.style_dim * s * s if i == cfg.mapping_layers - 1 else cfg.style_dim
            layers.append(FullyConnectedLayer(cfg.style_dim, out, activation="lrelu", lr_multiplier=cfg.mapping_lr_multiplier))
        self.mapping_z = nn.Sequential(*layers)
        self.decoder = Decoder(cfg)
        self.num_stylemaps = self.decoder.num_stylemaps

    @property
    def stylemap_shape(self) -> tuple[int, int, int]:
        return self.config.stylemap_shape

    @property
    def device(self) -> torch.device:
        return self.decoder.input.input.device

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0, mean: torch.Tensor | None = None) -> torch.Tensor:
        """z [N, style_dim] -> stylemap [N, C, S, S]; truncation towards `mean` (a stylemap) when psi != 1."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        code = self.mapping_z(z.to(torch.float32))
        code = code.reshape(z.shape[0], *self.stylemap_shape)
        if truncation_psi != 1:
            if mean is None:
                raise ValueError("truncation needs the mean stylemap (see mean_stylemap)")
            code = mean.lerp(code, truncation_psi)
        return code

    @torch.no_grad()
    def mean_stylemap(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """The mean of n mapped stylemaps [1, C, S, S] (the official truncation centre), deterministic."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.z_dim, generator=g).to(self.device)
        return torch.cat([self.mapping(z[i : i + 1024]) for i in range(0, n, 1024)]).mean(0, keepdim=True)

    def stylemaps(self, stylemap: torch.Tensor) -> list[torch.Tensor]:
        """The resizer: one stylemap per synthesis layer (resolutions S, S, 2S, 2S, ..., R, R)."""
        self._check(stylemap)
        return self.decoder.resize(stylemap.to(torch.float32))

    def synthesize(self, stylemaps: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder.synthesize(stylemaps)

    def forward(self, stylemap: torch.Tensor) -> torch.Tensor:
        """stylemap [N, C, S, S] -> image [N, 3, R, R] in [-1, 1] (roughly)."""
        return self.synthesize(self.stylemaps(stylemap))

    def generate(self, z: torch.Tensor, truncation_psi: float = 1.0, mean: torch.Tensor | None = None) -> torch.Tensor:
        return self(self.mapping(z, truncation_psi, mean))

    def _check(self, stylemap: torch.Tensor) -> None:
        if stylemap.ndim != 4 or tuple(stylemap.shape[1:]) != self.stylemap_shape:
            raise ValueError(f"stylemap must have shape [N, {', '.join(map(str, self.stylemap_shape))}], got {list(stylemap.shape)}")


class Encoder(nn.Module):
    """Image [N, 3, R, R] -> stylemap [N, C, S, S] in one forward pass (official names)."""

    def __init__(self, cfg: StyleMapConfig) -> None:
        super().__init__()
        self.config = cfg
        self.img_resolution = cfg.resolution
        ch, bk = cfg.channels, cfg.blur_kernel
        self.from_rgb = ConvLayer(3, ch(cfg.resolution), 1, blur_kernel=bk)
        self.convs = nn.ModuleList()
        r = cfg.resolution
        while r > cfg.latent_spatial_size:
            self.convs.append(ResBlock(ch(r), ch(r // 2), bk))
            r //= 2
        self.final_conv = ConvLayer(ch(cfg.latent_spatial_size), cfg.style_dim, 3, blur_kernel=bk)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[-1] != self.img_resolution or img.shape[-2] != self.img_resolution:
            raise ValueError(f"images must have shape [N, 3, {self.img_resolution}, {self.img_resolution}], got {list(img.shape)}")
        x = self.from_rgb(img.to(torch.float32))
        for block in self.convs:
            x = block(x)
        return self.final_conv(x)


def faces64_stylemap_config() -> StyleMapConfig:
    """The CPU-sized default for 64 px synthfaces (see benchmarks in the README)."""
    return StyleMapConfig(resolution=64, latent_spatial_size=8, style_dim=64, mapping_layers=8,
                          channel_base=1024, channel_multiplier=1, channel_max=64, small_generator=False)
