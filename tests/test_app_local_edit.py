"""The app's StyleMapGAN side and its model list, without a browser: what the Local edit tab and
the Interpolate tab's uploaded ends compute (the browser flow is in test_app_browser.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentatlas.io.errors import UserError

import gradio  # noqa: E402,F401 - pinned in the test extra: missing, fail loudly, not skip


@pytest.fixture(scope="module")
def stylemap_file(tmp_path_factory):
    from latentatlas.io.checkpoints import save_stylemap_model
    from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig

    torch.manual_seed(0)
    cfg = StyleMapConfig(resolution=64, latent_spatial_size=8, style_dim=8, mapping_layers=2, channel_base=256, channel_max=16)
    path = tmp_path_factory.mktemp("models") / "tiny-stylemap.safetensors"
    save_stylemap_model(path, Generator(cfg), Encoder(cfg))
    return path


def test_pictures_are_encoded_once_and_the_edit_follows_the_mask(stylemap_file, tmp_path, monkeypatch):
    from latentatlas.app.session import Picture, StyleMapSession
    from latentatlas.app.uploads import UploadLimits

    sess = StyleMapSession("tiny", str(stylemap_file))
    calls = []
    forward = sess.encoder.forward
    monkeypatch.setattr(sess.encoder, "forward", lambda x: calls.append(1) or forward(x))
    face = tmp_path / "face.png"
    Image.fromarray(np.full((80, 80, 3), 200, np.uint8)).save(face)
    src, ref = Picture("synthfaces", 3), Picture("upload", 0, str(face))
    empty = sess.mask("drawn", None)
    first = sess.edit(src, ref, empty)
    assert first.coverage == 0 and "empty" in (first.note or "") and first.image.shape == (64, 64, 3)
    drawn = np.zeros((256, 256), np.uint8)
    drawn[:128, :128] = 255  # the top-left quarter, painted on the 4x display
    mask = sess.mask("drawn", drawn)
    quarter = sess.edit(src, ref, mask)
    assert quarter.coverage == 0.25 and not np.array_equal(quarter.image, first.image)
    # The edit is local: the masked (top-left) quarter of the picture takes the largest share of the
    # squared change, about twice its area's share and twice either neighbour's, and the opposite
    # quarter almost none. (This untrained model's upsampling convolutions and global normalisation
    # spread some change across the mask's edges: about 0.49 / 0.24 / 0.22 / 0.05 here; an edit
    # ignoring the mask would share it out evenly, one in the wrong place would put it elsewhere.)
    change = (quarter.image.astype(float) - first.image.astype(float)) ** 2
    share = [change[i : i + 32, j : j + 32].sum() / change.sum() for i in (0, 32) for j in (0, 32)]
    assert share[0] > 0.4 and share[0] > 1.8 * max(share[1:]) and share[3] < 0.1, share
    half = sess.edit(src, ref, mask, strength=0.5)
    assert not np.array_equal(half.image, quarter.image)
    moved = sess.edit(src, ref, mask, shift=(16, 8), per_layer=True)
    assert not np.array_equal(moved.image, quarter.image)
    sess.edit(src, ref, sess.mask("mouth"))
    grown = sess.mask("drawn", drawn, grow=16)  # the 32 px quarter grown by 16 px: 48x48, 3/4 of each side
    assert float(grown.mean()) == 48 * 48 / 64**2 and sess.edit(src, ref, grown).coverage == 0.5625
    assert len(calls) == 2  # the synthfaces face and the upload, once each, over five edits
    sample = sess.edit(Picture("sample", 5), ref, mask)
    assert len(calls) == 2 and sample.image.shape == (64, 64, 3)  # a model sample needs no encoding
    # Refined: the encoded pictures' stylemaps are optimised once (kept beside the plain ones), a
    # sample's code is left as it is; the encoder is not run again.
    image, plain = sess.picture(src)
    _, refined = sess.picture(src, refine=3)
    assert sess.picture(src, refine=3)[1] is refined and not torch.equal(refined, plain)
    assert sess.picture(Picture("sample", 5), refine=3)[1] is sess.picture(Picture("sample", 5))[1]
    with torch.no_grad():
        err = [float((sess.generator(c) - image).square().mean()) for c in (plain, refined)]
    assert err[1] < err[0]
    assert not np.array_equal(sess.edit(src, ref, mask, refine=3).image, quarter.image)
    assert len(calls) == 2
    with pytest.raises(UserError, match="upload an image first"):
        sess.picture(Picture("upload", 0, None))
    with pytest.raises(UserError, match="unknown picture kind"):
        sess.picture(Picture("camera", 0))
    with pytest.raises(UserError, match="seed -1"):
        sess.picture(Picture("synthfaces", -1))
    big = tmp_path / "big.png"
    Image.new("1", (400, 400)).save(big)
    with pytest.raises(UserError, match="big.png: 400x400 is too large") as e:
        sess.picture(Picture("upload", 0, str(big)), UploadLimits(max_pixels=100 * 100))
    assert str(tmp_path) not in str(e.value)  # the page never shows server paths


def test_sessions_sort_models_by_kind_and_the_tab_says_when_there_is_none(stylemap_file):
    from latentatlas.app.server import NO_STYLEMAP, Sessions, build_app

    sessions = Sessions({"faces64": "faces64", "tiny": str(stylemap_file)}, "cpu", {})
    assert sessions.kinds == {"faces64": "stylegan2", "tiny": "stylemap"}
    assert sessions.names("stylemap") == ["tiny"] and sessions.names("stylegan2") == ["faces64"]
    with pytest.raises(UserError, match="tiny is a StyleMapGAN model: use it in the Local edit tab"):
        sessions.get("tiny")
    with pytest.raises(UserError, match="faces64 is a StyleGAN2 model"):
        sessions.stylemap("faces64")
    only_gan = build_app(Sessions({"faces64": "faces64"}, "cpu", {}))
    texts = [b.value for b in only_gan.blocks.values() if type(b).__name__ == "Markdown"]
    assert NO_STYLEMAP in texts
    only_map = build_app(Sessions({"tiny": str(stylemap_file)}, "cpu", {}))  # no StyleGAN2 tabs, no crash
    labels = [b.label for b in only_map.blocks.values() if type(b).__name__ == "Tab"]
    assert labels == ["Local edit"]


def test_the_upload_labels_give_the_limit_as_the_message_does(stylemap_file):
    """The labels said `limits.max_bytes // 2**20`: "at most 0 MB" for `serve --max-upload-mb 0.5`."""
    from latentatlas.app.server import Sessions, build_app
    from latentatlas.app.uploads import UploadLimits

    sessions = Sessions({"faces64": "faces64", "tiny": str(stylemap_file)}, "cpu", {})
    for mb, shown in ((0.5, "0.5"), (1024, "1024")):
        demo = build_app(sessions, UploadLimits(max_bytes=int(mb * 2**20)))
        labels = [b.label for b in demo.blocks.values() if type(b).__name__ == "File" and "MB)" in (b.label or "")]
        assert len(labels) == 3 and all(label.endswith(f"(at most {shown} MB)") for label in labels), labels


def test_uploaded_interpolation_ends(tmp_path):
    from latentatlas.app.session import ExploreParams, ModelSession
    from latentatlas.latent.codes import LatentCode, save_codes

    sess = ModelSession("faces64", "faces64")
    code = sess.seed_code(7)
    save_codes(tmp_path / "mine.npz", code.to("cpu"), model="latentatlas/weights/faces64.safetensors")
    loaded = sess.code_file(tmp_path / "mine.npz")
    assert torch.equal(loaded.tensor.cpu(), code.tensor.cpu())
    # From the uploaded code (seed 7's) to seed 12: the ends are those two pictures, and differ.
    frames = sess.interpolation(loaded, 12, 3, "lerp", "w")
    assert frames.shape == (3, 64, 64, 3)
    first, last = (sess.render(ExploreParams(seed=s))[0].astype(int) for s in (7, 12))
    assert np.abs(frames[0].astype(int) - first).max() <= 1 and np.abs(frames[-1].astype(int) - last).max() <= 1
    assert np.abs(first - last).mean() > 5 and not np.array_equal(frames[1], frames[0])
    with pytest.raises(UserError, match="has no z"):
        sess.interpolation(loaded, 1, 3, "lerp", "z")
    save_codes(tmp_path / "other.npz", LatentCode("w", torch.zeros(1, 8)), model="")
    with pytest.raises(UserError, match="other.npz: the w code has width 8") as e:
        sess.code_file(tmp_path / "other.npz")
    assert str(tmp_path) not in str(e.value)


def test_an_uploaded_code_file_gets_the_upload_limits(tmp_path):
    """A code .npz is capped at ten times the upload limit unpacked, not the command line's 1 GB."""
    from latentatlas.app.session import ModelSession
    from latentatlas.app.uploads import UploadLimits
    from latentatlas.latent.codes import LatentCode, save_codes

    sess = ModelSession("faces64", "faces64")
    code = sess.seed_code(7)
    many = LatentCode("w+", code.tensor.cpu().repeat(64, 1, 1))  # 64 codes: over 640 KB unpacked
    save_codes(tmp_path / "many.npz", many, model="faces64")
    assert (tmp_path / "many.npz").stat().st_size > 10 * 2**16
    assert torch.equal(sess.code_file(tmp_path / "many.npz", UploadLimits()).tensor.cpu(), code.tensor.cpu())
    with pytest.raises(UserError, match="many.npz: unpacks to .* MB, over the") as e:
        sess.code_file(tmp_path / "many.npz", UploadLimits(max_bytes=2**16))
    assert str(tmp_path) not in str(e.value)


