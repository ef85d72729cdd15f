"""StyleMapGAN: shapes, spatial locality, local editing, training and resume, files, CLI."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.editing.local import check_mask, grow_mask, local_edit, region_or_file_mask, resize_mask, transplant
from latentatlas.inversion.encoder import encode, refine
from latentatlas.io.checkpoints import load_stylemap_any, load_stylemap_model, save_stylemap_model
from latentatlas.io.errors import UserError
from latentatlas.io.images import to_uint8
from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig
from latentatlas.training.stylemap import STATE_FILE, StyleMapTrainConfig, StyleMapTrainer, train

TINY64 = dict(resolution=64, style_dim=8, mapping_layers=2, channel_base=256, channel_max=16)
TINY_TRAIN = dict(resolution=16, batch=4, latent_spatial_size=4, style_dim=8, mapping_layers=2, channel_base=128,
                  channel_max=16, perceptual="none", snapshot_kimg=0.004, sample_kimg=0.008)


def randomized(cfg: StyleMapConfig, seed: int = 0) -> tuple[Generator, Encoder]:
    """Generator and encoder with random non-default biases (official init leaves them 0 / 1)."""
    torch.manual_seed(seed)
    g, e = Generator(cfg), Encoder(cfg)
    with torch.no_grad():
        for m in (g, e):
            for name, p in m.named_parameters():
                if name.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
    return g.eval().requires_grad_(False), e.eval().requires_grad_(False)


@pytest.mark.parametrize("s", [8, 4])
def test_shapes_at_64px(s):
    cfg = StyleMapConfig(latent_spatial_size=s, **TINY64)
    g, e = randomized(cfg)
    code = g.mapping(torch.randn(2, 8))
    assert code.shape == (2, 8, s, s)
    sizes = [m.shape[-1] for m in g.stylemaps(code)]
    res = [s * 2**i for i in range(int(np.log2(64 // s)) + 1)]
    assert sizes == [r for r in res for _ in range(2)] and len(sizes) == g.num_stylemaps
    img = g(code)
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()
    assert e(img).shape == (2, 8, s, s)
    with pytest.raises(ValueError, match="power of two"):
        StyleMapConfig(latent_spatial_size=6, **TINY64)
    with pytest.raises(ValueError, match="stylemap must have shape"):
        g(torch.zeros(1, 8, 2 * s, 2 * s))


def test_inference_mode_gives_the_no_grad_images():
    """The CPU fast paths key caches by tensor version; tensors made under inference_mode have
    none (a filter built per call there broke encode + generate once)."""
    g, e = randomized(StyleMapConfig(latent_spatial_size=8, **TINY64))
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = g(e(x))
    with torch.inference_mode():
        out = g(e(x))
    assert torch.equal(out, ref)


def test_parallel_layer_norm_equals_the_fused_one(monkeypatch):
    """The var_mean form (taken on CUDA at small batches, where F.layer_norm runs one thread
    block per image) computes the same normalisation, gradient and images."""
    from latentatlas.models import stylemap

    x = (torch.randn(3, 16, 12, 12) * 3 + 1).requires_grad_(True)
    fused = torch.nn.functional.layer_norm(x, x.shape[1:])
    monkeypatch.setattr(stylemap, "LAYER_NORM_IMPL", "auto")
    assert torch.equal(stylemap.layer_norm_chw(x), fused)  # auto is fused on CPU
    monkeypatch.setattr(stylemap, "LAYER_NORM_IMPL", "parallel")
    parallel = stylemap.layer_norm_chw(x)
    torch.testing.assert_close(parallel, fused, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(x)
    (g_fused,) = torch.autograd.grad((fused * w).sum(), x)
    (g_parallel,) = torch.autograd.grad((parallel * w).sum(), x)
    torch.testing.assert_close(g_parallel, g_fused, atol=1e-5, rtol=1e-4)

    g, e = randomized(StyleMapConfig(latent_spatial_size=8, **TINY64))
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out_parallel = g(e(img))
        monkeypatch.setattr(stylemap, "LAYER_NORM_IMPL", "fused")
        out_fused = g(e(img))
    torch.testing.assert_close(out_parallel, out_fused, atol=1e-4, rtol=0)
    monkeypatch.setattr(stylemap, "LAYER_NORM_IMPL", "fast")
    with pytest.raises(ValueError, match="LAYER_NORM_IMPL"):
        stylemap.layer_norm_chw(x)


@pytest.mark.parametrize("impl", ["composite", "phase"])
def test_every_resampling_implementation_gives_the_same_images(monkeypatch, impl):
    """Encode + generate with the FIR filter folded into the weights (ops.RESAMPLE_IMPL: CUDA's
    default, and the phase form) equals the official separate FIR pass, and again when the folded
    kernels come from the frozen weights' cache."""
    from latentatlas.models import ops

    g, e = randomized(StyleMapConfig(latent_spatial_size=8, **TINY64))
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        monkeypatch.setattr(ops, "RESAMPLE_IMPL", "fir")
        ref = g(e(img))
        monkeypatch.setattr(ops, "RESAMPLE_IMPL", impl)
        first, again = g(e(img)), g(e(img))
    torch.testing.assert_close(first, ref, atol=1e-4, rtol=0)
    assert torch.equal(again, first)


def test_changing_one_region_of_the_stylemap_changes_mostly_that_region_of_the_image():
    g, _ = randomized(StyleMapConfig(latent_spatial_size=8, **TINY64))
    w = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(1)))
    d = w.clone()
    d[:, :, :2, :2] += 2 * torch.randn(1, 8, 2, 2, generator=torch.Generator().manual_seed(2))  # pixels 0..15
    change = (g(d) - g(w)).square().sum(1)[0]
    total = change.sum()
    assert total > 0
    assert change[:32, :32].sum() / total > 0.6  # the quadrant is a quarter of the image
    assert change[32:, 32:].sum() / total < 0.1  # LayerNorm statistics are global: a little leaks everywhere


