"""Linear edit directions (GANSpace, SeFa, supervised), their files and their scoring."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentatlas.data.synthfaces import FACTOR_NAMES, NUM_FACTORS
from latentatlas.directions.files import Directions, load_directions, model_fingerprint, sample_w, save_directions
from latentatlas.directions.pca import ganspace
from latentatlas.directions.sefa import affine_layers, sefa
from latentatlas.directions.supervised import boundary, condition, supervised
from latentatlas.io.checkpoints import save_model
from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode
from latentatlas.metrics.paths import linear_path, path_responses, summarize
from latentatlas.models.stylegan2 import Generator
from latentatlas.training.attributes import FactorPredictor, save_predictor

from conftest import one_line_error, randomize, tiny_config


def _orthonormal(v: torch.Tensor) -> bool:
    return torch.allclose(v @ v.T, torch.eye(len(v)), atol=1e-4)


def test_ganspace_matches_a_direct_pca(tiny_generator):
    d = ganspace(tiny_generator, num_samples=6000, components=6, batch=2000, progress=False)
    assert _orthonormal(d.vectors) and d.space == "w" and d.names[0] == "pc0"
    assert (d.scales[:-1] >= d.scales[1:]).all()
    # The same samples through a plain eigen-decomposition of the covariance.
    w = sample_w(tiny_generator, 6000, seed=0, batch=2000).double()
    evals, evecs = torch.linalg.eigh(torch.cov(w.T))
    top = evecs[:, -1].float()
    assert abs(float(top @ d.vectors[0])) > 0.99
    assert math.isclose(float(d.scales[0]), float(evals[-1].sqrt()), rel_tol=0.05)


def test_sefa_is_the_top_eigenvector_of_the_affine_weights(tiny_generator):
    d = sefa(tiny_generator, layers=(0, 3), components=5, scale_samples=2000)
    assert _orthonormal(d.vectors) and d.layers == (0, 3)
    a = torch.cat([m.weight.double() for m in affine_layers(tiny_generator)[0:3]])
    a = a / a.norm(dim=1, keepdim=True)
    _, sv, vh = torch.linalg.svd(a)
    assert abs(float(vh[0].float() @ d.vectors[0])) > 0.999
    # A unit step along the top SeFa direction changes those layers' styles by the top singular
    # value, the most any unit step can; the second direction by the second.
    for i in range(2):
        assert float((a.float() @ d.vectors[i]).norm()) == pytest.approx(float(sv[i]), rel=1e-4)
    with pytest.raises(UserError, match="layers"):
        sefa(tiny_generator, layers=(2, 99))


def test_supervised_boundaries_find_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(4000, 12, generator=g)
    u = torch.randn(12, generator=g)
    u /= u.norm()
    score = codes @ u + 0.1 * torch.randn(4000, generator=g)
    for method in ("svm", "mean"):
        d = boundary(codes, score, method=method)
        assert float(d @ u) > 0.95, method
    with pytest.raises(UserError, match="NaN"):
        boundary(codes, torch.full((4000,), float("nan")))
    with pytest.raises(UserError, match=r"method \(--method\) must be svm or mean: got 'lasso'"):
        boundary(codes, score, method="lasso")


def test_conditional_direction_is_orthogonal_to_the_others():
    g = torch.Generator().manual_seed(1)
    codes = torch.randn(3000, 10, generator=g)
    a, b = torch.zeros(10), torch.zeros(10)
    a[0], b[0], b[1] = 1.0, 0.6, 0.8  # correlated attributes
    scores = torch.stack([codes @ a, codes @ b], 1)
    d = supervised(codes, scores, ["a", "b"], model="m", method="mean", conditional_on=["b"])
    assert abs(float(d.vectors[0] @ (codes.T @ scores[:, 1]) / (codes.T @ scores[:, 1]).norm())) < 0.05
    assert "conditional" in d.method
    assert abs(float(condition(a, b[None]) @ b)) < 1e-6
    with pytest.raises(UserError, match="cannot condition"):
        supervised(codes, scores, ["a", "b"], model="m", conditional_on=["c"])


def test_apply_moves_codes_by_strength_times_scale(tiny_generator):
    v = torch.zeros(2, 16)
    v[0, 0] = v[1, 1] = 1
    d = Directions(v, torch.tensor([2.0, 3.0]), ["x", "y"], "w", "test", model_fingerprint(tiny_generator))
    w = LatentCode("w", torch.zeros(3, 16))
    moved = d.apply(w, "y", torch.tensor([1.0, 0.0, -1.0]))
    assert moved.tensor[:, 1].tolist() == [3.0, 0.0, -3.0] and moved.tensor[:, 0].abs().sum() == 0
    layered = Directions(v, torch.ones(2), ["x", "y"], "w", "test", "fp", layers=(1, 3))
    wp = LatentCode("w+", torch.zeros(2, 6, 16))
    out = layered.apply(wp, 0, 1.0)
    assert out.tensor[:, 1:3, 0].eq(1).all() and out.tensor[:, [0, 3, 4, 5], 0].eq(0).all()
    with pytest.raises(UserError, match="w\\+ code"):
        layered.apply(w, 0, 1.0)
    zdir = Directions(v, torch.ones(2), ["x", "y"], "z", "test", "fp")
    with pytest.raises(UserError, match="needs a code in z"):
        zdir.apply(w, 0, 1.0)
    with pytest.raises(UserError, match="no direction named"):
        d.apply(w, "nose", 1.0)
    with pytest.raises(UserError, match="does not exist"):
        d.apply(w, 5, 1.0)


def test_directions_file_round_trip_and_model_check(tmp_path, tiny_generator):
    d = sefa(tiny_generator, components=4, scale_samples=500)
    path = tmp_path / "sefa.safetensors"
    save_directions(path, d)
    back = load_directions(path)
    assert torch.equal(back.vectors, d.vectors) and back.names == d.names and back.method == "sefa"
    back.check_model(tiny_generator)
    fp16 = Generator(tiny_generator.config)
    fp16.load_state_dict({k: v.half().float() for k, v in tiny_generator.state_dict().items()})
    back.check_model(fp16)  # an fp16 copy of the same model is the same model
    other = randomize(Generator(tiny_config()), seed=5)
    with pytest.raises(UserError, match="made for another model"):
        back.check_model(other)
    save_model(tmp_path / "model.safetensors", tiny_generator)
    with pytest.raises(UserError, match="not a latentatlas directions file"):
        load_directions(tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a readable directions file"):
        load_directions(tmp_path / "junk.safetensors")
    # Our kind of file, wrong inside (by hand, another version, a diverged run): one line, not a traceback.
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = {"vectors": d.vectors.contiguous(), "scales": d.scales.contiguous()}
    for name, bad_meta, bad_tensors, message in [
        ("no_layers", {k: v for k, v in meta.items() if k != "layers"}, tensors, "missing or malformed field .KeyError: 'layers'"),
        ("bad_json", {**meta, "names": "[not json"}, tensors, "missing or malformed field .JSONDecodeError"),
        ("nan", meta, {**tensors, "vectors": torch.full(d.vectors.shape, float("nan"))}, "tensor vectors holds NaN"),
    ]:
        save_file(bad_tensors, str(tmp_path / f"{name}.safetensors"), metadata=bad_meta)
        with pytest.raises(UserError, match=message):
            load_directions(tmp_path / f"{name}.safetensors")


def test_summarize_scores_disentanglement_and_completeness():
    perfect = torch.eye(4, NUM_FACTORS) * 2
    signed = perfect.clone()
    signed[1, 1] = -2
    s = summarize(perfect, signed)
    assert s["disentanglement"] == pytest.approx(1.0) and s["completeness"] == pytest.approx(1.0, abs=1e-6)
    assert [p["name"] for p in s["paths"][:2]] == [f"{FACTOR_NAMES[0]}+", f"{FACTOR_NAMES[1]}-"]
    assert s["paths"][0]["off_target_drift"] == 0
    mixed = summarize(torch.ones(4, NUM_FACTORS), torch.ones(4, NUM_FACTORS))
    assert mixed["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert mixed["paths"][1]["name"].endswith("+2")  # repeated names are numbered


class ColourPredictor(nn.Module):
    """Stand-in predictor: 'factors' are the image's mean R, G, B (the rest zero)."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(images.shape[0], NUM_FACTORS)
        out[:, :3] = images.mean([2, 3])
        return out


