import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.io.checkpoints import load_model, save_model
from latentatlas.io.errors import UserError
from conftest import one_line_error as _one_line_error
from pickle_standins import write_official_pickle


@pytest.fixture
def model_file(tmp_path, tiny_generator):
    path = tmp_path / "tiny.safetensors"
    save_model(path, tiny_generator)
    return path


def test_generate_writes_grid_images_and_latents(run_cli, model_file, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli("generate", model_file, "--seeds", "0-2,7", "--per-seed", "--out", out, "--device", "cpu")
    assert code == 0, err
    assert Image.open(out / "grid.png").size == (32, 32)
    assert sorted(p.name for p in out.glob("seed*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    data = np.load(out / "latents.npz")
    assert data["latents"].shape[0] == 4 and str(data["space"]) == "w+" and data["seeds"].tolist() == [0, 1, 2, 7]
    assert "grid.png" in stdout
    # Refuses to overwrite without --force.
    code, _, err = run_cli("generate", model_file, "--seeds", "0", "--out", out)
    assert code == 2 and "already exists" in err and "--force" in err


def test_interpolate_and_mix(run_cli, model_file, tmp_path):
    for seed in (3, 5):
        code, _, err = run_cli("generate", model_file, "--seeds", seed, "--per-seed", "--out", tmp_path / f"g{seed}", "--no-grid")
        assert code == 0, err
    out = tmp_path / "i"
    code, _, err = run_cli("interpolate", model_file, "--from", "3", "--to", tmp_path / "g5" / "latents.npz",
                           "--frames", "5", "--method", "slerp", "--out", out)
    assert code == 0, err
    assert Image.open(out / "interpolation.png").size == (5 * 16, 16)
    # The path runs from seed 3's code to the file's (seed 5's), and its ends render as generate renders them.
    path = np.load(out / "interpolation.npz")["latents"]
    np.testing.assert_allclose(path[0], np.load(tmp_path / "g3" / "latents.npz")["latents"][0], atol=1e-6)
    np.testing.assert_allclose(path[-1], np.load(tmp_path / "g5" / "latents.npz")["latents"][0], atol=1e-6)
    strip = np.asarray(Image.open(out / "interpolation.png").convert("RGB")).astype(int)
    frames = [strip[:, 16 * i : 16 * (i + 1)] for i in range(5)]
    for frame, seed in ((frames[0], 3), (frames[-1], 5)):
        render = np.asarray(Image.open(tmp_path / f"g{seed}" / f"seed{seed:04d}.png").convert("RGB")).astype(int)
        assert np.abs(frame - render).max() <= 1, seed
    assert all(np.abs(a - b).mean() > 1 for a, b in zip(frames, frames[1:]))  # every frame moves on
    assert (out / "interpolation.mp4").stat().st_size > 0
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 5
    code, _, err = run_cli("interpolate", model_file, "--refine", "10", "--out", tmp_path / "r")
    assert code == 2 and "latentatlas project" in err and not (tmp_path / "r" / "interpolation.png").exists(), err
    code, _, err = run_cli("mix", model_file, "--rows", "0-1", "--cols", "2-4", "--cutoff", "2", "--out", tmp_path / "mix.png")
    assert code == 0, err
    assert Image.open(tmp_path / "mix.png").size == (4 * 16, 3 * 16)
    code, _, err = run_cli("mix", model_file, "--cols", "0-64", "--out", tmp_path / "big.png")  # every tile is held in memory
    _one_line_error(code, "", err, "--cols holds 65 seeds", "at most 64 a side")


def test_interpolation_ends_are_checked_like_every_other_seed_and_code(run_cli, model_file, tmp_path):
    """A seed past 2**32 was numpy's ValueError traceback, and a code of another model of the
    same shape was taken without a word (the app and the StyleMapGAN path refused it)."""
    from conftest import randomize, tiny_config
    from latentatlas.models.stylegan2 import Generator

    code, _, err = run_cli("interpolate", model_file, "--from", "5000000000", "--out", tmp_path / "i")
    _one_line_error(code, "", err, "seed 5000000000 is too large")
    other = tmp_path / "other.safetensors"
    save_model(other, randomize(Generator(tiny_config()), seed=5))
    code, _, err = run_cli("generate", other, "--seeds", "1", "--out", tmp_path / "g", "--no-grid")
    assert code == 0, err
    code, _, err = run_cli("interpolate", model_file, "--to", tmp_path / "g" / "latents.npz", "--out", tmp_path / "i")
    _one_line_error(code, "", err, "latents.npz is a code of the model")
    assert not (tmp_path / "i").exists()
    code, _, err = run_cli("interpolate", other, "--to", tmp_path / "g" / "latents.npz", "--frames", "3", "--out", tmp_path / "i")
    assert code == 0, err


def test_conditional_models_get_one_line_where_a_command_gives_no_class(run_cli, tmp_path):
    from conftest import randomize, tiny_config
    from latentatlas.models.stylegan2 import Generator

    model = tmp_path / "cond.safetensors"
    save_model(model, randomize(Generator(tiny_config(c_dim=3))))
    for args in (("mix", "--rows", "0", "--cols", "1", "--out", tmp_path / "m.png"),
                 ("interpolate", "--frames", "3", "--out", tmp_path / "i")):
        code, _, err = run_cli(args[0], model, *args[1:])
        _one_line_error(code, "", err, "conditional (3 classes)", "generate --class K")
    code, _, err = run_cli("generate", model, "--seeds", "0", "--class", "2", "--out", tmp_path / "g")
    assert code == 0, err


def test_info_and_convert(run_cli, tiny_generator, tmp_path):
    pkl = tmp_path / "net.pkl"
    write_official_pickle(pkl, tiny_generator)
    code, out, err = run_cli("convert", pkl, tmp_path / "net.safetensors")
    assert code == 0, err
    code, out, err = run_cli("info", tmp_path / "net.safetensors", "--json")
    assert code == 0, err
    assert '"resolution": 16' in out and '"num_ws": 6' in out
    # The converted file holds the pickle's weights: its images are the source generator's.
    converted, _ = load_model(tmp_path / "net.safetensors")
    assert converted.config == tiny_generator.config
    z = torch.randn(3, tiny_generator.z_dim, generator=torch.Generator().manual_seed(1))
    assert torch.equal(converted(z), tiny_generator(z))


@pytest.mark.parametrize("seeds,word", [("5-2", "end is before the start"), ("abc", "bad seed list")])
def test_bad_seed_lists(run_cli, model_file, tmp_path, seeds, word):
    out = tmp_path / "o"
    _one_line_error(*run_cli("generate", model_file, "--seeds", seeds, "--out", out), word)
    assert not out.exists()


def test_bad_model_files(run_cli, tmp_path, tiny_generator):
    out = tmp_path / "o"
    _one_line_error(*run_cli("generate", tmp_path / "missing.pkl", "--out", out), "no such file")
    good = tmp_path / "good.pkl"
    write_official_pickle(good, tiny_generator)
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[:5000])
    _one_line_error(*run_cli("generate", cut, "--out", out), "not a readable network pickle")
    foreign = tmp_path / "foreign.pkl"
    foreign.write_bytes(pickle.dumps([1, 2, 3]))
    _one_line_error(*run_cli("generate", foreign, "--out", out), "not the official dict")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": Evil()}))
    _one_line_error(*run_cli("convert", evil, tmp_path / "x.safetensors"), "refusing to load", "posix.system")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x.safetensors").exists()
    assert not out.exists()


def test_project_batch_below_one_is_refused_before_any_work(run_cli, model_file, tmp_path):
    out = tmp_path / "p"
    _one_line_error(*run_cli("project", model_file, tmp_path, "--batch", "0", "--out", out), "--batch 0: use at least 1")
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (("generate", "--truncation-cutoff", "-1", "--trunc", "0.5"), "--truncation-cutoff -1: this model has 6 layers; use 0..6"),
    (("generate", "--truncation-cutoff", "40", "--trunc", "0.5"), "--truncation-cutoff 40: this model has 6 layers; use 0..6"),
    (("mix", "--cutoff", "40"), "--cutoff 40: this model has 6 layers; use 0..6"),
    (("clean", "--tau", "nan"), "--tau nan: give a positive number of standard deviations, e.g. 2"),
    (("clean", "--tau", "0"), "--tau 0: give a positive number of standard deviations"),
])
def test_layer_cutoffs_and_tau_are_checked_alike(run_cli, model_file, tmp_path, args, message):
    """generate --truncation-cutoff used to slice from the end (-1) or be clamped (40) silently, as mix
    --cutoff never was; clean took --tau nan (compressing nothing) while refusing 0."""
    out = tmp_path / "o"
    target = out / "mix.png" if args[0] == "mix" else out
    _one_line_error(*run_cli(args[0], model_file, *args[1:], "--out", target, "--device", "cpu"), message)
    assert not out.exists()