def test_local_edit_zero_and_one_masks_give_source_and_reference_exactly():
    g, _ = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    src = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(3)))
    ref = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(4)))
    zeros, ones = torch.zeros(64, 64), torch.ones(64, 64)
    img, code = local_edit(g, src, ref, zeros)
    assert torch.equal(code, src) and torch.equal(img, g(src))
    img, code = local_edit(g, src, ref, ones)
    assert torch.equal(code, ref) and torch.equal(img, g(ref))
    img, layers = local_edit(g, src, ref, ones, per_layer=True)
    assert all(torch.equal(a, b) for a, b in zip(layers, g.stylemaps(ref)))
    _, layers = local_edit(g, src, ref, zeros, per_layer=True)
    assert all(torch.equal(a, b) for a, b in zip(layers, g.stylemaps(src)))
    # Half mask: the left half of the stylemap from the reference, the right half from the source.
    half = torch.zeros(64, 64)
    half[:, :32] = 1
    _, code = local_edit(g, src, ref, half)
    assert torch.equal(code[..., :2], ref[..., :2]) and torch.equal(code[..., 2:], src[..., 2:])
    # Transplanting the left half 16 px to the right: the reference's cells land one cell over.
    _, layers = transplant(g, src, ref, half, shift=(16, 0))
    r0, s0 = g.stylemaps(ref)[0], g.stylemaps(src)[0]
    assert torch.equal(layers[0][..., 1:3], r0[..., 0:2]) and torch.equal(layers[0][..., 0], s0[..., 0])
    assert torch.equal(layers[0][..., 3], s0[..., 3])
    assert resize_mask(half[None, None], 4).tolist() == [[[[1.0, 1.0, 0.0, 0.0]] * 4]]


def test_bad_inputs_are_user_errors():
    g, e = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    with pytest.raises(UserError, match="model takes 64x64"):
        encode(e, torch.zeros(1, 3, 32, 32))
    with pytest.raises(UserError, match="the mask is 32x32"):
        check_mask(torch.zeros(32, 32), 64)
    for bad in (torch.full((64, 64), 2.0), torch.full((64, 64), float("nan"))):
        with pytest.raises(UserError, match=r"finite and lie in \[0, 1\]"):
            check_mask(bad, 64)


def test_refine_lowers_the_reconstruction_error_and_leaves_the_generator_alone():
    g, e = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    g.requires_grad_(True)  # refine must freeze it for the search and give the flags back
    torch.manual_seed(1)
    with torch.no_grad():
        truth = g.mapping(torch.randn(3, g.z_dim))
        targets = g(truth)
    start = truth + 0.5 * torch.randn_like(truth)
    before = [p.clone() for p in g.parameters()]
    refined = refine(g, start, targets, steps=30, lr=0.05, batch=2)  # two batches: 2 + 1
    with torch.no_grad():
        err_start = (g(start) - targets).square().mean((1, 2, 3))
        err_refined = (g(refined) - targets).square().mean((1, 2, 3))
    assert refined.shape == start.shape and not refined.requires_grad
    assert (err_refined < 0.5 * err_start).all(), (err_start, err_refined)
    assert all(p.requires_grad for p in g.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, g.parameters()))
    assert torch.equal(refine(g, start, targets, steps=0), start)
    seen = []  # a perceptual distance joins the MSE: per image, on the synthesised images against the targets
    refine(g, start, targets, steps=2, perceptual=lambda a, b: seen.append((a.shape, torch.equal(b, targets))) or (a - b).abs().mean((1, 2, 3)))
    assert seen == [(targets.shape, True)] * 2
    with pytest.raises(UserError, match="2 stylemaps for 3 images"):
        refine(g, start[:2], targets)


def test_grow_mask_takes_every_pixel_within_the_margin():
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 5, 7] = 1
    mask[0, 0, 0, 15] = 0.5
    grown = grow_mask(mask, 2)
    assert grown[0, 0, 3:8, 5:10].eq(1).all() and grown[0, 0, 0:3, 13:16].eq(0.5).all()
    assert float(grown.sum()) == 25 + 0.5 * 9  # nothing beyond the margin, clipped at the border
    assert grow_mask(mask, 0) is mask
    with pytest.raises(UserError, match="can only grow"):
        grow_mask(mask, -1)
    assert grow_mask(mask, 15).eq(1).all()  # resolution - 1 fills the image from any marked pixel
    with pytest.raises(UserError, match="can grow by at most 15 px on a 16 px model .*got 16 px"):
        grow_mask(mask, 16)  # a max filter of 2 * 16 + 1 taps; a huge --grow was padding the mask by as much


def test_coverage_is_judged_by_the_rule_of_the_edit_that_runs():
    """A soft mask whose values are all <= 0.5 selects cells when max-pooled (the local edit) but
    none when average-pooled and thresholded at 0.5 (the transplantation): there the result is
    the source, and edit_coverage says so instead of passing it."""
    from latentatlas.editing.local import edit_coverage

    g, _ = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    src = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(3)))
    ref = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(4)))
    soft = torch.zeros(1, 1, 64, 64)
    soft[..., :32, :32] = 0.5
    frac, note = edit_coverage(g, soft)
    assert frac == 0.125 and note is None  # max-pooled to 4x4: a quarter of the cells at 0.5
    assert not torch.equal(local_edit(g, src, ref, soft)[1], src)
    frac, note = edit_coverage(g, soft, (8, 0))
    assert frac == 0 and "no mask value exceeds 0.5" in note and "the source unchanged" in note
    _, layers = transplant(g, src, ref, soft, shift=(8, 0))
    assert all(torch.equal(a, b) for a, b in zip(layers, g.stylemaps(src)))  # what the note says
    sharp = soft * 2  # the same square at 1: transplanted, a quarter of every layer
    frac, note = edit_coverage(g, sharp, (0, 0))
    assert frac == 0.25 and note is None
    frac, note = edit_coverage(g, sharp, (-32, 0))  # moved left by its own width: every cell leaves the image
    assert frac == 0 and "the shift -32,0 moves every selected stylemap cell out of the image" in note
    frac, note = edit_coverage(g, torch.ones(1, 1, 64, 64), (0, 0))
    assert frac == 1 and "reference's reconstruction" in note
    frac, note = edit_coverage(g, torch.ones(1, 1, 64, 64), (8, 0))  # moved: the cells it leaves keep the source
    assert 0 < frac < 1 and note is None


