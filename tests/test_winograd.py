"""Winograd F(4x4, 3x3) convolution (models/winograd.py) against PyTorch's direct convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentatlas.models import ops, winograd


@pytest.mark.parametrize("shape", [(2, 5, 12, 12), (1, 3, 7, 10), (3, 4, 1, 5), (2, 6, 17, 16)])
def test_matches_direct_convolution_on_any_size(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64)
    w = torch.randn(7, shape[1], 3, 3, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64)
    out = winograd.conv3x3(x, winograd.transform_weight(w), b)
    ref = F.conv2d(x, w, b, padding=1)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-10 * ref.abs().max()  # exact up to rounding in float64


def test_float32_error_chunks_and_input_gradient(monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(5, 16, 20, 20, requires_grad=True)
    w = torch.randn(8, 16, 3, 3) / 12
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one image a chunk
    out = winograd.conv3x3(x, winograd.transform_weight(w))
    ref = F.conv2d(x, w, padding=1)
    assert (out - ref).abs().max() < 2e-5 * ref.abs().max()
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(out, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    assert (ga - gb).abs().max() < 2e-5 * gb.abs().max()


def test_cached_weight_follows_in_place_changes():
    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3), requires_grad=False)
    u = winograd.cached_weight(w)
    assert winograd.cached_weight(w) is u
    with torch.no_grad():
        w.mul_(2)
    u2 = winograd.cached_weight(w)
    assert u2 is not u and torch.allclose(u2, 2 * u)


def test_modulated_conv_picks_winograd_only_where_it_pays(monkeypatch):
    calls = []
    real = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(2)
    styles = torch.randn(2, 256)

    def run(channels: int, size: int, impl: str, weight_grad: bool = False) -> torch.Tensor:
        monkeypatch.setattr(ops, "CONV3X3_IMPL", impl)
        x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(3))
        w = torch.randn(8, channels, 3, 3, generator=torch.Generator().manual_seed(4)).requires_grad_(weight_grad)
        return ops.modulated_conv2d(x, w, styles[:, :channels], padding=1)

    with torch.no_grad():
        wide = run(256, 16, "auto")
        assert calls and torch.allclose(wide, run(256, 16, "direct"), atol=1e-4)
        calls.clear()
        run(256, 8, "auto")  # too small: direct
        run(64, 32, "auto")  # too narrow: direct
        assert not calls
        run(64, 8, "winograd")  # forced
        assert calls
    calls.clear()
    run(256, 16, "auto", weight_grad=True)  # training: the direct path computes the weight gradient
    assert not calls


def test_frozen_conv_backward_is_the_transposed_convolution():
    """conv3x3_frozen's own backward (a Winograd convolution with flipped, transposed filters)
    gives autograd's input gradient of the direct convolution."""
    torch.manual_seed(5)
    x = torch.randn(2, 6, 11, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    g = torch.randn(2, 4, 11, 9, dtype=torch.float64)
    out = winograd.conv3x3_frozen(x, w)
    ref = F.conv2d(x, w, padding=1)
    assert (out - ref).abs().max() < 1e-10 * ref.abs().max()
    (ga,) = torch.autograd.grad(out, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    assert (ga - gb).abs().max() < 1e-10 * gb.abs().max()


needs_nnpack = pytest.mark.skipif(not winograd.nnpack_available(), reason="this PyTorch build or CPU has no NNPACK")


@needs_nnpack
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_nnpack_convolution_and_its_backward_match_direct(padding):
    torch.manual_seed(6)
    x = torch.randn(3, 10, 13, 9, requires_grad=True)
    w = torch.randn(7, 10, 3, 3) / 10
    out = winograd.conv3x3_frozen(x, w, "nnpack", padding=padding)
    ref = F.conv2d(x, w, padding=padding)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 2e-5 * ref.abs().max()
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(out, x, g)
    (gb,) = torch.autograd.grad(ref, x, g)
    assert (ga - gb).abs().max() < 2e-5 * gb.abs().max()
    with pytest.raises(ValueError, match="float32"):
        winograd.conv3x3_nnpack(x.detach().double(), w.double())
    with pytest.raises(ValueError, match="padding 0"):
        winograd.conv3x3_frozen(x, w, "f43", padding=0)


@needs_nnpack
def test_up_convolution_by_upsampling_first_matches_the_official_order(monkeypatch):
    """FIR up-sampling, then a stride-1 convolution with the flipped kernel, equals the official
    transposed convolution followed by the FIR filter (ops.conv2d_up2), values and input gradient."""
    monkeypatch.setattr(ops, "RESAMPLE_IMPL", "fir")
    f = ops.setup_filter()
    for shape in [(2, 8, 16, 16), (1, 5, 7, 5)]:
        x = torch.randn(*shape, requires_grad=True, generator=torch.Generator().manual_seed(7))
        w = torch.randn(6, shape[1], 3, 3, generator=torch.Generator().manual_seed(8)) / 5
        ref = ops.conv2d_up2(x, w, f)
        out = ops.conv2d_up2_frozen(x, w, f)
        assert out.shape == ref.shape == (shape[0], 6, 2 * shape[2], 2 * shape[3])
        assert (out - ref).abs().max() < 2e-5 * ref.abs().max()
        g = torch.randn_like(ref)
        (ga,) = torch.autograd.grad(out, x, g)
        (gb,) = torch.autograd.grad(ref, x, g)
        assert (ga - gb).abs().max() < 2e-5 * gb.abs().max()


@needs_nnpack
def test_auto_takes_nnpack_where_it_pays(monkeypatch):
    w = torch.randn(8, 16, 3, 3)
    wide = torch.randn(8, 256, 3, 3)
    pick = ops._conv3x3_method
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert pick(torch.randn(1, 16, 32, 32), w, 1, 1) == "nnpack"
    assert pick(torch.randn(1, 16, 16, 16), w, 1, 1) is None  # narrow and small: direct
    assert pick(torch.randn(1, 256, 32, 32), wide, 2, 1) == "nnpack"  # wide, 64 px output
    assert pick(torch.randn(1, 16, 32, 32), w, 2, 1) is None  # narrow: transposed conv
    assert pick(torch.randn(1, 256, 16, 16), wide, 2, 1) is None  # 32 px output: transposed conv
    assert pick(torch.randn(1, 16, 32, 32, dtype=torch.float64), w.double(), 1, 1) is None
    # Spinning OpenMP threads (the default policy) and NNPACK's pool slow each other (ops._nnpack_pays).
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert pick(torch.randn(1, 16, 32, 32), w, 1, 1) is None
    assert pick(torch.randn(16, 16, 32, 32), w, 1, 1) is None

    # Forced, NNPACK takes every CPU float32 layer and leaves anything else to the direct path.
    monkeypatch.setattr(ops, "CONV3X3_IMPL", "nnpack")
    assert pick(torch.randn(1, 16, 8, 8), w, 1, 1) == "nnpack"
    assert pick(torch.randn(1, 16, 8, 8), w, 2, 1) == "nnpack"
    assert pick(torch.randn(1, 16, 8, 8, dtype=torch.float64), w.double(), 1, 1) is None
    # Under autocast the direct path's convolutions are cast (bf16); NNPACK and Winograd take
    # float32 only, so they step aside (an up-sampling layer's FIR output is already bf16 there).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pick(torch.randn(1, 16, 8, 8), w, 1, 1) is None and pick(torch.randn(1, 16, 8, 8), w, 2, 1) is None
        x, styles, f = torch.randn(1, 16, 8, 8), torch.randn(1, 16), torch.tensor([1.0, 3.0, 3.0, 1.0])
        y = ops.modulated_conv2d(x, w, styles, up=2, padding=1, resample_filter=torch.outer(f, f) / 64)
    # ...and the direct path computes the float32 layer to bf16's precision (8 bits of mantissa).
    ref = ops.modulated_conv2d(x, w, styles, up=2, padding=1, resample_filter=torch.outer(f, f) / 64)
    assert y.shape == ref.shape == (1, 8, 16, 16) and y.dtype == torch.bfloat16 and ref.dtype == torch.float32
    err = (y.float() - ref).abs().max() / ref.abs().max()
    assert err < 3e-2, err  # about 0.008


@pytest.mark.parametrize("impl", ["winograd", "nnpack"])
def test_forced_fast_convolutions_take_code_gradients_on_every_layer(monkeypatch, tiny_generator, impl):
    # On a 4 px layer F(4x4, 3x3) returned a view, which the modulated convolution then scaled
    # in place: autograd refused it in projection. Every layer forced through the method here.
    if impl == "nnpack" and not winograd.nnpack_available():
        pytest.skip("no NNPACK in this build")
    g = tiny_generator.requires_grad_(False)
    ws = g.mapping(torch.randn(1, g.z_dim)).detach()
    w_ref = ws.clone().requires_grad_(True)
    g.synthesis(w_ref, noise_mode="const").square().sum().backward()
    monkeypatch.setattr(ops, "CONV3X3_IMPL", impl)
    w = ws.clone().requires_grad_(True)
    g.synthesis(w, noise_mode="const").square().sum().backward()
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-3, atol=1e-4)
