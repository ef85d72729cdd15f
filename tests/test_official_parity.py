"""Our StyleGAN2 generator against NVIDIA's official one (stylegan2-ada-pytorch).

The fixtures in fixtures/official_parity were made by fixtures/make_official_parity.py
with the official `training/networks.py` Generator (fp32, eval, noise_mode='const',
force_fp32=True); this test needs nothing of the official code. Per config it builds our
Generator from the official constructor kwargs (through the same conversion the pickle
importer uses), loads the official state dict by name with strict loading, and compares
ws (mapping + truncation) and images at psi 1.0 and 0.7 within 1e-4 max abs, once with
PyTorch's direct convolutions, once with every stride-1 3x3 convolution by Winograd's F(4x4, 3x3)
(models/winograd.py) and once with every 3x3 convolution, the up-sampling ones included, by
NNPACK's F(6x6, 3x3) ("auto", the CPU default, uses these where they pay).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from latentatlas.io.checkpoints import config_from_official_kwargs
from latentatlas.models import winograd
from latentatlas.models.stylegan2 import Generator

FIXTURES = Path(__file__).parent / "fixtures" / "official_parity"
NAMES = ["g64", "g256c", "g1024"]
PSIS = {"psi1": 1.0, "psi07": 0.7}
TOL = 1e-4


def load_official(name: str) -> tuple[Generator, dict]:
    path = FIXTURES / f"{name}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        init_kwargs = json.loads(f.metadata()["init_kwargs"])
    state = load_file(str(path))
    g = Generator(config_from_official_kwargs(init_kwargs))
    # strict: every official name must exist in our generator and vice versa (shapes too).
    g.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return g.eval().requires_grad_(False), init_kwargs


def reductions(img: torch.Tensor, io: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """Our image in the form the fixture stores it: whole, or 8x8-pooled plus a 64 px crop."""
    if f"img_{key}" in io:
        return {f"img_{key}": img.numpy()}
    y, x = (int(v) for v in io["crop_yx"])
    return {
        f"img_{key}_pool8": F.avg_pool2d(img, 8).numpy(),
        f"img_{key}_crop64": img[:, :, y : y + 64, x : x + 64].numpy(),
    }


@pytest.mark.parametrize("conv", ["direct", "winograd", pytest.param("nnpack", marks=pytest.mark.skipif(
    not winograd.nnpack_available(), reason="this PyTorch build or CPU has no NNPACK"))])
@pytest.mark.parametrize("name", NAMES)
def test_generator_matches_official(name, conv, monkeypatch):
    from latentatlas.models import ops

    monkeypatch.setattr(ops, "CONV3X3_IMPL", conv)
    g, init_kwargs = load_official(name)
    io = dict(np.load(FIXTURES / f"{name}_io.npz"))
    assert g.num_ws == io["ws_psi1"].shape[1]
    assert g.img_resolution == init_kwargs["img_resolution"]
    z = torch.from_numpy(io["z"])
    c = torch.from_numpy(io["c"]) if g.c_dim else None

    diffs: dict[str, float] = {}
    with torch.no_grad():
        for key, psi in PSIS.items():
            ws = g.mapping(z, c, truncation_psi=psi)
            img = g(z, c, truncation_psi=psi, noise_mode="const")
            ours = {f"ws_{key}": ws.numpy(), **reductions(img, io, key)}
            for arr, value in ours.items():
                assert value.shape == io[arr].shape, arr
                diffs[arr] = float(np.abs(value.astype(np.float64) - io[arr]).max())
    print(f"\n{name} ({conv}) max abs diff vs official: " + ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()))
    bad = {k: v for k, v in diffs.items() if not v < TOL}
    assert not bad, f"{name}: differs from the official generator by more than {TOL}: {bad}"


@pytest.mark.parametrize("name", NAMES)
def test_fixtures_are_not_trivial(name):
    """The comparison means something only if psi, z and c actually move the outputs."""
    io = dict(np.load(FIXTURES / f"{name}_io.npz"))
    imgs = {k: v for k, v in io.items() if k.startswith("img_")}
    for key, arr in imgs.items():
        assert np.isfinite(arr).all() and arr.dtype == np.float32
        assert 0.05 < arr.std() and np.abs(arr).max() < 50, key
        assert np.abs(arr[0] - arr[1]).max() > 0.1, f"{key}: samples look alike"
    for key in (k for k in imgs if "psi1" in k):
        other = key.replace("psi1", "psi07")
        assert np.abs(io[key] - io[other]).max() > 0.1, f"{key} vs {other}: truncation changes nothing"
    assert np.abs(io["ws_psi1"] - io["ws_psi07"]).max() > 0.05
    if io["c"].shape[1]:
        assert (io["c"].sum(1) == 1).all() and len({tuple(r) for r in io["c"]}) == len(io["c"])
