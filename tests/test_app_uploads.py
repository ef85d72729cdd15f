"""Upload checks of the web app, without a browser."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from latentatlas.app.uploads import UploadLimits, load_upload
from latentatlas.io.errors import UserError
from conftest import one_line_error


@contextmanager
def tiny_server(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """`serve` on a tiny random StyleGAN2 at a free local port: (the Blocks, its base address)."""
    import torch

    from conftest import randomize, tiny_config
    from latentatlas.app.server import Sessions, serve
    from latentatlas.io.checkpoints import save_model
    from latentatlas.models.stylegan2 import Generator

    torch.manual_seed(0)
    save_model(tmp_path / "tiny.safetensors", randomize(Generator(tiny_config())))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo, url = serve(Sessions({"tiny": str(tmp_path / "tiny.safetensors")}, "cpu", {}), port=port, block=False)
    try:
        yield demo, url.rstrip("/")
    finally:
        demo.close()


def forbid_fetching(monkeypatch: Any, *targets: tuple[Any, str]) -> list[str]:
    """Gradio's downloaders at `targets` (module, name) replaced by one that fails the test; the
    addresses it was asked for, which the test expects to stay empty."""
    fetched: list[str] = []

    async def no_fetch(url, *args, **kwargs):  # type: ignore[no-untyped-def]
        fetched.append(url)
        raise AssertionError(f"Gradio fetched {url}")

    for module, name in targets:
        monkeypatch.setattr(module, name, no_fetch)
    return fetched


def upload_face(client: Any, base: str, tmp_path: Path) -> tuple[Path, str]:
    """A small PNG uploaded as the browser does: (the file, the server's path for it)."""
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(face)
    with face.open("rb") as f:
        (path,) = client.post(f"{base}/gradio_api/upload", files={"files": ("face.png", f, "image/png")}).json()
    return face, path


def test_upload_limits_refuse_before_decoding(tmp_path):
    limits = UploadLimits(max_bytes=1000, max_pixels=100 * 100)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * 5000)
    with pytest.raises(UserError, match=r"^big\.png: 0\.00477 MB is over the 0\.000954 MB upload limit$"):
        load_upload(big, 16, limits)  # 5004 bytes against 1000
    big.write_bytes(b"\x89PNG" + b"\x00" * (int(0.6 * 2**20) - 4))
    with pytest.raises(UserError, match=r"^big\.png: 0\.6 MB is over the 0\.5 MB upload limit$"):
        load_upload(big, 16, UploadLimits(max_bytes=int(0.5 * 2**20)))  # serve --max-upload-mb 0.5: not "0 MB"
    wide = tmp_path / "wide.png"
    Image.new("1", (400, 400)).save(wide)  # a few hundred bytes, 160k pixels
    with pytest.raises(UserError, match="400x400 is too large") as e:
        load_upload(wide, 16, UploadLimits(max_bytes=10**6, max_pixels=100 * 100))
    assert str(tmp_path) not in str(e.value)  # the page never shows server paths
    with pytest.raises(UserError, match="upload an image first"):
        load_upload(None, 16, limits)


def test_megabytes_are_plain_numbers_in_the_message_and_the_labels(tmp_path):
    """One formatter for the upload message and the page's labels: the labels said "at most 0 MB" for
    `--max-upload-mb 0.5` (`// 2**20`) and the message "1.02e+03 MB" for 1024 (`.3g`)."""
    from latentatlas.app.uploads import megabytes

    assert [megabytes(mb * 2**20) for mb in (0.5, 25, 1024, 10, 0.6)] == ["0.5", "25", "1024", "10", "0.6"]
    assert megabytes(1000) == "0.000954" and megabytes(1100.4 * 2**20) == "1100"
    big = tmp_path / "big.png"
    with big.open("wb") as f:
        f.truncate(1100 * 2**20)  # sparse: no gigabyte written
    with pytest.raises(UserError, match=r"^big\.png: 1100 MB is over the 1024 MB upload limit$"):
        load_upload(big, 16, UploadLimits(max_bytes=1024 * 2**20))


