import argparse
import os
import pickle
import re

import pytest
import torch

from latentatlas.io.checkpoints import import_official_pickle, import_rosinality, load_any, load_model, save_model
from latentatlas.io.errors import UserError
from latentatlas.models.stylegan2 import Generator
from conftest import randomize, tiny_config
from pickle_standins import rosinality_state_dict, write_official_pickle


def images(g, seed=0, c=None):
    z = torch.randn(3, g.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return g(z, c, truncation_psi=0.7)


def test_own_format_round_trips_bit_exactly(tmp_path, tiny_generator):
    path = tmp_path / "m.safetensors"
    save_model(path, tiny_generator, extra_tensors={"prior.mean": torch.arange(3.0)}, metadata={"note": "x"})
    loaded, info = load_model(path)
    for (k, a), (k2, b) in zip(tiny_generator.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.config == tiny_generator.config
    assert torch.equal(images(loaded), images(tiny_generator))
    assert info["note"] == "x" and torch.equal(info["extra_tensors"]["prior.mean"], torch.arange(3.0))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left


def test_fp16_file_is_half_size_and_close(tmp_path, tiny_generator):
    save_model(tmp_path / "a.safetensors", tiny_generator)
    save_model(tmp_path / "b.safetensors", tiny_generator, dtype=torch.float16)
    ratio = (tmp_path / "b.safetensors").stat().st_size / (tmp_path / "a.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6
    half, _ = load_model(tmp_path / "b.safetensors")
    assert (images(half) - images(tiny_generator)).abs().max() < 2e-2


@pytest.mark.parametrize("flat", [False, True], ids=["ada-nested", "stylegan3-flat"])
def test_official_pickle_imports_without_running_code(tmp_path, flat, capfd):
    g = randomize(Generator(tiny_config(c_dim=2, conv_clamp=256)))
    path = tmp_path / "net.pkl"
    write_official_pickle(path, g, flat=flat)
    loaded = import_official_pickle(path)
    assert loaded.config == g.config
    c = torch.eye(2)[[0, 1, 1]]
    assert torch.equal(images(loaded, c=c), images(g, c=c))
    assert "executed" not in capfd.readouterr().out


def test_pickle_calling_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}))
    with pytest.raises(UserError, match=r"evil\.pkl: refusing to load.*system"):
        import_official_pickle(path)
    assert not marker.exists()


def test_truncated_and_foreign_pickles(tmp_path, tiny_generator):
    good = tmp_path / "good.pkl"
    write_official_pickle(good, tiny_generator)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError, match="not a readable network pickle"):
        import_official_pickle(cut)
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(UserError, match="no network 'G_ema'"):
        import_official_pickle(foreign)


def test_rosinality_checkpoint_imports(tmp_path, tiny_generator):
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": rosinality_state_dict(tiny_generator), "latent_avg": tiny_generator.mapping.w_avg.clone(),
                "args": argparse.Namespace(size=16)}, path)
    loaded, info = load_any(path)
    assert info["source_format"] == "rosinality"
    assert loaded.config.img_resolution == 16 and loaded.config.channel_max == 16
    assert torch.allclose(images(loaded), images(tiny_generator), atol=1e-6)


def test_a_checkpoint_in_torchs_legacy_format_is_read_by_the_torch_loader(tmp_path, tiny_generator):
    """torch.save before PyTorch 1.6 wrote a pickle stream, not a zip: sniffed as an official network
    pickle, it was refused because "the pickle holds a int" (its magic number)."""
    from latentatlas.io.checkpoints import sniff_format

    path = tmp_path / "legacy.pt"
    torch.save({"g_ema": rosinality_state_dict(tiny_generator), "latent_avg": tiny_generator.mapping.w_avg.clone()},
               path, _use_new_zipfile_serialization=False)
    assert sniff_format(path) == "torch"
    loaded, info = load_any(path)
    assert info["source_format"] == "rosinality"
    assert torch.allclose(images(loaded), images(tiny_generator), atol=1e-6)

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"g_ema": Evil()}, path, _use_new_zipfile_serialization=False)  # still weights_only: no code runs
    with pytest.raises(UserError, match=r"legacy\.pt: not a model checkpoint: it holds objects other than tensors \(posix\.system\)"):
        load_any(path)


def test_a_refused_torch_file_is_told_in_our_words_never_as_advice_to_load_it_unsafely(tmp_path):
    """PyTorch's refusal opens with advice to re-run torch.load with weights_only=False, which
    would run the file's code; cut to one line that advice was all `info evil.pt` showed. The
    line says what the file holds, that nothing ran, and what to give instead."""
    from latentatlas.io.checkpoints import import_stylemapgan, model_kind

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"g_ema": Evil()}, evil)
    for load in (load_any, import_rosinality, import_stylemapgan, model_kind):
        with pytest.raises(UserError) as caught:
            load(evil)
        message = str(caught.value)
        assert "weights_only" not in message and "\n" not in message
        assert message == (f"{evil}: not a model checkpoint: it holds objects other than tensors (posix.system), which could "
                           "run code; refused, nothing in it ran; give a latentatlas .safetensors file, an official "
                           "StyleGAN2 .pkl, or a rosinality or StyleMapGAN .pt checkpoint")