def _two_images_named_a(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (16, 16)).save(tmp_path / folder / "a.png")
    return tmp_path / "x", tmp_path / "y"


def test_messages_say_where_and_what_to_do(run_cli, model_file, tmp_path):
    out = tmp_path / "o"
    _one_line_error(*run_cli("generate", model_file, "--trunc", "nan", "--out", out), "--trunc nan: give a finite truncation psi (1: none), e.g. 0.7")
    _one_line_error(*run_cli("mix", model_file, "--trunc", "inf", "--out", out / "m.png"), "--trunc inf: give a finite truncation psi")
    _one_line_error(*run_cli("generate", model_file, "--seeds", "0-100000", "--out", out),
                    "seed list '0-100000' holds 100001 seeds; one call takes at most 100000: split it over several calls")
    np.savez(tmp_path / "nan.npz", latents=np.full((1, 16), np.nan, np.float32), space=np.array("w"))
    _one_line_error(*run_cli("interpolate", model_file, "--from", tmp_path / "nan.npz", "--out", out),
                    "nan.npz: the w code holds NaN or infinite values")
    x, y = _two_images_named_a(tmp_path)
    for command, model in (("project", model_file), ("encode", "faces64-stylemap")):
        _one_line_error(*run_cli(command, model, x, y, "--out", out),
                        f"{x / 'a.png'} and {y / 'a.png'} share the name 'a', after which the outputs are named: rename one")
    _one_line_error(*run_cli("info", "factors"), "factors is the bundled factor predictor, not a model: give it as --predictor factors")
    assert not out.exists()


