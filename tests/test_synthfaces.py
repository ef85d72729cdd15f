import pytest
import torch

from latentatlas.data.synthfaces import BINARY, FACTOR_NAMES, NUM_FACTORS, render, sample, sample_factors


def test_deterministic_from_seed_and_in_range():
    a, fa = sample(8, seed=3)
    b, fb = sample(8, seed=3)
    c, _ = sample(8, seed=4)
    assert torch.equal(a, b) and torch.equal(fa, fb) and not torch.equal(a, c)
    assert a.shape == (8, 3, 64, 64) and a.min() >= -1 and a.max() <= 1
    assert NUM_FACTORS >= 16 and len(set(FACTOR_NAMES)) == NUM_FACTORS
    assert set(fa[:, BINARY].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", FACTOR_NAMES)
def test_every_factor_changes_the_image(name):
    base = sample_factors(4, seed=1)
    i = FACTOR_NAMES.index(name)
    lo, hi = base.clone(), base.clone()
    lo[:, i], hi[:, i] = 0.0, 1.0
    low, high = render(lo), render(hi)
    # Every sample shows the change clearly somewhere (small features move few pixels).
    changed = ((low - high).abs().amax(dim=1) > 0.15).sum(dim=(1, 2))
    assert (changed >= 6).all(), changed
    # ...and nothing changes in a face whose factor does not: the factor set high in the first face
    # only leaves the others as they were, and gives the first its high render.
    first_only = lo.clone()
    first_only[0, i] = 1.0
    mixed = render(first_only)
    assert torch.allclose(mixed[1:], low[1:], atol=1e-6) and torch.allclose(mixed[0], high[0], atol=1e-6)


def test_a_face_renders_the_same_alone_and_in_any_batch():
    """Glasses were painted with opacity g once any face of the batch had g > 0.5: a face of
    g = 0.3 had none alone and faint ones beside a face with glasses."""
    f = sample_factors(2, seed=5)
    glasses = FACTOR_NAMES.index("glasses")
    f[0, glasses], f[1, glasses] = 0.3, 1.0
    alone, together = render(f[:1]), render(f)
    assert torch.allclose(alone[0], together[0], atol=1e-6)
    f[0, glasses] = 0.0
    assert torch.allclose(render(f[:1])[0], alone[0], atol=1e-6)  # 0.3 is "no glasses", as 0 is


def test_resolutions_and_bad_input():
    f = sample_factors(2, seed=0)
    for r in (64, 128, 256):
        assert render(f, r).shape == (2, 3, r, r)
    small = torch.nn.functional.avg_pool2d(render(f, 256), 4)
    assert (small - render(f, 64)).abs().mean() < 0.03  # anti-aliased: coarse render ~ box-filtered fine one
    with pytest.raises(ValueError, match="factors must have shape"):
        render(torch.zeros(2, 3))


def test_synthfaces_command_renders_on_the_device_it_is_given(run_cli, tmp_path):
    from PIL import Image

    code, out, err = run_cli("synthfaces", "--out", tmp_path, "--resolution", "16", "--frames", "3", "--device", "cpu")
    assert code == 0, err
    assert Image.open(tmp_path / "synthfaces_gallery.png").size == (8 * 16 + 7 * 2, 8 * 16 + 7 * 2)
    assert Image.open(tmp_path / "synthfaces_factors.png").size[0] == 3 * 16 + 2 * 2
    code, _, err = run_cli("synthfaces", "--out", tmp_path, "--device", "tpu", "--force")
    assert code == 2 and "--device tpu: use auto, cpu or cuda" in err
