"""The web app in a real browser (Debian's chromium driven by Playwright), on the two bundled
models, as `latentatlas serve` offers them by default: faces64 and faces64-stylemap (the Local
edit tests check the flow and that the result follows the mask).

Each test acts as a user would: move a slider, upload a face or a code, paint with the brush,
press buttons, and checks what the page shows. The server runs in this process on a free port
bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import time
from pathlib import Path

import pytest
import torch

import gradio  # noqa: F401 - pinned in the test extra: missing, fail loudly, not skip
from playwright import sync_api as playwright_api  # pinned in the test extra: missing, fail loudly too

CHROMIUM = os.environ.get("LATENTATLAS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():  # `make test` installs it; fail loudly rather than skip silently
    raise RuntimeError(f"no chromium at {CHROMIUM}: run `make test` (it installs Debian's chromium) or set LATENTATLAS_CHROMIUM")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url():
    from latentatlas.app.server import Sessions, serve
    from latentatlas.app.uploads import UploadLimits

    sessions = Sessions({"faces64": "faces64", "faces64-stylemap": "faces64-stylemap"}, "cpu", {})
    demo, url = serve(sessions, port=_free_port(), limits=UploadLimits(max_bytes=10 * 2**20, max_pixels=4096 * 4096), block=False)
    assert url.startswith("http://127.0.0.1:")
    yield url
    demo.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(app_url)
    page.wait_for_selector("#explore-image img", timeout=60_000)
    yield page
    page.close()


def _image_src(page, elem: str = "#explore-image") -> str:
    return page.locator(f"{elem} img").first.get_attribute("src") or ""


def _set_number(page, elem: str, value: float) -> None:
    box = page.locator(f"{elem} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def _wait_change(page, before: str, elem: str = "#explore-image", timeout: float = 30.0) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        src = _image_src(page, elem)
        if src and src != before:
            return time.perf_counter() - t
        page.wait_for_timeout(10)
    raise AssertionError(f"{elem} did not change within {timeout} s")


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_timeout(300)


def _screenshot(page, name: str) -> None:
    """LATENTATLAS_SCREENSHOTS=docs pytest tests/test_app_browser.py refreshes the README's pictures."""
    folder = os.environ.get("LATENTATLAS_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"app_{name}.png"), full_page=True)


def _toast(page, text: str, timeout: float = 20_000) -> None:
    page.get_by_text(text, exact=False).first.wait_for(timeout=timeout)


def test_direction_slider_changes_the_image(page):
    names = page.locator("#dir-0-0 label").first.inner_text()
    assert names.startswith("pc0"), names  # GANSpace sliders carry their automatic names
    latencies = []
    for value in (2.5, -2.5, 1.0, 0.0, 3.0):
        before = _image_src(page)
        _set_number(page, "#dir-0-0", value)
        latencies.append(_wait_change(page, before))
    print(f"\nslider move -> new image in the browser: median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} moves (faces64, CPU)")
    assert statistics.median(latencies) < 3.0
    assert "seed 0" in page.locator("#source").inner_text()
    _screenshot(page, "explore")



def test_warped_path_slider_walks_the_bundled_paths(page):
    """faces64's third slider set: its WarpedGANSpace paths, named by the factor each moves most."""
    page.get_by_text("warpedganspace (faces64_warped)").first.click()  # the set's accordion opens
    label = page.locator("#dir-2-0 label").first.inner_text()
    assert label.startswith("warp0 "), label
    # Warped sliders span one w_std of arc (sqrt(256) = 16 units), the linear ones 3 stds.
    assert page.locator("#dir-2-0 input[type=number]").first.get_attribute("max") == "16"
    assert page.locator("#dir-0-0 input[type=number]").first.get_attribute("max") == "3"
    before = _image_src(page)
    _set_number(page, "#dir-2-0", 12.0)
    _wait_change(page, before)


def test_interpolate_tab_makes_a_strip_and_an_animation(page):
    _open_tab(page, "Interpolate")
    _set_number(page, "#frames", 4)
    page.locator("#interpolate-btn").click()
    page.wait_for_selector("#strip img", timeout=60_000)
    page.wait_for_selector("#animation img", timeout=60_000)
    assert ".gif" in (_image_src(page, "#animation"))
    assert "seed 0 → seed 1: 4 frames, lerp in w" in page.locator("#interp-status").inner_text()


def _status(page, elem: str, text: str, timeout: float = 60_000) -> str:
    page.locator(elem).get_by_text(text, exact=False).first.wait_for(timeout=timeout)
    return page.locator(elem).inner_text()


def test_interpolate_from_a_saved_code_to_a_projected_image(page, tmp_path):
    from latentatlas.app.session import ModelSession
    from latentatlas.latent.codes import save_codes

    sess = ModelSession("faces64", "faces64")
    save_codes(tmp_path / "mine.npz", sess.seed_code(7).to("cpu"), model="faces64")
    save_codes(tmp_path / "theirs.npz", sess.seed_code(7).to("cpu"), model="ffhq")
    (tmp_path / "broken.npz").write_text("not a zip")
    _open_tab(page, "Interpolate")
    start, end = page.locator("#file-a input[type=file]"), page.locator("#file-b input[type=file]")
    start.set_input_files(str(tmp_path / "mine.npz"))
    _status(page, "#interp-status", "mine.npz: a w+ code of this model")
    end.set_input_files(str(_face_png(tmp_path / "face.png")))
    _status(page, "#interp-status", "face.png: an image, projected when you interpolate")
    _set_number(page, "#frames", 6)
    _set_number(page, "#interp-steps", 10)
    page.locator("#interpolate-btn").click()
    status = _status(page, "#interp-status", "→")  # progress lines ("projecting the end image ... step k/10") come first
    assert status.startswith("mine.npz (saved code) → face.png (projected, 10 steps): 6 frames"), status
    page.wait_for_selector("#strip img", timeout=30_000)
    page.wait_for_selector("#animation img", timeout=30_000)
    _screenshot(page, "interpolate")
    # A code of another model, and a file that is no code: a message each, and the field is cleared.
    page.locator("#file-a button[aria-label=Clear]").click()
    playwright_api.expect(page.locator("#interp-status")).to_have_text("")
    start.set_input_files(str(tmp_path / "theirs.npz"))
    _toast(page, "is a code of the model 'ffhq', not of faces64")
    start.set_input_files(str(tmp_path / "broken.npz"))
    _toast(page, "not a readable .npz file")
    page.locator("#file-a input[type=file]").wait_for(state="attached")  # cleared: ready for another file


def _face_png(path: Path) -> Path:
    from latentatlas.data.synthfaces import sample
    from latentatlas.io.images import save_image, to_uint8

    images, _ = sample(1, seed=4242, resolution=64)
    save_image(path, to_uint8(images)[0])
    return path


def test_project_an_uploaded_face_then_edit_it(page, tmp_path):
    _open_tab(page, "Project")
    page.locator("#upload input[type=file]").set_input_files(str(_face_png(tmp_path / "face.png")))
    page.wait_for_selector("#target img", timeout=30_000)
    _set_number(page, "#steps", 20)
    page.locator("#proj-whiten input").check()  # from the prior's mode, in whitened coordinates
    page.locator("#project-btn").click()
    page.get_by_text("done", exact=False).first.wait_for(timeout=120_000)
    status = page.locator("#proj-status").inner_text()
    assert "20 steps" in status and "pixel MSE" in status
    # A whitened code stays where sampled codes are (about 256 for faces64; w_avg, where the
    # plain projector starts, is at 23,000).
    d2 = float(re.search(r"Mahalanobis ([\d,]+) per layer", status).group(1).replace(",", ""))
    assert d2 < 2000, status
    page.wait_for_selector("#recon img")
    _screenshot(page, "project")
    page.locator("#to-explore").click()
    page.get_by_text("a projected image", exact=False).first.wait_for(timeout=30_000)
    before = _image_src(page)
    _set_number(page, "#dir-0-1", 2.0)  # edit the projected face with a direction
    _wait_change(page, before)


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(page, tmp_path):
    from PIL import Image

    _open_tab(page, "Project")
    upload = page.locator("#upload input[type=file]")
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    upload.set_input_files(str(not_image))
    _toast(page, "not a PNG, JPEG, WebP, BMP or TIFF image")
    huge = tmp_path / "huge.png"
    Image.new("1", (20_000, 20_000)).save(huge)  # tiny file, 400 M pixels once decoded
    upload.set_input_files(str(huge))
    _toast(page, "too large")
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(50 * 2**20))
    upload.set_input_files(str(big))
    page.get_by_text("exceed", exact=False).first.wait_for(timeout=20_000)  # Gradio's own max_file_size refusal
    # Still serving: a slider move still renders.
    _open_tab(page, "Explore")
    before = _image_src(page)
    _set_number(page, "#psi", 0.5)
    _wait_change(page, before)