def test_upload_converts_and_says_what_it_changed(tmp_path):
    rgba = tmp_path / "face.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 128)).save(rgba)
    image, notes = load_upload(rgba, 16, UploadLimits())
    assert image.shape == (1, 3, 16, 16) and image.min() >= -1 and image.max() <= 1
    assert any("RGBA" in n for n in notes) and any("centre-cropped" in n for n in notes) and any("resized" in n for n in notes)


def test_serve_refuses_bad_arguments_before_starting(run_cli, tmp_path):
    """--max-upload-mb nan passed the old `<= 0` test and ended in int()'s traceback."""
    code, _, err = run_cli("serve", tmp_path / "missing.safetensors")
    assert code == 2 and "no such file" in err
    for args, message in ((("--max-upload-mb", "0"), "--max-upload-mb 0: give a positive number of megabytes"),
                          (("--max-upload-mb", "nan"), "--max-upload-mb nan: give a positive number of megabytes"),
                          (("--max-pixels", "0"), "--max-pixels 0: use at least 1")):
        one_line_error(*run_cli("serve", "faces64", *args), message)


def test_a_file_input_naming_a_web_address_is_refused_before_gradio_fetches_it(tmp_path, monkeypatch):
    """A client of the page's API could send a file input as {"path": "https://..."}; Gradio's
    preprocessing downloaded it whole into its cache before any check of ours (no upload cap, and
    network at run time). Now the request is refused with one line and nothing is fetched, while a
    real upload (whose "url" is this server's own address, as the browser sends it) still works."""
    import httpx
    from gradio import processing_utils

    from latentatlas.app.server import REMOTE_FILE

    fetched = forbid_fetching(monkeypatch, (processing_utils, "async_ssrf_protected_download"),
                              (processing_utils, "async_ssrf_protected_get"))
    with tiny_server(tmp_path) as (demo, base), httpx.Client(trust_env=False, timeout=60) as client:
        (upload_fn,) = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "on_upload"]
        run = f"{base}/gradio_api/run/{upload_fn.api_name}"
        meta = {"_type": "gradio.FileData"}
        for address in ("https://example.com/face.png", "HTTP://example.com/face.png"):
            r = client.post(run, json={"data": ["tiny", {"path": address, "orig_name": "face.png", "meta": meta}]})
            assert r.status_code == 500 and r.json()["error"] == REMOTE_FILE, r.text
        _, path = upload_face(client, base, tmp_path)
        own = f"{base}/gradio_api/file={path}"
        r = client.post(run, json={"data": ["tiny", {"path": path, "url": own, "orig_name": "face.png", "meta": meta}]})
        assert r.status_code == 200, r.text
        target, kept, _ = r.json()["data"]
        assert target["path"] and kept["path"] == path  # the target shown, the upload kept
    assert fetched == []


def test_the_file_route_refuses_web_addresses_and_serves_this_servers_files(tmp_path, monkeypatch):
    """Gradio's GET /gradio_api/file=<url> downloads an http(s) address and streams it back (route_utils.
    secure_url_stream_response): a network fetch at run time that no event handler sees. Now a
    middleware refuses it in one line before Gradio's route runs, while an upload's own /file= URL
    still serves."""
    import httpx
    from gradio import route_utils, routes

    from latentatlas.app.server import REMOTE_FILE_ROUTE

    fetched = forbid_fetching(monkeypatch, (routes, "secure_url_stream_response"), (route_utils, "secure_url_stream_response"))
    with tiny_server(tmp_path) as (_, base), httpx.Client(trust_env=False, timeout=60) as client:
        for address in ("https://example.com/x.png", "http://example.com/x.png", "HTTPS://example.com/x.png",
                        "https%3A%2F%2Fexample.com%2Fx.png"):
            for method in ("GET", "HEAD"):
                r = client.request(method, f"{base}/gradio_api/file={address}")
                assert r.status_code == 403, (method, address, r.status_code, r.text)
                if method == "GET":
                    assert r.text == REMOTE_FILE_ROUTE and "\n" not in r.text
        face, path = upload_face(client, base, tmp_path)
        r = client.get(f"{base}/gradio_api/file={path}")
        assert r.status_code == 200 and r.content == face.read_bytes()
    assert fetched == []
