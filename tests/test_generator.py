import pytest
import torch

from latentatlas.io.errors import UserError
from latentatlas.models.ops import upsample2d, setup_filter
from latentatlas.models.stylegan2 import Generator, GeneratorConfig
from conftest import randomize, tiny_config


def test_config_f_has_official_names_and_sizes():
    g = Generator(GeneratorConfig())  # 1024 px config-f
    sd = g.state_dict()
    assert len(sd) == 182
    assert sum(p.numel() for p in g.parameters()) == 30_370_060
    assert g.num_ws == 18
    for name in ("synthesis.b4.const", "synthesis.b1024.torgb.affine.bias", "synthesis.b64.conv0.noise_const",
                 "synthesis.b8.resample_filter", "synthesis.b8.conv0.resample_filter", "mapping.fc7.weight", "mapping.w_avg"):
        assert name in sd
    assert Generator(GeneratorConfig(img_resolution=256, channel_max=32, channel_base=1024)).num_ws == 14


def test_batch_matches_single_images(tiny_generator):
    # The batch-1 path folds styles into the weights; the batch path scales activations.
    z = torch.randn(4, 16)
    with torch.no_grad():
        batch = tiny_generator(z)
        single = torch.cat([tiny_generator(z[i : i + 1]) for i in range(4)])
    assert batch.shape == (4, 3, 16, 16)
    assert torch.allclose(batch, single, atol=1e-5)


def test_code_gradient_is_the_same_on_both_batch1_paths(tiny_generator):
    # With frozen weights a batch-1 backward takes the input-scaled path (no weight gradient);
    # with trainable weights it takes the folded one. Images and code gradients must agree.
    ws = tiny_generator.mapping(torch.randn(1, 16), None).detach()

    def image_and_grad(train_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:
        tiny_generator.requires_grad_(train_weights)
        w = ws.clone().requires_grad_(True)
        img = tiny_generator.synthesis(w)
        (img * torch.linspace(-1, 1, img.numel()).reshape(img.shape)).sum().backward()
        return img.detach(), w.grad

    img_scaled, grad_scaled = image_and_grad(False)
    img_folded, grad_folded = image_and_grad(True)
    assert torch.allclose(img_scaled, img_folded, atol=1e-5)
    assert grad_folded.abs().max() > 0
    assert torch.allclose(grad_scaled, grad_folded, atol=1e-5, rtol=1e-4)


def test_noise_modes(tiny_generator):
    z = torch.randn(2, 16)
    with torch.no_grad():
        const1, const2 = tiny_generator(z, noise_mode="const"), tiny_generator(z, noise_mode="const")
        none = tiny_generator(z, noise_mode="none")
        r1, r2 = tiny_generator(z, noise_mode="random"), tiny_generator(z, noise_mode="random")
    assert torch.equal(const1, const2)
    assert not torch.allclose(const1, none, atol=1e-4)
    assert not torch.allclose(r1, r2, atol=1e-4)
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_generator(z, noise_mode="loud")


def test_truncation_psi_zero_gives_the_average_image(tiny_generator):
    z = torch.randn(3, 16)
    with torch.no_grad():
        ws = tiny_generator.mapping(z, truncation_psi=0.0)
        img = tiny_generator(z, truncation_psi=0.0)
        cut = tiny_generator.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
        full = tiny_generator.mapping(z)
    assert torch.allclose(ws, tiny_generator.mapping.w_avg.expand_as(ws))
    assert torch.allclose(img[0], img[1], atol=1e-6) and torch.allclose(img[0], img[2], atol=1e-6)
    w_avg = tiny_generator.mapping.w_avg
    assert torch.allclose(cut[:, :2], w_avg + 0.5 * (full[:, :2] - w_avg), atol=1e-6)
    assert torch.equal(cut[:, 2:], full[:, 2:])


def test_conditional_generator_needs_labels():
    g = randomize(Generator(tiny_config(c_dim=3)))
    z = torch.randn(2, 16)
    with pytest.raises(UserError, match=r"conditional \(3 classes\).*generate --class K"):
        g(z)
    c = torch.eye(3)[:2]
    with torch.no_grad():
        a, b = g(z, c), g(z, torch.eye(3)[1:])
    assert not torch.allclose(a, b)


def _layer_peaks(g, z):
    """The largest |output| of every synthesis layer and ToRGB layer, and the bound its clamp sets
    (conv_clamp * gain for a synthesis layer, conv_clamp for ToRGB), keyed by module name."""
    from latentatlas.models.stylegan2 import SynthesisLayer, ToRGBLayer

    peaks, handles = {}, []

    def hook(name):
        def record(module, args, kwargs, out):
            gain = kwargs.get("gain", args[3] if len(args) > 3 else 1.0) if isinstance(module, SynthesisLayer) else 1.0
            bound = module.conv_clamp * gain if module.conv_clamp is not None else None
            peaks[name] = (out.abs().max().item(), bound)
        return record

    for name, m in g.synthesis.named_modules():
        if isinstance(m, (SynthesisLayer, ToRGBLayer)):
            handles.append(m.register_forward_hook(hook(name), with_kwargs=True))
    try:
        with torch.no_grad():
            img = g(z)
    finally:
        for h in handles:
            h.remove()
    return peaks, img


def test_conv_clamp_bounds_every_layer():
    g = randomize(Generator(tiny_config(conv_clamp=0.05)))
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)) * 10
    peaks, img = _layer_peaks(g, z)
    # Every synthesis layer (b4.conv1, b8.conv0, ... b16.conv1) and every ToRGB (skip: one per block).
    assert len(peaks) == 5 + 3, sorted(peaks)
    for name, (peak, bound) in peaks.items():
        assert bound == 0.05 and peak <= bound + 1e-6, (name, peak)
    # Final image = sum of clamped torgb outputs upsampled with gain-preserving filters.
    assert img.abs().max() <= 0.05 * 3 + 1e-5
    # The same weights without a clamp go past it in every layer: the bound above is the clamp's work.
    free = Generator(tiny_config())
    free.load_state_dict(g.state_dict())
    free_peaks, free_img = _layer_peaks(free.eval(), z)
    assert set(free_peaks) == set(peaks)
    for name, (peak, bound) in free_peaks.items():
        assert bound is None and peak > 0.05, (name, peak)
    assert free_img.abs().max() > 0.05 * 3


