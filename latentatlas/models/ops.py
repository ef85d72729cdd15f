"""Pure-PyTorch building blocks of StyleGAN2, with the math of NVIDIA's stylegan2-ada-pytorch.

The official code ships CUDA plugins (bias_act, upfirdn2d) that fail to build on current
PyTorch and fall back to a slow reference path. Everything here is written directly in
terms of PyTorch operators, so the same code runs on CPU and GPU with no compile step,
while keeping the official semantics (padding, gains, filter orientation, clamping) so
that official weights give the same images.
"""

from __future__ import annotations

import functools
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from latentatlas.models import derived, winograd

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: list[float] | tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """2-D FIR filter from 1-D taps: outer product, normalised to sum 1 (official `setup_filter`)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add bias (along dim 1), apply activation, multiply by gain, clamp: the official function.

    With a leaky ReLU and a positive gain, the gain is applied first (g * lrelu(y) = lrelu(g * y))
    and bias and gain take one pass, the activation a second one in place: two passes over x
    instead of three, which at batch 1 on CPU are mostly memory traffic."""
    if act == "lrelu":
        gain = LRELU_GAIN if gain is None else gain
    elif act == "linear":
        gain = 1.0 if gain is None else gain
    else:
        raise ValueError(f"unsupported activation {act!r}: use 'lrelu' or 'linear'")
    shape = [1] * x.ndim
    shape[1] = -1
    if act == "lrelu" and gain > 0 and (b is not None or gain != 1):
        if b is not None:
            x = torch.add(b.to(x.dtype).reshape(shape) * gain, x, alpha=gain)
        else:
            x = x * gain
        x = F.leaky_relu_(x, LRELU_SLOPE)  # x is this function's own tensor here
    else:
        if b is not None:
            x = x + b.to(x.dtype).reshape(shape)
        if act == "lrelu":
            x = F.leaky_relu(x, LRELU_SLOPE)
        if gain != 1:
            x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad, convolve with the 2-D FIR filter `f`, downsample.

    padding is (x0, x1, y0, y1) as in the official op; negative values crop. The filter is
    applied as a true convolution (flipped), which matters only for asymmetric filters.
    """
    n, c, h, w = x.shape
    fir = _separable_fir_matrices(x, f, up, down, padding, gain)
    if fir is not None:
        rows, cols_t = fir
        if not x.is_contiguous():  # channels-last: filter along W, then H, in NHWC memory order
            y = torch.matmul(cols_t.t(), x.permute(0, 2, 3, 1))  # [N, H, W', C]
            y = torch.matmul(rows, y.reshape(n, h, -1))  # [N, H', W' * C]
            return y.view(n, rows.shape[0], cols_t.shape[1], c).permute(0, 3, 1, 2)
        return torch.matmul(rows, torch.matmul(x, cols_t))
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


# Largest input side times up-sampling factor for which upfirdn2d runs a separable filter on CPU
# as two small matrix products instead of a depthwise convolution. A side-n matrix does n
# multiply-adds per output where the filter needs 4, yet GEMM runs so much faster than oneDNN's
# depthwise 4x4 kernel that it wins up to 64 px: 2 cores, x2 up-sampling of 3 channels 32 -> 64
# px 0.11 against 0.52 ms at batch 1, of 128 channels 1.0 against 1.7 ms (forward and backward
# 2.5 against 3.7) and 52 against 127 ms at batch 16. The FIR pass after a 32 -> 65 px transposed
# convolution broke even at batch 1 and lost 10 % at batch 16, so 65 px keeps the convolution.
FIR_MATMUL_MAX_SIDE = 64
FIR_MATMUL_MAX_SIDE_CHANNELS_LAST = 24  # the same for channels-last activations (see below)


@functools.lru_cache(maxsize=64)
def _separable_taps(shape: tuple[int, ...], values: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The 1-D taps (rows, columns) whose outer product is the 2-D filter (shape, values), or None if it is not one."""
    if len(shape) != 2 or sum(values) == 0.0:
        return None
    f64 = torch.tensor(values, dtype=torch.float64).reshape(shape)
    rows, cols = f64.sum(1), f64.sum(0) / f64.sum()
    if not torch.allclose(torch.outer(rows, cols), f64, rtol=1e-6, atol=1e-9 * float(f64.abs().max())):
        return None
    return tuple(rows.tolist()), tuple(cols.tolist())


