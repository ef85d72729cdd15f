"""The web app's StyleGAN2 side without a browser: its handlers called directly (found by name in
the built app), on a tiny model, and what they share with the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.io.errors import UserError

import gradio as gr  # noqa: E402 - pinned in the test extra: missing, fail loudly, not skip


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    """A 16 px StyleGAN2 model that says nothing of synthfaces (a user's own model)."""
    from conftest import randomize, tiny_config

    from latentatlas.io.checkpoints import save_model
    from latentatlas.models.stylegan2 import Generator

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(path, randomize(Generator(tiny_config())))
    return path


@pytest.fixture
def face(tmp_path) -> str:
    path = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(path)
    return str(path)


def handler(demo, name: str):
    """The function a built app runs for the event handler called `name`."""
    fns = {id(f.fn): f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name}
    assert len(fns) == 1, (name, len(fns))
    return next(iter(fns.values()))


def last(gen):
    """The last update a generator handler yields."""
    out = None
    for out in gen:
        pass
    return out


# ---------------------------------------------------------------------------- the projection loss


def test_one_rule_picks_the_projection_loss_for_the_command_line_and_the_app(tiny_file):
    from latentatlas.inversion.losses import projection_loss
    from latentatlas.models.bundled import resolve_model

    faces64 = resolve_model("faces64")
    assert projection_loss(faces64).name == "factor"  # trained on synthfaces: the bundled predictor
    with pytest.raises(UserError, match="choose a loss"):  # the CLI asks a user's model for a loss
        projection_loss(tiny_file)
    plain = projection_loss(tiny_file, fallback="mse")  # the app falls back to pixels, and says why
    assert plain.name == "mse" and plain.perceptual is None and plain.mse_weight == 1.0
    assert "not trained on synthfaces" in plain.said
    assert "not trained" not in projection_loss(tiny_file, "mse").said  # asked for: no excuse needed
    assert projection_loss(tiny_file, predictor="factors").name == "factor"  # asked for explicitly
    with pytest.raises(UserError, match="LPIPS needs both --vgg and --lpips-lin"):
        projection_loss(faces64, vgg="vgg16.pth", fallback="mse")
    with pytest.raises(UserError, match="--loss l2: use auto, lpips, factor or mse"):
        projection_loss(faces64, "l2")


def test_the_project_tab_fits_a_users_model_in_pixels_not_cartoon_face_features(tiny_file, face):
    """The tab used the synthfaces predictor's features for every model."""
    from latentatlas.app.server import Sessions, build_app

    sessions = Sessions({"tiny": str(tiny_file)}, "cpu", {})
    demo = build_app(sessions)
    run = handler(demo, "run_projection")
    ctl: dict = {}
    *_, status, _ = last(run("tiny", face, "w", 0.0, False, 3, ctl))
    assert status.startswith("done: 3 steps") and "loss: pixel MSE only (the model was not trained on synthfaces" in status
    assert ctl["projected"]["w"].shape == (sessions.get("tiny").num_ws, 16)
    with pytest.raises(UserError, match="LPIPS needs both"):
        Sessions({"tiny": str(tiny_file)}, "cpu", {}, ("missing-vgg.pth", "")).get("tiny").projection_loss()


def test_serve_takes_the_lpips_files_of_project(run_cli, tmp_path):
    from conftest import one_line_error

    one_line_error(*run_cli("serve", "faces64", "--vgg", tmp_path / "vgg16.pth"), "LPIPS needs both --vgg and --lpips-lin")
    one_line_error(*run_cli("serve", "faces64", "--vgg", tmp_path / "vgg16.pth", "--lpips-lin", tmp_path / "vgg.pth"),
                   "vgg16.pth: no such file")


# ---------------------------------------------------------------------------- projections and renders


def test_renders_and_seed_interpolations_go_on_while_a_projection_runs_and_stop_ends_either_tabs(tiny_file, face):
    """A projection held the model's render lock for its whole run, every user's sliders waited on
    it, and a seed-to-seed interpolation queued behind it; the Interpolate tab had no Stop."""
    import threading

    from latentatlas.app import server
    from latentatlas.app.server import Sessions, build_app

    demo = build_app(Sessions({"tiny": str(tiny_file)}, "cpu", {}))
    run, render = handler(demo, "run_projection"), handler(demo, "render")
    interpolate = handler(demo, "run_interpolation")
    groups = {f.fn.__name__: f.concurrency_id for f in demo.fns.values() if hasattr(f.fn, "__name__")}
    assert groups["run_interpolation"] != groups["run_projection"]
    ctl: dict = {}
    projecting = run("tiny", face, "w", 0.0, False, 1000, ctl)
    for _, shown, status, _ in projecting:
        if status.startswith("step"):
            break
    assert server._PROJECTING.locked()
    done: list = []
    seeds = (0, None, 1, None, 3, "lerp", "w", 1.0, 10)
    threading.Thread(target=lambda: done.extend([render("tiny", 3, 1.0, 0.0, 1, 0, False, 0, 1, None),
                                                 last(interpolate("tiny", *seeds, {}))]), daemon=True).start()
    for _ in range(400):  # the projection's updates are not read meanwhile: it runs on
        if len(done) == 2:
            break
        threading.Event().wait(0.05)
    assert len(done) == 2 and server._PROJECTING.locked(), "the render and the seed interpolation waited for the projection"
    assert done[0][1].startswith("seed 3") and "3 frames" in done[1][2]
    # An image end waits its turn, says so, and the Interpolate tab's Stop ends the wait.
    other: dict = {}
    waiting = interpolate("tiny", 0, None, 1, face, 3, "lerp", "w", 1.0, 10, other)
    assert "waiting for another projection to finish" in next(waiting)[2]
    server.stop_projections(other)  # said as a stop during the run is, not as an error
    assert last(waiting)[2] == "stopped while projecting the end image face.png: nothing interpolated"
    assert server._PROJECTING.locked()  # the Project tab's projection was not stopped by it
    queued: dict = {}  # the Project tab's own run, stopped in the queue: a status line, no code
    waiting = run("tiny", face, "w", 0.0, False, 10, queued)
    assert "waiting for another projection to finish" in [next(waiting), next(waiting)][1][2]
    server.stop_projections(queued)
    *_, status, to_explore = last(waiting)
    assert status.startswith("stopped before it started") and "projected" not in queued
    server.stop_projections(ctl)  # the Project tab's Stop: the early result
    *_, status, to_explore = last(projecting)
    assert status.startswith("done (stopped early)") and not server._PROJECTING.locked()
    # Stopped while projecting an end: nothing interpolated, and the early code is not kept.
    ending = interpolate("tiny", 0, None, 1, face, 3, "lerp", "w", 1.0, 1000, other)
    assert "step" in next(ending)[2]
    server.stop_projections(other)
    assert last(ending)[2] == "stopped while projecting the end image face.png: nothing interpolated"


def test_a_projected_code_stays_with_its_model(tiny_file, face, tmp_path):
    """It survived a model change: Edit in Explore sent it to the new model (wrong pictures when the
    shapes matched, a reshape error when not), and Download code named it after the new model."""
    import shutil

    from latentatlas.app.server import Sessions, build_app

    other = tmp_path / "other.safetensors"
    shutil.copy(tiny_file, other)  # the same shape: nothing but the name could tell them apart
    demo = build_app(Sessions({"tiny": str(tiny_file), "other": str(other)}, "cpu", {}))
    run, send, on_model = handler(demo, "run_projection"), handler(demo, "send_to_explore"), handler(demo, "on_model")
    render, download = handler(demo, "render"), handler(demo, "download_code")
    ctl: dict = {}
    with pytest.raises(gr.Error, match="project an image first"):
        send("tiny", ctl)
    last(run("tiny", face, "w", 0.0, False, 2, ctl))
    base, _ = send("tiny", ctl)
    assert base["model"] == "tiny" and render("tiny", 0, 1.0, 0.0, 1, 0, False, 0, 1, base)[1].startswith("a projected image")
    explore = (0, 1.0, 0.0, 1, 0, False, 0, 1, base)
    for fn in (send, lambda name, _ctl: render(name, *explore), lambda name, _ctl: download(name, *explore)):
        with pytest.raises(gr.Error, match="the projected code belongs to tiny, and the model is now other"):
            fn("other", ctl)
    updates = on_model("other", ctl)  # a model change drops it, and Edit in Explore goes grey
    assert "projected" not in ctl and updates[-1]["interactive"] is False and updates[-2] is None
    with pytest.raises(gr.Error, match="project an image first"):
        send("other", ctl)


# ---------------------------------------------------------------------------- files the app writes


def test_the_apps_files_are_cleaned_up(tiny_file, face, tmp_path):
    """The app's temp folder (a code download, a GIF per interpolation) was never emptied, and
    Gradio's cache (copies of them, and the uploads) had no delete_cache."""
    import os
    import time

    from latentatlas.app.server import CACHE_AGE_S, OutputFolders, Sessions, build_app
    from latentatlas.app.session import ModelSession

    outputs = OutputFolders()
    demo = build_app(Sessions({"tiny": str(tiny_file)}, "cpu", {}), outputs=outputs)
    assert demo.delete_cache == (CACHE_AGE_S, CACHE_AGE_S) and outputs.root is None  # nothing made yet
    strip, gif, _ = last(handler(demo, "run_interpolation")("tiny", 0, None, 1, None, 3, "lerp", "w", 1.0, 10, {}))
    code = handler(demo, "download_code")("tiny", 0, 1.0, 0.0, 1, 0, False, 0, 1, None)["value"]
    assert Path(gif).is_file() and Path(code).is_file() and Path(gif).parent.parent == outputs.root
    hour_ago = time.time() - CACHE_AGE_S - 1
    os.utime(Path(gif).parent, (hour_ago, hour_ago))
    outputs.new()  # a new file's folder: those over an hour old go
    assert not Path(gif).exists() and Path(code).exists()
    outputs.remove()  # at exit
    assert not outputs.root.exists()
    # An upload Gradio's cache no longer holds is a message, not FileNotFoundError.
    sess = ModelSession("tiny", str(tiny_file))
    from latentatlas.app.server import _projected_end
    from latentatlas.app.uploads import UploadLimits, load_upload

    for fn in (lambda: load_upload(tmp_path / "gone.png", 16, UploadLimits()),
               lambda: next(_projected_end(sess, str(tmp_path / "gone.png"), 10, UploadLimits()))):
        with pytest.raises(UserError, match="gone.png is no longer on the server"):
            fn()


# ---------------------------------------------------------------------------- serve's model list


def test_serve_loads_every_model_before_it_starts_and_refuses_two_of_one_name(run_cli, tiny_file, tmp_path, monkeypatch):
    """Only the first model of each kind was loaded (a bad second file failed in the page, and its
    first request held a global lock that stopped every other), and two files of one stem, or a file
    named like a bundled model, silently left one of them out."""
    import shutil
    import threading

    from safetensors.torch import save_file

    from conftest import one_line_error
    from latentatlas.app import server
    from latentatlas.io.checkpoints import read_model_metadata

    started = []
    monkeypatch.setattr(server, "serve", lambda sessions, *a, **k: started.append(sessions))
    broken = tmp_path / "broken.safetensors"  # a StyleGAN2 header, no weights
    save_file({"x": torch.zeros(1)}, str(broken), metadata=read_model_metadata(tiny_file))
    code, _, err = run_cli("serve", tiny_file, broken)
    assert code == 2 and "broken.safetensors" in err and not started, err
    shutil.copy(tiny_file, tmp_path / "faces64.safetensors")
    one_line_error(*run_cli("serve", "faces64", tmp_path / "faces64.safetensors"),
                   f"faces64 and {tmp_path / 'faces64.safetensors'} would both be called 'faces64' in the page: rename one file")
    one_line_error(*run_cli("serve", tiny_file, tiny_file), f"{tiny_file} is given twice")
    one_line_error(*run_cli("serve", tiny_file, "--port", "70000"), "--port 70000: use 1..65535")
    assert run_cli("serve", tiny_file, tmp_path / "faces64.safetensors")[0] == 0
    assert sorted(started[0]._loaded) == ["faces64", "tiny"]  # both loaded before serving
    # Loading one model (here: its lock held) does not hold up another's requests.
    sessions = server.Sessions({"tiny": str(tiny_file), "other": str(tmp_path / "faces64.safetensors")}, "cpu", {})
    with sessions._locks["tiny"]:
        loaded = []
        thread = threading.Thread(target=lambda: loaded.append(sessions.get("other")), daemon=True)
        thread.start()
        thread.join(timeout=60)
    assert loaded and loaded[0].name == "other"


def test_serve_refuses_a_taken_port_in_one_line_and_announces_only_when_listening(tiny_file):
    """A port in use was a Gradio traceback after the models had loaded and after the CLI had
    printed 'serving ... at'; now the announcement waits for the server, and the error is one line."""
    import socket

    from latentatlas.app import server

    sessions = server.Sessions({"tiny": str(tiny_file)}, "cpu", {})
    said: list[str] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen at 127.0.0.1:{port} .*if the port is in use .*give another --port"):
            server.serve(sessions, port=port, block=False, announce=said.append)
    assert said == []
    demo, url = server.serve(sessions, port=port, block=False, announce=said.append)  # free now
    try:
        assert said == [url] and f":{port}" in url
    finally:
        demo.close()


def test_serve_refuses_a_directions_file_that_does_not_fit_at_start(run_cli, tiny_file, tmp_path, monkeypatch):
    """Vectors of another width, or a layer range past the model's ws, under the model's fingerprint:
    `serve --directions` started, and the file failed only in the page."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from conftest import one_line_error
    from latentatlas.app import server
    from latentatlas.directions.files import Directions, model_fingerprint, save_directions
    from latentatlas.io.checkpoints import load_model

    started = []
    monkeypatch.setattr(server, "serve", lambda sessions, *a, **k: started.append(sessions))
    g, _ = load_model(tiny_file)
    good = tmp_path / "good.safetensors"
    save_directions(good, Directions(torch.eye(2, 16), torch.ones(2), ["a", "b"], "w", "test", model_fingerprint(g)))
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    wide, past_end = tmp_path / "wide.safetensors", tmp_path / "past_end.safetensors"
    save_file({"vectors": torch.eye(2, 17), "scales": torch.ones(2)}, str(wide), metadata=meta)
    save_file(load_file(str(good)), str(past_end), metadata={**meta, "layers": "[0, 99]"})
    one_line_error(*run_cli("serve", tiny_file, "--directions", good, "--directions", wide),
                   f"{wide}: these directions are 17-d and this model's w is 16-d")
    one_line_error(*run_cli("serve", tiny_file, "--directions", past_end),
                   f"{past_end}: these directions edit w+ layers 0-99 (end excluded) and this model has 6")
    assert not started
    assert run_cli("serve", tiny_file, "--directions", good)[0] == 0 and len(started) == 1


# ---------------------------------------------------------------------------- one implementation each


def test_the_sliders_walk_and_truncate_as_the_library_does(tiny_file, tmp_path):
    """The app had its own copies of the truncation trick and of warped paths' strength unit."""
    from latentatlas.app.session import ExploreParams, ModelSession
    from latentatlas.directions.files import model_fingerprint
    from latentatlas.directions.warped import WarpedConfig, WarpedPaths, init_training, load_paths, save_warped
    from latentatlas.latent.codes import LatentCode, truncate_code

    sess = ModelSession("tiny", str(tiny_file))
    g = sess.generator
    cfg = WarpedConfig(sets=2, dipoles=2, space="w", steps=0)
    support, _ = init_training(g, cfg)
    save_warped(tmp_path / "warped.safetensors", WarpedPaths(support, ["a", "b"], "w", model_fingerprint(g), cfg, 0))
    sess = ModelSession("tiny", str(tiny_file), directions=[tmp_path / "warped.safetensors"])
    paths = load_paths(tmp_path / "warped.safetensors")
    base = sess.seed_code(4)
    walked = sess.edited_code(ExploreParams(seed=4, strengths={(0, 1): 2.5}))
    (frame,) = paths.frames(LatentCode("w", base.tensor[:, 0]), 1, torch.tensor([2.5]), g)  # `traverse`'s walk
    assert torch.allclose(walked.tensor, frame.tensor.unsqueeze(1).expand_as(walked.tensor), atol=1e-5)
    # Strength 2.5 walks 2.5 units of the codes' per-dimension spread (scale / sqrt(w_dim)) of arc:
    # the length of the walked path, measured as a fine polyline, not read from arc_length.
    fine = paths.frames(LatentCode("w", base.tensor[:, 0]), 1, torch.linspace(0, 2.5, 101), g)
    walked_length = sum(float((b.tensor - a.tensor).norm()) for a, b in zip(fine, fine[1:]))
    assert walked_length == pytest.approx(2.5 * float(paths.source.scale) / math.sqrt(g.w_dim), rel=0.01)
    assert torch.allclose(fine[-1].tensor, frame.tensor, atol=1e-5)
    projected = torch.randn(g.num_ws, g.w_dim)
    code = sess.edited_code(ExploreParams(psi=0.5, base=projected.numpy()))
    assert torch.equal(code.tensor, truncate_code(LatentCode("w+", projected[None]), g, 0.5).tensor)


# ---------------------------------------------------------------------------- numbers from the page's API


def test_nan_from_the_pages_api_is_a_message_naming_the_widget(tiny_file, face, tmp_path):
    """Gradio's bounds checks pass NaN (it fails every comparison): a slider's NaN reached our int()
    casts, and a seed box's NaN Gradio's own; both showed 'cannot convert float NaN to integer'."""
    from latentatlas.app.server import Sessions, build_app
    from latentatlas.io.checkpoints import save_stylemap_model
    from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig

    nan = float("nan")
    torch.manual_seed(0)
    cfg = StyleMapConfig(resolution=16, latent_spatial_size=4, style_dim=8, mapping_layers=2, channel_base=64, channel_max=8)
    save_stylemap_model(tmp_path / "map.safetensors", Generator(cfg), Encoder(cfg))
    demo = build_app(Sessions({"tiny": str(tiny_file), "map": str(tmp_path / "map.safetensors")}, "cpu", {}))
    render, interpolate = handler(demo, "render"), handler(demo, "run_interpolation")
    project, edit = handler(demo, "run_projection"), handler(demo, "run_edit")
    explore = ["tiny", 0, 1.0, 0.0, 1, 2, True, 0, 2, None]  # seed, psi, tau, mix seed, cutoff, layers on, first, end
    for place, label in ((5, "mixing layer"), (7, "first layer"), (8, "end layer")):
        args = list(explore)
        args[place] = nan
        with pytest.raises(gr.Error, match=f"{label} nan: give a whole number"):
            render(*args)
    with pytest.raises(gr.Error, match="frames nan: give a whole number"):
        last(interpolate("tiny", 0, None, 1, None, nan, "lerp", "w", 1.0, 10, {}))
    with pytest.raises(gr.Error, match="projection steps nan: give a whole number"):
        last(interpolate("tiny", 0, None, 1, face, 3, "lerp", "w", 1.0, nan, {}))
    with pytest.raises(gr.Error, match="steps nan: give a whole number"):
        last(project("tiny", face, "w", 0.0, False, nan, {}))
    with pytest.raises(gr.Error, match="truncation psi nan: give a finite number"):  # drew NaN pictures
        last(interpolate("tiny", 0, None, 1, None, 3, "lerp", "w", nan, 10, {}))
    with pytest.raises(gr.Error, match="prior weight inf: give a finite number"):
        last(project("tiny", face, "w", float("inf"), False, 10, {}))
    local = ["map", "synthfaces", 0, None, "synthfaces", 1, None, None, "drawn", 0, 0, 1.0, False, 0, False]
    for place, label in ((9, "shift dx"), (10, "shift dy"), (13, "grow")):
        args = list(local)
        args[place] = nan
        assert edit(*args)[1] == f"**{label} nan: give a whole number**"
    assert edit(*local)[1].startswith("Nothing selected yet")
    # The seed boxes: checked before Gradio's own rounding.
    seeds = {b.elem_id: b for b in demo.blocks.values() if type(b).__name__ == "Number"}
    assert sorted(seeds) == ["mix-seed", "ref-seed", "seed", "seed-a", "seed-b", "src-seed"]
    for box in seeds.values():
        with pytest.raises(gr.Error, match=f"{box.label} nan: give a whole number"):
            box.preprocess(nan)
        assert box.preprocess(7.0) == 7
    with pytest.raises(gr.Error, match="mix seed 4294967296: seeds are 0..4294967295"):
        render("tiny", 0, 1.0, 0.0, 2**32, 2, False, 0, 2, None)


def test_minor_agreements(tiny_file, tmp_path):
    """The Interpolate tab's frames default is interpolate's; the brush canvas refuses what its
    docstring says (a picture over twice the canvas on a side: a 1 px high strip 300 px wide passed
    the old area test)."""
    import inspect

    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from latentatlas import cli
    from latentatlas.app.server import PAINT, Sessions, build_app, capped_paint_editor

    demo = build_app(Sessions({"tiny": str(tiny_file)}, "cpu", {}))
    (frames,) = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "frames"]
    assert frames.value == inspect.signature(cli.interpolate).parameters["frames"].default == 16
    editor = capped_paint_editor(gr.ImageEditor(type="numpy", image_mode="RGBA", canvas_size=(PAINT, PAINT), layers=False))
    strip = tmp_path / "strip.png"
    Image.new("RGBA", (2 * PAINT + 1, 1)).save(strip)
    with pytest.raises(gr.Error, match=f"{2 * PAINT + 1}x1; the canvas is {PAINT}x{PAINT}"):
        editor.preprocess(EditorData(background=None, layers=[FileData(path=str(strip), orig_name="strip.png")], composite=None))