def test_a_damaged_torch_file_is_called_damaged_not_refused(tmp_path):
    """PyTorch opens every error of its safe loader with "Weights only load failed", a flipped
    byte's too, so one damaged byte of a genuine checkpoint was told as a file holding "data that
    is not a pickle of tensors", to be replaced by a .safetensors file; a flipped byte that made a
    memo index point nowhere was a KeyError traceback. Each is an unreadable file now, with the
    question that helps: is it complete?"""
    from conftest import damaged_torch_saves
    from latentatlas.io.checkpoints import import_stylemapgan, model_kind

    garbage = tmp_path / "garbage.pt"
    torch.save({"g_ema": {}}, garbage)
    with open(garbage, "r+b") as fh:  # the zip's pickle, its opcodes replaced by ones no pickle has here
        data = fh.read()
        fh.seek(data.index(b"\x80\x02"))
        fh.write(b"garbage\n")
    files = damaged_torch_saves(tmp_path, {"g_ema": {"w": torch.zeros(4), "b": torch.ones(2)}, "latent_avg": torch.zeros(3)})
    for name, path in (("garbage", garbage), *files.items()):
        for load in (load_any, import_rosinality, import_stylemapgan, model_kind):
            with pytest.raises(UserError) as caught:
                load(path)
            message = str(caught.value)
            assert re.fullmatch(rf"{re.escape(str(path))}: not a readable PyTorch checkpoint \(\w+\); is the file complete\?",
                                message), (name, message)


def test_unknown_format(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello world, not a model")
    with pytest.raises(UserError, match="unknown model format"):
        load_any(p)
    with pytest.raises(UserError, match="no such file"):
        load_any(tmp_path / "missing.pkl")


@pytest.mark.parametrize("config", [None, "{not json", '{"z_dim": -1}'])
def test_a_model_file_with_a_broken_config_is_one_line_error(tmp_path, tiny_generator, config):
    from safetensors import safe_open
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_model(good, tiny_generator)
    with safe_open(str(good), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if config is None:
        del meta["generator_config"]
    else:
        meta["generator_config"] = config
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(UserError, match="generator config in the file is missing or invalid"):
        load_model(bad)


@pytest.mark.parametrize("file,what", [
    ("faces64_ganspace.safetensors", "a directions file, not a model: give a model (a bundled name or a model file); directions files go to"),
    ("faces64_warped.safetensors", "a warped-directions file, not a model"),
    ("factors.safetensors", "a factor predictor, not a model: give a model (a bundled name or a model file); a predictor goes to --predictor"),
])
def test_our_other_files_given_as_a_model_are_named_for_what_they_are(run_cli, file, what):
    """A directions file or a predictor where a model goes was "the generator config in the file is
    missing or invalid": their 'kind' is read first."""
    from conftest import one_line_error

    from latentatlas.io.checkpoints import model_kind
    from latentatlas.models.bundled import WEIGHTS_DIR

    path = WEIGHTS_DIR / file
    for load in (load_model, load_any, model_kind):
        with pytest.raises(UserError, match="^" + re.escape(f"{path}: {what}")):
            load(path)
    one_line_error(*run_cli("info", path), f"{path}: {what}")


def test_a_safetensors_header_length_ending_in_0x80_is_not_read_as_a_pickle(tmp_path):
    """The header length's low byte can be 0x80, a pickle's first byte (it was for a 16x16 stylemap model)."""
    from safetensors.torch import save_file

    from latentatlas.io.checkpoints import sniff_format

    for pad in range(0, 300):
        path = tmp_path / "m.safetensors"
        save_file({"w": torch.zeros(2)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        raise AssertionError("no padding gave a header length ending in 0x80")
    assert sniff_format(path) == "latentatlas"
    pickled = tmp_path / "p.pkl"
    pickled.write_bytes(b"\x80\x04" + b"\x00" * 20)
    assert sniff_format(pickled) == "pickle"


def test_a_codes_file_given_as_a_model_is_named_as_one(tmp_path):
    """An .npz is a zip, and was read as a PyTorch checkpoint: 'not a readable PyTorch checkpoint'."""
    import numpy as np

    from latentatlas.io.checkpoints import sniff_format

    codes = tmp_path / "codes.npz"
    np.savez(codes, w=np.zeros((2, 16), np.float32))
    with pytest.raises(UserError, match="codes.npz: a NumPy .npz file \\(latent codes or scores\\), not a model"):
        sniff_format(codes)
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")  # a PyTorch zip stays one
    assert sniff_format(tmp_path / "state.pt") == "torch"