def _editor_canvas_centre(page) -> tuple[float, float]:
    box = page.locator("#ref-editor canvas").first.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _stroke(page, points: list[tuple[float, float]]) -> None:
    """One brush stroke through the points (few moves: headless chromium paints in software)."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y)
    page.mouse.up()


def test_local_edit_follows_the_painted_mask(page):
    _open_tab(page, "Local edit")
    page.wait_for_selector("#local-result img", timeout=60_000)
    assert "Nothing selected yet" in _status(page, "#local-status", "Nothing selected")
    cx, cy = _editor_canvas_centre(page)
    before = _image_src(page, "#local-result")
    _stroke(page, [(cx - 50, cy - 30), (cx - 10, cy - 10), (cx + 30, cy)])
    stroke_s = _wait_change(page, before, "#local-result")
    assert "of the stylemap cells from the reference" in page.locator("#local-status").inner_text()
    # A second stroke somewhere else changes the mask again, and so the result.
    before = _image_src(page, "#local-result")
    _stroke(page, [(cx - 40, cy + 50), (cx + 40, cy + 60)])
    stroke2_s = _wait_change(page, before, "#local-result")
    latencies, server_ms = [], []
    for elem, value in (("#strength", 0.5), ("#dx", 8), ("#dy", -4), ("#strength", 1.0), ("#dx", 0)):
        before, t = _image_src(page, "#local-result"), time.perf_counter()
        _set_number(page, elem, value)
        _wait_change(page, before, "#local-result")
        latencies.append(time.perf_counter() - t)  # from typing the value, Playwright's own steps included
        server_ms.append(float(re.search(r"· (\d+) ms", page.locator("#local-status").inner_text()).group(1)))
    assert "moved by 0,-4 px" in page.locator("#local-status").inner_text()
    for value in (4, 0):  # growing the mask takes more cells from the reference; back to the drawn mask
        before = _image_src(page, "#local-result")
        _set_number(page, "#grow", value)
        _wait_change(page, before, "#local-result")
    for toggle in ("check", "uncheck"):  # refined pictures reconstruct closer: another result; then back
        before = _image_src(page, "#local-result")
        getattr(page.locator("#refine input"), toggle)()
        _wait_change(page, before, "#local-result")
    print(f"\nlocal edit, new result in the browser: {stroke_s * 1000:.0f} ms after the first stroke ends, "
          f"{stroke2_s * 1000:.0f} ms after the second; slider change -> result "
          f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms over {len(latencies)} changes, "
          f"of which the edit itself {statistics.median(server_ms):.0f} ms (faces64-stylemap, CPU)")
    assert statistics.median(latencies) < 3.0
    _screenshot(page, "local_edit")
    # The editor's clear button takes the strokes away: nothing is selected, and the reference
    # is put back under the brush, so a new stroke edits again.
    page.locator("#ref-editor").get_by_label("Clear canvas").click()
    assert "Nothing selected yet" in _status(page, "#local-status", "Nothing selected")
    # The reference comes back as the editor's new value; a stroke drawn while the browser is
    # still putting it in place can be replaced with it, as a person's would: draw again then.
    for attempt in range(3):
        page.wait_for_timeout(1500)
        _stroke(page, [(cx - 30, cy - 20 + 10 * attempt), (cx + 20, cy + 10 + 10 * attempt)])
        try:
            _status(page, "#local-status", "of the stylemap cells", timeout=20_000)
            break
        except playwright_api.TimeoutError:
            continue
    assert "of the stylemap cells from the reference" in page.locator("#local-status").inner_text()
    before = _image_src(page, "#local-result")
    page.locator("#mask-kind").get_by_text("mouth", exact=False).click()
    _wait_change(page, before, "#local-result")


def test_local_edit_takes_an_uploaded_reference_and_refuses_a_bad_one(page, tmp_path):
    _open_tab(page, "Local edit")
    page.wait_for_selector("#local-result img", timeout=60_000)
    page.locator("#ref-kind").get_by_text("an uploaded image").click()
    _status(page, "#local-status", "upload an image first")
    upload = page.locator("#ref-file input[type=file]")
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is text, not a picture")
    upload.set_input_files(str(not_image))
    _toast(page, "not a PNG, JPEG, WebP, BMP or TIFF image")
    before = _image_src(page, "#local-result")
    upload.set_input_files(str(_face_png(tmp_path / "face.png")))
    page.locator("#mask-kind").get_by_text("eyes", exact=False).click()
    _wait_change(page, before, "#local-result")
    assert "of the stylemap cells from the reference" in _status(page, "#local-status", "stylemap cells")


def test_session_render_is_deterministic_and_edits_move_the_code():
    """The app's computation itself, without the browser."""
    from latentatlas.app.session import ExploreParams, ModelSession

    sess = ModelSession("faces64", "faces64")
    a, code_a = sess.render(ExploreParams(seed=3))
    b, _ = sess.render(ExploreParams(seed=3))
    assert (a == b).all() and a.shape == (64, 64, 3)
    _, moved = sess.render(ExploreParams(seed=3, strengths={(0, 0): 2.0}))
    d = sess.sets[0].paths.source
    assert torch.allclose(moved.tensor - code_a.tensor, 2.0 * d.scales[0] * d.vectors[0], atol=1e-4)
    _, layered = sess.render(ExploreParams(seed=3, strengths={(0, 0): 2.0}, layers=(0, 2)))
    assert layered.tensor[0, 2:].sub(code_a.tensor[0, 2:]).abs().max() == 0
    _, mixed = sess.render(ExploreParams(seed=3, mix_seed=9, mix_cutoff=4))
    assert torch.equal(mixed.tensor[0, :4], code_a.tensor[0, :4]) and not torch.equal(mixed.tensor[0, 4:], code_a.tensor[0, 4:])
    _, squeezed = sess.render(ExploreParams(seed=3, tau=0.5))
    assert sess.prior is not None and sess.prior.mahalanobis(squeezed.tensor[0]).sum() < sess.prior.mahalanobis(code_a.tensor[0]).sum()


