"""Factor range: the 2-98 % span ratio, the quantile picks and the range sheet of `evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.data import synthfaces
from latentatlas.io.checkpoints import save_model
from latentatlas.metrics.evaluate import RENDER_SEED_A, coverage, render_batches, sample_batches
from latentatlas.metrics.factor_range import QUANTILES, quantile_rows, range_sheet, span, span_ratios
from latentatlas.models.bundled import tiny_random_generator
from latentatlas.training.attributes import FactorPredictor, save_predictor

from conftest import one_line_error

F = synthfaces.NUM_FACTORS


def test_span_ratio_is_one_for_the_same_spread_and_halves_with_it():
    renders = torch.rand(5000, F, generator=torch.Generator().manual_seed(0))
    assert span(renders) == pytest.approx(torch.full((F,), 0.96), abs=0.02)  # U[0, 1]: 0.98 - 0.02
    assert set(span_ratios(renders.clone(), renders).values()) == {1.0}
    narrowed = renders.clone()
    narrowed[:, 3] = 0.5 + 0.5 * (narrowed[:, 3] - 0.5)  # one factor squeezed to half its spread
    ratios = span_ratios(narrowed, renders)
    assert ratios[synthfaces.FACTOR_NAMES[3]] == pytest.approx(0.5, abs=1e-3)
    assert all(r == 1.0 for name, r in ratios.items() if name != synthfaces.FACTOR_NAMES[3])


def test_coverage_of_a_factor_the_renders_do_not_vary_is_nan_and_counts_as_narrow():
    """A predictor blind to a factor (another --predictor) gave a ZeroDivisionError traceback."""
    factors = {"a": {"samples_std": 0.2, "renders_std": 0.25}, "b": {"samples_std": 0.1, "renders_std": 0.0}}
    cov = coverage(factors)
    assert cov["std_ratio"]["a"] == 0.8 and cov["std_ratio"]["b"] != cov["std_ratio"]["b"]  # NaN
    assert cov["factors_under_half"] == ["b"]


def test_quantile_rows_pick_the_rows_nearest_each_quantile():
    values = torch.stack([torch.arange(101.0), torch.arange(100.0, -1, -1)], dim=1)  # 0..100 and 100..0
    rows = quantile_rows(values)
    assert rows.shape == (2, len(QUANTILES))
    assert rows[0].tolist() == [2, 50, 98]  # the value i sits in row i
    assert rows[1].tolist() == [98, 50, 2]  # the value i sits in row 100 - i


def test_range_sheet_draws_the_picked_samples_and_renders_again_alone():
    """Rows of the sheet are the very samples and renders whose predicted factors were picked:
    the latents and factors are drawn again, not new ones."""
    g = tiny_random_generator(resolution=16).eval()
    n, batch = 10, 4  # uneven chunks, as a run's last batch is
    samples_pred = torch.rand(n, F, generator=torch.Generator().manual_seed(1))
    renders_pred = torch.rand(n, F, generator=torch.Generator().manual_seed(2))
    sheet = range_sheet(g, samples_pred, renders_pred, batch, seed=0, render_seed=RENDER_SEED_A)
    q = len(QUANTILES)
    assert sheet.shape == (F * (2 * q + 1), 3, 16, 16)
    samples = torch.cat(list(sample_batches(g, n, batch, seed=0)))
    renders = torch.cat(list(render_batches(n, batch, RENDER_SEED_A, 16, torch.device("cpu"))))
    picked_s, picked_r = quantile_rows(samples_pred), quantile_rows(renders_pred)
    for f in (0, 7, F - 1):
        row = sheet[f * (2 * q + 1):(f + 1) * (2 * q + 1)]
        assert torch.allclose(row[:q], samples[picked_s[f]], atol=1e-5)
        assert torch.equal(row[q], torch.ones(3, 16, 16))  # the white tile between the halves
        assert torch.allclose(row[q + 1:], renders[picked_r[f]], atol=1e-6)


def test_evaluate_reports_coverage_and_draws_the_range_sheet(run_cli, tmp_path):
    save_model(tmp_path / "g.safetensors", tiny_random_generator(resolution=16))
    save_predictor(tmp_path / "p.safetensors", FactorPredictor(width=4).eval(), {})
    common = ("evaluate", tmp_path / "g.safetensors", "--predictor", tmp_path / "p.safetensors", "--num", "40",
              "--ppl-samples", "4", "--batch", "20", "--device", "cpu")
    code, out, err = run_cli(*common, "--json-out", tmp_path / "e.json", "--range-sheet", tmp_path / "range.png")
    assert code == 0, err
    res = json.loads((tmp_path / "e.json").read_text())
    cov = coverage(res["factors"])
    assert res["mean_std_ratio_capped"] == cov["mean_std_ratio_capped"] and res["factors_under_half"] == cov["factors_under_half"]
    assert set(res["span_ratio_2_98"]) == set(synthfaces.FACTOR_NAMES)
    assert f"mean std ratio, each capped at 1{'':>12}{cov['mean_std_ratio_capped']:.3f}" in out
    assert f"factors under half{'':>26}{len(cov['factors_under_half'])}" in out
    sheet = np.asarray(Image.open(tmp_path / "range.png"))
    q = len(QUANTILES)
    assert sheet.shape == (F * 16 + (F - 1) * 2, (2 * q + 1) * 16 + 2 * q * 2, 3)  # 16 px tiles, 2 px apart
    assert f"range sheet (rows: {', '.join(synthfaces.FACTOR_NAMES)}; samples left, renders right): {tmp_path / 'range.png'}" in out
    # the sheet's suffix and an existing sheet are refused before any work
    one_line_error(*run_cli(*common, "--range-sheet", tmp_path / "range.gif"), "range.gif: unsupported image suffix; use .png or .jpg")
    code, _, err = run_cli(*common, "--range-sheet", tmp_path / "range.png")
    assert code == 2 and "range.png" in err and "--force" in err
