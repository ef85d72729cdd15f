"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3), for wide layers on CPU.

Why: on CPU a StyleGAN2 generator with 256-512 channels spends most of its time in the
stride-1 3x3 convolutions, and PyTorch's oneDNN path computes them directly (9 multiply-adds
per input channel and output pixel) on machines without AVX-512. Winograd's transform does
the same convolution with 36 products per 4x4 output tile instead of 144: the input is cut
into overlapping 6x6 tiles and transformed (B^T d B), multiplied channel-wise with the
transformed filters (G g G^T) as 36 independent matrix products (one batched GEMM), and
transformed back (A^T m A). On 2 cores this halves the time of a 256-channel 64x64 layer.

The transforms are written as small dense matrices (Kronecker products) applied with GEMMs,
and the batch is processed in chunks that stay in cache. The interpolation points are
0, +-1, +-2 and infinity (Lavin and Gray, 2016); in float32 the result differs from direct
convolution by about 1e-5 of its largest value, against 2e-6 for the direct path itself.

PyTorch's CPU builds also carry NNPACK, whose F(6x6, 3x3) kernels for AVX2 and NEON do the
transforms in registers instead of GEMMs: on 2 cores, one image at a time, it takes a third of
the direct time of a 256-channel 64 px layer (24 against 66 ms; this module's F(4x4, 3x3): 35)
and wins at every width from 32 px up, while this module's transform wins for wide layers at
16 px. `method="nnpack"` uses it, image by image (NNPACK's batched mode was slower: 36 ms an
image at batch 16 against 27 in a loop); about 1.2e-5 of the largest value from direct in
float32. NNPACK is a private PyTorch entry point: `nnpack_available()` says whether this build
and CPU have it (and initialises it, which its convolution needs first).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from latentatlas.models import derived

# F(4x4, 3x3): input tiles 6x6, output tiles 4x4.
_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
_TILE, _OUT = 6, 4
# Bytes of transformed input a chunk of the batch may take (about a last-level cache).
CHUNK_BYTES = 8 << 20

_input_transform = torch.kron(torch.tensor(_BT, dtype=torch.float64), torch.tensor(_BT, dtype=torch.float64))  # [36, 36]
_output_transform = torch.kron(torch.tensor(_AT, dtype=torch.float64), torch.tensor(_AT, dtype=torch.float64))  # [16, 36]
_filter_transform = torch.tensor(_G, dtype=torch.float64)  # [6, 3]


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """[O, I, 3, 3] -> [36, O, I]: G g G^T for every filter, computed in float64."""
    g = _filter_transform.to(weight.device)
    u = torch.einsum("ai,oxij,bj->abox", g, weight.to(torch.float64), g)
    return u.reshape(_TILE * _TILE, weight.shape[0], weight.shape[1]).to(weight.dtype)


def cached_weight(weight: torch.Tensor) -> torch.Tensor:
    """transform_weight of a frozen weight, kept on the tensor until it changes in place."""
    return derived.cached(weight, "winograd_f43", transform_weight)


def _transposed(weight: torch.Tensor) -> torch.Tensor:
    """The weight whose padding-1 3x3 convolution is the input gradient of `weight`'s."""
    return transform_weight(weight.flip(2, 3).transpose(0, 1))


def conv3x3_frozen(x: torch.Tensor, weight: torch.Tensor, method: str = "f43", padding: int = 1) -> torch.Tensor:
    """F.conv2d(x, weight, padding=padding) for a weight that takes no gradient, differentiable in x.

    method "f43" is this module's F(4x4, 3x3) (padding 1 only), "nnpack" NNPACK's (padding 0,
    1 or 2; see the module docstring). The input gradient of a 3x3 convolution with padding p
    is again one, with padding 2 - p (the filters flipped and in and out channels swapped),
    so the backward pass runs the same fast convolution
    instead of autograd's way back through the tiling (a scatter-add over overlapping tiles,
    slower than the forward pass) or NNPACK's own backward (which computes a weight gradient).
    """
    if padding not in ((1,) if method == "f43" else (0, 1, 2)):
        raise ValueError(f"conv3x3_frozen: padding {padding} is not supported by method {method!r}")
    if method == "nnpack":
        forward = derived.cached(weight, "nnpack_f32", lambda t: t.to(torch.float32).contiguous())
        backward = derived.cached(weight, "nnpack_f32_transposed",
                                  lambda t: t.to(torch.float32).flip(2, 3).transpose(0, 1).contiguous())
        run = functools.partial(conv3x3_nnpack, padding=padding)
        run_backward = functools.partial(conv3x3_nnpack, padding=2 - padding)
    elif method == "f43":
        forward = cached_weight(weight).to(x.dtype)
        backward = derived.cached(weight, "winograd_f43_transposed", _transposed).to(x.dtype)
        run = run_backward = conv3x3
    else:
        raise ValueError(f"method must be 'f43' or 'nnpack', got {method!r}")
    if not (torch.is_grad_enabled() and x.requires_grad):
        return run(x, forward)
    return _FrozenConv3x3.apply(x, forward, backward, run, run_backward)


class _FrozenConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, forward, backward, run, run_backward):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(backward)
        ctx.run_backward = run_backward
        out = run(x, forward)
        # F(4x4, 3x3) on a 4 px layer returns a view of its last product, and the caller scales
        # the result in place, which autograd forbids on a custom Function's view output.
        return out if out._base is None else out.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (backward,) = ctx.saved_tensors
        return ctx.run_backward(grad.contiguous(), backward), None, None, None, None