def test_train_predictor_refuses_an_existing_output_unless_it_resumes_its_own_run(run_cli, tmp_path, monkeypatch):
    """train-predictor overwrote any OUT without --force; only its own run's state beside OUT
    (io.atomic.state_path: OUT.state.pt) makes a rerun resume, and so rewrite OUT, unasked."""
    import torch
    from safetensors.torch import load_file

    from latentatlas.training import attributes
    from latentatlas.training.attributes import TrainConfig, state_path, train

    drawn: list[int] = []  # the steps whose batches are drawn
    real_batch = attributes._batch
    monkeypatch.setattr(attributes, "_batch", lambda step, *rest: drawn.append(step) or real_batch(step, *rest))
    out = tmp_path / "pred.safetensors"
    out.write_text("my notes")
    args = ("train-predictor", "--out", out, "--steps", "2", "--batch", "2", "--width", "1", "--eval-num", "0", "--device", "cpu")
    _one_line_error(*run_cli(*args), f"{out} already exists: choose another name or pass --force to overwrite it")
    assert out.read_text() == "my notes" and sorted(p.name for p in tmp_path.iterdir()) == ["pred.safetensors"]
    code, stdout, err = run_cli(*args, "--force")
    assert code == 0 and "predictor:" in stdout, err
    assert state_path(out) == tmp_path / "pred.state.pt" and state_path(out).exists()
    assert drawn == [0, 1]
    code, stdout, err = run_cli(*args)  # the same run again: it resumes from its state, no --force needed
    assert code == 0 and "predictor:" in stdout, err
    assert drawn == [0, 1] and torch.load(state_path(out), weights_only=True)["step"] == 2  # done already: no step more
    # A run stopped after 1 of its 2 steps goes on from step 1, and ends where the unstopped run did.
    part = tmp_path / "part.safetensors"
    train(part, TrainConfig(steps=2, batch=2, width=1), "cpu", progress=False, max_steps_this_run=1)  # the command's other settings are the defaults
    assert not part.exists() and torch.load(state_path(part), weights_only=True)["step"] == 1
    drawn.clear()
    code, stdout, err = run_cli("train-predictor", "--out", part, *args[3:])
    assert code == 0 and "predictor:" in stdout, err
    assert drawn == [1] and torch.load(state_path(part), weights_only=True)["step"] == 2
    resumed, unstopped = load_file(str(part)), load_file(str(out))
    assert resumed.keys() == unstopped.keys() and all(torch.equal(resumed[k], unstopped[k]) for k in resumed)


@pytest.mark.parametrize("args,option", [
    (("generate", "MODEL"), "--out"),
    (("project", "MODEL", "IMAGE", "--steps", "1"), "--out"),
    (("encode", "faces64-stylemap", "IMAGE"), "--out"),
    (("train", "--kimg", "1"), "--out"),
    (("train-stylemap", "--kimg", "1"), "--out"),
    (("demo",), "--out"),
    (("mix", "MODEL"), "--out"),  # a file output, in a folder that is a file
    (("train-predictor",), "--out"),
    (("evaluate", "MODEL"), "--json-out"),
])
@pytest.mark.parametrize("below", [False, True])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(run_cli, model_file, tmp_path, args, option, below):
    """A regular file where a folder is expected (an --out folder, or the folder of an --out file) failed
    after the work with a FileExistsError or NotADirectoryError traceback; now _check_folder says so first."""
    image = tmp_path / "face.png"
    Image.new("RGB", (16, 16)).save(image)
    notes = tmp_path / "notes"
    notes.write_text("mine")
    target = notes / "sub" if below else notes
    if args[0] in ("mix", "train-predictor", "evaluate"):  # file outputs: their folder is the file
        target = target / ("out.safetensors" if args[0] == "train-predictor" else "out.png")
    before = sorted(tmp_path.rglob("*"))
    argv = [{"MODEL": model_file, "IMAGE": image}.get(a, a) for a in args]
    _one_line_error(*run_cli(*argv, option, target, "--device", "cpu"), f"{notes}: is a file, not a folder: give a folder for {option}")
    assert sorted(tmp_path.rglob("*")) == before and notes.read_text() == "mine"


