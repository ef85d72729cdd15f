import pytest
import torch

from latentatlas.io.errors import UserError
from latentatlas.latent.gaussian import GaussianPrior, degaussianize, gaussianity_report, gaussianize

from conftest import one_line_error


@pytest.fixture
def prior(tiny_generator):
    return GaussianPrior.fit(tiny_generator, num_samples=3000, batch=700, progress=False)


def test_fit_matches_direct_statistics(tiny_generator, prior):
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(n, 16, generator=g) for n in (700, 700, 700, 700, 200)]
    with torch.no_grad():
        v = torch.cat([gaussianize(tiny_generator.mapping(z)[:, 0]) for z in chunks]).double()
    assert torch.allclose(prior.mean, v.mean(0), atol=1e-6)
    assert torch.allclose(prior.cov, torch.cov(v.T), atol=1e-6)
    assert prior.num_samples == 3000


def test_transform_inverts_and_scores_are_consistent(prior):
    w = torch.randn(5, 16)
    assert torch.allclose(degaussianize(gaussianize(w)), w, atol=1e-6)
    v = gaussianize(w).double() - prior.mean
    explicit = torch.einsum("nd,de,ne->n", v, prior.precision, v)
    assert torch.allclose(prior.mahalanobis(w.double()), explicit, rtol=1e-5)
    wp = w.unsqueeze(1).repeat(1, 3, 1)
    assert torch.allclose(prior.mahalanobis(wp.double()), 3 * explicit, rtol=1e-5)
    # NLL differs from Mahalanobis/2 by constants and the leaky-ReLU Jacobian only.
    a, b = prior.nll(w.double()), 0.5 * prior.mahalanobis(w.double())
    jac = (w < 0).sum(1).double() * torch.log(torch.tensor(5.0, dtype=torch.float64))
    assert torch.allclose((a - b + jac), (a - b + jac)[0].expand(5), atol=1e-6)
    # Differentiable for the projector.
    x = w.clone().requires_grad_(True)
    prior.nll(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pca_round_trip_and_compression(prior, tiny_generator):
    w = tiny_generator.mapping(torch.randn(64, 16))[:, 0].double()
    assert torch.allclose(prior.from_pca(prior.to_pca(w)), w, atol=1e-8)
    assert torch.allclose(prior.compress(w, tau=1e6), w, atol=1e-8)  # nothing beyond tau: untouched
    c = prior.to_pca(w)
    squeezed = prior.to_pca(prior.compress(w, tau=1.0))
    big = c.abs() > 1.0
    assert big.any()
    assert torch.allclose(squeezed[~big], c[~big], atol=1e-6)
    assert (squeezed[big].abs() < c[big].abs()).all() and (squeezed[big].abs() > 1.0).all()
    for tau in ("0", "-1", "nan"):
        with pytest.raises(UserError, match=rf"^--tau {tau}: give a positive number of standard deviations, e\.g\. 2$"):
            prior.compress(w, tau=float(tau))


def test_gaussianity_report_shows_the_transform_helps(tiny_generator):
    rep, png = gaussianity_report(tiny_generator, num_samples=4000)
    assert rep["mean_abs_skew_v"] < rep["mean_abs_skew_w"]
    assert png.startswith(b"\x89PNG") and len(png) > 1000


def test_too_few_samples(tiny_generator):
    with pytest.raises(UserError, match="more samples than dimensions"):
        GaussianPrior.fit(tiny_generator, num_samples=10, progress=False)


def test_stats_and_clean_commands(run_cli, tiny_generator, tmp_path):
    from PIL import Image

    from latentatlas.io.checkpoints import load_model, save_model

    src = tmp_path / "m.safetensors"
    save_model(src, tiny_generator)
    code, _, err = run_cli("clean", src, "--out", tmp_path / "c0")
    assert code == 2 and "no Gaussian prior yet" in err
    code, _, err = run_cli("stats", src, "--num", "2000", "--batch", "500")
    assert code == 2 and "--force" in err  # in place needs --force
    code, out, err = run_cli("stats", src, "--out", tmp_path / "p.safetensors", "--num", "2000", "--batch", "500", "--device", "cpu")
    assert code == 0, err
    _, info = load_model(tmp_path / "p.safetensors")
    prior = GaussianPrior.from_model_info(info, "p")
    assert prior.num_samples == 2000 and (tmp_path / "p_gaussianity.png").exists()
    code, out, err = run_cli("clean", tmp_path / "p.safetensors", "--seeds", "0-3", "--tau", "1.0", "--out", tmp_path / "c")
    assert code == 0, err
    assert Image.open(tmp_path / "c" / "clean.png").size == (4 * 16, 3 * 16)
    assert "psi" in out


def test_stats_on_a_full_disk_is_one_line_and_leaves_neither_model_nor_plot(run_cli, tiny_generator, tmp_path, monkeypatch):
    """safetensors reports a full disk as a SafetensorError (a traceback), and the Gaussianity plot,
    written before the model, stayed behind. Faked as safetensors 0.8 failed on a 1 MiB tmpfs: part
    of the file written, then the error."""
    from safetensors import SafetensorError

    import latentatlas.io.checkpoints as checkpoints

    checkpoints.save_model(tmp_path / "m.safetensors", tiny_generator)

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 4096)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "save_file", full_disk)
    out = tmp_path / "out" / "p.safetensors"
    code, stdout, err = run_cli("stats", tmp_path / "m.safetensors", "--out", out, "--num", "500", "--device", "cpu")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"error: {out}: cannot write it (No space left on device): free some space or write elsewhere"
    assert list(out.parent.iterdir()) == []  # no model, no plot, no temporary file


def test_stats_batch_below_one_is_refused_not_a_hang(run_cli, tiny_generator, tmp_path):
    from latentatlas.io.checkpoints import save_model

    save_model(tmp_path / "m.safetensors", tiny_generator)
    out = tmp_path / "p.safetensors"
    one_line_error(*run_cli("stats", tmp_path / "m.safetensors", "--out", out, "--num", "500", "--batch", "0", "--device", "cpu"),
                   "--batch 0: use at least 1")
    assert not out.exists() and not (tmp_path / "p_gaussianity.png").exists()


def test_matched_truncation_pulls_codes_in_as_far_as_compression(prior, tiny_generator):
    """The psi `clean` (and benchmarks/clean_tradeoff.py) set beside compression: truncation at it
    leaves the codes, on average, as far from w_avg as the compressed ones."""
    from latentatlas.latent.codes import LatentCode, truncate_code
    from latentatlas.latent.gaussian import GAUSSIANIZE_SLOPE, MAPPING_LRELU_SLOPE, matched_truncation

    assert GAUSSIANIZE_SLOPE * MAPPING_LRELU_SLOPE == pytest.approx(1.0)  # gaussianize undoes the mapping's last activation
    w = tiny_generator.mapping(torch.randn(64, 16, generator=torch.Generator().manual_seed(2)))[:, 0]
    w_avg = tiny_generator.mapping.w_avg
    for tau in (0.5, 1.0, 2.0):
        wc = prior.compress(w.double(), tau).float()
        psi = matched_truncation(w, wc, w_avg)
        assert 0 < psi < 1  # compression pulls codes in
        wt = truncate_code(LatentCode("w", w), tiny_generator, psi).tensor
        assert float((wt - w_avg).norm(dim=1).mean()) == pytest.approx(float((wc - w_avg).norm(dim=1).mean()), rel=1e-5)
    assert matched_truncation(w, w, w_avg) == pytest.approx(1.0)