def test_interpolations_are_capped_in_pixels_and_shown_reduced(tiny_file, tmp_path, monkeypatch):
    """The Interpolate tab's memory grew with the model: up to 60 frames at full size, a strip of all
    of them side by side, and the GIF built from a float copy. Now frames x pixels are capped (one
    line naming this model's most), the strip's frames are thumbnails and the GIF is at display size."""
    from latentatlas.app import server, session
    from latentatlas.app.server import DISPLAY, STRIP, OutputFolders, Sessions, build_app

    demo = build_app(Sessions({"tiny": str(tiny_file)}, "cpu", {}))
    interpolate = handler(demo, "run_interpolation")
    monkeypatch.setattr(session, "MAX_INTERPOLATION_PIXELS", 4 * 16 * 16)  # four frames of the 16 px model
    with pytest.raises(gr.Error, match=r"5 frames of 16x16 px are more than the app makes at once: at most 4 for this model"):
        last(interpolate("tiny", 0, None, 1, None, 5, "lerp", "w", 1.0, 10, {}))
    strip, gif, said = last(interpolate("tiny", 0, None, 1, None, 4, "lerp", "w", 1.0, 10, {}))
    assert strip.shape == (16, 4 * 16, 3) and said.endswith("4 frames, lerp in w")
    with Image.open(gif) as im:  # there and back (the end frame twice, which the GIF writer merges), enlarged
        assert im.size == (DISPLAY, DISPLAY) and im.n_frames == 7
    big = np.random.default_rng(0).integers(0, 255, (3, 4 * DISPLAY, 4 * DISPLAY, 3), dtype=np.uint8)
    assert server._strip(big).shape == (STRIP, 3 * STRIP, 3)
    with Image.open(server._gif(big, OutputFolders())) as im:
        assert im.size == (DISPLAY, DISPLAY) and im.n_frames == 5


