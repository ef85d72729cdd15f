"""Metrics on a StyleMapGAN model: PPL in the stylemap, the encoder's reconstruction, `evaluate`."""

from __future__ import annotations

import json

import pytest
import torch

from latentatlas.io.checkpoints import load_stylemap_model, read_model_metadata, save_stylemap_model
from latentatlas.metrics.evaluate import reconstruction_scores, sample_batches
from latentatlas.metrics.ppl import perceptual_path_length
from latentatlas.models.bundled import resolve_model
from latentatlas.models.stylemap import StyleMapConfig
from latentatlas.training.attributes import FactorPredictor, load_predictor, save_predictor
from conftest import one_line_error
from test_stylemap import TINY64, randomized


def pixel_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().flatten(1).sum(1)


def test_ppl_walks_the_stylemap_and_is_zero_when_the_mapping_is_constant():
    g, _ = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    ppl_w = perceptual_path_length(g, pixel_distance, space="w", num_samples=16, batch=8)
    ppl_z = perceptual_path_length(g, pixel_distance, space="z", num_samples=16, batch=8)
    assert 0 < ppl_w < float("inf") and 0 < ppl_z < float("inf")
    last = g.mapping_z[-1]
    with torch.no_grad():
        last.weight.zero_()  # every z maps to the bias: one stylemap, one image
    assert perceptual_path_length(g, pixel_distance, space="w", num_samples=16, batch=8) == pytest.approx(0.0, abs=1e-6)


def test_sample_batches_draw_from_a_stylemap_generator_with_truncation():
    g, _ = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    plain = torch.cat(list(sample_batches(g, 6, 4, seed=1)))
    again = torch.cat(list(sample_batches(g, 6, 4, seed=1)))
    towards_mean = torch.cat(list(sample_batches(g, 6, 4, seed=1, psi=0.0)))
    assert plain.shape == (6, 3, 64, 64) and torch.equal(plain, again)
    # psi 0: every sample is the mean stylemap's image
    assert (towards_mean - towards_mean[:1]).abs().max() < 1e-5 and (plain - plain[:1]).abs().max() > 1e-3


def test_reconstruction_scores_tell_a_trained_encoder_from_a_random_one():
    predictor = load_predictor("factors", "cpu")
    trained_g, trained_e, _ = load_stylemap_model(resolve_model("faces64-stylemap"))
    random_g, random_e = randomized(StyleMapConfig(latent_spatial_size=8, **TINY64))
    trained = reconstruction_scores(trained_g, trained_e, predictor, num=24, batch=12)
    untrained = reconstruction_scores(random_g, random_e, predictor, num=24, batch=12)
    assert trained["num_images"] == 24
    assert trained["predictor_floor_mae"] == pytest.approx(untrained["predictor_floor_mae"])  # same renders
    assert trained["predictor_floor_mae"] < 0.03
    assert trained["mse"] < 0.03 < untrained["mse"]
    assert trained["predictor_floor_mae"] < trained["factor_mae_vs_truth"] < 0.1 < untrained["factor_mae_vs_truth"]


def test_evaluate_command_scores_a_stylemap_model(run_cli, tmp_path):
    g, e = randomized(StyleMapConfig(latent_spatial_size=4, **TINY64))
    save_stylemap_model(tmp_path / "sm.safetensors", g, e, metadata={"trained_on": "synthfaces (procedural, 64 px)"})
    save_predictor(tmp_path / "p.safetensors", FactorPredictor(width=4).eval(), {})
    code, out, err = run_cli("evaluate", tmp_path / "sm.safetensors", "--predictor", tmp_path / "p.safetensors",
                             "--num", "8", "--ppl-samples", "4", "--batch", "4", "--json-out", tmp_path / "e.json")
    assert code == 0, err
    assert "PPL in stylemap" in out and "encoder reconstruction, pixel MSE" in out
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["reconstruction"]["num_images"] == 8 and res["reconstruction"]["mse"] > 0
    # PPL in the stylemap of the saved model, seen through the given predictor's features (the library's, seed 0)
    from latentatlas.inversion.losses import factor_feature_distance

    sm, _, _ = load_stylemap_model(tmp_path / "sm.safetensors")
    features = load_predictor(tmp_path / "p.safetensors", "cpu").features
    ppl = perceptual_path_length(sm, factor_feature_distance(features), space="w", num_samples=4, batch=4)
    assert ppl > 0 and res["ppl_stylemap_factor_features"] == pytest.approx(ppl, rel=1e-5)
    assert "ppl_w_factor_features" not in res
    assert res["factor_fid_samples_vs_renders"] > 0


def test_train_stylemap_monitors_the_factors_on_schedule(run_cli, tmp_path):
    """--metrics-kimg: the factor monitor the StyleGAN2 trainer has, a line per period and where the run stops."""
    from latentatlas.training import stats_log

    tiny = ["--resolution", "16", "--batch", "4", "--latent-spatial-size", "4", "--style-dim", "8", "--mapping-layers", "2",
            "--channel-base", "128", "--channel-max", "16", "--perceptual", "none", "--device", "cpu"]
    code, _, err = run_cli("train-stylemap", "--out", tmp_path / "run", "--kimg", "0.012", "--metrics-kimg", "0.008",
                           "--metrics-num", "16", "--keep-best", "fid", *tiny)
    assert code == 0, err
    lines = stats_log.read_lines(tmp_path / "run" / stats_log.METRICS_FILE)
    assert [line["kimg"] for line in lines] == [0.008, 0.012]
    assert all(line["num"] == 16 and line["factor_fid"] > 0 and 0 < line["mean_std_ratio_capped"] <= 1 for line in lines)
    # --keep-best fid: the generator and encoder of the lower-FID line, a model the commands load
    kept = json.loads(read_model_metadata(tmp_path / "run" / "best.safetensors")["info"])
    assert kept["monitor"] == min(lines, key=lambda line: line["factor_fid"]) and kept["kimg"] == kept["monitor"]["kimg"]
    assert load_stylemap_model(tmp_path / "run" / "best.safetensors")[0].config.latent_spatial_size == 4
    code, _, err = run_cli("train-stylemap", "--out", tmp_path / "other", "--metrics-kimg", "-1", *tiny)
    one_line_error(code, "", err, "--metrics-kimg -1: give a finite number >= 0 (0: off)")
    assert not (tmp_path / "other").exists()
