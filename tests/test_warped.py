"""WarpedGANSpace: RBF warping fields, traversal, training (and its resume), files, commands, reconstructor accuracy."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from latentatlas.directions.files import Directions, model_fingerprint, save_directions
from latentatlas.directions.reconstructor import Reconstructor, latent_codes, pair_loss, reconstructor_accuracy, sample_shifts
from latentatlas.directions.warped import (
    MAX_WALK_STEPS,
    SupportSets,
    WarpedConfig,
    load_paths,
    load_warped,
    state_path,
    train_warped,
)
from latentatlas.io.checkpoints import save_model
from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode
from latentatlas.metrics.paths import linear_path, path_responses
from latentatlas.models.stylegan2 import Generator
from latentatlas.training.attributes import FactorPredictor, save_predictor

from conftest import randomize, tiny_config


def _sets(**kw) -> SupportSets:
    torch.manual_seed(0)
    args = dict(sets=3, dipoles=4, dim=6, scale=2.0, gamma=1.0)
    args.update(kw)
    return SupportSets(**args).double()


def test_closed_form_gradient_equals_autograd():
    s = _sets()
    with torch.no_grad():
        s.log_gamma.add_(torch.tensor([0.0, 0.7, -0.5], dtype=torch.float64))  # distinct gammas per set
        s.alphas.mul_(torch.tensor([1.0, 0.5, 2.0, 0.3, 1.0, 1.0, 0.8, 1.5], dtype=torch.float64))  # unequal weights
    z = torch.randn(5, 6, dtype=torch.float64).requires_grad_(True)
    for k in (0, 2, torch.tensor([1, 0, 2, 2, 1])):
        (auto,) = torch.autograd.grad(s.warping(z, k).sum(), z)
        closed = s.gradient(z.detach(), k)
        assert torch.allclose(closed, auto, rtol=1e-9, atol=1e-12)
        assert auto.norm(dim=1).min() > 1e-8  # a non-trivial field, so the comparison means something
        unit = s.direction(z.detach(), k)
        assert torch.allclose(unit, auto / auto.norm(dim=1, keepdim=True), atol=1e-10)


def test_direction_survives_a_gamma_that_underflows_the_gradient():
    s = _sets()
    with torch.no_grad():
        s.log_gamma.fill_(math.log(200.0))  # exp(-200 ||z - v||^2) is 0 in float64
    z = 2 * torch.randn(4, 6, dtype=torch.float64)
    assert s.gradient(z, 1).abs().max() == 0
    unit = s.direction(z, 1)
    assert torch.isfinite(unit).all() and torch.allclose(unit.norm(dim=1), torch.ones(4, dtype=torch.float64))


def test_a_dipole_field_is_antisymmetric():
    s = _sets(sets=1, dipoles=1)
    v = s.support[0, 0].detach()
    assert torch.allclose(s.support[0, 1], -v)  # the dipole's poles are antipodal (centre 0 here)
    z = torch.randn(7, 6, dtype=torch.float64)
    # f is odd (f(-z) = -f(z)), so its gradient field is even: the same direction at z and -z.
    assert torch.allclose(s.warping(-z, 0), -s.warping(z, 0))
    assert torch.allclose(s.direction(-z, 0), s.direction(z, 0), atol=1e-12)
    # Between the poles it points from the negative pole to the positive one.
    origin = s.direction(torch.zeros(1, 6, dtype=torch.float64), 0)
    assert torch.allclose(origin[0], v / v.norm(), atol=1e-12)
    # Swapping the alphas swaps the poles' roles and reverses the field.
    flipped = _sets(sets=1, dipoles=1)
    with torch.no_grad():
        flipped.alphas.neg_()
    assert torch.allclose(flipped.direction(z, 0), -s.direction(z, 0), atol=1e-12)


def test_linear_switch_gives_a_constant_direction():
    lin = _sets(dipoles=1, linear=True)
    assert not lin.log_gamma.requires_grad
    far = torch.stack([torch.full((6,), -50.0), torch.zeros(6), torch.full((6,), 80.0)]).double()
    d = lin.direction(far, 2)
    assert torch.allclose(d[0], d[1]) and torch.allclose(d[0], d[2])
    u = lin.support[2, 0] - lin.support[2, 1]
    assert torch.allclose(d[0], u / u.norm())
    # It is the gamma -> 0 limit of the warped field of the same dipole...
    warped = _sets(dipoles=1, linear=False)
    with torch.no_grad():
        warped.support.copy_(lin.support)
        warped.log_gamma.fill_(math.log(1e-10))
    assert torch.allclose(warped.direction(far, 2), d, atol=1e-4)
    # ...while a warped field with a usable gamma bends: different directions at points among the poles.
    with torch.no_grad():
        warped.log_gamma.fill_(math.log(0.25))
    bent = warped.direction(torch.tensor([[1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 1.5]], dtype=torch.float64), 2)
    assert (bent[0] - bent[1]).norm() > 0.1
    with pytest.raises(UserError, match="one dipole"):
        WarpedConfig(linear=True, dipoles=4)


def test_traversal_walks_its_arc_length_both_ways():
    s = _sets(sets=2, dipoles=3)
    with torch.no_grad():
        s.log_gamma.fill_(math.log(0.1))  # curved paths
    z0 = torch.randn(4, 6, dtype=torch.float64)
    walk = s.walk(1, step=0.05)
    t = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)
    w = walk(z0, t)
    assert w.shape == (41, 4, 6) and torch.equal(w[20], z0)
    seg = (w[1:] - w[:-1]).norm(dim=2)  # polygon length from -1 to 1: close to 2 (chords of a curved path)
    assert torch.allclose(seg.sum(0), torch.full((4,), 2.0, dtype=torch.float64), rtol=0.02)
    assert ((w[40] - z0).norm(dim=1) <= 1.0 + 1e-9).all()  # no farther than the arc length
    # The two directions go opposite ways: the first step forward and back are antiparallel.
    fwd, back = w[21] - z0, w[19] - z0
    cos = (fwd * back).sum(1) / (fwd.norm(dim=1) * back.norm(dim=1))
    assert (cos < -0.99).all()
    # It is curved (not a straight line) and the frame at t does not depend on the other frames asked for.
    chord = (w[40] - w[0]).norm(dim=1)
    assert chord.min() < 1.98  # a straight path would span exactly 2
    assert torch.allclose(walk(z0, torch.tensor([0.73], dtype=torch.float64))[0], walk(z0, torch.tensor([0.2, 0.73, -0.4], dtype=torch.float64))[1])
    with pytest.raises(UserError, match="6-d codes"):
        walk(torch.zeros(2, 5, dtype=torch.float64), t)


@pytest.fixture
def generator(tiny_generator):
    return tiny_generator


def _cfg(**kw) -> WarpedConfig:
    base = dict(sets=3, dipoles=2, space="w", batch=4, lr=3e-3, width=8, steps=4, shift_min=0.2, shift_max=0.4)
    base.update(kw)
    return WarpedConfig(**base)


def test_training_steps_reduce_the_loss_on_a_fixed_problem(generator):
    torch.manual_seed(0)
    cfg = _cfg(sets=2)
    support = SupportSets(2, 2, 16, scale=3.0, center=generator.mapping.w_avg)
    recon = Reconstructor(2, 16, 3, width=8)
    opt = torch.optim.Adam([p for p in support.parameters() if p.requires_grad] + list(recon.parameters()), lr=3e-3)
    z, k, eps = sample_shifts(0, 4, 2, 16, cfg.shift_min, cfg.shift_max)
    w = latent_codes(generator, z, "w")
    support_before = support.support.detach().clone()
    losses = []
    for _ in range(10):
        loss, _ = pair_loss(generator, recon, support.direction, w, k, eps, 3.0, "w")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(support.support, support_before)  # the gradient reached the support sets through G


def test_resume_gives_the_same_parameters_as_a_straight_run(generator, tmp_path):
    cfg = _cfg(steps=4)
    straight = train_warped(generator, tmp_path / "a.safetensors", cfg, progress=False)
    first = train_warped(generator, tmp_path / "b.safetensors", cfg, progress=False, max_steps_this_run=2)
    assert first.step == 2 and not first.complete and state_path(tmp_path / "b.safetensors").exists()
    assert load_warped(tmp_path / "b.safetensors").info["complete"] is False
    resumed = train_warped(generator, tmp_path / "b.safetensors", cfg, progress=False)
    assert resumed.step == 4 and resumed.complete
    a, b = straight.paths.support.state_dict(), resumed.paths.support.state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(first.paths.support.support, b["support"])  # the second half did change something
    ra, rb = straight.paths.reconstructor, resumed.paths.reconstructor
    assert all(torch.equal(ra[n], rb[n]) for n in ra)
    with pytest.raises(UserError, match="another config"):
        train_warped(generator, tmp_path / "b.safetensors", _cfg(steps=4, dipoles=3), progress=False)
    more = train_warped(generator, tmp_path / "b.safetensors", _cfg(steps=5), progress=False)  # more steps: allowed
    assert more.step == 5
    # A finished run called again trains nothing yet still reports the running loss and accuracy.
    again = train_warped(generator, tmp_path / "b.safetensors", _cfg(steps=5), progress=False)
    assert again.step == 5 and again.stats == more.stats and set(again.stats) >= {"loss", "accuracy"}
    assert load_warped(tmp_path / "b.safetensors").info["running"] == more.stats


def test_file_round_trip_and_checks(generator, tmp_path):
    res = train_warped(generator, tmp_path / "w.safetensors", _cfg(steps=1, space="w"), progress=False)
    back = load_warped(tmp_path / "w.safetensors")
    assert back.names == [f"warp{i}" for i in range(3)] and back.space == "w" and back.steps == 1
    assert back.config == res.paths.config and back.method == "warpedganspace"
    assert torch.equal(back.support.support, res.paths.support.support.cpu())
    assert torch.equal(back.support.log_gamma, res.paths.support.log_gamma.cpu())
    assert back.scale == pytest.approx(res.paths.scale) and back.reconstructor is not None
    assert set(back.reconstructor) == set(Reconstructor(3, 16, 3, 8).state_dict())
    w = torch.randn(3, 16)
    assert torch.allclose(back.walk(1)(w, torch.tensor([0.5])), res.paths.walk(1)(w, torch.tensor([0.5])))
    back.check_model(generator)
    with pytest.raises(UserError, match="made for another model"):
        back.check_model(randomize(Generator(tiny_config()), seed=5))
    with pytest.raises(UserError, match="live in w: give a w code, not a z code"):
        back.apply(LatentCode("z", torch.randn(2, 16)), 0, 1.0)
    with pytest.raises(UserError, match="16-d w codes"):
        back.traverse(LatentCode("w", torch.randn(2, 8)), 0, 2)
    moved = back.apply(LatentCode("w", w), "warp2", 0.5)
    assert torch.allclose((moved.tensor - w).norm(dim=1), torch.full((3,), 0.5), atol=0.02)
    frames = back.traverse(LatentCode("w", w), 0, 3)
    assert len(frames) == 7 and torch.equal(frames[3].tensor, w)
    # load_paths opens both kinds; a linear file still works through it.
    v = torch.eye(2, 16)
    save_directions(tmp_path / "lin.safetensors", Directions(v, torch.ones(2), ["a", "b"], "w", "test", model_fingerprint(generator)))
    lin = load_paths(tmp_path / "lin.safetensors")
    assert lin.kind == "directions" and torch.allclose(lin.walk(1)(w, torch.tensor([2.0]))[0], linear_path(v[1])(w, torch.tensor([2.0]))[0])
    assert load_paths(tmp_path / "w.safetensors").kind == "warped-directions"
    with pytest.raises(UserError, match="not a latentatlas warped-directions file"):
        load_warped(tmp_path / "lin.safetensors")
    save_model(tmp_path / "model.safetensors", generator)
    with pytest.raises(UserError, match="not a latentatlas directions file"):
        load_paths(tmp_path / "model.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as f:
        no_config = {k: v for k, v in f.metadata().items() if k != "config"}
    save_file(load_file(str(tmp_path / "w.safetensors")), str(tmp_path / "old.safetensors"), metadata=no_config)
    for load in (load_warped, load_paths):
        with pytest.raises(UserError, match="old.safetensors: a warped-directions file with a missing or malformed field .KeyError: 'config'"):
            load(tmp_path / "old.safetensors")
    # Warped paths score through path_responses exactly like linear ones.
    pred = _ColourPredictor()
    starts = w[:2]
    slopes, signed, _ = path_responses(generator, pred, [back.walk(0), lin.walk(0)], starts, 0.5, steps=3)
    assert slopes.shape == (2, pred.nf) and slopes[:, :3].sum() > 0 and slopes[:, 3:].abs().sum() == 0
    # Each figure is the least-squares slope of a start's mean colour against arc length (t in
    # [-0.5, 0.5], 3 frames along the walk), fitted here directly.
    t = np.linspace(-0.5, 0.5, 3)
    for k, walk in enumerate((back.walk(0), lin.walk(0))):
        with torch.no_grad():
            frames = walk(starts, torch.from_numpy(t).float())  # [T, M, D]
            colour = torch.stack([generator.synthesis(f[:, None].repeat(1, generator.num_ws, 1)).mean([2, 3]) for f in frames])
        fits = np.array([[np.polyfit(t, colour[:, m, c].double().numpy(), 1)[0] for c in range(3)] for m in range(len(starts))])
        np.testing.assert_allclose(signed[k, :3], fits.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(slopes[k, :3], np.abs(fits).mean(0), rtol=1e-4, atol=1e-6)


class _ColourPredictor(torch.nn.Module):
    nf = 20

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(images.shape[0], self.nf)
        out[:, :3] = images.mean([2, 3])
        return out


def test_reconstructor_accuracy_keeps_the_paths_frozen_and_is_reproducible(generator):
    torch.manual_seed(0)
    support = SupportSets(3, 2, 16, scale=3.0, center=generator.mapping.w_avg)
    before = {n: p.detach().clone() for n, p in support.named_parameters()}
    kw = dict(steps=2, batch=4, eval_samples=8, width=8, progress=False, seed=3)
    res = reconstructor_accuracy(generator, support.direction, 3, "w", 3.0, **kw)
    assert res["chance"] == pytest.approx(1 / 3) and res["steps"] == 2 and res["eval_samples"] == 8 and res["shift_mae"] > 0
    assert res["accuracy"] * 8 in range(9)  # the share of the 8 held-out pairs told apart
    assert all(p.grad is None and torch.equal(p, before[n]) for n, p in support.named_parameters())
    assert reconstructor_accuracy(generator, support.direction, 3, "w", 3.0, **kw) == res  # same seed, same figures
    with pytest.raises(UserError, match="at least 2 paths"):
        reconstructor_accuracy(generator, support.direction, 1, "w", 3.0, **kw)


def _toy_accuracy(inputs: str, steps: int = 80, paths: int = 4) -> float:
    """A reconstructor trained to tell which of `paths` fixed faint patterns was added to random images."""
    g = torch.Generator().manual_seed(0)
    patterns = 0.05 * torch.randn(paths, 3, 16, 16, generator=g)

    def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = 0.5 * torch.randn(n, 3, 16, 16, generator=g)
        k = torch.randint(0, paths, (n,), generator=g)
        eps = (0.5 + 0.5 * torch.rand(n, generator=g)) * (2 * torch.randint(0, 2, (n,), generator=g) - 1)
        return a, a + eps[:, None, None, None] * patterns[k], k

    torch.manual_seed(0)
    recon = Reconstructor(paths, 16, 3, width=8, inputs=inputs)
    opt = torch.optim.Adam(recon.parameters(), lr=1e-3)
    for _ in range(steps):
        a, b, k = pairs(32)
        loss = torch.nn.functional.cross_entropy(recon(a, b)[0], k)
        opt.zero_grad()
        loss.backward()
        opt.step()
    a, b, k = pairs(512)
    with torch.no_grad():
        return float((recon(a, b)[0].argmax(1) == k).float().mean())


def test_the_difference_input_tells_faint_changes_apart_where_the_pair_does_not():
    """Why "difference" is the default: a shift changes an image little, and a small network handed
    both images has to learn the subtraction first (on faces64's GANSpace paths: README, Directions)."""
    assert _toy_accuracy("difference") > 0.95
    assert _toy_accuracy("pair") < 0.4  # chance is 0.25
    with pytest.raises(UserError, match="difference"):
        Reconstructor(2, 16, 3, inputs="sum")


def test_files_and_states_from_before_the_input_setting_keep_the_pair(generator, tmp_path):
    """Their reconstructor saw the pair: the loaded config says so, and resuming asks for it."""
    import safetensors.torch

    out = tmp_path / "w.safetensors"
    train_warped(generator, out, _cfg(steps=1, reconstructor_input="pair"), progress=False)
    tensors = safetensors.torch.load_file(out)
    with safetensors.safe_open(out, "pt") as f:
        meta = f.metadata()
    old_config = {k: v for k, v in json.loads(meta["config"]).items() if k != "reconstructor_input"}
    safetensors.torch.save_file(tensors, out, metadata={**meta, "config": json.dumps(old_config)})
    assert load_warped(out).config.reconstructor_input == "pair"
    state = torch.load(state_path(out), weights_only=True)
    state["config"].pop("reconstructor_input")
    torch.save(state, state_path(out))
    with pytest.raises(UserError, match="another config"):
        train_warped(generator, out, _cfg(steps=2), progress=False)
    assert train_warped(generator, out, _cfg(steps=2, reconstructor_input="pair"), progress=False).step == 2


@pytest.fixture
def model_file(tmp_path, tiny_generator):
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_generator)
    return path


