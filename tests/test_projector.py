import pytest
import torch

from latentatlas.inversion.losses import LPIPSVGG, noise_regularizer
from latentatlas.inversion.projector import ProjectorConfig, learning_rate, project
from latentatlas.io.errors import UserError
from latentatlas.latent.gaussian import GaussianPrior


def _vgg_files(tmp_path, lin_value=1.0):
    torch.manual_seed(0)
    convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    vgg, cin = {}, 3
    for idx, c in zip(convs, chans):
        vgg[f"features.{idx}.weight"] = torch.randn(c, cin, 3, 3) * (2 / (cin * 9)) ** 0.5
        vgg[f"features.{idx}.bias"] = torch.zeros(c)
        cin = c
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier too
    lin = {f"lin{k}.model.1.weight": torch.full((1, c, 1, 1), lin_value) for k, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lin, tmp_path / f"lin{lin_value}.pth")
    return tmp_path / "vgg16.pth", tmp_path / f"lin{lin_value}.pth"


def test_lpips_loads_from_files_and_behaves_like_a_distance(tmp_path):
    vgg, lin = _vgg_files(tmp_path)
    _, lin2 = _vgg_files(tmp_path, 2.0)
    d1, d2 = LPIPSVGG.from_files(vgg, lin), LPIPSVGG.from_files(vgg, lin2)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(d1(a, a), torch.zeros(2), atol=1e-7)
    assert (d1(a, b) > 0).all() and torch.allclose(d1(a, b), d1(b, a), rtol=1e-5)
    assert torch.allclose(d2(a, b), 2 * d1(a, b), rtol=1e-5)
    assert (d1(a, a + 0.05 * torch.randn_like(a)) < d1(a, b)).all()
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, bad)
    with pytest.raises(UserError, match="lacks features.0.bias"):
        LPIPSVGG.from_files(bad, lin)
    with pytest.raises(UserError, match="no such file"):
        LPIPSVGG.from_files(tmp_path / "nope.pth", lin)


def test_a_plain_pickle_for_lpips_is_one_line_without_torch_s_protocol_warning(tmp_path):
    """torch.load warned over several lines ("Detected pickle protocol 4") before the one-line
    error for a plain pickle given as --lpips-lin; that warning is silenced for this load alone."""
    import pickle
    import warnings

    vgg, lin = _vgg_files(tmp_path)
    plain = tmp_path / "model.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match=r"model\.pkl: not a readable PyTorch weights file for the LPIPS linear heads"):
            LPIPSVGG.from_files(vgg, plain)
        warnings.warn("after the load", UserWarning)  # the filter is the load's alone
    assert [str(w.message) for w in shown] == ["after the load"]


def test_schedule_and_noise_regulariser():
    cfg = ProjectorConfig()
    assert learning_rate(0.0, cfg) == 0 and learning_rate(0.5, cfg) == pytest.approx(0.1)
    assert learning_rate(0.025, cfg) == pytest.approx(0.05) and learning_rate(0.875, cfg) == pytest.approx(0.05)
    smooth = torch.ones(1, 1, 16, 16)
    white = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert noise_regularizer([smooth]) > 10 * noise_regularizer([white])
    # Maps of one size are handled together; the sum is still over every map and level.
    g = torch.Generator().manual_seed(1)
    maps = [torch.randn(3, 1, r, r, generator=g) for r in (4, 8, 8, 16, 16, 32)]
    one_by_one = sum(noise_regularizer([m]) for m in maps)
    assert torch.allclose(noise_regularizer(maps), one_by_one, rtol=1e-5)
    assert torch.allclose(noise_regularizer([maps[1], maps[2]]), noise_regularizer([maps[1]]) + noise_regularizer([maps[2]]), rtol=1e-5)