def test_strength_scales_the_mask_and_edit_is_local_edit_or_transplant():
    from latentatlas.editing.local import edit

    g, _ = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    src = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(3)))
    ref = g.mapping(torch.randn(1, 8, generator=torch.Generator().manual_seed(4)))
    ones, half = torch.ones(64, 64), torch.zeros(64, 64)
    half[:, :32] = 1
    _, code = local_edit(g, src, ref, ones, strength=0.0)
    assert torch.equal(code, src)
    _, code = local_edit(g, src, ref, ones, strength=0.25)
    assert torch.allclose(code, 0.75 * src + 0.25 * ref, atol=1e-6)
    _, code = local_edit(g, src, ref, half, strength=0.5)
    assert torch.equal(code[..., 2:], src[..., 2:]) and torch.allclose(code[..., :2], (src[..., :2] + ref[..., :2]) / 2, atol=1e-6)
    _, layers = transplant(g, src, ref, half, shift=(16, 0), strength=0.0)
    assert all(torch.equal(a, b) for a, b in zip(layers, g.stylemaps(src)))
    # edit: no shift is the local edit (per layer or not), a shift (even 0, 0) the transplantation.
    assert torch.equal(edit(g, src, ref, half), local_edit(g, src, ref, half)[0])
    assert torch.equal(edit(g, src, ref, half, per_layer=True, strength=0.5), local_edit(g, src, ref, half, per_layer=True, strength=0.5)[0])
    assert torch.equal(edit(g, src, ref, half, shift=(0, 0)), transplant(g, src, ref, half)[0])
    assert torch.equal(edit(g, src, ref, half, shift=(16, -8)), transplant(g, src, ref, half, shift=(16, -8))[0])
    with pytest.raises(UserError, match=r"strength must lie in \[0, 1\]"):
        edit(g, src, ref, half, strength=1.5)
    with pytest.raises(UserError, match="the shift 64,0 moves the region out of the 64 px image"):
        edit(g, src, ref, half, shift=(64, 0))


def test_masks_from_grey_images_and_face_regions():
    from latentatlas.editing.local import mask_from_grey, region_mask

    drawn = np.zeros((256, 256), np.uint8)  # strokes painted on the app's 4x enlarged display
    drawn[:, :128] = 255
    mask, notes = mask_from_grey(drawn, 64)
    assert mask.shape == (1, 1, 64, 64) and notes == ["mask resized from 256 px to 64 px"]
    assert mask[..., :32].eq(1).all() and mask[..., 32:].eq(0).all()
    soft = np.full((64, 64), 0.25, np.float32)
    mask, notes = mask_from_grey(soft, 64)
    assert notes == [] and torch.allclose(mask, torch.full((1, 1, 64, 64), 0.25), atol=1 / 255)
    for bad, message in ((np.zeros((64, 32)), "must be square"), (np.full((64, 64), 2.0), r"in \[0, 1\]"),
                         (np.zeros((64, 64, 3)), "grey image")):
        with pytest.raises(UserError, match=message):
            mask_from_grey(bad, 64, name="the drawn mask")
    eyes, notes = region_mask("eyes", 64)
    assert eyes.shape == (1, 1, 64, 64) and 0 < float(eyes.mean()) < 0.3 and "eyes" in notes[0]
    with pytest.raises(UserError, match="unknown face region 'nose'"):
        region_mask("nose", 64)
    with pytest.raises(UserError, match="at least 16 px"):
        region_mask("eyes", 8)


def test_mask_files_are_read_from_alpha_or_by_their_bit_depth(tmp_path):
    """convert('L') dropped the alpha (black strokes on a transparent layer read as nothing) and
    clipped 16-bit greys at 255 (a 16-bit 0.5 read as 1); float images read as 0."""
    from latentatlas.editing.local import load_mask

    def saved(name: str, im: Image.Image) -> str:
        im.save(tmp_path / name)
        return str(tmp_path / name)

    rgba = np.zeros((16, 16, 4), np.uint8)  # black strokes, painted on a transparent layer
    rgba[:8, :, 3] = 255
    rgba[8:12, :, 3] = 128
    mask, notes = load_mask(saved("strokes.png", Image.fromarray(rgba, "RGBA")), 16)
    assert mask[..., :8, :].eq(1).all() and torch.allclose(mask[..., 8:12, :], torch.tensor(128 / 255)) and mask[..., 12:, :].eq(0).all()
    assert notes == ["strokes.png: read from its alpha channel (transparent = keep the source)"]
    rgba[..., :3], rgba[..., 3] = 0, 255  # opaque: the grey value is the mask
    rgba[:4, :, :3] = 255
    mask, notes = load_mask(saved("opaque.png", Image.fromarray(rgba, "RGBA")), 16)
    assert mask[..., :4, :].eq(1).all() and mask[..., 4:, :].eq(0).all() and notes == []
    la = np.zeros((16, 16, 2), np.uint8)
    la[:, :4, 1] = 255
    mask, _ = load_mask(saved("la.png", Image.fromarray(la, "LA")), 16)
    assert mask[..., :4].eq(1).all() and mask[..., 4:].eq(0).all()
    pal = Image.fromarray(np.where(np.arange(16)[None, :] < 8, 1, 0).repeat(16, 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 0, 0, 0])  # two black entries; index 0 transparent (a tRNS key)
    pal.info["transparency"] = 0
    mask, notes = load_mask(saved("pal.png", pal), 16)
    assert mask[..., :8].eq(1).all() and mask[..., 8:].eq(0).all() and "alpha" in notes[0]
    grey16 = np.zeros((16, 16), np.uint16)
    grey16[:8] = 32768
    grey16[8:12] = 65535
    im16 = Image.fromarray(grey16)
    assert im16.mode == "I;16"
    mask, notes = load_mask(saved("m16.png", im16), 16)
    assert torch.allclose(mask[..., :8, :], torch.tensor(32768 / 65535)) and mask[..., 8:12, :].eq(1).all() and notes == []
    assert mask[..., 12:, :].eq(0).all()
    f = np.zeros((16, 16), np.float32)
    f[:, :8] = 0.25
    mask, _ = load_mask(saved("f.tif", Image.fromarray(f)), 16)
    assert torch.allclose(mask[..., :8], torch.tensor(0.25)) and mask[..., 8:].eq(0).all()
    with pytest.raises(UserError, match=r"f255.tif: float values must lie in \[0, 1\], got 0 to 255; save it as 8-bit grey"):
        load_mask(saved("f255.tif", Image.fromarray(f * 1020)), 16)
    wide = np.zeros((16, 16), np.int32)
    wide[0, 0] = 70000
    with pytest.raises(UserError, match="i32.tif: 32-bit integer values 0 to 70000 have no white"):
        load_mask(saved("i32.tif", Image.fromarray(wide)), 16)