def test_path_responses_measure_a_path_effect(tiny_generator):
    starts = sample_w(tiny_generator, 6, seed=3)
    v = torch.randn(16)
    slopes, signed, pearson = path_responses(tiny_generator, ColourPredictor(), [linear_path(v), linear_path(-v)], starts, 1.0, steps=5)
    assert slopes.shape == (2, NUM_FACTORS) and (slopes >= 0).all()
    assert slopes[:, :3].sum() > 0 and slopes[:, 3:].abs().sum() == 0
    assert torch.allclose(signed[0], -signed[1], atol=1e-5)  # reversing the path flips the sign
    assert ((pearson >= 0) & (pearson <= 1 + 1e-6)).all()
    # The figures are least-squares fits of each start's mean colour against arc length, computed
    # here directly: frames at t in [-1, 1] along the unit vector, every w+ layer the same w.
    t = np.linspace(-1, 1, 5)
    for k, sign in enumerate((1, -1)):
        fits, rs = [], []
        for w0 in starts:
            w = w0 + torch.from_numpy(t).float()[:, None] * sign * v / v.norm()
            with torch.no_grad():
                colour = tiny_generator.synthesis(w[:, None].repeat(1, tiny_generator.num_ws, 1)).mean([2, 3]).double().numpy()
            fits.append([np.polyfit(t, colour[:, c], 1)[0] for c in range(3)])
            rs.append([np.corrcoef(t, colour[:, c])[0, 1] for c in range(3)])
        fits, rs = np.array(fits), np.array(rs)
        np.testing.assert_allclose(signed[k, :3], fits.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(slopes[k, :3], np.abs(fits).mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(pearson[k, :3], np.abs(rs).mean(0), rtol=1e-4, atol=1e-6)


@pytest.fixture
def model_file(tmp_path, tiny_generator):
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_generator)
    return path


def test_directions_commands_end_to_end(run_cli, model_file, tmp_path):
    pca = tmp_path / "pca.safetensors"
    code, out, err = run_cli("directions", "pca", model_file, "--out", pca, "--samples", "600", "--components", "4", "--device", "cpu")
    assert code == 0, err
    assert len(load_directions(pca)) == 4
    sefa_file = tmp_path / "sefa.safetensors"
    code, out, err = run_cli("directions", "sefa", model_file, "--out", sefa_file, "--layers", "0-2", "--components", "3", "--device", "cpu")
    assert code == 0, err
    assert load_directions(sefa_file).layers == (0, 2)
    code, out, err = run_cli("traverse", model_file, sefa_file, "--path", "1", "--seeds", "0-1", "--frames", "3", "--out", tmp_path / "t", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "t" / "traverse_sefa1.png").stat().st_size > 0 and (tmp_path / "t" / "traverse_sefa1.gif").exists()
    # Supervised from user scores.
    w = np.random.RandomState(0).randn(400, 16).astype(np.float32)
    npz = tmp_path / "scores.npz"
    np.savez(npz, latents=w, scores=w[:, :2] * 2, names=np.array(["first", "second"]))
    sup = tmp_path / "sup.safetensors"
    code, out, err = run_cli("directions", "supervised", model_file, "--scores", npz, "--out", sup, "--method", "mean", "--device", "cpu")
    assert code == 0, err
    d = load_directions(sup)
    assert d.names == ["first", "second"] and float(d.vectors[0, 0]) > 0.9
    # Scoring against a (here untrained) factor predictor writes the JSON and the heat-map.
    pred = tmp_path / "pred.safetensors"
    torch.manual_seed(0)
    save_predictor(pred, FactorPredictor(width=4, feature_dim=8), {"note": "untrained"})
    code, out, err = run_cli("directions", "score", model_file, pca, "--predictor", pred, "--starts", "4", "--steps", "3", "--top", "2", "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0, err
    summary = json.loads((tmp_path / "s" / "score.json").read_text())
    # The command's figures are the library's for the same settings (4 starts, 3 frames, the first 2 paths).
    from latentatlas.directions.score import score_paths
    from latentatlas.directions.warped import load_paths
    from latentatlas.io.checkpoints import load_model
    from latentatlas.training.attributes import load_predictor

    g, _ = load_model(model_file)
    expected = score_paths(g, load_predictor(pred, "cpu"), load_paths(pca, g.device), starts=4, steps=3, top=2)
    assert len(summary["paths"]) == 2 and len(summary["slopes"]) == 2
    assert summary.keys() == expected.keys()
    for key in ("disentanglement", "completeness", "mean_steepness", "mean_off_target_drift"):
        assert summary[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9), key
    assert [p["name"] for p in summary["paths"]] == [p["name"] for p in expected["paths"]]
    np.testing.assert_allclose(summary["slopes"], expected["slopes"], rtol=1e-5, atol=1e-9)
    assert (tmp_path / "s" / "heatmap.png").stat().st_size > 0


def test_directions_commands_refuse_bad_input(run_cli, model_file, tmp_path):
    other = tmp_path / "other.safetensors"
    save_model(other, randomize(Generator(tiny_config()), seed=9))
    pca = tmp_path / "pca.safetensors"
    assert run_cli("directions", "pca", other, "--out", pca, "--samples", "300", "--components", "3", "--device", "cpu")[0] == 0
    code, out, err = run_cli("traverse", model_file, pca, "--out", tmp_path / "t", "--device", "cpu")
    one_line_error(code, out, err, "error: these directions were made for another model (fingerprint ",
                   "): compute them again for this model")
    assert not (tmp_path / "t").exists()
    code, _, err = run_cli("directions", "sefa", model_file, "--out", tmp_path / "s.safetensors", "--layers", "3-1")
    one_line_error(code, "", err, "error: --layers '3-1': give a range start-end with end > start, e.g. 0-4 (end excluded)")
    code, _, err = run_cli("directions", "pca", model_file, "--out", tmp_path / "p.safetensors", "--components", "99", "--samples", "300")
    one_line_error(code, "", err, "error: at most 16 components in a 16-d W, asked for 99")
    assert not (tmp_path / "p.safetensors").exists()
    code, _, err = run_cli("traverse", model_file, pca, "--strength", "big", "--out", tmp_path / "t")
    one_line_error(code, "", err, "error: --strength 'big': give two numbers like -3,3")
    code, _, err = run_cli("directions", "supervised", model_file, "--out", tmp_path / "x.safetensors")
    one_line_error(code, "", err, "error: give exactly one of --predictor or --scores")


def test_a_cut_or_missing_predictor_file_is_one_line_error(tmp_path):
    """load_predictor reads user paths (--predictor) through io.tensorfile like every other file kind."""
    from latentatlas.models.bundled import resolve_predictor
    from latentatlas.training.attributes import load_predictor

    with pytest.raises(UserError, match="no such file"):
        load_predictor(tmp_path / "missing.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(resolve_predictor("factors").read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable factor predictor file"):
        load_predictor(cut)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(resolve_predictor("factors")), framework="pt") as f:
        meta = f.metadata()
    narrow = {**meta, "config": json.dumps({**json.loads(meta["config"]), "width": 8})}
    save_file(load_file(str(resolve_predictor("factors"))), str(tmp_path / "narrow.safetensors"), metadata=narrow)
    with pytest.raises(UserError, match="narrow.safetensors: a factor predictor file with a missing or malformed field .RuntimeError"):
        load_predictor(tmp_path / "narrow.safetensors")


@pytest.mark.parametrize("args,message", [
    (("pca", "--samples", "3", "--components", "4"), "--samples 3: use at least 4 (one per PCA component; or ask for fewer --components)"),
    (("pca", "--samples", "0", "--components", "4"), "--samples 0: use at least 4"),
    (("pca", "--components", "0"), "--components 0: use at least 1"),
    (("sefa", "--components", "0"), "--components 0: use at least 1"),
])
def test_direction_finders_refuse_counts_below_their_minimum(run_cli, model_file, tmp_path, args, message):
    out = tmp_path / "d.safetensors"
    one_line_error(*run_cli("directions", args[0], model_file, *args[1:], "--out", out, "--device", "cpu"), message)
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (("--top", "0"), "--top 0: use at least 1"),
    (("--starts", "0"), "--starts 0: use at least 1"),
    (("--frames", "1"), "--frames 1: use at least 2 (frames per path: a slope needs two)"),
    (("--length", "0"), "--length 0: give a positive half path length"),
    (("--length", "nan"), "--length nan: give a positive half path length"),
    (("--top", "1", "--reconstructor-steps", "5"), "--top 1: use at least 2 (paths for the reconstructor to tell apart; or --reconstructor-steps 0)"),
])
def test_directions_score_refuses_settings_that_give_no_scores_before_any_work(run_cli, model_file, tmp_path, args, message):
    """--steps 1 or --length 0 used to give NaN scores, --top 0 and --starts 0 tracebacks."""
    out = tmp_path / "s"
    one_line_error(*run_cli("directions", "score", model_file, tmp_path / "pca.safetensors", *args, "--out", out, "--device", "cpu"), message)
    assert not out.exists()