def test_a_resumable_output_named_as_a_folder_is_refused(run_cli, model_file, tmp_path, monkeypatch):
    """'.' has no file name to put the resumable state beside (Path.with_suffix raised ValueError)."""
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    _one_line_error(*run_cli("train-predictor", "--out", ".", "--steps", "1"), ".: is a folder, not a file: give a file for --out")
    _one_line_error(*run_cli("directions", "warped", "train", model_file, "--out", ".", "--steps", "1"),
                    ".: is a folder, not a file: give a file for --out")
    assert sorted(tmp_path.rglob("*")) == before


def test_an_output_file_that_is_a_folder_is_refused_even_with_force(run_cli, model_file, tmp_path):
    """--force let mix (and every file output) reach the end of the work, then fail to replace a folder."""
    folder = tmp_path / "mix.png"
    folder.mkdir()
    _one_line_error(*run_cli("mix", model_file, "--out", folder, "--force"), f"{folder}: is a folder, not a file: choose another --out")
    assert not any(folder.iterdir())


def _refused_before_any_work(run_cli, model_file, tmp_path, args, message):
    """`latentatlas ARGS --out O` (MODEL and IMAGE stand for a tiny model and a 16 px picture) gives
    `message` in one line and leaves no O behind."""
    image = tmp_path / "face.png"
    Image.new("RGB", (16, 16)).save(image)
    out = tmp_path / "o"
    target = out / "d.safetensors" if args[0] in ("directions", "train-predictor", "stats") else out
    argv = [{"MODEL": model_file, "IMAGE": image}.get(a, a) for a in args]
    _one_line_error(*run_cli(*argv, "--out", target, "--device", "cpu"), message)
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (("project", "MODEL", "IMAGE", "--steps", "0"), "--steps 0: use at least 1 (optimisation steps)"),
    (("project", "MODEL", "IMAGE", "--steps", "-5"), "--steps -5: use at least 1 (optimisation steps)"),
    (("directions", "supervised", "MODEL", "--predictor", "factors", "--samples", "0"), "--samples 0: use at least 4"),
    (("directions", "warped", "train", "MODEL", "--steps", "0"), "--steps 0: use at least 1 (training steps"),
    (("interpolate", "MODEL", "--fps", "0"), "--fps 0: use at least 1 (frames per second of the animations)"),
    (("interpolate", "MODEL", "--fps", "-2"), "--fps -2: use at least 1"),
    (("interpolate", "MODEL", "--fps", "60"), "--fps 60: use at most 50 (browsers play faster GIFs at 10 frames per second)"),
    (("stats", "MODEL", "--num", "-5"), "--num -5: use at least 2 (mapping-network samples for the fit)"),
    (("stats", "MODEL", "--num", "10"), "--num 10: the covariance of 16-d w needs more samples than that; use 100000"),
    (("synthfaces", "--frames", "0"), "--frames 0: use at least 2 (images per factor strip: a sweep needs two)"),
    (("synthfaces", "--steps", "1"), "--frames 1: use at least 2"),  # --steps, the earlier name, still taken
    (("train", "--kimg", "0"), "--kimg 0: give a positive number of thousands of training images"),
    (("train", "--kimg", "-1"), "--kimg -1: give a positive number"),
    (("train", "--kimg", "nan"), "--kimg nan: give a positive number"),
    (("train", "--batch", "0"), "--batch 0: use at least 1 (images per step, over all processes)"),
    (("train", "--mapping-layers", "0"), "bad StyleGAN2 settings: mapping_layers must be positive, got 0"),
    (("train-stylemap", "--kimg", "0"), "--kimg 0: give a positive number of thousands of training images"),
    (("train-stylemap", "--batch", "-4"), "--batch -4: use at least 1"),
    (("train-predictor", "--batch", "1"), "--batch 1: use at least 2 (rendered faces per step: batch norm needs two)"),
    (("train-predictor", "--eval-num", "-1"), "--eval-num -1: use at least 0 (held-out renders; 0: skip the report)"),
    (("train", "--resolution", "8"), "--resolution 8: synthfaces renders at least 16 px"),
    (("train-stylemap", "--resolution", "8"), "--resolution 8: synthfaces renders at least 16 px"),
])
def test_counts_below_their_minimum_are_refused_before_any_work(run_cli, model_file, tmp_path, args, message):
    """Each of these gave a traceback (a division by zero, an empty torch.cat, a negative tensor size,
    tqdm or gif writing), or silently wrote nonsense (untrained networks or paths marked finished,
    one-image "sweeps"), often after some files were written."""
    _refused_before_any_work(run_cli, model_file, tmp_path, args, message)