@pytest.mark.parametrize("params,message", [
    ({"psi": float("nan")}, "truncation psi nan: give a finite number"),
    ({"tau": float("nan")}, "tau nan: give a number of stds >= 0"),
    ({"tau": -1.0}, "tau -1: give a number of stds >= 0"),
    ({"strengths": {(0, 1): float("inf")}}, "direction strength inf: give a finite number of stds"),
])
def test_explore_params_refuse_what_gradios_bounds_check_lets_through(params, message):
    """A NaN slider value passes Gradio's own check (NaN < minimum is false) when a client sends it through the API."""
    from latentatlas.app.session import ExploreParams
    from latentatlas.io.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        ExploreParams(**params)


def test_session_takes_warped_paths(tmp_path):
    """A warped-paths file given to the app becomes a slider set that walks each layer's w."""
    from latentatlas.app.session import ExploreParams, ModelSession
    from latentatlas.directions.files import model_fingerprint
    from latentatlas.directions.warped import WarpedConfig, WarpedPaths, init_training, save_warped
    from latentatlas.models.bundled import load_generator

    g, _ = load_generator("faces64")
    cfg = WarpedConfig(sets=3, dipoles=2, space="w", steps=0)
    support, _ = init_training(g, cfg)
    save_warped(tmp_path / "warped.safetensors", WarpedPaths(support, ["a", "b", "c"], "w", model_fingerprint(g), cfg, 0))
    sess = ModelSession("faces64", "faces64", directions=[tmp_path / "warped.safetensors"])
    assert sess.sets[-1].names == ["a", "b", "c"] and "warped" in sess.sets[-1].title
    s = len(sess.sets) - 1
    _, base = sess.render(ExploreParams(seed=5))
    _, moved = sess.render(ExploreParams(seed=5, strengths={(s, 1): 2.0}))
    _, part = sess.render(ExploreParams(seed=5, strengths={(s, 1): 2.0}, layers=(0, 3)))
    step = (moved.tensor - base.tensor)[0]
    assert step.norm(dim=1).min() > 0  # every layer moved
    assert torch.allclose(step[0], step[-1], atol=1e-5)  # an unmixed code: all layers walk alike
    assert part.tensor[0, 3:].sub(base.tensor[0, 3:]).abs().max() == 0 and part.tensor[0, :3].ne(base.tensor[0, :3]).any()