def test_supervised_scores_file_is_read_as_code_files_are(run_cli, model_file, tmp_path):
    """A text file given as --scores used to get numpy's advice about allow_pickle."""
    out = tmp_path / "sup.safetensors"
    fake = tmp_path / "fake.npz"
    fake.write_text("latents,scores\n1,2\n")
    one_line_error(*run_cli("directions", "supervised", model_file, "--scores", fake, "--out", out, "--device", "cpu"),
                   "fake.npz: not a readable .npz file (it is not a zip archive of arrays)")
    assert "allow_pickle" not in run_cli("directions", "supervised", model_file, "--scores", fake, "--out", out)[2]
    np.savez(tmp_path / "codes.npz", latents=np.zeros((4, 16), np.float32))
    one_line_error(*run_cli("directions", "supervised", model_file, "--scores", tmp_path / "codes.npz", "--out", out, "--device", "cpu"),
                   "codes.npz: needs arrays latents [N, D], scores [N, F], names [F]; it has no scores, names")
    assert not out.exists()


def test_directions_layers_and_conditional_name_what_is_valid(run_cli, model_file, tmp_path):
    out = tmp_path / "d.safetensors"
    one_line_error(*run_cli("directions", "pca", model_file, "--layers", "0-40", "--samples", "100", "--components", "2", "--out", out),
                   "--layers 0-40: this model has 6 layers; give start-end within 0-6 (end excluded), e.g. 0-4")
    # Refused before 10,000 codes are sampled and scored (no progress bar), with the attributes listed.
    one_line_error(*run_cli("directions", "supervised", model_file, "--predictor", "factors", "--conditional", "yaw,nosuch", "--out", out),
                   "cannot condition on nosuch: not among the attributes; use some of face_width, jaw,", "yaw, roll, background_hue, light")
    assert not out.exists()