def test_serve_takes_stylemap_models_and_refuses_directions_for_them(run_cli, stylemap_file, tmp_path):
    code, _, err = run_cli("serve", stylemap_file, "--directions", tmp_path / "d.safetensors")
    assert code == 2 and "--directions are for StyleGAN2 models" in err


def test_an_uploaded_stylemap_code_stands_for_its_picture(stylemap_file, tmp_path, run_cli):
    """A .npz from `latentatlas encode` is used as it is (no encoder pass); a code of another
    model, or of another stylemap shape, is refused with the file's name."""
    from latentatlas.app.session import Picture, StyleMapSession

    sess = StyleMapSession("tiny", str(stylemap_file))
    face = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(face)
    code, _, err = run_cli("encode", stylemap_file, face, "--out", tmp_path / "enc", "--device", "cpu")
    assert code == 0, err
    image, stylemap = sess.picture(Picture("upload", 0, str(tmp_path / "enc" / "face.npz")))
    _, encoded = sess.picture(Picture("upload", 0, str(face)))
    assert torch.allclose(stylemap, encoded, atol=1e-6)
    assert torch.allclose(image, sess.generator(encoded).clamp(-1, 1), atol=1e-5)  # as the commands render a code
    np.savez(tmp_path / "other.npz", latents=np.zeros((1, 8, 8, 8), np.float32), space=np.array("stylemap"), model=np.array("faces64"))
    np.savez(tmp_path / "small.npz", latents=np.zeros((1, 8, 4, 4), np.float32), space=np.array("stylemap"), model=np.array(""))
    for name, message in [("other.npz", "a code of the model 'faces64'"), ("small.npz", "8x4x4, this model needs 8x8x8")]:
        with pytest.raises(UserError, match=message) as e:
            sess.picture(Picture("upload", 0, str(tmp_path / name)))
        assert name in str(e.value)