@pytest.mark.parametrize("args,message", [
    (("train", "--lr", "nan"), "--lr nan: give a positive learning rate, e.g. 0.002"),
    (("train", "--gamma", "nan"), "--gamma nan: give an R1 weight >= 0 (0: no R1)"),
    (("train", "--gamma", "-1"), "--gamma -1: give an R1 weight >= 0"),
    (("train", "--snapshot-kimg", "nan"), "--snapshot-kimg nan: give a finite number >= 0 (0: only at the end)"),
    (("train", "--sample-kimg", "-5"), "--sample-kimg -5: give a finite number >= 0"),
    (("train", "--metrics-kimg", "nan"), "--metrics-kimg nan: give a finite number >= 0 (0: off)"),
    (("train", "--max-minutes", "nan"), "--max-minutes nan: give a positive number of minutes"),
    (("train-stylemap", "--max-minutes", "0"), "--max-minutes 0: give a positive number of minutes"),
    (("train-stylemap", "--lr", "inf"), "--lr inf: give a positive learning rate"),
    (("train-predictor", "--lr", "nan"), "--lr nan: give a positive learning rate"),
    (("train-predictor", "--max-minutes", "inf"), "--max-minutes inf: give a positive number of minutes"),
    (("directions", "warped", "train", "MODEL", "--lr", "nan"), "--lr nan: give a positive learning rate"),
    (("directions", "warped", "train", "MODEL", "--max-minutes", "-1"), "--max-minutes -1: give a positive number"),
    (("project", "MODEL", "IMAGE", "--prior", "nan"), "--prior nan: give a prior weight >= 0 (0: plain projector)"),
    (("project", "MODEL", "IMAGE", "--mse-weight", "-1"), "--mse-weight -1: give a pixel MSE weight >= 0"),
    (("traverse", "MODEL", "missing.safetensors", "--strength", "1..2,3"), "--strength '1..2,3': give two numbers like -3,3"),
    (("traverse", "MODEL", "missing.safetensors", "--strength", "nan,3"), "--strength nan: give two finite numbers like -3,3"),
    # Seeds past 2**32 (a derived seed overflowed int64 in the predictor's trainer, a traceback)
    (("train-predictor", "--seed", "2000000000000"), "--seed 2000000000000: seeds are 0..4294967295"),
    (("train", "--seed", "4294967296"), "--seed 4294967296: seeds are 0..4294967295"),
    (("directions", "warped", "train", "MODEL", "--seed", "-1"), "--seed -1: seeds are 0..4294967295"),
    (("synthfaces", "--seed", "4294967296"), "--seed 4294967296: seeds are 0..4294967295"),
    (("project", "MODEL", "IMAGE", "--seed", "-1"), "--seed -1: seeds are 0..4294967295"),
    (("project", "MODEL", "IMAGE", "--seed", "18446744073709551616"), "--seed 18446744073709551616: seeds are 0..4294967295"),
    (("synthfaces", "--frames", "65"), "--frames 65: use at most 64 images per factor strip"),
    (("train-predictor", "--eval-num", "1"), "--eval-num 1: an R^2 needs at least 2 held-out renders"),
    (("train", "--mirror"), "--mirror flips a folder's images; synthfaces renders both yaw and light directions"),
])
def test_numbers_that_nan_inf_or_a_sign_would_break_are_refused_before_any_work(run_cli, model_file, tmp_path, args, message):
    """NaN fails no `<` test and inf passes every lower bound: --lr nan and --snapshot-kimg nan ended
    in tracebacks (Adam's, a cast's), --gamma had no check at all, --max-minutes nan ran without a
    limit, and --strength 1..2,3 reached float()'s traceback."""
    _refused_before_any_work(run_cli, model_file, tmp_path, args, message)