def test_score_walks_a_layer_range_as_traverse_applies_it(tiny_generator):
    """A file made with --layers used to be scored (and its reconstructor trained) as an
    all-layer edit, while `traverse` moved only its layers."""
    from latentatlas.directions.score import score_paths
    from latentatlas.directions.warped import PathSet
    from latentatlas.inversion.projector import w_statistics

    g = torch.Generator().manual_seed(2)
    v = torch.randn(2, 16, generator=g)
    v = v / v.norm(dim=1, keepdim=True)
    fp = model_fingerprint(tiny_generator)
    layered = Directions(v, torch.ones(2), ["a", "b"], "w", "test", fp, layers=(4, 6))
    everywhere = Directions(v, torch.ones(2), ["a", "b"], "w", "test", fp)
    pred = ColourPredictor()
    s_layered = score_paths(tiny_generator, pred, PathSet(layered), starts=4, steps=3, top=1)
    s_all = score_paths(tiny_generator, pred, PathSet(everywhere), starts=4, steps=3, top=1)
    assert s_layered["layers"] == [4, 6] and s_all["layers"] is None

    def applied(w0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # traverse's edit: Directions.apply on w+ codes
        base = LatentCode("w+", w0.unsqueeze(1).repeat(1, tiny_generator.num_ws, 1))
        return torch.stack([layered.apply(base, 0, float(s)).tensor for s in t])

    _, w_std = w_statistics(tiny_generator, 5000)
    expected, _, _ = path_responses(tiny_generator, pred, [applied], sample_w(tiny_generator, 4, seed=7), 0.5 * w_std, 3)
    assert torch.allclose(torch.tensor(s_layered["slopes"]), expected, atol=1e-5)
    assert not torch.allclose(torch.tensor(s_layered["slopes"]), torch.tensor(s_all["slopes"]), atol=1e-3)
    # The reconstructor sees the same edit: the field moves only layers 4 and 5 of w+ codes.
    field = PathSet(layered).field(torch.zeros(3, tiny_generator.num_ws, 16), torch.tensor([0, 1, 0]))
    assert field[:, :4].abs().sum() == 0 and torch.allclose(field[:, 4:], v[[0, 1, 0]].unsqueeze(1).expand(-1, 2, -1))
    with pytest.raises(UserError, match="w\\+ codes"):
        PathSet(layered).walk(0)(torch.zeros(2, 16), torch.zeros(3))
    s = score_paths(tiny_generator, pred, PathSet(layered), starts=2, steps=2, top=2, reconstructor_steps=1, reconstructor_batch=2)
    assert s["reconstructor"]["space"] == "w+"


def test_sefa_keeps_only_directions_that_change_a_style(tiny_generator, run_cli, model_file, tmp_path):
    """Layer 4 has 8 style channels in a 16-d W: A^T A has rank 8, and the other 8 eigenvectors
    (once returned, with the CLI's cap at w_dim only) change no style at all."""
    d = sefa(tiny_generator, layers=(4, 5), components=16, scale_samples=500)
    a = torch.nn.functional.normalize(affine_layers(tiny_generator)[4].weight.double(), dim=1)
    assert len(d) == 8 and d.info["rank"] == 8 and d.info["components_asked"] == 16
    assert (a.float() @ d.vectors.T).norm(dim=0).min() > 0.1  # each kept direction moves the styles
    out = tmp_path / "sefa.safetensors"
    code, _, err = run_cli("directions", "sefa", model_file, "--out", out, "--layers", "4-5", "--components", "16", "--device", "cpu")
    assert code == 0, err
    assert len(load_directions(out)) == 8 and "note: 8 directions, not 16: the stacked affine weights have rank 8" in err


def test_sefa_layer_range_names_its_own_end(run_cli, model_file, tmp_path):
    """The generic --layers check allows 0-6 (the model's 6 ws); SeFa's range ends at 5, the
    conv layers, and used to say so as '0..5, got 0..6'."""
    out = tmp_path / "sefa.safetensors"
    one_line_error(*run_cli("directions", "sefa", model_file, "--out", out, "--layers", "0-6", "--device", "cpu"),
                   "--layers 0-6: SeFa factorises the 5 conv layers' style affines", "give start-end within 0-5 (end excluded)")
    assert not out.exists()


@pytest.mark.parametrize("method", ["svm", "mean"])
def test_supervised_refuses_codes_that_are_not_finite(run_cli, model_file, tmp_path, method):
    """A NaN code reached the SVM as sklearn's ValueError traceback; the mean method saved NaN vectors."""
    w = np.random.RandomState(0).randn(200, 16).astype(np.float32)
    scores = w[:, :2].copy()
    w[5, 3] = np.nan
    npz = tmp_path / "scores.npz"
    np.savez(npz, latents=w, scores=scores, names=np.array(["first", "second"]))
    out = tmp_path / "sup.safetensors"
    one_line_error(*run_cli("directions", "supervised", model_file, "--scores", npz, "--out", out, "--method", method, "--device", "cpu"),
                   "scores.npz: latents hold 1 NaN or infinite values; remove the codes that have them")
    assert not out.exists()


@pytest.mark.parametrize("method", ["svm", "mean"])
def test_duplicate_codes_give_no_direction_rather_than_nan(method):
    """Top and bottom groups of the same code: the difference (or normal) is 0, and 0/0 gave NaN vectors."""
    codes = torch.ones(40, 8)
    scores = torch.arange(40.0).unsqueeze(1)
    with pytest.raises(UserError, match="smile: the top and bottom 10% of the codes by score do not differ"):
        supervised(codes, scores, ["smile"], model="m", method=method)


def test_save_directions_refuses_vectors_or_scales_that_are_not_finite(tmp_path):
    """load_directions refuses such a file; it used to be written all the same."""
    path = tmp_path / "d.safetensors"
    good = Directions(torch.eye(2, 4), torch.ones(2), ["a", "b"], "w", "test", "fp")
    for vectors, scales, which in [(torch.full((2, 4), float("nan")), torch.ones(2), "vectors"),
                                   (torch.eye(2, 4), torch.tensor([1.0, float("inf")]), "scales")]:
        with pytest.raises(UserError, match=f"not written: the directions' {which} hold NaN"):
            save_directions(path, Directions(vectors, scales, ["a", "b"], "w", "test", "fp"))
        assert not path.exists()
    save_directions(path, good)
    assert torch.equal(load_directions(path).vectors, good.vectors)


class NoWork(nn.Module):
    """A predictor that fails the test if any frame is read."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        raise AssertionError("frames were rendered and read before the settings were checked")


def test_score_refuses_a_one_direction_file_with_a_reconstructor_before_walking(tiny_generator):
    """It used to walk and read every frame, then fail in the reconstructor."""
    from latentatlas.directions.score import score_paths
    from latentatlas.directions.warped import PathSet

    one = PathSet(Directions(torch.eye(1, 16), torch.ones(1), ["a"], "w", "test", model_fingerprint(tiny_generator)))
    with pytest.raises(UserError, match="the reconstructor needs at least 2 paths to tell apart, and this file has 1"):
        score_paths(tiny_generator, NoWork(), one, starts=2, steps=2, reconstructor_steps=5)
    assert len(score_paths(tiny_generator, ColourPredictor(), one, starts=2, steps=2)["paths"]) == 1  # fine without one


def _edited(tmp_path, good, name: str, meta: dict[str, str] | None = None, tensors: dict[str, torch.Tensor] | None = None):
    """A copy of the file `good` with some metadata or tensors replaced (a file edited by hand or
    written by another version: its model fingerprint still matches)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(good), framework="pt") as f:
        old = f.metadata()
    path = tmp_path / f"{name}.safetensors"
    save_file({**load_file(str(good)), **(tensors or {})}, str(path), metadata={**old, **(meta or {})})
    return path


