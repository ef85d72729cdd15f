"""The models shipped in the package: faces64 and the synthfaces factor predictor."""

from __future__ import annotations

import torch

from latentatlas.data.synthfaces import FACTORS
from latentatlas.models.bundled import load_generator
from latentatlas.training.attributes import evaluate, load_predictor


def test_faces64_loads_by_name_and_makes_faces():
    generator, info = load_generator("faces64")
    assert generator.img_resolution == 64 and info["name"] == "faces64"
    assert next(generator.parameters()).dtype == torch.float32  # fp16 on disk, fp32 in memory
    z = torch.randn(8, generator.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = generator(z)
    assert img.shape == (8, 3, 64, 64) and torch.isfinite(img).all()
    assert img.std() > 0.2 and (img[0] - img[1]).abs().mean() > 0.05  # not blank, not one image
    # The bundled predictor sees a face: its factors fall in the renders' range.
    factors = load_predictor("factors").predict(img)
    assert ((factors > -0.5) & (factors < 1.5)).all()


def test_bundled_predictor_reads_factors_of_held_out_renders():
    scores = evaluate(load_predictor("factors"), n=300, batch=150)
    for factor in FACTORS:
        floor = 0.95 if factor.binary else 0.9  # R^2 on 300 renders (the full check on 2000 gives >= 0.988)
        assert scores[factor.name] > floor, (factor.name, scores[factor.name])


def test_demo_writes_its_pictures(run_cli, tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    for name in ("grid.png", "interpolation.gif", "interpolation.mp4", "mix.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 1000, name
    assert "demo done" in out