def test_mask_files_get_the_image_readers_pixel_cap_and_one_line_errors(tmp_path):
    from latentatlas.editing.local import load_mask
    from latentatlas.io.images import MAX_PIXELS

    good = tmp_path / "half.png"
    Image.fromarray(np.repeat(np.array([[255, 0]], np.uint8), 64, axis=0).repeat(32, axis=1)).save(good)
    mask, notes = load_mask(good, 16)
    assert mask.shape == (1, 1, 16, 16) and notes == ["mask resized from 64 px to 16 px"]
    assert mask[..., :8].eq(1).all() and mask[..., 8:].eq(0).all()
    huge = tmp_path / "huge.png"
    Image.new("1", (8200, 8200)).save(huge)  # a few kilobytes; 67 M pixels, over the cap, once decoded
    assert 8200 * 8200 > MAX_PIXELS
    corrupt = tmp_path / "cut.png"
    corrupt.write_bytes(good.read_bytes()[:60])
    for path, message in ((huge, "huge.png: 8200x8200 is too large"), (corrupt, "not a readable image"),
                          (tmp_path / "nose.png", "nose.png: no such file; give a mask image, or a region: eyes, mouth, hair")):
        with pytest.raises(UserError, match=message), warnings.catch_warnings():
            warnings.simplefilter("error")  # PIL's bomb warning would print a second, unasked-for message
            load_mask(path, 16)

def test_training_runs_and_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = train(StyleMapTrainConfig(total_kimg=0.012, **TINY_TRAIN), tmp_path / "a", progress=False)
    assert straight["finished"] and straight["kimg"] == 0.012
    losses = straight["last_losses"]
    assert {"G_adv", "w_rec", "D", "D_rec", "x_rec", "E_adv"} <= set(losses)
    assert all(np.isfinite(v) for v in losses.values())
    part = train(StyleMapTrainConfig(total_kimg=0.008, **TINY_TRAIN), tmp_path / "b", progress=False)
    assert part["kimg"] == 0.008
    resumed = train(StyleMapTrainConfig(total_kimg=0.012, **TINY_TRAIN), tmp_path / "b", progress=False)
    assert resumed["resumed_from_kimg"] == 0.008 and resumed["finished"]
    ga, ea, _ = load_stylemap_model(tmp_path / "a" / "model.safetensors")
    gb, eb, _ = load_stylemap_model(tmp_path / "b" / "model.safetensors")
    for x, y in ((ga, gb), (ea, eb)):
        for (k, u), (_, v) in zip(x.state_dict().items(), y.state_dict().items()):
            assert torch.equal(u, v), k
    state = torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)
    assert state["step"] == 3 and set(state) >= {"G", "D", "E", "G_ema", "E_ema", "opt_E"}
    portable = tmp_path / "a" / "portable"
    assert all(p.stat().st_size < 16 * 2**20 for p in portable.iterdir())
    assert {p.name for p in portable.iterdir()} >= {"G.safetensors", "E.safetensors", "train.safetensors"}
    with pytest.raises(UserError, match="other settings"):
        train(StyleMapTrainConfig(total_kimg=0.02, **{**TINY_TRAIN, "lr": 0.001}), tmp_path / "a", progress=False)


def test_one_step_with_the_factor_perceptual_loss_is_finite(tmp_path):
    trainer = StyleMapTrainer(StyleMapTrainConfig(**{**TINY_TRAIN, "perceptual": "factors"}), tmp_path)
    before = [p.clone() for p in trainer.E.parameters()]
    stats = trainer.train_step()
    assert stats["percept"] > 0 and all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.E.parameters()))


def test_r1_steps_every_critic_parameter_as_naver_ai(tmp_path):
    """naver-ai's train.py adds 0 * real_pred[0] to the R1 loss: the critic's output bias, which the
    input gradient does not depend on, gets a zero gradient, and Adam steps it in the R1 pass too."""
    trainer = StyleMapTrainer(StyleMapTrainConfig(**TINY_TRAIN), tmp_path)
    trainer.train_step()  # step 0: D's main pass and R1
    assert [n for n, p in trainer.D.named_parameters() if float(trainer.opt_D.state[p]["step"]) != 2] == []


# ---------------------------------------------------------------------------------------
# Files