@pytest.fixture
def good_directions(tmp_path, tiny_generator):
    path = tmp_path / "good.safetensors"
    save_directions(path, Directions(torch.eye(3, 16), torch.ones(3), ["a", "b", "c"], "w", "test",
                                     model_fingerprint(tiny_generator), layers=(1, 3)))
    return path


@pytest.mark.parametrize("name,meta,tensors,message", [
    ("one_layer", {"layers": "[5]"}, None, "its layers must be null (every layer) or [start, end] with 0 <= start < end, not [5]"),
    ("text_layers", {"layers": '"ab"'}, None, 'not "ab": make the file again (e.g. with --layers 0-4)'),
    ("reversed", {"layers": "[7, 3]"}, None, "with 0 <= start < end, not [7, 3]"),
    ("float_layers", {"layers": "[0.5, 3]"}, None, "not [0.5, 3]"),
    ("int_names", {"names": "[1, 2, 3]"}, None, "its names must be a list of 3 strings, one per direction, not [1, 2, 3]"),
    ("short_names", {"names": '["a"]'}, None, 'a list of 3 strings, one per direction, not ["a"]'),
    ("same_names", {"names": '["a", "b", "a"]'}, None, 'names a direction "a" more than once'),
    ("empty", {"names": "[]"}, {"vectors": torch.zeros(0, 16), "scales": torch.zeros(0)}, "holds no directions: make it again"),
    ("zero", None, {"vectors": torch.eye(3, 16) * torch.tensor([[1.0], [0.0], [1.0]])}, "direction 1 is all zeros, so it points nowhere"),
    ("ints", None, {"vectors": torch.eye(3, 16, dtype=torch.int32)}, "its vectors are int32, not floats"),
])
def test_a_malformed_directions_file_is_refused_on_reading(tmp_path, good_directions, name, meta, tensors, message):
    """Layers [5] and "ab", int names and an empty file were tracebacks in the commands, layers [7, 3]
    an edit that did nothing without a word."""
    from latentatlas.directions.warped import load_paths

    path = _edited(tmp_path, good_directions, name, meta, tensors)
    for load in (load_directions, load_paths):
        with pytest.raises(UserError) as e:
            load(path)
        assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