def test_the_brush_canvas_refuses_oversized_or_many_layers_before_gradio_decodes_them(tmp_path):
    """An API client can send the editor any pictures; the page's canvas size is the browser's rule only."""
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from latentatlas.app import server
    from latentatlas.app.server import MAX_PAINT_LAYERS, PAINT, capped_paint_editor

    editor = capped_paint_editor(gr.ImageEditor(type="numpy", image_mode="RGBA", canvas_size=(PAINT, PAINT), layers=False))
    assert not Path(server.__file__).with_suffix(".pyi").exists()  # gradio writes one beside a module defining a component subclass

    def png(name: str, size: int) -> FileData:
        path = tmp_path / name
        Image.new("RGBA", (size, size)).save(path)  # all-transparent: a few kilobytes whatever the size
        return FileData(path=str(path), orig_name=name)

    stroke = png("stroke.png", PAINT)
    ok = editor.preprocess(EditorData(background=png("bg.png", PAINT), layers=[stroke], composite=None))
    assert ok["layers"][0].shape == (PAINT, PAINT, 4)
    huge = png("huge.png", 6000)  # 36 M pixels, 144 MB once decoded as RGBA
    with pytest.raises(gr.Error, match="6000x6000; the canvas is 128x128"):
        editor.preprocess(EditorData(background=None, layers=[huge], composite=None))
    with pytest.raises(gr.Error, match=f"at most {MAX_PAINT_LAYERS} painted layers"):
        editor.preprocess(EditorData(background=None, layers=[stroke] * (MAX_PAINT_LAYERS + 1), composite=None))