def test_a_folder_given_for_a_file_is_called_a_folder(tmp_path):
    """`interpolate faces64-stylemap --from FOLDER` said 'FOLDER: no such file'."""
    import re

    from latentatlas.io.images import read_image
    from latentatlas.io.npzfile import read_npz
    from latentatlas.io.tensorfile import read_metadata

    for read in (lambda p: read_image(p, 64), read_npz, lambda p: read_metadata(p, "safetensors")):
        with pytest.raises(UserError, match=re.escape(f"{tmp_path}: is a folder, not a file: give a file")):
            read(tmp_path)
        with pytest.raises(UserError, match="missing: no such file"):
            read(tmp_path / "missing")


def test_a_folder_given_for_vgg_inception_mask_or_a_model_is_called_a_folder(run_cli, tmp_path):
    """--vgg, --lpips-lin, --inception and --mask checked their file with is_file() alone, so a
    folder there was 'no such file' (and a model folder 'is a directory, not a model file', other
    words for the same thing); each now says it is a folder, with what the option takes."""
    from latentatlas.editing.local import load_mask
    from latentatlas.inversion.losses import LPIPSVGG
    from latentatlas.io.checkpoints import load_any
    from latentatlas.metrics.fid import INCEPTION_HINT, load_inception

    folder = tmp_path / "weights"
    folder.mkdir()
    for read, give in ((lambda p: LPIPSVGG.from_files(p, p), "give the VGG16 weights file"),  # --vgg, --lpips-lin
                       (load_inception, INCEPTION_HINT),  # --inception
                       (lambda p: load_mask(p, 16), "give a mask image, or a region: eyes, mouth, hair"),  # --mask
                       (load_any, "give a file")):  # MODEL
        with pytest.raises(UserError) as caught:
            read(folder)
        assert str(caught.value) == f"{folder}: is a folder, not a file: {give}"
        with pytest.raises(UserError, match=r"missing\.pt: no such file"):
            read(tmp_path / "missing.pt")
    _one_line_error(*run_cli("train-stylemap", "--out", tmp_path / "run", "--vgg", folder), f"{folder}: is a folder, not a file: give a file")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [("directions", "pca", "MODEL"), ("directions", "sefa", "MODEL"),
                                  ("directions", "supervised", "MODEL", "--predictor", "factors"),
                                  ("directions", "warped", "train", "MODEL"), ("train-predictor",)])
def test_safetensors_outputs_are_refused_under_another_suffix(run_cli, model_file, tmp_path, args):
    """directions pca --out p.npz and train-predictor --out p.png wrote safetensors files under those
    names without a word (convert and stats refused them already)."""
    out = tmp_path / "o" / "d.npz"
    argv = [model_file if a == "MODEL" else a for a in args]
    _one_line_error(*run_cli(*argv, "--out", out, "--device", "cpu"), f"{out}: the output must end in .safetensors")
    assert not out.parent.exists()