@pytest.mark.parametrize("name,meta,tensors,message", [
    ("wide", None, {"vectors": torch.eye(3, 17)}, "these directions are 17-d and this model's w is 16-d: compute them again for this model"),
    ("past_end", {"layers": "[0, 99]"}, None, "these directions edit w+ layers 0-99 (end excluded) and this model has 6: "
                                              "compute them again with --layers within 0-6"),
])
def test_directions_that_do_not_fit_the_model_are_refused_before_any_work(run_cli, tmp_path, tiny_generator, model_file,
                                                                           good_directions, name, meta, tensors, message):
    """Vectors 17 wide for a 16-d W were a size-mismatch traceback in traverse and `directions score`;
    layers [0, 99] were clamped to the model's 6 without a word."""
    path = _edited(tmp_path, good_directions, name, meta, tensors)
    back = load_directions(path)
    with pytest.raises(UserError) as e:
        back.check_model(tiny_generator)
    assert str(e.value) == message
    load_directions(good_directions).check_model(tiny_generator)  # the file they were edited from fits
    one_line_error(*run_cli("traverse", model_file, path, "--frames", "2", "--seeds", "0", "--out", tmp_path / "t", "--device", "cpu"), message)
    one_line_error(*run_cli("directions", "score", model_file, path, "--predictor", "factors", "--starts", "2", "--frames", "2",
                            "--top", "1", "--out", tmp_path / "s", "--device", "cpu"), message)
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


