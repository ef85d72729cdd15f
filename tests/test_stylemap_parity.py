"""Our StyleMapGAN generator and encoder against naver-ai's official code (training/model.py).

The fixtures in fixtures/stylemap_parity were made by fixtures/make_stylemap_parity.py with
the official Generator and Encoder of naver-ai/StyleMapGAN commit 9b92e68719726f484cd34f3182450fe777e8c707
(fp32, eval, CPU; the git blob ids of the official files are in each fixture's
`official_sources`); this test needs nothing of the official code. The official weights are not stored: both sides fill every parameter with
stylemap_fill.fill_state (same names, shapes and seed give the same values); the blur-kernel
buffers come from the fixture. Per config the models are built through the importer of
official checkpoints (stylemap_config_from_state + build_stylemap with the checkpoint's
train_args: what import_stylemapgan does after torch.load, which test_stylemap.py covers
with a .pt file), and compared within TOL max abs: mapping (z -> stylemap), the truncation
centre and the truncated stylemap (psi 0.7), the encoder's stylemap of an image, and the
images the fixture holds (s64: psi 1; s32: psi 1, psi 0.7 and the encoder's stylemap).

The official Generator builds its Decoder with lr_mul 1: the checkpoint's lr_mul (0.01 in s64,
0.1 in s32) scales the mapping only. test_resizer_takes_no_lr_multiplier shows that the
fixtures tell this apart from an lr_mul on the up-sampling convs_latent.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from latentatlas.io.checkpoints import build_stylemap, stylemap_config_from_state
from latentatlas.models.stylemap import Encoder, Generator
from stylemap_fill import fill_state, is_filled

FIXTURES = Path(__file__).parent / "fixtures" / "stylemap_parity"
NAMES = ["s64", "s32"]
# Measured (2 CPU cores, PyTorch 2.13): mapping, truncation centre and truncated stylemap
# <= 3e-6 (bit-exact on some hosts; torch.lerp vs the official mean + psi * (code - mean));
# encoder <= 3.5e-6; images (|x| up to ~7, eight 512-channel layers; our batched convolutions
# vs their grouped ones) <= 5.5e-5 (2.1e-5 on the host that first made the fixtures). A wrong
# slope, padding, eps or gain moves them by > 2e-3.
TOL = 1e-4


@lru_cache(maxsize=None)
def meta(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def io(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{name}_io.npz"))


def official_state(name: str, part: str) -> dict[str, torch.Tensor]:
    """The official g_ema / e_ema state dict the maker ran: filled parameters + stored kernels."""
    m = meta(name)
    lr_mul = m["generator_kwargs"]["lr_mul"] if part == "g_ema" else 1.0
    shapes = {k: tuple(s) for k, s in m[part]["shapes"].items() if is_filled(k)}
    state = fill_state(shapes, m["fill_seeds"][part], lr_mul)
    state.update({k: torch.tensor(v, dtype=torch.float32) for k, v in m[part]["buffers"].items()})
    return {k: state[k] for k in m[part]["shapes"]}  # the official order


@lru_cache(maxsize=None)
def ours(name: str) -> tuple[Generator, Encoder]:
    g_state, e_state = official_state(name, "g_ema"), official_state(name, "e_ema")
    cfg = stylemap_config_from_state(g_state, meta(name)["train_args"])
    return build_stylemap(cfg, g_state, e_state, f"{name} fixture")  # strict: every name and shape


def max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    assert tuple(a.shape) == b.shape, (tuple(a.shape), b.shape)
    return float(np.abs(a.numpy().astype(np.float64) - b).max())


@pytest.mark.parametrize("name", NAMES)
def test_names_and_shapes_equal_the_official_ones(name):
    g, e = ours(name)
    for part, module in (("g_ema", g), ("e_ema", e)):
        official = meta(name)[part]["shapes"]
        mine = {k: list(v.shape) for k, v in module.state_dict().items()}
        assert mine == official, f"{part}: only ours {sorted(set(mine) - set(official))[:5]}, only theirs {sorted(set(official) - set(mine))[:5]}"
        for k, v in meta(name)[part]["buffers"].items():  # our constructors make the official blur kernels
            assert torch.equal(module.state_dict()[k], torch.tensor(v)), k
    kw = meta(name)["generator_kwargs"]
    cfg = g.config
    assert (cfg.resolution, cfg.latent_spatial_size, cfg.style_dim, cfg.mapping_layers) == (
        kw["size"], kw["latent_spatial_size"], kw["style_dim"], kw["mapping_layer_num"])
    assert (cfg.mapping_lr_multiplier, cfg.normalize_mode, cfg.small_generator) == (
        kw["lr_mul"], kw["normalize_mode"], kw["small_generator"])


@pytest.mark.parametrize("name", NAMES)
def test_generator_and_encoder_match_official(name):
    g, e = ours(name)
    ref = io(name)
    psi = meta(name)["psi"]
    z, x = torch.from_numpy(ref["z"]), torch.from_numpy(ref["x"])
    official_mean = torch.from_numpy(ref["mean_stylemap"]).reshape(1, *g.stylemap_shape)
    diffs: dict[str, float] = {}
    with torch.no_grad():
        code = g.mapping(z)
        diffs["stylemap_psi1"] = max_diff(code, ref["stylemap_psi1"])
        mean = g.mean_stylemap(n=meta(name)["mean_n"], seed=meta(name)["mean_seed"])
        diffs["mean_stylemap"] = max_diff(mean.flatten(1), ref["mean_stylemap"])
        code07 = g.mapping(z, truncation_psi=psi, mean=official_mean)
        diffs["stylemap_psi07"] = max_diff(code07, ref["stylemap_psi07"])
        enc = e(x)
        diffs["enc"] = max_diff(enc, ref["enc"])
        # One generator pass for the images the fixture holds (s64: psi 1 only, see the maker).
        # The encoder's image is made from the official stylemap, not ours, so an encoder
        # difference cannot hide a generator one.
        inputs = {"img_psi1": code, "img_psi07": code07, "img_enc": torch.from_numpy(ref["enc"])}
        inputs = {k: v for k, v in inputs.items() if k in ref}
        imgs = g(torch.cat(list(inputs.values()))).split(len(z))
        diffs.update({k: max_diff(img, ref[k]) for k, img in zip(inputs, imgs)})
    print(f"\n{name} max abs diff vs official: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    bad = {k: v for k, v in diffs.items() if not v < TOL}
    assert not bad, f"{name}: differs from the official StyleMapGAN by more than {TOL}: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_fixtures_are_not_trivial(name):
    """The comparison means something only if every input moves the outputs."""
    ref = io(name)
    for key, arr in ref.items():
        assert arr.dtype == np.float32 and np.isfinite(arr).all(), key
    assert "img_psi1" in ref
    for key in ("img_psi1", "img_psi07", "img_enc", "enc", "stylemap_psi1"):
        if key not in ref:
            continue
        arr = ref[key]
        assert 0.05 < arr.std() and np.abs(arr).max() < 50, key
        if len(arr) > 1:
            assert np.abs(arr[0] - arr[1]).max() > 0.1, f"{key}: samples look alike"
    for key in ("img_psi07", "img_enc"):
        if key in ref:
            assert np.abs(ref["img_psi1"] - ref[key]).max() > 0.1, f"{key} looks like img_psi1"
    assert np.abs(ref["stylemap_psi1"] - ref["stylemap_psi07"]).max() > 0.05
    assert ref["mean_stylemap"].std() > 0.05


@pytest.mark.parametrize("name", NAMES)
def test_resizer_takes_no_lr_multiplier(name):
    """The official Generator builds its Decoder with lr_mul 1, so an official checkpoint's
    lr_mul (train_args) must not scale the up-sampling convs_latent, though the official
    ConvLayer would pass it on there. Ours matches the fixture without it; with the checkpoint's
    lr_mul applied there the image is far off (s64, lr_mul 0.01: 7.4; s32, 0.1: 5.0)."""
    g_state, e_state = official_state(name, "g_ema"), official_state(name, "e_ema")
    cfg = stylemap_config_from_state(g_state, meta(name)["train_args"])
    g, _ = build_stylemap(cfg, g_state, e_state, f"{name} fixture")
    lr_mul = meta(name)["train_args"]["lr_mul"]
    assert lr_mul != 1 and cfg.mapping_lr_multiplier == lr_mul
    up = [layer for layer in g.decoder.convs_latent if layer.upsample]
    assert up, "no up-sampling resizer layers"
    for layer in up:  # before the first forward: the scaled-weight cache is built from this scale
        layer.conv.scale *= lr_mul
    ref = io(name)
    with torch.no_grad():
        img = g(torch.from_numpy(ref["stylemap_psi1"]).reshape(-1, *g.stylemap_shape))
    assert max_diff(img, ref["img_psi1"]) > 1.0