def test_session_refuses_z_paths_and_more_sets_than_the_page_shows(tmp_path):
    """A directions file the sliders could not use, or one more than the Explore tab has room for,
    is refused with a message instead of being left out of the page without a word."""
    from latentatlas.app.session import MAX_DIRECTION_SETS, ModelSession
    from latentatlas.directions.files import model_fingerprint
    from latentatlas.directions.warped import WarpedConfig, WarpedPaths, init_training, save_warped
    from latentatlas.io.errors import UserError
    from latentatlas.models.bundled import load_generator

    g, _ = load_generator("faces64")
    for space in ("z", "w"):
        cfg = WarpedConfig(sets=2, dipoles=1, space=space, steps=0)
        support, _ = init_training(g, cfg)
        save_warped(tmp_path / f"{space}.safetensors", WarpedPaths(support, ["a", "b"], space, model_fingerprint(g), cfg, 0))
    with pytest.raises(UserError, match="directions in z"):
        ModelSession("faces64", "faces64", directions=[tmp_path / "z.safetensors"])
    bundled = len(ModelSession("faces64", "faces64").sets)
    room = MAX_DIRECTION_SETS - bundled
    assert room >= 1 and len(ModelSession("faces64", "faces64", directions=[tmp_path / "w.safetensors"] * room).sets) == MAX_DIRECTION_SETS
    with pytest.raises(UserError, match=f"at most {room} besides"):
        ModelSession("faces64", "faces64", directions=[tmp_path / "w.safetensors"] * (room + 1))