def test_the_commands_refuse_an_empty_or_malformed_directions_file_in_one_line(run_cli, tmp_path, model_file, good_directions):
    """An empty file reached `directions score` as torch.stack's 'expects a non-empty TensorList', int names
    traverse as re.sub's TypeError."""
    empty = _edited(tmp_path, good_directions, "empty", {"names": "[]"}, {"vectors": torch.zeros(0, 16), "scales": torch.zeros(0)})
    one_line_error(*run_cli("directions", "score", model_file, empty, "--predictor", "factors", "--starts", "2", "--frames", "2",
                            "--out", tmp_path / "s", "--device", "cpu"), f"{empty}: holds no directions")
    int_names = _edited(tmp_path, good_directions, "int_names", {"names": "[1, 2, 3]"})
    one_line_error(*run_cli("traverse", model_file, int_names, "--frames", "2", "--seeds", "0", "--out", tmp_path / "t", "--device", "cpu"),
                   f"{int_names}: its names must be a list of 3 strings")
    assert not (tmp_path / "t").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("method", ["svm", "mean"])
def test_scores_that_tell_no_groups_apart_give_no_direction(run_cli, model_file, tmp_path, method):
    """Constant scores gave both attributes the same arbitrary vector (the sort's tie-break chose the
    groups), written with exit code 0."""
    w = np.random.RandomState(0).randn(100, 16).astype(np.float32)
    npz = tmp_path / "const.npz"
    np.savez(npz, latents=w, scores=np.stack([w[:, 0], np.zeros(100)], 1), names=np.array(["varies", "flat"]))
    out = tmp_path / "sup.safetensors"
    one_line_error(*run_cli("directions", "supervised", model_file, "--scores", npz, "--out", out, "--method", method, "--device", "cpu"),
                   "flat: every code scores 0, so the scores tell no top and bottom groups apart: give scores that vary across the codes")
    assert not out.exists()
    # A tie across the cut: 5 of 100 codes score 1, so the top 10% are half drawn by the tie-break.
    rare = torch.zeros(100)
    rare[:5] = 1
    with pytest.raises(UserError, match="rare: the top and bottom 10% of the codes by score both hold codes scoring 0, .*a smaller --fraction"):
        boundary(torch.from_numpy(w), rare, method, name="rare")
    assert float(boundary(torch.from_numpy(w), rare, method, fraction=0.05, name="rare").norm()) == pytest.approx(1.0)