@pytest.mark.parametrize(("space", "bf16"), [("w", False), ("w+", False), ("w+", True)])
def test_projection_recovers_generated_images(tiny_generator, space, bf16):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in tiny_generator.named_parameters():
            if name.endswith("noise_strength"):
                p.mul_(0.1)  # images mostly decided by w, as in a trained model
        ws = tiny_generator.mapping(torch.randn(3, 16))
        targets = tiny_generator.synthesis(ws)
    cfg = ProjectorConfig(space=space, steps=150, mse_weight=1.0, perceptual_weight=0.0, w_avg_samples=2000, bf16=bf16)
    dtypes = []
    top = tiny_generator.synthesis.b16.conv1  # the last layer's features (the block's RGB output is fp32 always)
    hook = top.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    res = project(tiny_generator, targets, None, cfg)
    hook.remove()
    # The optimisation steps synthesise in bf16 when asked; the returned images are rendered in fp32.
    assert dtypes == [torch.bfloat16 if bf16 else torch.float32] * 150 + [torch.float32] and res.images.dtype == torch.float32
    start, end = res.losses["mse"][0], res.losses["mse"][-1]
    assert all(e < 0.25 * s for s, e in zip(start, end)), (start, end)
    assert res.w.shape == ((3, 16) if space == "w" else (3, tiny_generator.num_ws, 16))
    assert len(res.noise_maps) == len(tiny_generator.synthesis.noise_layers())
    # The reconstruction uses the optimised noise: re-synthesising gives the same image.
    again = tiny_generator.synthesis(res.ws, noise_maps=res.noise_maps)
    assert torch.allclose(again, res.images, atol=1e-5)


def test_prior_pulls_codes_in_distribution(tiny_generator):
    prior = GaussianPrior.fit(tiny_generator, num_samples=2000, progress=False)
    targets = torch.rand(2, 3, 16, 16) * 2 - 1  # out of domain: noise images
    base = dict(space="w+", steps=80, mse_weight=1.0, perceptual_weight=0.0, w_avg_samples=1000)
    plain = project(tiny_generator, targets, None, ProjectorConfig(**base))
    with_prior = project(tiny_generator, targets, None, ProjectorConfig(**base, prior_weight=0.05), prior=prior)
    assert (prior.mahalanobis(with_prior.w) < prior.mahalanobis(plain.w)).all()
    with pytest.raises(UserError, match="needs a model with a Gaussian prior"):
        project(tiny_generator, targets, None, ProjectorConfig(**base, prior_weight=1.0))
    with pytest.raises(UserError, match="targets must be"):
        project(tiny_generator, targets[:, :, :8], None, ProjectorConfig(**base))


def test_whitened_projection_fits_and_its_prior_term_is_the_mahalanobis_distance(tiny_generator):
    prior = GaussianPrior.fit(tiny_generator, num_samples=4000, progress=False)
    with torch.no_grad():
        for name, p in tiny_generator.named_parameters():
            if name.endswith("noise_strength"):
                p.mul_(0.1)
        targets = tiny_generator.synthesis(tiny_generator.mapping(torch.randn(2, 16, generator=torch.Generator().manual_seed(3))))
    cfg = ProjectorConfig(space="w+", steps=120, mse_weight=1.0, perceptual_weight=0.0, whiten=True, prior_weight=1e-4, noise_factor=0.0)
    res = project(tiny_generator, targets, None, cfg, prior=prior)
    start, end = res.losses["mse"][0], res.losses["mse"][-1]
    assert all(e < 0.25 * s for s, e in zip(start, end)), (start, end)
    assert res.losses["prior"][0] == pytest.approx([0.0, 0.0], abs=1e-6)  # starts at the prior's mode
    # The optimised ||c||^2 is the prior's Mahalanobis distance of the w it returns.
    final = torch.tensor(res.losses["prior"][-1])
    assert (final > 0).all()
    assert torch.allclose(prior.mahalanobis(res.w).float(), final, rtol=0.05)
    with pytest.raises(UserError, match="whitened optimisation needs a model with a Gaussian prior"):
        project(tiny_generator, targets, None, ProjectorConfig(space="w", steps=2, mse_weight=1.0, perceptual_weight=0.0, whiten=True))