def test_upsample_preserves_constants():
    x = torch.full((1, 2, 8, 8), 3.0)
    y = upsample2d(x, setup_filter())
    assert y.shape == (1, 2, 16, 16)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=48)
    with pytest.raises(ValueError, match="architecture"):
        GeneratorConfig(architecture="resnet")
    with pytest.raises(ValueError, match="no channels"):
        Generator(GeneratorConfig(img_resolution=64, channel_base=32, channel_max=8))
    g = Generator(tiny_config())
    with pytest.raises(ValueError, match="ws must have shape"):
        g.synthesis(torch.zeros(1, 3, 16))


def test_explicit_noise_maps_override_noise_mode(tiny_generator):
    ws = tiny_generator.mapping(torch.randn(2, 16))
    layers = tiny_generator.synthesis.noise_layers()
    assert [n for n, _ in layers][:3] == ["b4.conv1", "b8.conv0", "b8.conv1"]
    const_maps = [layer.noise_const[None, None] for _, layer in layers]
    with torch.no_grad():
        a = tiny_generator.synthesis(ws, noise_mode="const")
        b = tiny_generator.synthesis(ws, noise_mode="none", noise_maps=const_maps)
        per_image = [torch.randn(2, 1, l.resolution, l.resolution) for _, l in layers]
        c = tiny_generator.synthesis(ws, noise_maps=per_image)
        c1 = tiny_generator.synthesis(ws[1:], noise_maps=[m[1:] for m in per_image])
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4) and torch.allclose(c[1:], c1, atol=1e-5)
    with pytest.raises(ValueError, match="noise maps"):
        tiny_generator.synthesis(ws, noise_maps=per_image[:-1])


def test_frozen_generators_trace_as_one_graph_for_torch_compile(tiny_generator):
    """torch.compile fuses what it sees in one graph; every break leaves the pieces eager and makes
    each shared helper recompile per layer shape until dynamo's limit. The weight cache
    (is_inference) and the CPU FIR matrices (taps read as floats) broke a 64 px StyleGAN2 pass 83
    times; nothing in a frozen pass may break it."""
    import torch._dynamo as dynamo

    from latentatlas.models.stylemap import Encoder, Generator as StyleMapGenerator, StyleMapConfig

    g = tiny_generator.eval().requires_grad_(False)
    cfg = StyleMapConfig(resolution=16, latent_spatial_size=4, style_dim=8, mapping_layers=2, channel_base=64, channel_max=16)
    sg, enc = StyleMapGenerator(cfg).eval().requires_grad_(False), Encoder(cfg).eval().requires_grad_(False)
    dynamo.reset()
    with torch.no_grad():
        for fn, x in ((lambda z: g(z, noise_mode="const"), torch.randn(2, g.z_dim)),
                      (lambda img: sg(enc(img)), torch.rand(1, 3, 16, 16) * 2 - 1)):
            explained = dynamo.explain(fn)(x)
            assert explained.graph_break_count == 0, [str(r.reason).split("\n")[0] for r in explained.break_reasons]
