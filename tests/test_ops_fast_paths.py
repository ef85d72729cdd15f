"""CPU fast paths of models/ops.py against the plain formulation they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from latentatlas.models import ops
from latentatlas.models.stylegan2 import Generator


def _depthwise_upfirdn2d(monkeypatch, *args, **kwargs):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(ops, "FIR_MATMUL_MAX_SIDE", 0)
    monkeypatch.setattr(ops, "FIR_MATMUL_MAX_SIDE_CHANNELS_LAST", 0)
    out = ops.upfirdn2d(*args, **kwargs)
    monkeypatch.undo()
    return out


# An asymmetric separable filter catches a flipped axis; negative padding crops.
FILTERS = {"official": ops.setup_filter([1, 3, 3, 1]), "asymmetric": torch.outer(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([3.0, 1.0]))}


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("name", list(FILTERS))
@pytest.mark.parametrize("up,down,padding,gain", [
    (1, 1, (1, 1, 1, 1), 4.0), (2, 1, (2, 1, 2, 1), 4.0), (2, 1, (3, 3, 0, 2), 1.0),
    (1, 2, (1, 2, 0, 1), 1.0), (2, 2, (-1, 2, 1, -2), 2.0), (1, 1, (-1, 0, 0, -1), 1.0),
])
def test_separable_fir_as_matrix_products_matches_depthwise_convolution(monkeypatch, layout, name, up, down, padding, gain):
    f = FILTERS[name]
    x = torch.randn(2, 3, 9, 12, dtype=torch.float64)
    if layout == "channels_last":  # the generators' convolutions return this layout; filtered in it
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    assert ops._separable_fir_matrices(x, f, up, down, padding, gain) is not None  # the fast path runs
    fast = ops.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain)
    ref = _depthwise_upfirdn2d(monkeypatch, x, f, up=up, down=down, padding=padding, gain=gain)
    assert fast.shape == ref.shape and fast.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert (fast - ref).abs().max() < 1e-12 * ref.abs().max()
    g = torch.randn_like(ref)
    (g_fast,) = torch.autograd.grad(fast, x, g)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    assert (g_fast - g_ref).abs().max() < 1e-12 * g_ref.abs().max()


def test_fir_falls_back_to_the_convolution_where_matrices_do_not_fit():
    x = torch.randn(1, 2, 40, 40)
    non_separable = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert ops._separable_fir_matrices(x, non_separable, 1, 1, (0, 0, 0, 0), 1.0) is None
    assert ops._separable_fir_matrices(x, ops.setup_filter(), 2, 1, (2, 1, 2, 1), 4.0) is None  # 80 px > 64
    channels_last = x[..., :32, :32].contiguous(memory_format=torch.channels_last)  # > 24 px in that layout
    assert ops._separable_fir_matrices(channels_last, ops.setup_filter(), 1, 1, (1, 1, 1, 1), 1.0) is None
    assert ops._separable_fir_matrices(channels_last.contiguous(), ops.setup_filter(), 1, 1, (1, 1, 1, 1), 1.0) is not None
    small = channels_last[..., :16, :16].contiguous(memory_format=torch.channels_last)
    assert ops._separable_fir_matrices(small, ops.setup_filter(), 1, 1, (1, 1, 1, 1), 1.0) is not None
    y = ops.upfirdn2d(x, non_separable, padding=(1, 0, 1, 0))  # the depthwise path still answers
    assert torch.allclose(y[0, 0, 1:, 1:], x[0, 0, 1:, 1:] + x[0, 0, :-1, :-1])


def test_fir_and_weight_caches_work_on_inference_mode_tensors(tiny_generator):
    x = torch.randn(1, 3, 8, 8)
    ref = ops.upfirdn2d(x, ops.setup_filter([1, 3, 3, 1]) / 4, up=2, padding=(2, 1, 2, 1), gain=4)
    with torch.inference_mode():
        f = ops.setup_filter([1, 3, 3, 1]) / 4  # an inference tensor: no version counter
        assert torch.equal(ops.upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4), ref)
        weight = torch.randn(4, 3, 3, 3)
        assert torch.equal(ops.derived.cached(weight, "t", lambda t: t * 2), weight * 2)
    ws = tiny_generator.mapping(torch.randn(2, tiny_generator.z_dim))
    with torch.no_grad():
        img = tiny_generator.synthesis(ws, noise_mode="const")
    with torch.inference_mode():
        assert torch.equal(tiny_generator.synthesis(ws, noise_mode="const"), img)
    # What inference mode cached (FIR matrices, derived weights) serves a gradient pass after it,
    # as when the web app generates and then projects in one process: the same gradient as a copy
    # of the generator (its own weight tensors: nothing derived cached) gives from a clean start.
    fresh = Generator(tiny_generator.config)
    fresh.load_state_dict(tiny_generator.state_dict())
    fresh.eval().requires_grad_(False)
    ops._fir_matrix.cache_clear()
    w_ref = ws.detach().clone().requires_grad_(True)
    fresh.synthesis(w_ref, noise_mode="const").square().sum().backward()
    ops._fir_matrix.cache_clear()
    tiny_generator.requires_grad_(False)
    with torch.inference_mode():
        tiny_generator.synthesis(ws, noise_mode="const")
    w = ws.detach().clone().requires_grad_(True)
    tiny_generator.synthesis(w, noise_mode="const").square().sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torgb_1x1_modulated_conv_matches_the_official_formula(layout):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 8, 8)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(3, 16, 1, 1)
    bias = torch.randn(3)
    styles = torch.randn(3, 16, requires_grad=True)
    out = ops.modulated_conv2d(x, weight, styles, demodulate=False, bias=bias, clamp=2.0)
    # Official: the styles scale the weight per sample, a grouped convolution, bias_act, clamp.
    w = weight[None] * styles[:, None, :, None, None]
    ref = F.conv2d(x.reshape(1, -1, 8, 8), w.reshape(-1, 16, 1, 1), groups=3).reshape(3, 3, 8, 8)
    ref = (ref + bias.reshape(1, -1, 1, 1)).clamp(-2.0, 2.0)
    assert (out - ref).abs().max() < 1e-5
    g = torch.randn_like(ref)
    (g_out,) = torch.autograd.grad(out, styles, g)
    (g_ref,) = torch.autograd.grad(ref, styles, g)
    assert (g_out - g_ref).abs().max() < 1e-4 * g_ref.abs().max()


def test_derived_values_follow_in_place_changes_of_their_dependencies():
    weight, other = torch.randn(4, 3), torch.randn(4, 3)
    both = ops.derived.cached(weight, "sum", lambda w: w + other, depends_on=(other,))
    assert ops.derived.cached(weight, "sum", lambda w: w + other, depends_on=(other,)) is both  # cached
    with torch.no_grad():
        other.mul_(2)  # only the dependency changes
    assert torch.equal(ops.derived.cached(weight, "sum", lambda w: w + other, depends_on=(other,)), weight + other)
    # A dependency that needs a gradient is never cached over: the value stays differentiable.
    trainable = torch.randn(4, 3, requires_grad=True)
    ops.derived.cached(weight, "grad", lambda w: w * trainable, depends_on=(trainable,)).sum().backward()
    assert trainable.grad is not None and torch.equal(trainable.grad, weight)  # d sum(w * t) / dt = w
    # Kept in a no_grad pass over a trainable dependency, the value holds no graph: frozen
    # afterwards, a backward through it (to an input) works, where a kept graph had been freed.
    with torch.no_grad():
        ops.derived.cached(weight, "nograd", lambda w: w * trainable, depends_on=(trainable,))
    trainable.requires_grad_(False)
    x = torch.randn(3, requires_grad=True)
    for _ in range(2):
        (ops.derived.cached(weight, "nograd", lambda w: w * trainable, depends_on=(trainable,)) @ x).sum().backward()
    torch.testing.assert_close(x.grad, 2 * (weight * trainable).sum(0))  # d sum(v @ x) / dx, accumulated twice


def test_a_dependency_replaced_by_another_tensor_replaces_the_value_instead_of_adding_one():
    weight = torch.randn(4, 3)
    for scale in (1.0, 2.0, 3.0):  # a fresh tensor each call, as a filter computed per call would be
        f = torch.full((3,), scale)
        assert torch.equal(ops.derived.cached(weight, "scaled", lambda w: w * f, depends_on=(f,)), weight * scale)
    assert [k for k in weight._latentatlas_derived if k != "_key"] == ["scaled"]


@pytest.mark.parametrize("impl", ["composite", "phase"])
@pytest.mark.parametrize("k", [1, 3])
def test_every_resampling_implementation_computes_the_official_fir_arrangement(monkeypatch, impl, k):
    """conv2d_up2 and downsample_conv2d with the filter folded into the weight (a transposed or
    strided convolution, or the phase form's stride-1 convolution with pixel_(un)shuffle) equal
    the separate FIR pass, in value and in the gradients of input and weight; a frozen weight's
    folded kernel is kept and reused."""
    torch.manual_seed(0)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = torch.randn(2, 5, 6, 6, dtype=torch.float64, requires_grad=True)

    def run(name: str, fn):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(ops, "RESAMPLE_IMPL", name)
        w = torch.randn(7, 5, k, k, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
        y = fn(x, w)
        gx, gw = torch.autograd.grad(y, (x, w), torch.ones_like(y) + y.detach())
        return y.detach(), gx, gw

    cases = [lambda x, w: ops.downsample_conv2d(x, w, f, padding=k // 2)]
    if k == 3:  # the up-sampling 3x3 convolution (1x1 up-sampling is the skip's own path)
        cases.append(lambda x, w: ops.conv2d_up2(x, w, f))
    for fn in cases:
        ref, got = run("fir", fn), run(impl, fn)
        assert ref[0].shape == got[0].shape
        for a, b in zip(ref, got):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    frozen = torch.randn(7, 5, 3, 3, dtype=torch.float64)
    monkeypatch.setattr(ops, "RESAMPLE_IMPL", impl)
    with torch.no_grad():
        ops.conv2d_up2(x, frozen, f)
        kept = dict(frozen._latentatlas_derived)
        ops.conv2d_up2(x, frozen, f)
    assert len(kept) == 2 and all(frozen._latentatlas_derived[n] is v for n, v in kept.items())