def official_state_dicts(size: int, s: int, sd: int, n_map: int, ch: dict[int, int]) -> tuple[dict, dict]:
    """g_ema and e_ema state dicts named and shaped as naver-ai/StyleMapGAN's training/model.py
    writes them (non-small generator), written out here independently of latentatlas' modules."""
    gen = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=gen) * 0.5

    blur = torch.tensor([1.0, 3, 3, 1])
    k = torch.outer(blur, blur) / 64
    g: dict[str, torch.Tensor] = {}
    for i in range(1, n_map + 1):
        out = sd * s * s if i == n_map else sd
        g[f"mapping_z.{i}.weight"], g[f"mapping_z.{i}.bias"] = r(out, sd), r(out)

    def styled(prefix, cin, cout, kk, code, up=False):
        g[f"{prefix}.conv.weight"] = r(1, cout, cin, kk, kk)
        if up:
            g[f"{prefix}.conv.blur.kernel"] = k * 4
        g[f"{prefix}.conv.gamma.weight"], g[f"{prefix}.conv.gamma.bias"] = r(cin, code, 3, 3), 1 + 0.1 * r(cin)
        g[f"{prefix}.conv.beta.weight"], g[f"{prefix}.conv.beta.bias"] = r(cin, code, 3, 3), r(cin)
        g[f"{prefix}.activate.bias"] = r(cout)

    g["decoder.input.input"] = r(1, ch[s], s, s)
    styled("decoder.conv1", ch[s], ch[s], 3, ch[s])
    g["decoder.convs_latent.0.0.weight"], g["decoder.convs_latent.0.1.bias"] = r(ch[s], sd, 3, 3), r(ch[s])
    g["decoder.convs_latent.1.0.weight"], g["decoder.convs_latent.1.1.bias"] = r(ch[s], ch[s], 3, 3), r(ch[s])
    res, i = s * 2, 0
    while res <= size:
        a, b = ch[res // 2], ch[res]
        j = 2 + 2 * i
        g[f"decoder.convs_latent.{j}.0.weight"], g[f"decoder.convs_latent.{j}.1.kernel"] = r(b, a, 3, 3), k * 4
        g[f"decoder.convs_latent.{j}.2.bias"] = r(b)
        g[f"decoder.convs_latent.{j + 1}.0.weight"], g[f"decoder.convs_latent.{j + 1}.1.bias"] = r(b, b, 3, 3), r(b)
        styled(f"decoder.convs.{i}.conv1", a, b, 3, a, up=True)
        styled(f"decoder.convs.{i}.conv2", b, b, 3, b)
        g[f"decoder.convs.{i}.skip.0.weight"], g[f"decoder.convs.{i}.skip.1.kernel"] = r(b, a, 1, 1), k * 4
        res, i = res * 2, i + 1
    styled("decoder.to_rgb", ch[size], 3, 1, ch[size])
    e: dict[str, torch.Tensor] = {"from_rgb.0.weight": r(ch[size], 3, 1, 1), "from_rgb.1.bias": r(ch[size])}
    res, i = size, 0
    while res > s:
        a, b = ch[res], ch[res // 2]
        e[f"convs.{i}.conv1.0.weight"], e[f"convs.{i}.conv1.1.bias"] = r(a, a, 3, 3), r(a)
        e[f"convs.{i}.conv2.0.kernel"], e[f"convs.{i}.conv2.1.weight"], e[f"convs.{i}.conv2.2.bias"] = k, r(b, a, 3, 3), r(b)
        e[f"convs.{i}.skip.0.kernel"], e[f"convs.{i}.skip.1.weight"] = k, r(b, a, 1, 1)
        res, i = res // 2, i + 1
    e["final_conv.0.weight"], e["final_conv.1.bias"] = r(sd, ch[s], 3, 3), r(sd)
    return g, e


def test_official_checkpoint_imports_by_name_and_our_file_round_trips(tmp_path, run_cli):
    g_sd, e_sd = official_state_dicts(64, 8, 8, 3, {8: 32, 16: 32, 32: 16, 64: 8})
    args = argparse.Namespace(size=64, latent_channel_size=8, latent_spatial_size=8, lr_mul=0.01, normalize_mode="LayerNorm",
                              small_generator=False, channel_multiplier=1, mapping_layer_num=3)
    ckpt = tmp_path / "000100.pt"
    torch.save({"g_ema": g_sd, "e_ema": e_sd, "train_args": args, "d_optim": {}}, ckpt)
    g, e, info = load_stylemap_any(ckpt)
    assert info["source_format"] == "stylemapgan"
    assert g.config.resolution == 64 and g.config.latent_spatial_size == 8 and g.config.mapping_layers == 3
    for ours, theirs in ((g.state_dict(), g_sd), (e.state_dict(), e_sd)):
        assert set(ours) == set(theirs)
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    code = e(x)
    assert code.shape == (2, 8, 8, 8) and torch.isfinite(g(code)).all()
    # Our file: same tensors, same images.
    path = tmp_path / "m.safetensors"
    save_stylemap_model(path, g, e, metadata={"note": "t"})
    g2, e2, info2 = load_stylemap_model(path)
    assert info2["note"] == "t" and g2.config == g.config
    assert torch.equal(g2(e2(x)), g(e(x)))
    # `latentatlas convert` writes our file from the official checkpoint (fp32: the same images, fp16: close).
    for fp16, tol in ((False, 0.0), (True, 5e-2)):
        out = tmp_path / f"converted{int(fp16)}.safetensors"
        code, _, err = run_cli("convert", ckpt, out, *(["--fp16"] if fp16 else []))
        assert code == 0, err
        g3, e3, info3 = load_stylemap_model(out)
        assert info3["converted_from"] == ckpt.name and g3.config == g.config
        assert (g3(e3(x)) - g(e(x))).abs().max() <= tol
    # A missing key is named.
    del g_sd["decoder.convs.1.conv2.conv.gamma.weight"]
    torch.save({"g_ema": g_sd, "e_ema": e_sd, "train_args": args}, ckpt)
    with pytest.raises(UserError, match=r"1 missing \(e\.g\. decoder\.convs\.1\.conv2\.conv\.gamma\.weight\)"):
        load_stylemap_any(ckpt)
    torch.save({"g_ema": g_sd}, ckpt)
    with pytest.raises(UserError, match="needs 'g_ema' and 'e_ema'"):
        load_stylemap_any(ckpt)


def test_model_kind_reads_the_kind_without_building_the_model(tmp_path, tiny_generator):
    from latentatlas.io.checkpoints import model_kind, save_model

    g, e = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    save_stylemap_model(tmp_path / "sm.safetensors", g, e)
    save_model(tmp_path / "sg2.safetensors", tiny_generator)
    g_sd, e_sd = official_state_dicts(64, 8, 8, 3, {8: 32, 16: 32, 32: 16, 64: 8})
    torch.save({"g_ema": g_sd, "e_ema": e_sd}, tmp_path / "official.pt")
    torch.save({"g_ema": {}, "latent_avg": torch.zeros(4)}, tmp_path / "rosinality.pt")
    kinds = [model_kind(tmp_path / f) for f in ("sm.safetensors", "sg2.safetensors", "official.pt", "rosinality.pt")]
    assert kinds == ["stylemap", "stylegan2", "stylemap", "stylegan2"]
    (tmp_path / "junk.bin").write_bytes(b"hello world, no model here")
    with pytest.raises(UserError, match="unknown model format"):
        model_kind(tmp_path / "junk.bin")


# ---------------------------------------------------------------------------------------
# CLI


def _png(path, array):
    Image.fromarray(array).save(path)
    return path


def test_cli_train_encode_edit_end_to_end(tmp_path, run_cli):
    from latentatlas.data import synthfaces

    run = tmp_path / "run"
    code, out, err = run_cli("train-stylemap", "--out", run, "--kimg", "0.008", "--resolution", "16", "--batch", "4",
                             "--latent-spatial-size", "4", "--style-dim", "8", "--mapping-layers", "2", "--channel-base", "128",
                             "--channel-max", "16", "--perceptual", "none", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["kimg"] == 0.008
    model = run / "model.safetensors"
    code, out, err = run_cli("info", model, "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["kind"] == "StyleMapGAN" and facts["stylemap"] == "8 x 4 x 4" and facts["trained_kimg"] == 0.008
    assert facts["channels"] == {"4": 16, "8": 16, "16": 8}  # min(128 // r, 16)
    assert facts["encoder_parameters"] > 0 and facts["trained_on"].startswith("synthfaces")
    imgs, _ = synthfaces.sample(2, seed=5, resolution=16)
    arr = ((imgs.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    a, b = _png(tmp_path / "a.png", arr[0]), _png(tmp_path / "b.png", arr[1])
    big = _png(tmp_path / "big.png", np.repeat(np.repeat(arr[0], 2, 0), 2, 1))  # 32 px: resized, with a note
    code, out, err = run_cli("encode", model, a, b, big, "--out", tmp_path / "enc", "--device", "cpu")
    assert code == 0, err
    assert "resized 32 px to 16 px" in err
    assert json.loads(out)["stylemap_shape"] == [8, 4, 4]
    saved = np.load(tmp_path / "enc" / "a.npz")
    assert saved["latents"].shape == (1, 8, 4, 4) and str(saved["space"]) == "stylemap"
    assert saved["images"].tolist() == ["a.png"]
    assert Image.open(tmp_path / "enc" / "comparison.png").size == (32, 48)
    code, out, err = run_cli("encode", model, a, "--out", tmp_path / "enc", "--device", "cpu")
    assert code == 2 and "already exists" in err
    code, out, err = run_cli("encode", model, a, b, "--refine", "20", "--out", tmp_path / "enc_refined", "--device", "cpu")
    assert code == 0, err
    refined = json.loads(out)
    assert refined["refine_steps"] == 20 and refined["mse"] < refined["mse_encoder"] and refined["refine_loss"] == "MSE"
    from test_projector import _vgg_files

    vgg, lin = _vgg_files(tmp_path)
    code, out, err = run_cli("encode", model, a, "--refine", "3", "--vgg", vgg, "--lpips-lin", lin, "--out", tmp_path / "enc_lpips",
                             "--device", "cpu")
    assert code == 0 and json.loads(out)["refine_loss"] == "MSE + LPIPS", err
    for extra, message in [(["--vgg", vgg, "--lpips-lin", lin], "give --refine N too"), (["--refine", "3", "--vgg", vgg], "needs both"),
                           (["--refine", "3", "--vgg", a, "--lpips-lin", lin], "not a readable PyTorch weights file")]:
        code, out, err = run_cli("encode", model, a, *extra, "--out", tmp_path / "enc_bad", "--device", "cpu")
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "enc_bad").exists()  # refused before anything was written

    for i, extra in enumerate([["--mask", "eyes"], ["--mask", "mouth", "--per-layer"], ["--mask", "hair", "--shift", "4,-2"],
                                   ["--mask", "eyes", "--strength", "0.5"]]):
        dst = tmp_path / f"edit{i}"
        code, out, err = run_cli("edit-local", model, "--source", a, "--reference", b, *extra, "--out", dst, "--device", "cpu")
        assert code == 0, err
        assert Image.open(dst / "strip.png").size == (4 * 16 + 3 * 2, 16)
        assert Image.open(dst / "result.png").size == (16, 16)
    # A saved stylemap stands for its image: the same result as encoding the image again.
    code, out, err = run_cli("edit-local", model, "--source", tmp_path / "enc" / "a.npz", "--reference", b, "--mask", "eyes",
                             "--out", tmp_path / "edit_npz", "--device", "cpu")
    assert code == 0, err
    from_code = np.asarray(Image.open(tmp_path / "edit_npz" / "result.png"), dtype=np.int16)
    assert np.abs(from_code - np.asarray(Image.open(tmp_path / "edit0" / "result.png"), dtype=np.int16)).max() <= 1
    np.savez(tmp_path / "wrong.npz", latents=np.zeros((1, 8, 2, 2), np.float32), space=np.array("stylemap"), model=np.array(str(model)))
    np.savez(tmp_path / "w.npz", latents=np.zeros((1, 8), np.float32), space=np.array("w"), model=np.array(str(model)))
    np.savez(tmp_path / "other.npz", latents=np.zeros((1, 8, 4, 4), np.float32), space=np.array("stylemap"), model=np.array("faces64"))
    for f, message in [("wrong.npz", "the stylemap code is 8x2x2, this model needs 8x4x4"),
                       ("w.npz", "takes stylemap codes"), ("other.npz", "a code of the model 'faces64'")]:
        code, out, err = run_cli("edit-local", model, "--source", a, "--reference", tmp_path / f, "--mask", "eyes",
                                 "--out", tmp_path / "x", "--device", "cpu")
        assert code == 2 and message in err and "Traceback" not in err, (f, err)
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 255
    code, out, err = run_cli("edit-local", model, "--source", a, "--reference", b, "--mask", _png(tmp_path / "m.png", mask),
                             "--out", tmp_path / "edit_png", "--device", "cpu")
    assert code == 0 and json.loads(out)["mask_fraction"] == 0.5
    code, out, err = run_cli("edit-local", model, "--source", a, "--reference", b, "--mask", tmp_path / "m.png", "--grow", "4",
                             "--out", tmp_path / "edit_grown", "--device", "cpu")
    assert code == 0 and json.loads(out)["mask_fraction"] == 0.75, err  # rows 0-11 of 16: three of four cell rows

    bad = [
        (["--mask", _png(tmp_path / "empty.png", np.zeros((16, 16), np.uint8))], "the mask is empty"),
        (["--mask", _png(tmp_path / "wide.png", np.zeros((16, 24), np.uint8))], "must be square"),
        (["--mask", "nose"], "nose: no such file; give a mask image, or a region: eyes, mouth, hair"),
        (["--mask", "eyes", "--shift", "1,2,3"], "two integers"),
        (["--mask", "eyes", "--shift", "40,0"], "out of the 16 px image"),
        (["--mask", "eyes", "--strength", "1.5"], "strength must lie in [0, 1]"),
        # values of 0.4: max-pooled they select cells, but the transplantation takes none
        (["--mask", _png(tmp_path / "soft.png", np.full((16, 16), 102, np.uint8)), "--shift", "0,0"],
         "no mask value exceeds 0.5: the result is the source unchanged; mark the region with values above 0.5"),
        (["--mask", "eyes", "--grow", "16"], "can grow by at most 15 px on a 16 px model"),
    ]
    for extra, message in bad:
        code, out, err = run_cli("edit-local", model, "--source", a, "--reference", b, *extra, "--out", tmp_path / "x",
                                 "--device", "cpu", "--force")
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)
    code, out, err = run_cli("edit-local", model, "--source", a, "--reference", b, "--mask", tmp_path / "soft.png",
                             "--out", tmp_path / "edit_soft", "--device", "cpu")  # without --shift the soft mask is a soft edit
    assert code == 0 and json.loads(out)["mask_fraction"] == 0.4, err
    code, _, err = run_cli("directions", "sefa", model, "--out", tmp_path / "sefa.safetensors")  # StyleGAN2 only: names the kind it got
    assert code == 2 and "StyleMapGAN model" in err
    # project says the model is the problem before it asks for a loss the model could not use
    code, _, err = run_cli("project", model, a, "--out", tmp_path / "proj", "--device", "cpu")
    assert code == 2 and "StyleMapGAN model" in err and "edit-local" in err and "choose a loss" not in err, err
    assert not (tmp_path / "proj").exists() or not any((tmp_path / "proj").iterdir())


def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "latentatlas.cli",
           "train-stylemap", "--out", str(tmp_path / "ddp"), "--kimg", "0.016", "--resolution", "16", "--batch", "8",
           "--latent-spatial-size", "4", "--style-dim", "8", "--mapping-layers", "2", "--channel-base", "128",
           "--channel-max", "16", "--perceptual", "none", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["ema_checksum"] == results[1]["ema_checksum"]
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_layers_compute_what_the_official_modules_compute():
    """Official arithmetic (training/model.py), written out: transposed conv then Blur(pad) for
    up-sampling, Blur(pad) then stride-2 conv for down-sampling, LayerNorm * gamma + beta."""
    import math

    import torch.nn.functional as F

    from latentatlas.models.ops import upfirdn2d
    from latentatlas.models.stylemap import ConvLayer, StyledConv

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8)

    def blur(t, kernel, pad):
        return upfirdn2d(t, kernel, padding=(pad[0], pad[1], pad[0], pad[1]))

    for k in (3, 1):
        up = ConvLayer(5, 4, k, upsample=True, activate=False, bias=False)
        w = up.conv.weight * (1 / math.sqrt(5 * k * k))
        p = 2 - (k - 1)
        ref = blur(F.conv_transpose2d(x, w.transpose(0, 1), stride=2), up.blur.kernel, ((p + 1) // 2 + 1, p // 2 + 1))
        assert ref.shape[-1] == 16 and torch.allclose(up(x), ref, atol=1e-5)
        down = ConvLayer(5, 4, k, downsample=True)
        with torch.no_grad():
            down.act.bias.normal_()
        w = down.conv.weight * (1 / math.sqrt(5 * k * k))
        p = 2 + (k - 1)
        ref = F.conv2d(blur(x, down.blur.kernel, ((p + 1) // 2, p // 2)), w, stride=2)
        ref = F.leaky_relu(ref + down.act.bias.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
        assert torch.allclose(down(x), ref, atol=1e-5)
    sc = StyledConv(5, 4, 3, 6, "LayerNorm", [1, 3, 3, 1], upsample=True)
    s = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        for t in (sc.conv.gamma.bias, sc.conv.beta.bias, sc.activate.bias):
            t.normal_()
    g = F.conv2d(s, sc.conv.gamma.weight / math.sqrt(6 * 9), sc.conv.gamma.bias, padding=1)
    b = F.conv2d(s, sc.conv.beta.weight / math.sqrt(6 * 9), sc.conv.beta.bias, padding=1)
    h = torch.nn.LayerNorm(x.shape[1:], elementwise_affine=False)(x) * g + b
    h = F.conv_transpose2d(h, (sc.conv.weight[0] / math.sqrt(5 * 9)).transpose(0, 1), stride=2)
    h = blur(h, sc.conv.blur.kernel, (1, 1))
    ref = F.leaky_relu(h + sc.activate.bias.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
    assert torch.allclose(sc(x, s), ref, atol=1e-5)


def test_cli_generate_interpolate_and_edit_from_seeds_with_a_stylemap_model(tmp_path, run_cli):
    torch.manual_seed(0)
    cfg = StyleMapConfig(resolution=16, latent_spatial_size=4, style_dim=8, mapping_layers=2, channel_base=128, channel_max=16)
    model = tmp_path / "sm.safetensors"
    save_stylemap_model(model, Generator(cfg), Encoder(cfg))
    code, out, err = run_cli("generate", model, "--seeds", "0-3", "--per-seed", "--out", tmp_path / "g", "--device", "cpu")
    assert code == 0, err
    saved = np.load(tmp_path / "g" / "latents.npz")
    assert str(saved["space"]) == "stylemap" and saved["latents"].shape == (4, 8, 4, 4) and saved["seeds"].tolist() == [0, 1, 2, 3]
    assert Image.open(tmp_path / "g" / "seed0002.png").size == (16, 16)
    code, _, err = run_cli("generate", model, "--seeds", "0-3", "--trunc", "0.5", "--out", tmp_path / "t", "--device", "cpu")
    assert code == 0, err
    truncated = np.load(tmp_path / "t" / "latents.npz")["latents"]
    g, _, _ = load_stylemap_model(model)
    mean = g.mean_stylemap().numpy()
    np.testing.assert_allclose(truncated, mean + 0.5 * (saved["latents"] - mean), atol=1e-5)

    # From a seed to a saved code: the ends are exactly the two codes, and the path is their lerp.
    code, out, err = run_cli("interpolate", model, "--from", "1", "--to", tmp_path / "g" / "latents.npz", "--frames", "5",
                             "--out", tmp_path / "i", "--device", "cpu")
    assert code == 0, err
    path = np.load(tmp_path / "i" / "interpolation.npz")["latents"]
    assert path.shape == (5, 8, 4, 4)
    first, last = saved["latents"][1], saved["latents"][0]  # seed 1's code; the file's first code is seed 0's
    np.testing.assert_allclose(path, [first + t * (last - first) for t in (0, 0.25, 0.5, 0.75, 1)], atol=1e-6)
    assert np.abs(last - first).max() > 0.5  # the two ends are far apart
    strip = np.asarray(Image.open(tmp_path / "i" / "interpolation.png").convert("RGB")).astype(int)
    for tile, seed in ((strip[:, :16], 1), (strip[:, -16:], 0)):  # the end frames are the seeds' renders
        assert np.abs(tile - np.asarray(Image.open(tmp_path / "g" / f"seed{seed:04d}.png").convert("RGB")).astype(int)).max() <= 1
    png = _png(tmp_path / "a.png", np.full((16, 16, 3), 90, np.uint8))
    code, out, err = run_cli("interpolate", model, "--from", "1", "--to", png, "--frames", "3", "--out", tmp_path / "j", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "j" / "interpolation.gif").exists()
    # --refine: an image end is optimised towards the image; a seed end is no encoder's guess and stays.
    code, out, err = run_cli("interpolate", model, "--from", "1", "--to", png, "--frames", "3", "--refine", "15",
                             "--out", tmp_path / "jr", "--device", "cpu")
    assert code == 0, err
    plain, refined = (torch.from_numpy(np.load(tmp_path / d / "interpolation.npz")["latents"]) for d in ("j", "jr"))
    torch.testing.assert_close(refined[0], plain[0])
    target = torch.full((1, 3, 16, 16), 90 / 127.5 - 1)
    with torch.no_grad():
        errs = [float((g(c[-1:]) - target).square().mean()) for c in (plain, refined)]
    assert errs[1] < errs[0], errs

    code, out, err = run_cli("edit-local", model, "--source", "0", "--reference", "1", "--mask", "eyes", "--out", tmp_path / "e",
                             "--device", "cpu")
    assert code == 0, err
    # result.png is the library's local edit of seed 0's and seed 1's stylemaps under the eyes mask.
    eyes, _ = region_or_file_mask("eyes", 16)
    stylemaps = torch.from_numpy(saved["latents"])
    with torch.no_grad():
        expected, _ = local_edit(g, stylemaps[:1], stylemaps[1:2], eyes)
    expected = to_uint8(expected)[0].astype(int)
    result = np.asarray(Image.open(tmp_path / "e" / "result.png").convert("RGB")).astype(int)
    assert result.shape == expected.shape and np.abs(result - expected).max() <= 1
    source = np.asarray(Image.open(tmp_path / "g" / "seed0000.png").convert("RGB")).astype(int)
    assert np.abs(result - source).max() > 10  # the eyes came from seed 1
    code, out, err = run_cli("edit-local", model, "--source", png, "--reference", "1", "--mask", "eyes", "--refine", "5",
                             "--out", tmp_path / "er", "--device", "cpu")
    assert code == 0 and (tmp_path / "er" / "result.png").exists(), err
    for args, message in [(("generate", model, "--class", "1"), "no --truncation-cutoff, --class"),
                          (("interpolate", model, "--method", "slerp"), "interpolated linearly"),
                          (("interpolate", model, "--to", tmp_path / "nope.png"), "nope.png"),
                          (("edit-local", model, "--source", "0", "--reference", "1", "--mask", "eyes", "--refine", "-1"), "--refine -1: give a number of steps >= 0")]:
        code, _, err = run_cli(*args, "--out", tmp_path / "x", "--device", "cpu", "--force")
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


def test_training_and_projection_pick_the_perceptual_distance_by_one_rule(tmp_path):
    """perceptual "auto": LPIPS when its files are given, the factor predictor for synthfaces, else
    none (training) or the caller's fallback (projection); the domain is not asked after LPIPS."""
    from latentatlas.inversion.losses import auto_perceptual

    asked = []
    assert auto_perceptual(True, lambda: asked.append(1) or True) == "lpips" and not asked
    assert auto_perceptual(False, lambda: True) == "factor" and auto_perceptual(False, lambda: False) is None
    auto = {**TINY_TRAIN, "perceptual": "auto"}
    assert StyleMapTrainConfig(**auto).perceptual_kind() == "factors"
    assert StyleMapTrainConfig(**auto, vgg="v.pth").perceptual_kind() == "lpips"
    assert StyleMapTrainConfig(**auto, data=str(tmp_path)).perceptual_kind() == "none"
    assert StyleMapTrainConfig(**{**TINY_TRAIN, "perceptual": "factors"}, data=str(tmp_path)).perceptual_kind() == "factors"