@functools.lru_cache(maxsize=256)
def _fir_matrix(taps: tuple[float, ...], size: int, up: int, down: int, pad0: int, pad1: int, gain: float,
                dtype: torch.dtype) -> torch.Tensor:
    """[out, size]: one axis of upfirdn2d (zero insertion, padding, convolution with taps, decimation)."""
    with torch.inference_mode(False):  # cached for later calls, which may need gradients
        return _build_fir_matrix(taps, size, up, down, pad0, pad1, gain, dtype)


def _build_fir_matrix(taps: tuple[float, ...], size: int, up: int, down: int, pad0: int, pad1: int, gain: float,
                      dtype: torch.dtype) -> torch.Tensor:
    k = len(taps)
    out = (size * up + pad0 + pad1 - k) // down + 1
    # Output t reads the up-sampled, padded signal at down*t + j (j < k) through the flipped
    # taps; input i sits there at up*i + pad0, so the tap index is up*i + pad0 - down*t.
    j = up * torch.arange(size)[None, :] + pad0 - down * torch.arange(out)[:, None]
    flipped = torch.tensor(taps[::-1], dtype=torch.float64) * gain
    m = torch.where((j >= 0) & (j < k), flipped[j.clamp(0, k - 1)], torch.zeros((), dtype=torch.float64))
    return m.to(dtype)