def test_project_command_end_to_end(run_cli, tiny_generator, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from latentatlas.io.checkpoints import save_model
    from latentatlas.io.images import make_grid, save_image

    model = tmp_path / "m.safetensors"
    save_model(model, tiny_generator)
    imgs = tmp_path / "imgs"
    with torch.no_grad():
        faces = tiny_generator(torch.randn(2, 16))
    save_image(imgs / "a.png", make_grid(faces[:1]))
    Image.fromarray(make_grid(faces[1:2])).convert("RGBA").resize((40, 32)).save(imgs / "b.png")  # RGBA, not square, wrong size
    (imgs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, stdout, err = run_cli("project", model, imgs, "--steps", "20", "--loss", "mse", "--space", "w+", "--out", out, "--video", "--device", "cpu")
    assert code == 0, err
    assert "skipped 1 non-image" in err and "converted RGBA to RGB" in err and "centre-cropped 40x32" in err
    data = np.load(out / "a.npz")
    assert data["latents"].shape == (1, tiny_generator.num_ws, 16) and str(data["space"]) == "w+"
    assert "noise_0" in data
    rec = json.loads((out / "b_losses.json").read_text())
    assert len(rec["history"]["total"]) == 20
    # The final error is the returned reconstruction's: the last step's (the code noise has ramped
    # down by then), far under the first's, and the written PNG's to its clamping and rounding.
    from latentatlas.io.images import read_image

    rec = json.loads((out / "a_losses.json").read_text())
    final, history = rec["final"]["mse"], rec["history"]["mse"]
    assert final == pytest.approx(history[-1], rel=1e-2) and final < 0.2 * history[0]
    target, written = (read_image(p, 16)[0] for p in (imgs / "a.png", out / "a_projected.png"))
    assert float((written - target).square().mean()) == pytest.approx(final, rel=0.05)
    assert (out / "a_progress.mp4").stat().st_size > 0 and Image.open(out / "a_compare.png").size == (34, 16)
    # The projected code works as an interpolation end point.
    code, _, err = run_cli("interpolate", model, "--from", out / "a.npz", "--to", out / "b.npz", "--frames", "3", "--out", tmp_path / "i")
    assert code == 0, err
    # Its ends are the projected codes: rendered as interpolate renders every code, with the
    # model's constant noise. (The projected PNG used the optimised noise maps the .npz keeps as
    # well, which interpolate does not take: checked apart, the code and maps give that PNG.)
    from latentatlas.io.images import to_uint8

    strip = np.asarray(Image.open(tmp_path / "i" / "interpolation.png").convert("RGB")).astype(int)
    assert strip.shape == (16, 3 * 16, 3)
    for frame, name in ((strip[:, :16], "a"), (strip[:, -16:], "b")):
        saved = np.load(out / f"{name}.npz")
        ws = torch.from_numpy(saved["latents"])
        maps = [torch.from_numpy(saved[f"noise_{k}"])[None, None] for k in range(len(tiny_generator.synthesis.noise_layers()))]
        with torch.no_grad():
            const, own = (to_uint8(tiny_generator.synthesis(ws, noise_maps=m))[0].astype(int) for m in (None, maps))
        projected = np.asarray(Image.open(out / f"{name}_projected.png").convert("RGB")).astype(int)
        assert np.abs(own - projected).max() <= 1, name
        assert np.abs(frame - const).max() <= 1, name
    assert np.abs(strip[:, :16] - strip[:, -16:]).mean() > 5
    # Bad input: a corrupt image, and a prior without a fitted prior.
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, _, err = run_cli("project", model, tmp_path / "bad.png", "--loss", "mse", "--out", tmp_path / "o2")
    assert code == 2 and "not a readable image" in err and "Traceback" not in err
    code, _, err = run_cli("project", model, imgs / "a.png", "--loss", "mse", "--prior", "0.1", "--out", tmp_path / "o3")
    assert code == 2 and "no Gaussian prior" in err
    code, _, err = run_cli("project", model, imgs / "a.png", "--loss", "mse", "--whiten", "--out", tmp_path / "o3")
    assert code == 2 and "no Gaussian prior" in err and not (tmp_path / "o3").exists()
    code, _, err = run_cli("project", model, imgs / "a.png", "--out", tmp_path / "o4")
    assert code == 2 and "choose a loss" in err
    # A model that says it was trained on synthfaces (as the bundled ones do) needs no loss
    # option: auto takes the bundled factor predictor's features plus pixel MSE.
    faces_model = tmp_path / "faces.safetensors"
    save_model(faces_model, tiny_generator, metadata={"trained_on": "synthfaces"})
    code, _, err = run_cli("project", faces_model, imgs / "a.png", "--steps", "2", "--out", tmp_path / "o5", "--device", "cpu")
    assert code == 0, err
    record = json.loads((tmp_path / "o5" / "a_losses.json").read_text())
    assert record["loss"] == "factor" and record["final"]["perceptual"] > 0 and record["final"]["mse"] > 0, record["final"]


def test_target_features_are_computed_once_and_refreshed_on_change():
    from latentatlas.inversion.losses import LastTargetFeatures, factor_feature_distance

    calls = []

    def features(x):
        calls.append(x.shape[0])
        return x.flatten(1) * 2

    cached = LastTargetFeatures(features)
    target = torch.ones(2, 3)
    first = cached(target)
    assert cached(target) is first and len(calls) == 1
    target.mul_(3)  # an in-place change is a new target
    assert torch.equal(cached(target), torch.full((2, 3), 6.0)) and len(calls) == 2
    assert torch.equal(cached(torch.ones(2, 3)), torch.full((2, 3), 2.0)) and len(calls) == 3  # another tensor
    live = torch.ones(2, 3, requires_grad=True)
    cached(live), cached(live)
    assert len(calls) == 5  # never cached when it needs a gradient

    dist = factor_feature_distance(features)
    a, b = torch.zeros(2, 3), torch.ones(2, 3)
    calls.clear()
    assert torch.equal(dist(a, b), torch.full((2,), 12.0)) and torch.equal(dist(a, b), torch.full((2,), 12.0))
    assert len(calls) == 3  # a twice, b once
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the projector's --bf16 steps: their features are not fp32 ones
        cached(a)
    assert len(calls) == 4
    cached(a)
    assert len(calls) == 5


def test_an_images_projection_does_not_depend_on_its_batch_and_the_generator_is_lent_not_changed(tiny_generator):
    torch.manual_seed(3)
    with torch.no_grad():
        targets = tiny_generator(torch.randn(3, 16))
    cfg = ProjectorConfig(space="w+", steps=6, mse_weight=1.0, perceptual_weight=0.0, w_avg_samples=500)
    tiny_generator.requires_grad_(True)
    together = project(tiny_generator, targets, None, cfg, image_seeds=[10, 11, 12])
    assert all(p.requires_grad for p in tiny_generator.parameters())
    alone = project(tiny_generator, targets[2:], None, cfg, image_seeds=[12])
    assert torch.allclose(together.w[2], alone.w[0], atol=1e-5)
    assert all(torch.allclose(a[2], b[0], atol=1e-6) for a, b in zip(together.noise_maps, alone.noise_maps))
    other_seed = project(tiny_generator, targets[2:], None, cfg, image_seeds=[13])
    assert not torch.allclose(together.w[2], other_seed.w[0], atol=1e-5)
    tiny_generator.requires_grad_(False)


def test_project_resumes_an_interrupted_run_and_writes_nothing_for_a_diverged_image(run_cli, tiny_generator, tmp_path, monkeypatch):
    import os

    from latentatlas.inversion import projector
    from latentatlas.io.checkpoints import save_model
    from latentatlas.io.images import make_grid, save_image

    model = tmp_path / "m.safetensors"
    save_model(model, tiny_generator)
    imgs = tmp_path / "imgs"
    with torch.no_grad():
        faces = tiny_generator(torch.randn(2, 16))
    for name, face in zip("ab", faces):
        save_image(imgs / f"{name}.png", make_grid(face[None]))
    out = tmp_path / "out"
    args = ("project", model, imgs, "--steps", "3", "--loss", "mse", "--out", out, "--device", "cpu")
    code, _, err = run_cli(*args)
    assert code == 0, err
    # Interrupted while b was being written: its code (written last) is missing.
    (out / "b.npz").unlink()
    os.utime(out / "a.npz", (1, 1))
    code, _, err = run_cli(*args)
    assert code == 2 and "already exists" in err  # without --resume nothing is overwritten
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert "resuming: 1 of 2 images already projected" in err and (out / "b.npz").is_file()
    assert os.stat(out / "a.npz").st_mtime == 1  # a was not redone

    real = projector.project

    def diverging(*a, **kw):
        res = real(*a, **kw)
        res.w[0] = float("nan")
        return res

    monkeypatch.setattr(projector, "project", diverging)
    code, _, err = run_cli("project", model, imgs, "--steps", "2", "--loss", "mse", "--out", tmp_path / "nan", "--device", "cpu")
    assert code == 2 and "a.png: the projection diverged" in err and "1 of 2 projections diverged (a.png)" in err
    assert sorted(p.name for p in (tmp_path / "nan").iterdir()) == ["b.npz", "b_compare.png", "b_losses.json", "b_projected.png"]
