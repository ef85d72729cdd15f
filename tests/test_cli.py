import os
import pickle

import numpy as np
import pytest
from PIL import Image

from latentatlas.io.checkpoints import save_model
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
        target = target / "out.png"
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
    target = out / "d.safetensors" if args[0] in ("directions", "train-predictor") else out
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
    (("synthfaces", "--steps", "0"), "--steps 0: use at least 2 (images per factor strip: a sweep needs two)"),
    (("synthfaces", "--steps", "1"), "--steps 1: use at least 2"),
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
    (("synthfaces", "--steps", "65"), "--steps 65: use at most 64 images per factor strip"),
    (("train-predictor", "--eval-num", "1"), "--eval-num 1: an R^2 needs at least 2 held-out renders"),
    (("train", "--mirror"), "--mirror flips a folder's images; synthfaces renders both yaw and light directions"),
])
def test_numbers_that_nan_inf_or_a_sign_would_break_are_refused_before_any_work(run_cli, model_file, tmp_path, args, message):
    """NaN fails no `<` test and inf passes every lower bound: --lr nan and --snapshot-kimg nan ended
    in tracebacks (Adam's, a cast's), --gamma had no check at all, --max-minutes nan ran without a
    limit, and --strength 1..2,3 reached float()'s traceback."""
    _refused_before_any_work(run_cli, model_file, tmp_path, args, message)