def _separable_fir_matrices(
    x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple[int, int, int, int], gain: float,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows [H', H], columns transposed [W, W']) doing upfirdn2d as rows @ x @ columns_t, when
    that is the fast way (CPU, a separable filter, small images), else None."""
    h, w = x.shape[-2:]
    if x.device.type != "cpu" or not x.dtype.is_floating_point or max(h, w) * up > FIR_MATMUL_MAX_SIDE:
        return None
    if torch.compiler.is_compiling():  # the taps are read as Python floats, which breaks a compiled graph
        return None
    if not x.is_contiguous():
        # Channels-last activations (both generators' convolutions make them) would be copied to
        # NCHW and back: there the depthwise convolution won, e.g. 128 channels 33 px 0.47
        # against 2.7 ms, and faces64-stylemap encode + generate went from 30 to 34 ms. In their
        # own memory order (upfirdn2d's NHWC branch) the matrices win on small sides: 2 cores,
        # batch 1, forward and backward, 128 channels 17 px 0.78 against 0.93 ms, 9 px 0.49
        # against 0.64, a 3-channel 4 -> 8 px image 0.35 against 0.66; at 33 px they broke even
        # and at 65 px lost (3.6 against 2.4 ms).
        if not x.is_contiguous(memory_format=torch.channels_last) or max(h, w) * up > FIR_MATMUL_MAX_SIDE_CHANNELS_LAST:
            return None
    if f.requires_grad or f.ndim != 2:
        return None
    # Keyed by the filter's values: callers often build it per call (StyleMapGAN's kernel / 4),
    # and a tensor made under torch.inference_mode has no version counter to key a cache by.
    taps = _separable_taps(tuple(f.shape), tuple(f.detach().flatten().tolist()))
    if taps is None:
        return None
    px0, px1, py0, py1 = padding
    g = math.sqrt(gain ** (f.ndim / 2))
    rows = _fir_matrix(taps[0], h, up, down, py0, py1, g, x.dtype)
    cols = _fir_matrix(taps[1], w, up, down, px0, px1, g, x.dtype)
    return rows, cols.t()


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """x2 upsampling with the FIR filter, official padding and gain (up**2)."""
    fw = f.shape[-1]
    p0 = (fw + up - 1) // 2
    p1 = (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


# How a 3x3 convolution with x2 resampling is computed; both give the official function.
#   "fir":       stride-2 (transposed) convolution plus a separate depthwise FIR pass, the
#                official arrangement: fewest multiply-adds, the fastest on CPU;
#   "composite": the FIR filter folded into the weight (a 6x6 kernel), one dense stride-2
#                convolution: 4x the multiply-adds of the convolution but no depthwise pass,
#                which GPUs run poorly;
#   "phase":     the folded filter too, as stride-1 convolutions: up-sampling computes the four
#                output phases of the 6x6 transposed kernel as 4x the output channels of one
#                3x3 convolution at the input size, then pixel_shuffle; down-sampling
#                pixel_unshuffles the input into 4x its channels, then one stride-1 3x3
#                convolution. Composite's multiply-adds, without transposed, strided or
#                depthwise kernels; 1x1 kernels keep the FIR pass (folding costs them 16x).
#                Made for frozen weights (StyleMapGAN), whose rearranged kernels are kept:
#                StyleGAN2's batch-1 weights carry the styles and are rearranged every call;
#   "auto":      composite on CUDA, fir elsewhere.
RESAMPLE_IMPL = "auto"
RESAMPLE_IMPLS = ("auto", "fir", "composite", "phase")


# How a stride-1 3x3 modulated convolution is computed when no weight gradient is needed:
#   "direct":   PyTorch's convolution (oneDNN on CPU, cuDNN on GPU);
#   "winograd": models/winograd.py's F(4x4, 3x3): 4x fewer multiplications, about 1e-5
#               relative difference to direct in float32;
#   "nnpack":   NNPACK's F(6x6, 3x3), image by image (CPU, float32; models/winograd.py);
#   "auto":     on CPU in float32: nnpack for layers of side >= NNPACK_MIN_SIZE where this build
#               has it and it pays (_nnpack_pays), else winograd where input channels x side >=
#               WINOGRAD_MIN_WORK and side >= WINOGRAD_MIN_SIZE, direct elsewhere (and on GPU,
#               where "nnpack" also means direct). Measured on 2
#               cores, one image, against direct: nnpack 2.7x at 256 channels 64 px, 2.4x at
#               128 channels 64 px, 1.6x at 128 channels 32 px, 1.5x at 32 channels 64 px;
#               winograd 1.3x at 256 channels 16 px, where nnpack is 0.9x; direct at 8 px.
CONV3X3_IMPL = "auto"
WINOGRAD_MIN_WORK = 4096
WINOGRAD_MIN_SIZE = 16
NNPACK_MIN_SIZE = 32
NNPACK_UP_MIN_SIZE = 64
NNPACK_UP_MIN_CHANNELS = 256


def _nnpack_pays(x: torch.Tensor) -> bool:
    """NNPACK runs its own thread pool beside PyTorch's OpenMP threads, which by default spin for
    a while after each operator: the two fight for the cores. With OMP_WAIT_POLICY=PASSIVE (a
    user's choice for a shared machine: latentatlas/runtime.py) NNPACK won at every batch size
    on a 2-core EPYC whose plain convolutions ran at 70 GFLOP/s (2026-11-26). With spinning
    threads it lost 10 % at batch 1 there and won from batch 16; on a 2-core EPYC at 118 GFLOP/s
    (2026-11-27) it lost at both, the bundled faces64 at batch 16 33 against 21 ms an image
    direct, and a batch-1 projector step 80 against 59 ms. So it is taken with passive waiting only."""
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    return passive and winograd.nnpack_available()


def _conv3x3_method(x: torch.Tensor, weight: torch.Tensor, up: int, padding: int) -> str | None:
    """winograd.conv3x3_frozen's method for this layer, or None for the direct convolution."""
    if CONV3X3_IMPL not in ("auto", "direct", "winograd", "nnpack"):
        raise ValueError(f"CONV3X3_IMPL must be 'auto', 'direct', 'winograd' or 'nnpack', got {CONV3X3_IMPL!r}")
    if CONV3X3_IMPL == "direct" or up not in (1, 2) or padding != 1 or weight.shape[-2:] != (3, 3):
        return None
    if weight.requires_grad and torch.is_grad_enabled():  # training: the direct path's weight gradient
        return None
    if torch.is_autocast_enabled(x.device.type):  # autocast casts the direct path's convolutions; these take float32 only
        return None
    if up == 2:
        # Up-sampling first, then a stride-1 convolution at the output size (conv2d_up2_frozen):
        # NNPACK there beat the transposed convolution plus FIR pass only for wide layers with
        # 64 px outputs (256 channels, 32 -> 64 px: 24 against 32 ms an image; 16 -> 32 px: 9.4
        # against 7.5). Whole generators, same process, alternating: the 64 px benchmark config
        # at batch 16 77 against 80 ms an image, faces64 (128 channels) 28 against 26: a loss.
        cpu32 = x.device.type == "cpu" and x.dtype == torch.float32
        use = cpu32 and (CONV3X3_IMPL == "nnpack" or (
            CONV3X3_IMPL == "auto" and 2 * min(x.shape[-2:]) >= NNPACK_UP_MIN_SIZE
            and x.shape[1] >= NNPACK_UP_MIN_CHANNELS and _nnpack_pays(x)))
        return "nnpack" if use else None
    if CONV3X3_IMPL == "winograd":
        return "f43"
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    if CONV3X3_IMPL == "nnpack":
        return "nnpack"
    side = min(x.shape[-2:])
    if side >= NNPACK_MIN_SIZE and _nnpack_pays(x):
        return "nnpack"
    # With a gradient to the input (projection) the backward pass is a Winograd convolution
    # too (winograd.conv3x3_frozen): forward + backward of a 256-channel 64 px config took
    # 214 ms against 288 ms direct; faces64's 128-channel layers 92 against 90 ms (a wash).
    return "f43" if side >= WINOGRAD_MIN_SIZE and weight.shape[1] * side >= WINOGRAD_MIN_WORK else None


def _resample_impl(x: torch.Tensor) -> str:
    """RESAMPLE_IMPL with "auto" resolved for x's device: "fir", "composite" or "phase"."""
    if RESAMPLE_IMPL == "auto":
        return "composite" if x.device.type == "cuda" else "fir"
    if RESAMPLE_IMPL not in RESAMPLE_IMPLS:
        raise ValueError(f"RESAMPLE_IMPL must be one of {RESAMPLE_IMPLS}, got {RESAMPLE_IMPL!r}")
    return RESAMPLE_IMPL


def _phase_up_offsets(k: int, padding: int) -> tuple[int, int]:
    """The input row offsets d (lowest, highest) that a stride-2 transposed k-tap kernel with
    this padding reads for output rows 2m and 2m + 1: row 2m + a takes input row m + d through
    kernel row a + padding - 2d, wherever that lies in 0..k-1."""
    return min(-((k - 1 - a - padding) // 2) for a in (0, 1)), max((a + padding) // 2 for a in (0, 1))


def _phase_down_offsets(k: int, padding: int) -> tuple[int, int]:
    """The offsets d (lowest, highest) of the pixel_unshuffled rows that a stride-2 k-tap kernel
    with this padding reads: kernel row ky reads input row 2(m + d) + a with 2d + a = ky - padding."""
    return (-padding) // 2, (k - 1 - padding) // 2


def _phase_up_weight(kernel: torch.Tensor, padding: int) -> torch.Tensor:
    """conv_transpose2d(x, kernel [I, O, K, K], stride=2, padding=P) as a stride-1 convolution.

    Each of the four output phases (a, b) is an ordinary correlation of x (_phase_up_offsets).
    Returns the weight [4 * O, I, T, T], phase (a, b) of output channel o at o * 4 + a * 2 + b
    (pixel_shuffle's order): pixel_shuffle(conv2d(x padded by -d_lo before and d_hi after,
    weight), 2) is the transposed convolution, whose output must be exactly 2H (K = 2P + 2).
    """
    i_ch, o_ch, k, _ = kernel.shape
    if k != 2 * padding + 2:
        raise ValueError(f"a {k}x{k} stride-2 transposed kernel with padding {padding} does not double the size")
    d_lo, d_hi = _phase_up_offsets(k, padding)
    t = d_hi - d_lo + 1
    w = kernel.new_zeros(o_ch, 2, 2, i_ch, t, t)
    for a in (0, 1):
        for d in range(d_lo, d_hi + 1):
            ky = a + padding - 2 * d
            for b in (0, 1):
                for e in range(d_lo, d_hi + 1):
                    kx = b + padding - 2 * e
                    if 0 <= ky < k and 0 <= kx < k:
                        w[:, a, b, :, d - d_lo, e - d_lo] = kernel[:, :, ky, kx].t()
    return w.reshape(4 * o_ch, i_ch, t, t)


def _phase_down_weight(kernel: torch.Tensor, padding: int) -> torch.Tensor:
    """conv2d(x, kernel [O, I, K, K], stride=2, padding=P) as a stride-1 convolution of
    pixel_unshuffle(x, 2) padded by -d_lo before and d_hi after (_phase_down_offsets): the
    weight [O, 4 * I, T, T], input phase (a, b) of channel i at i * 4 + a * 2 + b."""
    o_ch, i_ch, k, _ = kernel.shape
    d_lo, d_hi = _phase_down_offsets(k, padding)
    t = d_hi - d_lo + 1
    w = kernel.new_zeros(o_ch, i_ch, 2, 2, t, t)
    for ky in range(k):
        a, d = (ky - padding) % 2, (ky - padding) // 2
        for kx in range(k):
            b, e = (kx - padding) % 2, (kx - padding) // 2
            w[:, :, a, b, d - d_lo, e - d_lo] = kernel[:, :, ky, kx]
    return w.reshape(o_ch, 4 * i_ch, t, t)


def _fold_filter(weight: torch.Tensor, f: torch.Tensor, gain: float) -> torch.Tensor:
    """Full 2-D correlation of every kernel of `weight` [A, B, k, k] with `f` (gain applied).

    Running a stride-2 (transposed) convolution with the result equals the (transposed)
    convolution with `weight` followed or preceded by FIR filtering with `f`.
    """
    a, b, k, _ = weight.shape
    fw = f.shape[-1]
    g = (f * gain).to(weight.dtype)[None, None]
    w = F.pad(weight.reshape(a * b, 1, k, k), [fw - 1] * 4)
    return F.conv2d(w, g).reshape(a, b, k + fw - 1, k + fw - 1)


def conv2d_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """3x3 convolution with x2 upsampling, as the official conv2d_resample (up=2, padding=1).

    A stride-2 transposed convolution with the weight transposed (not flipped), then the FIR
    filter with padding 1 and gain 4. Output size is exactly twice the input size.
    """
    kh = weight.shape[-1]
    fw = f.shape[-1]
    p0 = 1 + (fw + 1) // 2 - (kh - 1)
    p1 = 1 + (fw - 2) // 2 - (kh - 2)
    impl = _resample_impl(x)
    if impl != "fir" and p0 == p1:
        # upfirdn2d convolves with f (correlates with its flip); fold the flipped filter.
        # Both forms depend on the weight alone: kept for a frozen one (models.derived).
        pad = fw - 1 - p0
        if impl == "phase":
            w = derived.cached(weight, f"phase_up_{pad}", lambda t: _phase_up_weight(
                _fold_filter(t.transpose(0, 1), f.flip([0, 1]), 4.0), pad), depends_on=(f,))
            d_lo, d_hi = _phase_up_offsets(kh + fw - 1, pad)
            return F.pixel_shuffle(F.conv2d(F.pad(x, [-d_lo, d_hi, -d_lo, d_hi]), w), 2)
        kernel = derived.cached(weight, "composite_up", lambda t: _fold_filter(t.transpose(0, 1), f.flip([0, 1]), 4.0),
                                depends_on=(f,))
        return F.conv_transpose2d(x, kernel, stride=2, padding=pad)
    # The transposed convolution copies a transposed weight view to contiguous memory in its
    # forward and again in its backward pass: with a frozen weight, once (6 copies of 0.2-0.3 ms
    # per faces64 projector step before).
    transposed = derived.cached(weight, "transposed", lambda t: t.transpose(0, 1).contiguous())
    x = F.conv_transpose2d(x, transposed, stride=2)
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4)


def conv2d_up2_frozen(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, method: str = "nnpack") -> torch.Tensor:
    """conv2d_up2 for a frozen weight, differentiable in x: FIR up-sampling, then a stride-1 conv.

    The transposed convolution is zero insertion followed by a correlation with the flipped
    kernel; the FIR filter is linear and shift-invariant too, so it may run first. Up-sampling
    first costs 4x the multiply-adds of the convolution, but as a stride-1 3x3 convolution
    it runs in NNPACK's Winograd kernels, which more than pay for that on CPU.
    """
    kh, fw = weight.shape[-1], f.shape[-1]
    p0 = 1 + (fw + 1) // 2 - (kh - 1)
    p1 = 1 + (fw - 2) // 2 - (kh - 2)
    a, b = kh - 1 + p0, kh - 2 + p1
    x = upfirdn2d(x, f, up=2, padding=(a, b, a, b), gain=4)
    flipped = derived.cached(weight, "flipped", lambda t: t.flip(2, 3))
    return winograd.conv3x3_frozen(x, flipped, method, padding=0)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    act: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """Modulated convolution followed by the layer's epilogue (noise, bias, activation, clamp).

    Same function as the official modulated_conv2d + bias_act, arranged for speed: for one
    sample, styles and demodulation are folded into the weight (the official "fused" form),
    except when a gradient flows to the styles but not the weight (projection) or, on CPU, when
    the activation is smaller than the weight (4 to 16 px layers); 1x1 convolutions (ToRGB) on
    CPU take a per-sample folded weight at any batch size; otherwise the
    input is scaled by the styles, one ordinary convolution serves the whole batch, and
    demodulation, noise, bias and gain are applied in a single fused pass. The
    activation gain is folded in before the leaky ReLU (valid because the gain is positive).
    """
    batch = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # The official pre-normalisation that keeps fp16 from overflowing.
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    styles = styles.to(torch.float32)
    weight32 = weight.to(torch.float32)
    if act == "lrelu":
        gain = gain * LRELU_GAIN
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}: use 'lrelu' or 'linear'")
    # Per-sample output scale: demodulation coefficients times the gain.
    if demodulate:
        wsq = derived.cached(weight, "square_sums", lambda t: t.to(torch.float32).square().sum(dim=[2, 3]).t())
        scale = (styles.square() @ wsq + 1e-8).rsqrt() * gain
    else:
        scale = torch.full((batch, out_ch), float(gain), device=x.device)
    bias_term = None if bias is None else (bias.to(torch.float32) * gain)
    noise_term = None if noise is None else (noise.to(torch.float32) * gain).reshape(-1, 1, *noise.shape[-2:])
    # Folding the styles into the weight makes the weight depend on the styles, so a backward
    # pass must compute the weight gradient: when only the styles (the code) need one, as in
    # projection and path search, the input-scaled form halves the backward pass.
    codes_only_grad = torch.is_grad_enabled() and styles.requires_grad and not weight.requires_grad
    # Winograd keeps one transformed copy of the (frozen) weight, so it scales the input instead
    # of folding the styles into the weight, at any batch size.
    conv3x3_method = _conv3x3_method(x, weight, up, padding) if up == 1 or resample_filter is not None else None
    on_cpu = x.device.type == "cpu"
    if on_cpu and kh == kw == 1 and up == 1 and padding == 0 and out_ch <= x.shape[2] * x.shape[3]:
        # A 1x1 convolution (ToRGB) with the styles and scale folded into a per-sample weight
        # [batch, out, in]: one batched matrix product, where oneDNN's 1x1 convolution with 3
        # outputs took 0.6 ms for a 128-channel 64 px image and scaling the input was another pass.
        per_sample = weight32.reshape(1, out_ch, in_ch) * (styles.unsqueeze(1) * scale.unsqueeze(2))
        x = _conv1x1(x, per_sample.to(x.dtype))
        if bias_term is not None:
            x = x.add_(bias_term.to(x.dtype).reshape(1, -1, 1, 1))
    elif (batch == 1 and not codes_only_grad and conv3x3_method is None
          and not (on_cpu and x[0].numel() < weight.numel())):
        # (On CPU a small activation, at 4 to 16 px, is cheaper to scale than the weight.)
        base = _conv_weight(weight, x) if x.dtype == torch.float32 else weight32
        w = base * (styles.reshape(1, -1, 1, 1) * scale.reshape(-1, 1, 1, 1))
        b = None if bias_term is None else bias_term.to(x.dtype)
        x = _conv(x, w.to(x.dtype), up, padding, resample_filter, bias=b)
    else:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        if conv3x3_method is not None and up == 2:
            x = conv2d_up2_frozen(x, weight, resample_filter, conv3x3_method)
        elif conv3x3_method is not None:
            x = winograd.conv3x3_frozen(x, weight, conv3x3_method)
        else:
            x = _conv(x, _conv_weight(weight, x), up, padding, resample_filter)
        x = x.mul_(scale.to(x.dtype).reshape(batch, -1, 1, 1))
        if bias_term is not None:
            x = x.add_(bias_term.to(x.dtype).reshape(1, -1, 1, 1))
    if noise_term is not None:
        x = x.add_(noise_term.to(x.dtype))
    if act == "lrelu":
        x = F.leaky_relu_(x, LRELU_SLOPE)
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp)
    return x


