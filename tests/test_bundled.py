"""The models shipped in the package: faces64, faces64-stylemap and the synthfaces factor predictor."""

from __future__ import annotations

import torch

from latentatlas.data.synthfaces import FACTORS
from latentatlas.models.bundled import load_generator
from latentatlas.training.attributes import evaluate, load_predictor

from conftest import one_line_error


def test_faces64_loads_by_name_and_makes_faces():
    generator, info = load_generator("faces64")
    assert generator.img_resolution == 64 and info["name"] == "faces64"
    assert next(generator.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory
    z = torch.randn(8, generator.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = generator(z)
    assert img.shape == (8, 3, 64, 64) and torch.isfinite(img).all()
    assert img.std() > 0.2 and (img[0] - img[1]).abs().mean() > 0.05  # not blank, not one image
    # The bundled predictor sees faces: the continuous factors fall near the renders' range [0, 1],
    # and each face clearly has glasses or has none (probabilities near 0 or 1), some of each.
    factors = load_predictor("factors").predict(img)
    binary = torch.tensor([f.binary for f in FACTORS])
    assert ((factors[:, ~binary] > -0.3) & (factors[:, ~binary] < 1.3)).all()
    glasses = factors[:, binary].flatten()
    assert ((glasses < 0.05) | (glasses > 0.95)).all() and (glasses < 0.05).any() and (glasses > 0.95).any(), glasses


def test_bundled_predictor_reads_factors_of_held_out_renders():
    scores = evaluate(load_predictor("factors"), n=300, batch=150)
    for factor in FACTORS:
        floor = 0.95 if factor.binary else 0.9  # R^2 on 300 renders (the full check on 2000 gives >= 0.988)
        assert scores[factor.name] > floor, (factor.name, scores[factor.name])


def test_demo_writes_its_pictures(run_cli, tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    for name in ("grid.png", "interpolation.gif", "interpolation.mp4", "mix.png", "local-edit/strip.png", "local-edit/result.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000, name
    walks = sorted(p.name for p in (tmp_path / "demo" / "directions").glob("traverse_*.png"))
    assert walks[0] == "traverse_hair_colour.png" and walks[1].startswith("traverse_warp0_"), walks  # no spaces in names
    assert "demo done" in out
    # A second run into the same folder needs --force (make demo passes it), and is refused before any work.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")}
    one_line_error(*run_cli("demo", "--out", tmp_path / "demo", "--device", "cpu"),
                   "already holds files (an earlier demo?): pass --force to overwrite the demo's files in it, or give another --out")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "demo").rglob("*")} == before


def test_faces64_stylemap_encodes_renders_and_swaps_hair():
    """The bundled StyleMapGAN reconstructs held-out renders in one pass, and a hair swap takes the
    reference's hair colour (the edit issue 6 measures at scale in benchmarks/local_edit_quality.py)."""
    from latentatlas.data import synthfaces
    from latentatlas.editing.local import edit
    from latentatlas.inversion.encoder import encode
    from latentatlas.io.checkpoints import load_stylemap_any
    from latentatlas.models.bundled import resolve_model

    generator, encoder, info = load_stylemap_any(resolve_model("faces64-stylemap"))
    assert generator.img_resolution == 64 and info["name"] == "faces64-stylemap"
    src, t_src = synthfaces.sample(16, seed=10_000_100, resolution=64)
    ref, t_ref = synthfaces.sample(16, seed=10_000_200, resolution=64)
    with torch.no_grad():
        w_src, w_ref = encode(encoder, src), encode(encoder, ref)
        recon = generator(w_src)
    mse = float((recon - src).square().mean())
    mean_image_mse = float((src - src.mean(0)).square().mean())
    assert mse < 0.5 * mean_image_mse, (mse, mean_image_mse)
    mask = torch.maximum(synthfaces.region_mask("hair", 64, t_src), synthfaces.region_mask("hair", 64, t_ref))[:, None]
    with torch.no_grad():
        result = edit(generator, w_src, w_ref, mask)
    hair = synthfaces.FACTOR_NAMES.index("hair_colour")
    pred = load_predictor("factors").predict(result)[:, hair]
    to_ref, to_src = float((pred - t_ref[:, hair]).abs().mean()), float((pred - t_src[:, hair]).abs().mean())
    assert to_ref < 0.75 * to_src, (to_ref, to_src)
