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