@functools.cache
def nnpack_available() -> bool:
    """Whether NNPACK runs here (a CPU with AVX2 or NEON and a build with it); initialises it."""
    try:
        return bool(torch._nnpack_available())
    except (AttributeError, RuntimeError):
        return False


def conv3x3_nnpack(x: torch.Tensor, weight: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """F.conv2d(x, weight, padding=padding) in float32 by NNPACK, one image at a time."""
    if not nnpack_available():
        raise RuntimeError("NNPACK is not available in this PyTorch build or on this CPU: use method 'f43'")
    if x.device.type != "cpu" or x.dtype != torch.float32:
        raise ValueError(f"NNPACK convolves float32 CPU tensors, got {x.dtype} on {x.device}")
    x = x.contiguous()
    images = [torch._nnpack_spatial_convolution(x[i : i + 1], weight, None, [padding, padding], [1, 1]) for i in range(x.shape[0])]
    return images[0] if len(images) == 1 else torch.cat(images)


def conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=1) for a 3x3 weight given as u = transform_weight(weight)."""
    n, c, h, w = x.shape
    per_image = c * _TILE * _TILE * -(-h // _OUT) * -(-w // _OUT) * x.element_size()
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    out = torch.cat([_conv3x3(x[i : i + step], u) for i in range(0, n, step)]) if step < n else _conv3x3(x, u)
    return out if bias is None else out.add_(bias.to(out.dtype).reshape(1, -1, 1, 1))


def _conv3x3(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    th, tw = -(-h // _OUT), -(-w // _OUT)
    # Padding 1 on each side, plus whatever makes the tiles cover the image (cropped at the end).
    p = F.pad(x, [1, 1 + tw * _OUT - w, 1, 1 + th * _OUT - h])
    d = p.unfold(2, _TILE, _OUT).unfold(3, _TILE, _OUT)  # [n, c, th, tw, 6, 6]
    d = d.permute(4, 5, 1, 0, 2, 3).reshape(_TILE * _TILE, -1)  # [36, c * n * th * tw]
    v = (_input_transform.to(x) @ d).view(_TILE * _TILE, c, -1)
    m = torch.bmm(u, v)  # [36, o, n * th * tw]
    o = m.shape[1]
    y = (_output_transform.to(x) @ m.view(_TILE * _TILE, -1)).view(_OUT, _OUT, o, n, th, tw)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, o, th * _OUT, tw * _OUT)
    return y if (th * _OUT, tw * _OUT) == (h, w) else y[:, :, :h, :w]