def test_the_status_line_says_why_a_shifted_edit_took_nothing():
    from latentatlas.app.server import _edit_status
    from latentatlas.app.session import LocalEdit
    from latentatlas.editing.local import EMPTY_MASK_NOTE

    image = np.zeros((8, 8, 3), np.uint8)
    moved_out = LocalEdit(image, 0.0, "the shift 60,0 moves every selected stylemap cell out of the image", 3.0)
    assert "moves every selected stylemap cell out" in _edit_status(moved_out, "drawn", 60, 0)
    faint = LocalEdit(image, 0.0, "the mask selects no stylemap cell for the transplantation", 3.0)
    assert "Nothing selected: the mask selects no stylemap cell for the transplantation" in _edit_status(faint, "drawn", 4, 0)
    empty = LocalEdit(image, 0.0, EMPTY_MASK_NOTE, 3.0)
    for shift in ((0, 0), (4, 0)):  # nothing painted: the same hint with or without a shift
        assert "Nothing selected yet: paint on the reference with the brush" in _edit_status(empty, "drawn", *shift)
    assert "62% of the stylemap cells from the reference" in _edit_status(LocalEdit(image, 0.62, None, 3.0), "drawn", 0, 0)


def test_a_seed_box_shown_again_after_a_kind_change_still_checks_nan(stylemap_file):
    """Switching Source or Reference kind used to send gr.update(visible=...) to the seed box itself:
    Gradio then holds a fresh copy of the box for that session, without our NaN check, and a NaN
    from the page's API ended in Gradio's int(): 'cannot convert float NaN to integer'. The kind
    change now shows and hides the boxes' groups, and the session goes on using the checked box."""
    import asyncio

    import gradio as gr
    from gradio.state_holder import SessionState

    from latentatlas.app.server import Sessions, build_app

    demo = build_app(Sessions({"map": str(stylemap_file)}, "cpu", {}))

    def events(name, widget):  # type: ignore[no-untyped-def]
        return [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name
                and any(getattr(b, "elem_id", None) == widget for b in f.inputs)]

    for side, shown_by, label in (("src", "view", "Source seed"), ("ref", "show_reference", "Reference seed")):
        state = SessionState(demo)
        (on_kind,) = events("on_kind", f"{side}-kind")
        for kind in ("upload", "synthfaces"):
            out = asyncio.run(demo.process_api(block_fn=on_kind, inputs=[kind], state=state))
            assert [d.get("visible") for d in out["data"]] == [kind != "upload", kind == "upload"]
        show = events(shown_by, f"{side}-seed")[0]
        inputs = ["map", "synthfaces", float("nan"), None, None][: len(show.inputs)]
        with pytest.raises(gr.Error, match=f"{label} nan: give a whole number"):
            asyncio.run(demo.process_api(block_fn=show, inputs=inputs, state=state))