def _conv1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """1x1 convolution of x [N, C, H, W] with a per-sample weight [N, O, C], in x's memory layout."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * w, c), weight.transpose(1, 2))
        return y.view(n, h, w, -1).permute(0, 3, 1, 2)
    return torch.bmm(weight, x.reshape(n, c, h * w)).view(n, -1, h, w)


def _conv_weight(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The weight in x's dtype and, for channels-last activations, in channels-last layout, as
    the convolution would otherwise copy it to on every call."""
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return weight.to(x.dtype)
    return derived.cached(weight, f"channels_last_{x.dtype}",
                          lambda t: t.to(x.dtype).contiguous(memory_format=torch.channels_last))


def _conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    up: int,
    padding: int,
    resample_filter: torch.Tensor | None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    if up == 1:
        return F.conv2d(x, weight, bias=bias, padding=padding)
    if up == 2 and resample_filter is not None:
        x = conv2d_up2(x, weight, resample_filter)
        return x if bias is None else x.add_(bias.reshape(1, -1, 1, 1))
    raise ValueError(f"unsupported up factor {up}")


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer (official FullyConnectedLayer)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = derived.cached(self.weight, f"scaled_{x.dtype}", lambda t: t.to(x.dtype) * self.weight_gain)
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def downsample_conv2d(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, padding: int) -> torch.Tensor:
    """Convolution with x2 downsampling, as the official conv2d_resample (down=2).

    FIR first (padding grown by the filter), then a stride-2 convolution; a 1x1 kernel
    downsamples inside the FIR step and convolves after, as the official fast path does.
    """
    fw = f.shape[-1]
    p0 = padding + (fw - 2 + 1) // 2
    p1 = padding + (fw - 2) // 2
    impl = _resample_impl(x)
    if impl == "phase" and weight.shape[-1] > 1 and p0 == p1 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
        w = derived.cached(weight, f"phase_down_{p0}", lambda t: _phase_down_weight(_fold_filter(t, f, 1.0), p0),
                           depends_on=(f,))
        d_lo, d_hi = _phase_down_offsets(weight.shape[-1] + fw - 1, p0)
        return F.conv2d(F.pad(F.pixel_unshuffle(x, 2), [-d_lo, d_hi, -d_lo, d_hi]), w)
    if impl == "composite" and p0 == p1:
        # FIR (a true convolution with f), then a correlation with the weight: one
        # correlation with each kernel fully correlated with f (kept for a frozen weight).
        kernel = derived.cached(weight, "composite_down", lambda t: _fold_filter(t, f, 1.0), depends_on=(f,))
        return F.conv2d(x, kernel, stride=2, padding=p0)
    if weight.shape[-1] == 1:
        x = upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))
        return F.conv2d(x, weight)
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return F.conv2d(x, weight, stride=2)


class Conv2dLayer(nn.Module):
    """Equalised-learning-rate convolution with optional x2 downsampling (official Conv2dLayer)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        if down not in (1, 2):
            raise ValueError(f"unsupported down factor {down}")
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter or [1, 3, 3, 1]))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.down == 2:
            x = downsample_conv2d(x, w.to(x.dtype), self.resample_filter, self.padding)
        else:
            x = F.conv2d(x, w.to(x.dtype), padding=self.padding)
        act_gain = (LRELU_GAIN if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the std of features over groups of samples as extra channels (official layer)."""
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch-stddev groups of {g} need a batch divisible by {g}, got {n}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
