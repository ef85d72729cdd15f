import numpy as np
import pytest
import torch

from latentatlas.io.errors import UserError
from latentatlas.latent.codes import LatentCode, load_codes, save_codes, synthesize, to_w, to_wplus, truncate_code, z_from_seeds
from latentatlas.latent.paths import add_direction, interpolate, lerp, mean_difference, slerp, style_mix


def test_seeds_follow_the_official_convention():
    z = z_from_seeds([0, 5], 8)
    assert torch.equal(z.tensor[1], torch.from_numpy(np.random.RandomState(5).randn(8).astype(np.float32)))


def test_space_conversions(tiny_generator):
    z = z_from_seeds([1, 2], 16)
    w = to_w(z, tiny_generator)
    wp = to_wplus(z, tiny_generator)
    assert w.space == "w" and w.tensor.shape == (2, 16)
    assert wp.space == "w+" and wp.tensor.shape == (2, tiny_generator.num_ws, 16)
    assert torch.equal(wp.tensor[:, 3], w.tensor)
    # Same image from z, w and w+.
    a, b, c = (synthesize(x, tiny_generator) for x in (z, w, wp))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    t = truncate_code(wp, tiny_generator, 0.5, cutoff=2)
    assert torch.equal(t.tensor[:, 2:], wp.tensor[:, 2:])
    # The first `cutoff` layers move halfway towards the average w.
    w_avg = tiny_generator.mapping.w_avg
    torch.testing.assert_close(t.tensor[:, :2], w_avg + 0.5 * (wp.tensor[:, :2] - w_avg))
    assert not torch.allclose(t.tensor[:, :2], wp.tensor[:, :2])
    with pytest.raises(UserError, match="cutoff needs a w\\+ code"):
        truncate_code(w, tiny_generator, 0.5, cutoff=2)