def test_an_output_folder_that_takes_no_files_is_refused_before_any_work(run_cli, model_file, tmp_path, monkeypatch):
    """A folder the user may not write to (or a read-only disk) gave a PermissionError traceback from
    tempfile.mkstemp after the images were made. Faked here: chmod stops no root, and tests may run as root."""
    import errno

    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def refusing_open(name, flags, *args, **kwargs):  # any file made in ro, named or not (O_TMPFILE)
        if flags & (os.O_WRONLY | os.O_RDWR) and str(ro) in (os.fsdecode(name), os.path.dirname(os.fsdecode(name))):
            raise PermissionError(errno.EACCES, "Permission denied", name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    for out in (ro, ro / "new" / "sub"):  # the folder itself, or the nearest existing one above it
        code, stdout, err = run_cli("generate", model_file, "--seeds", "0", "--out", out, "--device", "cpu")
        _one_line_error(code, stdout, err, f"{ro}: cannot write files there (Permission denied): choose a folder you may write to")
        assert stdout == "" and not any(ro.iterdir())


def test_a_write_that_fails_for_a_full_disk_is_one_line_and_leaves_no_temporary_file(run_cli, model_file, tmp_path, monkeypatch):
    """The check up front cannot see a disk that fills during the work: atomic_path turns the write's
    OSError (ENOSPC, EROFS, EACCES) into a UserError naming the file, and removes its temporary file."""
    import errno

    def full_disk(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "out"
    code, stdout, err = run_cli("generate", model_file, "--seeds", "0-1", "--out", out, "--device", "cpu")
    assert code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"error: {out / 'grid.png'}: cannot write it (No space left on device): free some space or write elsewhere"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_project_reads_every_image_before_the_first_batch_and_a_rerun_is_told_of_resume(run_cli, model_file, tmp_path):
    """A corrupt image came up only when its batch did, after the earlier batches' work (hours on a
    real model); and a rerun over existing outputs was told only of --force, which redoes everything."""
    import io

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(images / "a.png")
    buf = io.BytesIO()
    Image.effect_noise((16, 16), 50).convert("RGB").save(buf, format="PNG")
    (images / "b.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # cut off: the header reads, the pixels do not
    out = tmp_path / "out"
    args = ("project", model_file, images, "--loss", "mse", "--steps", "2", "--batch", "1", "--device", "cpu", "--out", out)
    _one_line_error(*run_cli(*args), f"{images / 'b.png'}: not a readable image")
    assert not out.exists() or not any(out.iterdir())
    (images / "b.png").unlink()
    code, _, err = run_cli(*args)
    assert code == 0, err
    _one_line_error(*run_cli(*args), f"{out / 'a.npz'} already exists: pass --resume to go on with an interrupted run")


@pytest.mark.parametrize("content", ["cut", "no config", "bad tensors"])
def test_a_damaged_training_state_is_one_line_saying_to_remove_it(run_cli, model_file, tmp_path, content):
    """train-predictor and train read their resumable state with a bare torch.load: a file cut short,
    a state without its 'config' or one whose tensors do not fit was a traceback (directions warped
    train said it in one line already; all three now read it through io.tensorfile.read_training_state)."""
    import torch

    from latentatlas.training.attributes import TrainConfig

    run, pred = tmp_path / "run", tmp_path / "p.safetensors"
    run.mkdir()
    commands = {
        run / "state.pt": ("train", "--out", run, "--resolution", "16", "--kimg", "0.004", "--batch", "2", "--channel-base", "64",
                           "--channel-max", "8", "--z-dim", "8", "--w-dim", "8", "--mapping-layers", "1", "--device", "cpu"),
        tmp_path / "p.state.pt": ("train-predictor", "--out", pred, "--steps", "1", "--batch", "2", "--width", "1",
                                  "--eval-num", "0", "--device", "cpu"),
    }
    for state, args in commands.items():
        if content == "cut":
            torch.save({"config": {}, "model": {"w": torch.zeros(1000)}}, state)
            state.write_bytes(state.read_bytes()[:300])
        elif content == "no config":
            torch.save({"model": {}}, state)
        elif state.name == "p.state.pt":  # the config of this very run, the weights of no predictor
            torch.save({"config": vars(TrainConfig(steps=1, batch=2, width=1)), "model": {"x": torch.zeros(2)}, "opt": {}, "step": 0}, state)
        else:
            continue  # train's own configs are checked key by key: covered by its tests
        before = state.read_bytes()
        _one_line_error(*run_cli(*args), f"{state}: not a readable training state (", "); remove it to start again")
        assert state.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (("mix", "MODEL", "--out", "OUT/mix.gif"), "mix.gif: unsupported image suffix; use .png or .jpg"),
    (("directions", "supervised", "MODEL", "--predictor", "factors", "--method", "typo", "--out", "OUT/d.safetensors"),
     "method (--method) must be svm or mean: got 'typo'"),
])
def test_options_are_checked_before_the_model_is_loaded(run_cli, model_file, tmp_path, monkeypatch, args, message):
    """mix rendered the whole grid before save_image refused the suffix, and directions supervised
    sampled and scored its codes before the method was looked at."""
    import latentatlas.models.bundled

    def no_work(*a, **k):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(latentatlas.models.bundled, "load_generator", no_work)
    argv = [{"MODEL": model_file}.get(a, a.replace("OUT", str(tmp_path / "o"))) for a in args]
    _one_line_error(*run_cli(*argv, "--device", "cpu"), message)
    assert not (tmp_path / "o").exists()


def test_generate_writes_per_seed_images_batch_by_batch_and_caps_its_grid(run_cli, model_file, tmp_path, monkeypatch):
    """generate held every image of up to 100,000 seeds and tiled them all into one grid: gigabytes
    at 64 px before anything was written. Per-seed PNGs are now written batch by batch, and a grid
    of more than MAX_GRID_TILES seeds is refused before any work (--no-grid lifts it)."""
    from latentatlas.cli import MAX_GRID_TILES
    from latentatlas.models.stylegan2 import SynthesisNetwork

    out = tmp_path / "out"
    many = f"0-{MAX_GRID_TILES}"
    _one_line_error(*run_cli("generate", model_file, "--seeds", many, "--per-seed", "--out", out),
                    f"--seeds holds {MAX_GRID_TILES + 1} seeds; grid.png shows at most {MAX_GRID_TILES}: pass --no-grid")
    assert not out.exists()
    written_before_each_batch: list[int] = []
    real_forward = SynthesisNetwork.forward

    def counting_forward(self, *a, **k):
        written_before_each_batch.append(len(list(out.glob("seed*.png"))))
        return real_forward(self, *a, **k)

    monkeypatch.setattr(SynthesisNetwork, "forward", counting_forward)
    code, stdout, err = run_cli("generate", model_file, "--seeds", "0-39", "--no-grid", "--per-seed", "--out", out, "--device", "cpu")
    assert code == 0, err
    assert len(list(out.glob("seed*.png"))) == 40 and "40 images" in stdout and not (out / "grid.png").exists()
    assert written_before_each_batch == [0, 16, 32]  # batches of 16


def test_traverse_caps_the_frames_it_holds(run_cli, model_file, tmp_path):
    """traverse holds every frame of every row until the strip and the GIF are written: seeds x
    steps frames, up to 100,000 x 200 before this check."""
    from latentatlas.cli import MAX_MIX_SIDE

    out = tmp_path / "o"
    _one_line_error(*run_cli("traverse", model_file, "missing.safetensors", "--seeds", f"0-{MAX_MIX_SIDE}", "--out", out),
                    f"--seeds holds {MAX_MIX_SIDE + 1} seeds; a traverse strip takes at most {MAX_MIX_SIDE}")
    _one_line_error(*run_cli("traverse", model_file, "missing.safetensors", "--seeds", "0-63", "--steps", "65", "--out", out),
                    f"64 seeds x --frames 65 make 4160 frames; a traverse strip holds at most {MAX_MIX_SIDE**2}")
    assert not out.exists()


def test_stats_never_offers_to_overwrite_a_bundled_model(run_cli, tmp_path):
    """Without --out, stats updates MODEL in place, and for a bundled name said "already exists: ...
    pass --force": the way to rewrite the installed package's own model file."""
    from latentatlas.models.bundled import WEIGHTS_DIR

    before = (WEIGHTS_DIR / "faces64.safetensors").stat().st_mtime_ns
    for args in (("faces64",), ("faces64", "--force"), (WEIGHTS_DIR / "faces64.safetensors", "--force"),
                 ("faces64", "--out", WEIGHTS_DIR / "faces64.safetensors", "--force")):
        code, stdout, err = run_cli("stats", *args, "--num", "2", "--device", "cpu")
        _one_line_error(code, stdout, err, "a bundled model's file, part of the installed package: give --out NAME.safetensors")
        assert "--force" not in err
    assert (WEIGHTS_DIR / "faces64.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("args,message", [
    (("edit-local", "faces64-stylemap", "--source", "0", "--reference", "1", "--mask", "eyes", "--grow", "-1"),
     "grow (--grow) must be >= 0 px (a mask can only grow): got -1 px"),
    (("edit-local", "faces64-stylemap", "--source", "0", "--reference", "1", "--mask", "eyes", "--strength", "1.5"),
     "blend strength must lie in [0, 1] (--strength): got 1.5"),
    (("directions", "warped", "train", "MODEL", "--sets", "0"), "sets (--sets) must be at least 1 (a support set a path): got 0"),
    (("directions", "warped", "train", "MODEL", "--dipoles", "0"), "dipoles (--dipoles) must be at least 1 a set: got 0"),
    (("directions", "warped", "train", "MODEL", "--space", "w+"), "space (--space) must be z or w (warped paths live there): got 'w+'"),
    (("directions", "warped", "train", "MODEL", "--batch", "0"), "batch (--batch) must be at least 1 image pair a step: got 0"),
    (("directions", "warped", "train", "MODEL", "--linear", "--dipoles", "2"),
     "the linear baseline (--linear) has exactly one dipole per set (--dipoles 1): got 2"),
    (("directions", "warped", "train", "MODEL", "--reconstructor-input", "both"),
     "reconstructor input (--reconstructor-input) 'both': use one of pair, difference"),
])
def test_library_checks_name_the_option_the_cli_user_gave(run_cli, model_file, tmp_path, args, message):
    """These checks live in the library (the app and Python callers use them too), and their messages
    named no option: "a mask can only grow: got -1 px", "need at least one support set and one dipole
    per set". They now name the field and its option, which reads well from both."""
    _refused_before_any_work(run_cli, model_file, tmp_path, args, message)


def test_every_truncation_option_says_what_psi_does_in_the_same_words():
    """interpolate, mix and traverse had --truncation/--trunc without any help text."""
    import typer.main

    from latentatlas.cli import TRUNCATION_HELP, app

    group = typer.main.get_command(app)
    for name in ("generate", "interpolate", "mix", "traverse"):
        option = next(p for p in group.commands[name].params if p.name == "truncation")
        assert option.opts == ["--truncation", "--trunc"] and option.help == TRUNCATION_HELP, name