@pytest.mark.parametrize("arrays,message", [
    (lambda w: dict(scores=w[:50, :2]), "100 codes but 50 rows of scores: give one row of scores per code"),
    (lambda w: dict(scores=np.where(np.arange(100)[:, None] == 3, np.nan, w[:, :2])),
     "scores hold 2 NaN or infinite values; remove the codes that have them, or score them again"),
    (lambda w: dict(names=np.array(["a", "b", "c"])), "scores are [100, 2] for 3 names: give scores [N, 3], a column per name"),
    (lambda w: dict(names=np.array(["a", "a"])), "the scores name 'a' more than once: give each column its own name"),
])
def test_a_scores_file_that_does_not_add_up_is_named_with_what_to_give(run_cli, model_file, tmp_path, arrays, message):
    """The messages named neither the file nor a fix ('100 codes but 50 scores', 'scores hold NaN or infinite values')."""
    w = np.random.RandomState(0).randn(100, 16).astype(np.float32)
    npz = tmp_path / "scores.npz"
    np.savez(npz, **{"latents": w, "scores": w[:, :2], "names": np.array(["a", "b"]), **arrays(w)})
    out = tmp_path / "sup.safetensors"
    one_line_error(*run_cli("directions", "supervised", model_file, "--scores", npz, "--out", out, "--device", "cpu"), f"{npz}: {message}")
    assert not out.exists()


def test_factor_directions_are_what_directions_supervised_with_a_predictor_writes(run_cli, tiny_generator, tmp_path):
    """One way from a predictor to supervised directions (the command, the bundling job and the
    directions table): sampled w codes, scored by the predictor, one direction per factor."""
    from latentatlas.directions.supervised import factor_directions
    from latentatlas.training.attributes import load_predictor

    model, out, pred = tmp_path / "m.safetensors", tmp_path / "sup.safetensors", tmp_path / "p.safetensors"
    save_model(model, tiny_generator)
    torch.manual_seed(0)  # an untrained predictor: the bundled one's glasses saturate on a tiny model's images
    save_predictor(pred, FactorPredictor(width=4, feature_dim=8), {"note": "untrained"})
    code, _, err = run_cli("directions", "supervised", model, "--predictor", pred, "--samples", "200", "--method", "mean",
                           "--conditional", "yaw", "--out", out, "--device", "cpu")
    assert code == 0, err
    d = factor_directions(tiny_generator, load_predictor(pred), 200, method="mean", conditional_on=["yaw"])
    written = load_directions(out)
    assert d.names == written.names == list(FACTOR_NAMES) and d.method == written.method == "supervised-mean-conditional"
    assert d.model == written.model == model_fingerprint(tiny_generator)
    assert torch.allclose(d.vectors, written.vectors, atol=1e-5) and torch.allclose(d.vectors.norm(dim=1), torch.ones(len(d)))
    other = factor_directions(tiny_generator, load_predictor(pred), 200, seed=1, method="mean", conditional_on=["yaw"])
    assert not torch.allclose(other.vectors, d.vectors, atol=1e-3)  # the seed picks the sampled codes