def test_codes_check_space_shape_and_nan(tiny_generator):
    with pytest.raises(UserError, match="unknown latent space"):
        LatentCode("s", torch.zeros(1, 4))
    with pytest.raises(UserError, match="NaN"):
        LatentCode("w", torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(UserError, match="width 4"):
        to_w(LatentCode("z", torch.zeros(1, 4)), tiny_generator)
    with pytest.raises(UserError, match="layers"):
        synthesize(LatentCode("w+", torch.zeros(1, 2, 16)), tiny_generator)


def test_lerp_and_slerp_endpoints_and_norms():
    a, b = torch.randn(1, 32), torch.randn(1, 32)
    t = torch.linspace(0, 1, 5)
    for fn in (lerp, slerp):
        out = fn(a.expand(5, -1), b.expand(5, -1), t)
        assert torch.allclose(out[0], a[0], atol=1e-5) and torch.allclose(out[-1], b[0], atol=1e-5)
    mid = slerp(a, b, torch.tensor([0.5]))
    assert torch.isclose(mid.norm(), (a.norm() + b.norm()) / 2, atol=1e-4)
    # lerp shrinks the norm in the middle for near-orthogonal vectors; slerp does not.
    assert lerp(a, b, torch.tensor([0.5])).norm() < mid.norm()
    path = interpolate(LatentCode("z", a), LatentCode("z", b), 7, "slerp")
    assert path.space == "z" and len(path) == 7
    with pytest.raises(UserError, match="cannot interpolate"):
        interpolate(LatentCode("z", a), LatentCode("w", b), 3)


def test_style_mix_and_arithmetic():
    a, b = LatentCode("w+", torch.zeros(2, 6, 4)), LatentCode("w+", torch.ones(2, 6, 4))
    m = style_mix(a, b, 2)
    assert torch.equal(m.tensor[:, :2], torch.zeros(2, 2, 4)) and torch.equal(m.tensor[:, 2:], torch.ones(2, 4, 4))
    with pytest.raises(UserError, match="cutoff"):
        style_mix(a, b, 9)
    d = mean_difference(LatentCode("w", torch.tensor([[2.0, 0.0], [4.0, 0.0]])), LatentCode("w", torch.zeros(3, 2)))
    assert torch.equal(d, torch.tensor([3.0, 0.0]))
    moved = add_direction(LatentCode("w", torch.zeros(1, 2)), d, 0.5)
    assert torch.equal(moved.tensor, torch.tensor([[1.5, 0.0]]))
    wp = add_direction(LatentCode("w+", torch.zeros(1, 3, 2)), d, 1.0)
    assert torch.equal(wp.tensor[0, 2], d)


def test_code_files_round_trip(tmp_path):
    code = LatentCode("w+", torch.randn(2, 3, 4))
    save_codes(tmp_path / "c.npz", code, model="m", seeds=[3, 4])
    back, info = load_codes(tmp_path / "c.npz")
    assert back.space == "w+" and torch.equal(back.tensor, code.tensor)
    assert info == {"space": "w+", "model": "m", "seeds": [3, 4]}
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable"):
        load_codes(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", latents=np.full((1, 4), np.nan, np.float32), space=np.array("w"))
    with pytest.raises(UserError, match=r"nan\.npz: the w code holds NaN"):  # names the file
        load_codes(tmp_path / "nan.npz")


def test_float64_codes_beyond_float32_are_refused_without_numpy_s_overflow_warning(tmp_path):
    """1e300 in a float64 file became inf in the cast to float32, and numpy's "overflow encountered
    in cast" warning was printed above the one-line error; it is checked before the cast now. Sound
    float64 codes, and the NaN check's own message, are as they were."""
    import warnings

    np.savez(tmp_path / "big.npz", latents=np.full((1, 4), 1e300), space=np.array("w"))
    np.savez(tmp_path / "small.npz", latents=np.array([[0.5, -1e-300, 3e38, -2.0]]), space=np.array("w"))
    np.savez(tmp_path / "nan64.npz", latents=np.array([[np.nan, 0.0, 0.0, 0.0]]), space=np.array("w"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(UserError) as caught:
            load_codes(tmp_path / "big.npz")
        assert str(caught.value) == (f"{tmp_path / 'big.npz'}: the latents hold values beyond float32's range (±3.4e+38): "
                                     "give a code file from generate, project or encode")
        code, _ = load_codes(tmp_path / "small.npz")
        assert code.tensor.dtype == torch.float32 and code.tensor[0, 2] == np.float32(3e38)
        with pytest.raises(UserError, match=r"nan64\.npz: the w code holds NaN"):
            load_codes(tmp_path / "nan64.npz")


def test_a_code_file_that_unpacks_too_large_is_refused_before_reading(tmp_path, monkeypatch):
    import latentatlas.io.npzfile as npzfile

    np.savez_compressed(tmp_path / "zeros.npz", latents=np.zeros((64, 18, 512), np.float32), space=np.array("w+"))
    assert (tmp_path / "zeros.npz").stat().st_size < 50_000  # 2.4 MB of arrays, packed small
    monkeypatch.setattr(npzfile, "MAX_NPZ_BYTES", 2**20)
    with pytest.raises(UserError, match="unpacks to 2 MB, over the 1 MB"):
        load_codes(tmp_path / "zeros.npz")


def test_a_code_file_whose_array_header_claims_a_huge_shape_is_refused_before_reading(tmp_path):
    """np.load allocates what the header says before reading: (2**20, 2**20) float32 was a 4 TB
    request from a 300-byte file, and numpy's MemoryError a traceback."""
    import io
    import zipfile

    from numpy.lib import format as npy_format

    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})
    space = io.BytesIO()
    np.save(space, np.array("w"))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("latents.npy", header.getvalue() + b"\0" * 16)
        archive.writestr("space.npy", space.getvalue())
    assert path.stat().st_size < 1000
    with pytest.raises(UserError, match=r"huge\.npz: not a readable \.npz file \(array latents\.npy claims shape \[1048576, 1048576\]"):
        load_codes(path)


def test_read_npz_takes_a_smaller_limit_from_its_caller(tmp_path):
    from latentatlas.io.npzfile import read_npz

    np.savez(tmp_path / "codes.npz", latents=np.zeros((64, 18, 512), np.float32), space=np.array("w+"))
    assert read_npz(tmp_path / "codes.npz")["latents"].shape == (64, 18, 512)
    with pytest.raises(UserError, match="unpacks to 2 MB, over the 1 MB"):
        read_npz(tmp_path / "codes.npz", max_bytes=2**20)


def test_code_for_model_checks_the_model_it_names_and_its_shape(tmp_path, tiny_generator):
    from latentatlas.latent.codes import code_for_model, same_model

    assert same_model("faces64", {"faces64"}) and same_model("/x/faces64.safetensors", {"faces64", ""})
    assert not same_model("ffhq", {"faces64", "latentatlas/weights/faces64.safetensors"})
    code = to_wplus(z_from_seeds([3], 16), tiny_generator)
    save_codes(tmp_path / "a.npz", LatentCode("w+", code.tensor.repeat(2, 1, 1)), model="runs/tiny.safetensors")
    got = code_for_model(tmp_path / "a.npz", tiny_generator, {"tiny"})
    assert got.space == "w+" and torch.equal(got.tensor, code.tensor)  # the first code of the file
    with pytest.raises(UserError, match="a.npz is a code of the model 'runs/tiny.safetensors', not of faces64"):
        code_for_model(tmp_path / "a.npz", tiny_generator, {"faces64"})
    assert code_for_model(tmp_path / "a.npz", tiny_generator).space == "w+"  # no names: shapes only
    save_codes(tmp_path / "b.npz", LatentCode("w", torch.zeros(1, 8)), model="tiny")
    with pytest.raises(UserError, match="b.npz: the w code has width 8, this model needs 16"):
        code_for_model(tmp_path / "b.npz", tiny_generator, {"tiny"})
    save_codes(tmp_path / "c.npz", LatentCode("w", torch.zeros(0, 16)), model="tiny")
    with pytest.raises(UserError, match="holds no code"):
        code_for_model(tmp_path / "c.npz", tiny_generator)


def test_interpolation_ends_and_travel(tiny_generator):
    from latentatlas.latent.paths import endpoint, travel

    g = tiny_generator
    za, zb = z_from_seeds([1], 16), z_from_seeds([2], 16)
    assert endpoint(za, g, "z").space == "z"
    wa = endpoint(za, g, "w", truncation_psi=0.5)
    assert wa.space == "w" and torch.allclose(wa.tensor, to_w(za, g, truncation_psi=0.5).tensor)
    wplus = to_wplus(zb, g)
    assert endpoint(wplus, g, "w") is wplus
    with pytest.raises(UserError, match="a w\\+ code \\(saved or projected\\) has no z"):
        endpoint(wplus, g, "z")
    with pytest.raises(UserError, match="space 'x'"):
        endpoint(za, g, "x")
    # Ends in w and w+ meet in w+; the frames start and end at the ends' images.
    path, images = travel(wa, wplus, g, 5, "lerp")
    assert path.space == "w+" and images.shape == (5, 3, 16, 16)
    assert torch.allclose(images[0], synthesize(wa, g)[0], atol=1e-5) and torch.allclose(images[-1], synthesize(wplus, g)[0], atol=1e-5)
    # A z path takes the truncation when synthesising.
    _, zi = travel(za, zb, g, 3, "slerp", truncation_psi=0.5)
    assert torch.allclose(zi[0], synthesize(za, g, truncation_psi=0.5)[0], atol=1e-5)


def test_stylemap_codes_drive_only_stylemap_models_of_their_shape(tmp_path, tiny_generator):
    from latentatlas.latent.codes import check_fits, code_for_model
    from latentatlas.models.stylemap import Generator as StyleMapGenerator
    from latentatlas.models.stylemap import StyleMapConfig

    sm = StyleMapGenerator(StyleMapConfig(resolution=16, latent_spatial_size=4, style_dim=8, mapping_layers=2,
                                          channel_base=128, channel_max=16))
    code = LatentCode("stylemap", torch.randn(2, 8, 4, 4))
    check_fits(code, sm)
    with pytest.raises(UserError, match="needs a StyleMapGAN model"):
        check_fits(code, tiny_generator)
    with pytest.raises(UserError, match="takes stylemap codes"):
        check_fits(LatentCode("w", torch.randn(1, 8)), sm)
    with pytest.raises(UserError, match="8x2x2, this model needs 8x4x4"):
        check_fits(LatentCode("stylemap", torch.randn(1, 8, 2, 2)), sm)
    with pytest.raises(UserError, match="must have 4 dimensions"):
        LatentCode("stylemap", torch.randn(1, 8, 4))
    save_codes(tmp_path / "s.npz", code, model="sm.safetensors", images=["a.png", "b.png"])
    loaded, info = load_codes(tmp_path / "s.npz")
    assert loaded.space == "stylemap" and torch.equal(loaded.tensor, code.tensor) and info["images"] == ["a.png", "b.png"]
    assert torch.equal(code_for_model(tmp_path / "s.npz", sm, ["sm"]).tensor, code.tensor[:1])