def test_an_interpolation_over_the_cap_is_refused_before_projecting_its_ends(tiny_file, face, monkeypatch):
    """The tab projected uploaded ends (up to 500 steps each) and only then found the frames over the
    pixel cap; and a model whose single frame is over half the cap (4096 px and up) was told "at most
    1" frame, below the 2 the tab needs. Now the frames are checked first, in one session helper."""
    from latentatlas.app import server, session
    from latentatlas.app.server import Sessions, build_app

    def no_projection(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("projected an end of a request that is refused")

    monkeypatch.setattr(server, "_projected_end", no_projection)
    monkeypatch.setattr(server, "_projection_steps", no_projection)
    sessions = Sessions({"tiny": str(tiny_file)}, "cpu", {})
    interpolate = handler(build_app(sessions), "run_interpolation")
    monkeypatch.setattr(session, "MAX_INTERPOLATION_PIXELS", 4 * 16 * 16)
    with pytest.raises(gr.Error, match=r"5 frames of 16x16 px are more than the app makes at once: at most 4 for this model"):
        last(interpolate("tiny", None, face, None, face, 5, "lerp", "w", 1.0, 500, {}))
    monkeypatch.setattr(session, "MAX_INTERPOLATION_PIXELS", 16 * 16 + 1)  # one frame fits, two do not
    message = r"16x16 px frames are too large for the app to interpolate \(even 2 are more than it makes at once\): use `latentatlas interpolate`"
    with pytest.raises(gr.Error, match=message):
        last(interpolate("tiny", None, face, 1, None, 2, "lerp", "w", 1.0, 500, {}))
    with pytest.raises(UserError, match=message):
        sessions.get("tiny").interpolation(0, 1, 2, "lerp", "w")  # the same check where the frames are made


# ---------------------------------------------------------------------------- the Explore tab


def test_explore_random_leaves_a_projected_code_and_says_which_directions_have_no_slider(tiny_file, tmp_path):
    """Random changed the seed box while a projected code was shown, and the render kept showing the
    projected code; a set of more than MAX_SLIDERS directions lost the rest without a word; the mix
    seed box had no maximum and was checked even with mixing off."""
    import asyncio

    from gradio.state_holder import SessionState

    from latentatlas.app.server import MAX_SLIDERS, Sessions, build_app
    from latentatlas.directions.files import Directions, model_fingerprint, save_directions
    from latentatlas.io.checkpoints import load_model
    from latentatlas.io.errors import MAX_SEED

    g, _ = load_model(tiny_file)
    many = tmp_path / "many.safetensors"
    names = [f"d{i}" for i in range(MAX_SLIDERS + 3)]
    save_directions(many, Directions(torch.randn(len(names), 16), torch.ones(len(names)), names, "w", "test", model_fingerprint(g)))
    demo = build_app(Sessions({"tiny": str(tiny_file)}, "cpu", {"tiny": [str(many)]}))
    blocks = {getattr(b, "elem_id", None): b for b in demo.blocks.values()}
    note = blocks["dir-0-unshown"]
    assert note.visible and note.value == (f"3 more directions in this set have no slider (the page shows the first "
                                           f"{MAX_SLIDERS}): d20, d21, d22; `latentatlas traverse` walks any of them")
    assert not blocks["dir-1-unshown"].visible
    # Random, with a projected code shown: back to the (new) seed.
    (random_fn,) = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "random_seed"]
    base_state = random_fn.outputs[1]
    assert random_fn.outputs[0] is blocks["seed"] and isinstance(base_state, gr.State)
    state = SessionState(demo)
    state[base_state._id] = {"model": "tiny", "w": np.zeros((g.num_ws, g.w_dim), np.float32)}
    seed = asyncio.run(demo.process_api(block_fn=random_fn, inputs=[], state=state))["data"][0]
    assert state[base_state._id] is None and 0 <= seed < 2**31
    _, said = handler(demo, "render")("tiny", seed, 1.0, 0.0, 1, 0, False, 0, 2, state[base_state._id])
    assert said.startswith(f"seed {seed} ·")
    # The mix seed: bounded in the page, and read only when mixing is on.
    assert blocks["mix-seed"].maximum == MAX_SEED
    render = handler(demo, "render")
    assert render("tiny", 0, 1.0, 0.0, 2**32, 0, False, 0, 2, None)[1].startswith("seed 0 ·")
    with pytest.raises(gr.Error, match="mix seed 4294967296: seeds are 0..4294967295"):
        render("tiny", 0, 1.0, 0.0, 2**32, 2, False, 0, 2, None)


def test_serve_refuses_a_conditional_model_at_start(run_cli, tmp_path, monkeypatch):
    """A conditional StyleGAN2 model loaded, and then every render in the page failed (no labels)."""
    from conftest import one_line_error, randomize, tiny_config
    from latentatlas.app import server
    from latentatlas.io.checkpoints import save_model
    from latentatlas.models.stylegan2 import Generator

    started = []
    monkeypatch.setattr(server, "serve", lambda sessions, *a, **k: started.append(sessions))
    model = tmp_path / "cond.safetensors"
    save_model(model, randomize(Generator(tiny_config(c_dim=3))))
    one_line_error(*run_cli("serve", model), "cond is conditional (3 classes) and the app has no class picker",
                   "generate --class K")
    assert not started