def test_warped_commands_end_to_end(run_cli, model_file, tmp_path):
    out = tmp_path / "warped.safetensors"
    args = ("directions", "warped", "train", model_file, "--out", out, "--sets", "3", "--dipoles", "2", "--space", "w",
            "--batch", "4", "--width", "8", "--lr", "1e-3", "--device", "cpu")
    code, stdout, err = run_cli(*args, "--steps", "2")
    assert code == 0, err
    assert str(out) in stdout and "done" in stdout and load_warped(out).steps == 2
    code, stdout, err = run_cli(*args, "--steps", "3")  # resumes from the state: one more step
    assert code == 0, err
    assert load_warped(out).steps == 3
    code, _, err = run_cli("traverse", model_file, out, "--path", "warp1", "--seeds", "0-1", "--steps", "3", "--out", tmp_path / "t", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "t" / "traverse_warp1.png").stat().st_size > 0 and (tmp_path / "t" / "traverse_warp1.gif").exists()
    # A walk too long to finish (a strength of 1e9 walked on for minutes without a word) is refused at once.
    started = time.perf_counter()
    code, _, err = run_cli("traverse", model_file, out, "--path", "warp1", "--seeds", "0", "--frames", "2", "--strength=-1e9,1e9",
                           "--out", tmp_path / "long", "--device", "cpu")
    assert code == 2 and f"at most {MAX_WALK_STEPS}" in err and "traverse: a smaller --strength" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - started < 30 and not list((tmp_path / "long").glob("*"))
    pred = tmp_path / "pred.safetensors"
    torch.manual_seed(0)
    save_predictor(pred, FactorPredictor(width=4, feature_dim=8), {"note": "untrained"})
    code, stdout, err = run_cli("directions", "score", model_file, out, "--predictor", pred, "--starts", "4", "--steps", "3", "--top", "2",
                                "--reconstructor-steps", "2", "--reconstructor-batch", "4", "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0, err
    summary = json.loads((tmp_path / "s" / "score.json").read_text())
    assert summary["method"] == "warpedganspace" and len(summary["paths"]) == 2
    rec = summary["reconstructor"]
    assert (rec["steps"], rec["batch"], rec["num_paths"], rec["chance"], rec["inputs"]) == (2, 4, 2, 0.5, "difference")
    assert rec["accuracy"] * rec["eval_samples"] in range(rec["eval_samples"] + 1)  # a share of the held-out pairs
    assert "reconstructor accuracy" in stdout
    # The linear baseline in Z, traversed from z codes.
    lin = tmp_path / "linear.safetensors"
    code, stdout, err = run_cli("directions", "warped", "train", model_file, "--out", lin, "--sets", "2", "--space", "z", "--linear", "--steps", "1",
                                "--batch", "2", "--width", "8", "--device", "cpu")
    assert code == 0, err
    assert load_warped(lin).method == "warpedganspace-linear" and load_warped(lin).support.dipoles == 1
    code, _, err = run_cli("traverse", model_file, lin, "--path", "0", "--seeds", "3", "--steps", "2", "--out", tmp_path / "t2", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "t2" / "traverse_warp0.png").exists()


def test_warped_commands_refuse_bad_input(run_cli, model_file, tmp_path, tiny_generator):
    out = tmp_path / "warped.safetensors"
    base = ("directions", "warped", "train", model_file, "--out", out, "--sets", "2", "--steps", "1", "--batch", "2", "--width", "8", "--device", "cpu")
    code, _, err = run_cli(*base, "--space", "x")
    assert code == 2 and "z or w" in err and not out.exists()
    code, _, err = run_cli(*base, "--reconstructor-input", "sum")
    assert code == 2 and "use one of pair, difference" in err and not out.exists()
    code, _, err = run_cli(*base, "--linear", "--dipoles", "3")
    assert code == 2 and "one dipole" in err
    out.write_bytes(b"mine")
    code, _, err = run_cli(*base)
    assert code == 2 and "already exists" in err and out.read_bytes() == b"mine"
    out.unlink()
    assert run_cli(*base, "--space", "z", "--dipoles", "2")[0] == 0
    code, _, err = run_cli(*base, "--space", "z", "--dipoles", "3", "--steps", "2")  # resume with another config
    assert code == 2 and "another config" in err
    code, _, err = run_cli("directions", "score", model_file, out, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 2 and "in z" in err
    other = tmp_path / "other.safetensors"
    save_model(other, randomize(Generator(tiny_config()), seed=9))
    code, _, err = run_cli("traverse", other, out, "--out", tmp_path / "t", "--device", "cpu")
    assert code == 2 and "made for another model" in err and not (tmp_path / "t").exists()


def test_default_strength_range_walks_one_scale_of_arc(generator, tmp_path):
    """Warped paths' default range (app sliders, `traverse` without --strength) is an arc of one
    scale, the codes' typical distance from their centre; linear directions keep 3 stds."""
    from latentatlas.directions.warped import PathSet, WarpedPaths, init_training, save_warped
    from latentatlas.latent.codes import to_w, z_from_seeds

    cfg = _cfg(sets=2, steps=0)
    support, _ = init_training(generator, cfg)
    save_warped(tmp_path / "w.safetensors", WarpedPaths(support, ["a", "b"], "w", model_fingerprint(generator), cfg, 0))
    paths = load_paths(tmp_path / "w.safetensors")
    assert paths.strength_range == round(math.sqrt(generator.w_dim))
    base = to_w(z_from_seeds([1, 2], generator.z_dim, "cpu"), generator)
    ends = paths.frames(base, 0, torch.tensor([0.0, paths.strength_range]), generator)
    arc = paths.strength_range * support.scale.item() / math.sqrt(generator.w_dim)
    chord = (ends[1].tensor - ends[0].tensor).norm(dim=-1)
    assert (chord <= arc * 1.001).all() and (chord > 0.5 * arc).all()
    v = torch.randn(2, generator.w_dim)
    save_directions(tmp_path / "lin.safetensors", Directions(v, torch.ones(2), ["a", "b"], "w", "test", model_fingerprint(generator)))
    assert PathSet(load_paths(tmp_path / "lin.safetensors").source).strength_range == 3.0


def _warped_file(tmp_path, generator, name: str, dim: int = 16, meta: dict[str, str] | None = None):
    """Warped paths for `generator` (their fingerprint), `dim` wide, with some metadata replaced as by hand."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from latentatlas.directions.warped import WarpedPaths, save_warped

    torch.manual_seed(0)
    path = tmp_path / f"{name}.safetensors"
    save_warped(path, WarpedPaths(SupportSets(2, 2, dim, scale=3.0), ["a", "b"], "w", model_fingerprint(generator), _cfg(sets=2), 0))
    if meta:
        with safe_open(str(path), framework="pt") as f:
            old = f.metadata()
        save_file(load_file(str(path)), str(path), metadata={**old, **meta})
    return path


@pytest.mark.parametrize("meta,message", [
    ({"scale": "0"}, "scale 0: give a finite scale > 0 (the spread of the codes the paths were trained on): make the file again"),
    ({"scale": "nan"}, "scale nan: give a finite scale > 0"),
    ({"scale": "-inf"}, "scale -inf: give a finite scale > 0"),
    ({"dim": "17"}, "its header gives sets 2, dipoles 2 and dim 17 but its support tensor is [2, 4, 16] (sets, 2 x dipoles, dim)"),
    ({"names": "[1, 2]"}, "its names must be a list of 2 strings, one per direction, not [1, 2]"),
    ({"names": '["a", "a"]'}, 'names a direction "a" more than once: give each direction its own name'),
    ({"space": "z"}, "its header says space 'z' and its config 'w': make the file again"),
])
def test_a_malformed_warped_file_is_refused_on_reading(generator, tmp_path, meta, message):
    """Scale 0 was a ZeroDivisionError (in traverse, and in `serve --directions`); NaN walked NaN codes and a
    dim that contradicts the tensors was read without a word."""
    path = _warped_file(tmp_path, generator, "bad", meta=meta)
    for load in (load_warped, load_paths):
        with pytest.raises(UserError) as e:
            load(path)
        assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_warped_paths_of_another_width_than_the_model_are_refused_by_the_model_check(generator, tmp_path):
    """A file 8 wide under the model's fingerprint passed check_model, so `serve` started with it and failed in the page."""
    load_paths(_warped_file(tmp_path, generator, "fits")).check_model(generator)
    narrow = load_paths(_warped_file(tmp_path, generator, "narrow", dim=8))
    with pytest.raises(UserError, match="^these warped paths are 8-d and this model's w is 16-d: train them again for this model$"):
        narrow.check_model(generator)


def test_pathset_apply_edits_a_w_plus_layer_range_for_either_kind(generator, tmp_path):
    """PathSet.apply, the app's sliders (its own copy, `walk_layers`, until the library had one): a
    warped w path moves each w of the range along its own path and leaves the others; a linear set's
    range is replaced by the one given; without a range both keep their own rule."""
    from latentatlas.directions.warped import PathSet, WarpedPaths, init_training, save_warped
    from latentatlas.latent.codes import to_w, to_wplus, z_from_seeds

    cfg = _cfg(sets=2, steps=0)
    support, _ = init_training(generator, cfg)
    save_warped(tmp_path / "w.safetensors", WarpedPaths(support, ["a", "b"], "w", model_fingerprint(generator), cfg, 0))
    warped = load_paths(tmp_path / "w.safetensors")
    ws = to_w(z_from_seeds([1, 2, 3], generator.z_dim, "cpu"), generator).tensor
    n = generator.num_ws
    mixed = LatentCode("w+", torch.stack([ws[:2], ws[[2, 0]]], 1).repeat_interleave(n // 2, 1)[:, :n])  # two codes, two ws each
    moved = warped.apply(mixed, 1, 2.5, (1, 4)).tensor
    assert torch.equal(moved[:, :1], mixed.tensor[:, :1]) and torch.equal(moved[:, 4:], mixed.tensor[:, 4:])
    for i in range(2):
        for layer in range(1, 4):
            alone = warped.source.apply(LatentCode("w", mixed.tensor[i, layer][None]), 1, warped.source.arc_length(2.5)).tensor[0]
            assert torch.allclose(moved[i, layer], alone, atol=1e-6)
    plain = LatentCode("w", ws[:1])
    assert torch.allclose(warped.apply(to_wplus(plain, generator), 0, 1.0).tensor[0, 0], warped.apply(plain, 0, 1.0).tensor[0], atol=1e-6)
    with pytest.raises(UserError, match="a layer range edits w\\+ codes"):
        warped.apply(plain, 0, 1.0, (0, 2))
    v = torch.randn(2, generator.w_dim)
    save_directions(tmp_path / "lin.safetensors", Directions(v / v.norm(dim=1, keepdim=True), torch.ones(2), ["a", "b"], "w", "test",
                                                             model_fingerprint(generator), layers=(0, 2)))
    linear = load_paths(tmp_path / "lin.safetensors")
    own, given = linear.apply(mixed, 0, 1.5).tensor, linear.apply(mixed, 0, 1.5, (2, 5)).tensor
    changed = lambda t: (t != mixed.tensor).any(dim=-1).any(dim=0).tolist()  # noqa: E731
    assert changed(own) == [i < 2 for i in range(n)] and changed(given) == [2 <= i < 5 for i in range(n)]
    assert torch.allclose(given[:, 2] - mixed.tensor[:, 2], 1.5 * linear.source.vectors[0].expand(2, -1), atol=1e-6)
