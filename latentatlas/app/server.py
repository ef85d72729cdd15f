"""The Gradio web app: Explore, Interpolate and Project tabs (StyleGAN2) and Local edit (StyleMapGAN).

A thin layer over `app.session`: widgets in, an `ExploreParams`, a pair of interpolation ends,
a projection or a (`Picture`, mask) pair out. Models are chosen from a fixed list made at
start-up (bundled names and paths given on the command line), each picker offering the models
its tabs can use; nothing a web user types is ever opened as a path. Uploads are capped in
bytes by the server and in pixels before decoding; a bad upload is a message in the page, never
a crash. Projections (the Project tab's, and the Interpolate tab's for uploaded images) run one
at a time in the process (`_PROJECTING`) in a worker thread that Stop (in either tab), or leaving
the page, ends; rendering goes on beside them.
"""

from __future__ import annotations

import atexit
import inspect
import os
from contextlib import contextmanager
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network at run time

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio.data_classes import FileData  # noqa: E402
from PIL import Image  # noqa: E402

from latentatlas.app.session import (  # noqa: E402
    MASK_DRAWN,
    MAX_DIRECTION_SETS,
    MAX_FRAMES,
    MAX_SEED,
    PICTURE_KINDS,
    ExploreParams,
    LocalEdit,
    ModelSession,
    Picture,
    StyleMapSession,
    enlarge,
    file_key,
    fit_display,
    reduce,
    to_rgb8,
)
from latentatlas.app.uploads import UploadLimits, load_upload, megabytes  # noqa: E402
from latentatlas.editing.local import EMPTY_MASK_NOTE  # noqa: E402
from latentatlas.io.errors import UserError, require_number, require_seed  # noqa: E402
from latentatlas.metrics.reconstruction import reconstruction_errors  # noqa: E402

MAX_SETS = MAX_DIRECTION_SETS  # direction sets shown (session.py says why so many)
MAX_SLIDERS = 20  # sliders per set
DISPLAY = 256  # displayed image size (small models are enlarged, nearest neighbour)
PAINT = 128  # the brush canvas: every stroke is sent as images of this size, so it stays small
REFINE_STEPS = 100  # Local edit's "Refine": optimisation steps per encoded picture (faces64-stylemap: about 2 s on 2 cores)
STYLEGAN2, STYLEMAP = "stylegan2", "stylemap"
MAX_PAINT_LAYERS = 4  # the editor has one layer (layers=False); a request with more is not the page's
# One projection at a time in this process: each takes the cores for seconds to minutes, and a
# model's loss keeps its last target's features (`losses.LastTargetFeatures`), which two projections
# at once would trade. Renders don't wait for it.
_PROJECTING = threading.Lock()


PAINT_MAX_SIDE = 2 * PAINT


def capped_paint_editor(editor: gr.ImageEditor) -> gr.ImageEditor:
    """The brush canvas, with each picture's size read from its header before Gradio decodes it.

    Gradio decodes every picture of an editor request (background, composite and each layer) into
    an array before our handler sees it, and the PAINT px canvas is the browser's rule only: a
    client of the page's API could send many layers, each a small PNG that decodes to hundreds of
    megabytes. A request is refused, as one message in the page, unless every picture is at most
    twice the canvas on a side and there are at most MAX_PAINT_LAYERS layers. The two checks wrap
    this instance's methods: a subclass of a Gradio component would make Gradio write a .pyi file
    beside this module at import time.
    """
    preprocess, convert = editor.preprocess, editor.convert_and_format_image

    def checked_preprocess(payload: Any) -> Any:
        cached = editor.blob_storage.get(payload.id) if payload is not None and payload.id is not None else None
        for source in (payload, cached):
            if source is not None and len(source.layers or []) > MAX_PAINT_LAYERS:
                raise gr.Error(f"at most {MAX_PAINT_LAYERS} painted layers; the page sends one")
        return preprocess(payload)

    def checked_convert(file: Any, flatten_on_white: bool = False) -> Any:
        if file is not None:
            try:
                with Image.open(file.path if isinstance(file, FileData) else BytesIO(file)) as im:  # the header only
                    w, h = im.size
            except Image.DecompressionBombError:
                raise gr.Error(f"the painted picture is far larger than the {PAINT}x{PAINT} canvas") from None
            except (OSError, ValueError):
                raise gr.Error("the painted picture is not a readable image") from None
            if max(w, h) > PAINT_MAX_SIDE:
                raise gr.Error(f"the painted picture is {w}x{h}; the canvas is {PAINT}x{PAINT}")
        return convert(file, flatten_on_white)

    editor.preprocess = checked_preprocess  # type: ignore[method-assign]
    editor.convert_and_format_image = checked_convert  # type: ignore[method-assign]
    return editor


REMOTE_FILE = "files come from this page's upload button: a web address is not fetched"


def _is_web_address(text: str) -> bool:
    """http(s)://..., the case of the scheme aside: what Gradio would fetch, for both refusals below."""
    return text.strip().lower().startswith(("http://", "https://"))


def _web_address_in(value: Any) -> bool:
    """Whether a request's input names a file by web address: any dict whose "path" is http(s)://...
    (the case of the scheme aside). Only "path" is fetched while preprocessing; "url" is what the
    browser sends back for a file it uploaded (this server's own /file= address), never fetched."""
    if isinstance(value, dict):
        path = value.get("path")
        if isinstance(path, str) and _is_web_address(path):
            return True
        return any(_web_address_in(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_web_address_in(v) for v in value)
    return False


def refuse_web_addresses(demo: gr.Blocks) -> gr.Blocks:
    """Requests whose file inputs name a web address are refused, as one message in the page, before
    Gradio reads them. A client of the page's API may send a file input as {"path": "https://..."}:
    Gradio's preprocessing (`processing_utils.async_move_files_to_cache`) then downloads it whole into
    its cache before any handler or upload check runs, past the upload cap and the app's promise of no
    network at run time. Every route that runs an event (the queue, /run, /call) goes through
    `Blocks.preprocess_data`, which this wraps on this instance (session copies of components made by
    an update don't matter here: the check is on the request's data)."""
    preprocess_data = demo.preprocess_data

    async def checked(block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        if _web_address_in(inputs):
            raise gr.Error(REMOTE_FILE, print_exception=False)  # a refusal, not a fault of the server
        return await preprocess_data(block_fn, inputs, *args, **kwargs)

    demo.preprocess_data = checked  # type: ignore[method-assign]
    return demo


REMOTE_FILE_ROUTE = "this server serves its own files: a web address is not fetched"


class RefuseWebFileRoutes:
    """ASGI middleware on the app `demo.launch` creates (`serve` passes it in `app_kwargs`): a request
    for /gradio_api/file=<http(s) address> is answered 403 with one line. Gradio's route would fetch
    that address and stream it back (`route_utils.secure_url_stream_response`), network at run time
    that no event handler sees (`refuse_web_addresses` covers only event inputs). This server's own
    /file= paths (uploads, the files the page hands out) pass through untouched. The path is read as
    the server decoded it, so https%3A%2F%2F... is refused too, and case aside (Gradio itself only
    fetches lower-case schemes)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _file_route_names_web_address(scope.get("path", "")):
            from starlette.responses import PlainTextResponse

            await PlainTextResponse(REMOTE_FILE_ROUTE, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _file_route_names_web_address(path: str) -> bool:
    at = path.find("/file=")
    return at >= 0 and _is_web_address(path[at + len("/file="):])


NO_STYLEMAP = (
    "**Local editing needs a StyleMapGAN model**, which has an encoder and a spatial stylemap to blend; "
    "StyleGAN2 models (the Model above) have neither. Start the app with one beside your StyleGAN2 models, e.g. "
    "`latentatlas serve faces64 faces64-stylemap` (the bundled pair, the default) "
    "(`latentatlas train-stylemap` makes one; official naver-ai/StyleMapGAN `.pt` files work too)."
)


class Sessions:
    """Models by name, each one's kind (StyleGAN2 or StyleMapGAN) read from its file at once; loaded
    by `load_all` (`serve` calls it, so a bad file fails before the server starts and no request
    waits for a model to load) or else on first use, one lock per model so that loading one never
    holds up requests for another."""

    def __init__(self, models: dict[str, str], device: str, directions: dict[str, list[str]],
                 lpips_files: tuple[str, str] | None = None) -> None:
        from latentatlas.io.checkpoints import model_kind
        from latentatlas.models.bundled import resolve_model

        if not models:
            raise UserError("no model to serve")
        self.models, self.device, self.directions = models, device, directions
        self.lpips_files = lpips_files  # `serve --vgg --lpips-lin`: the projections' LPIPS
        self.kinds = {name: model_kind(resolve_model(source)) for name, source in models.items()}
        self._loaded: dict[str, ModelSession | StyleMapSession] = {}
        self._locks = {name: threading.Lock() for name in models}

    def names(self, kind: str | None = None) -> list[str]:
        return [n for n in self.models if kind is None or self.kinds[n] == kind]

    def load(self, name: str) -> ModelSession | StyleMapSession:
        if name not in self.models:
            raise UserError(f"unknown model {name!r}")
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._locks[name]:
            if name not in self._loaded:
                if self.kinds[name] == STYLEMAP:
                    if self.directions.get(name):
                        raise UserError(f"{name} is a StyleMapGAN model: direction files are for StyleGAN2 models")
                    self._loaded[name] = StyleMapSession(name, self.models[name], self.device)
                else:
                    self._loaded[name] = ModelSession(name, self.models[name], self.device, self.directions.get(name),
                                                      self.lpips_files)
            return self._loaded[name]

    def load_all(self) -> None:
        """Every model, its direction sets and, for StyleGAN2 models, its projection loss (the LPIPS
        files, the factor predictor): what the first requests would otherwise wait for."""
        for name in self.models:
            sess = self.load(name)
            if isinstance(sess, ModelSession):
                sess.projection_loss()

    def get(self, name: str) -> ModelSession:
        """A StyleGAN2 model (Explore, Interpolate, Project)."""
        sess = self.load(name)
        if not isinstance(sess, ModelSession):
            raise UserError(f"{name} is a StyleMapGAN model: use it in the Local edit tab")
        return sess

    def stylemap(self, name: str) -> StyleMapSession:
        """A StyleMapGAN model (Local edit)."""
        sess = self.load(name)
        if not isinstance(sess, StyleMapSession):
            raise UserError(f"{name} is a StyleGAN2 model: local editing needs a StyleMapGAN model")
        return sess


def _user_errors(fn):  # type: ignore[no-untyped-def]
    """Show library UserErrors as a message in the page instead of a failed request (plain and generator handlers)."""
    if inspect.isgeneratorfunction(fn):

        def wrapped_gen(*args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                yield from fn(*args, **kwargs)
            except UserError as e:
                raise gr.Error(str(e)) from None

        wrapped_gen.__name__ = fn.__name__
        return wrapped_gen

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(str(e)) from None

    wrapped.__name__ = fn.__name__
    return wrapped


# Gradio's cache (each file the app hands out is copied there, uploads are kept there) is emptied
# of files older than an hour, every hour (so a file stays one to two hours), and wholly when the
# server stops.
CACHE_AGE_S = 3600


class OutputFolders:
    """Where the app writes the files it hands to Gradio (codes, GIFs), a new folder each.

    Gradio copies each file into its own cache when the response is sent (cleaned by
    `delete_cache`), so ours are only needed until then: folders older than `max_age_s` are removed
    whenever a new one is made, and the whole root at exit. The root is made on first use."""

    def __init__(self, max_age_s: float = CACHE_AGE_S) -> None:
        self.max_age_s = max_age_s
        self.root: Path | None = None
        self._lock = threading.Lock()

    def new(self) -> Path:
        with self._lock:
            if self.root is None:
                self.root = Path(tempfile.mkdtemp(prefix="latentatlas-app-"))
                atexit.register(self.remove)
            now = time.time()
            for old in self.root.iterdir():
                try:
                    if now - old.stat().st_mtime > self.max_age_s:
                        shutil.rmtree(old, ignore_errors=True)
                except FileNotFoundError:
                    pass
            return Path(tempfile.mkdtemp(dir=self.root))

    def remove(self) -> None:
        with self._lock:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)


def build_app(sessions: Sessions, limits: UploadLimits = UploadLimits(), outputs: OutputFolders | None = None) -> gr.Blocks:
    out_dirs = outputs or OutputFolders()
    gan = sessions.names(STYLEGAN2)
    with gr.Blocks(title="latentatlas", analytics_enabled=False, delete_cache=(CACHE_AGE_S, CACHE_AGE_S)) as demo:
        gr.Markdown("## latentatlas — map, search and travel a GAN's latent space")
        model = gr.Dropdown(gan, value=gan[0] if gan else None, label="Model", elem_id="model", visible=bool(gan))
        base_state = gr.State(None)  # a projected code being edited, {"model": name, "w": w+ [L, D]}, or None (the seed)
        # Per-user projection control: {"stops": running projections' Events, "projected": the last
        # projection's code, {"model": name, "w": w+ [L, D]}, until the model changes}.
        proj_ctl = gr.State({})
        with gr.Tabs(selected="explore" if gan else "local") as tabs:
            if gan:
                explore = _explore_tab(demo, sessions, model, base_state, out_dirs)
                _interpolate_tab(sessions, model, limits, out_dirs, proj_ctl)
                project = _project_tab(sessions, model, limits, tabs, base_state, proj_ctl, explore)
                _on_model_change(sessions, model, base_state, proj_ctl, explore, project)
            _local_edit_tab(demo, sessions, limits)
    return refuse_web_addresses(demo)


# ---------------------------------------------------------------------------------------- Explore


@dataclass
class _Explore:
    """What other tabs need of the Explore tab: its render call, and the widgets a model change resets."""

    render: Any
    inputs: list[Any]
    outputs: list[Any]
    accordions: list[Any]
    sliders: list[Any]
    unshown: list[Any]  # per set, the note naming the directions beyond MAX_SLIDERS
    mix_cutoff: Any
    layer_start: Any
    layer_end: Any
    tau: Any


def _explore_tab(demo: gr.Blocks, sessions: Sessions, model: gr.Dropdown, base_state: gr.State, out_dirs: OutputFolders) -> _Explore:
    first = sessions.get(sessions.names(STYLEGAN2)[0])
    with gr.Tab("Explore", id="explore"):
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    seed = whole_number_input(gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="seed"))
                    random_btn = gr.Button("Random", elem_id="random", scale=0)
                psi = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Truncation psi", elem_id="psi")
                tau = gr.Slider(0, 4, value=0, step=0.1, label="PCA compression tau (0 = off)", elem_id="tau",
                                interactive=first.prior is not None)
                with gr.Row():
                    mix_seed = whole_number_input(gr.Number(1, label="Mix with seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="mix-seed"))
                    mix_cutoff = gr.Slider(0, first.num_ws, value=0, step=1, label="from layer (0 = no mixing)", elem_id="mix-cutoff")
                restrict = gr.Checkbox(False, label="Edit only w+ layers", elem_id="restrict")
                with gr.Row():
                    layer_start = gr.Slider(0, first.num_ws, value=0, step=1, label="first layer", elem_id="layer-start")
                    layer_end = gr.Slider(1, first.num_ws, value=first.num_ws, step=1, label="end layer (excluded)", elem_id="layer-end")
            with gr.Column(scale=1):
                image = gr.Image(label="Image", type="numpy", height=DISPLAY, width=DISPLAY, elem_id="explore-image",
                                 interactive=False, format="png")
                source = gr.Markdown("seed 0", elem_id="source")
                with gr.Row():
                    back_btn = gr.Button("Back to the seed", elem_id="back-to-seed", size="sm")
                    code_btn = gr.Button("Download code (.npz)", elem_id="download-code", size="sm")
                code_file = gr.File(label="Code", visible=False, elem_id="code-file")
        sliders: list[gr.Slider] = []
        accordions, unshown = [], []
        for s in range(MAX_SETS):
            title = first.set_title(s)
            with gr.Accordion(title or "", open=s == 0, visible=title is not None) as acc:
                accordions.append(acc)
                with gr.Row():
                    for k in range(MAX_SLIDERS):
                        name, lim = first.slider(s, k)
                        sliders.append(gr.Slider(-lim, lim, value=0, step=0.1, label=name, visible=bool(name),
                                                 min_width=160, elem_id=f"dir-{s}-{k}"))
                note = _unshown_note(first, s)
                unshown.append(gr.Markdown(note or "", visible=note is not None, elem_id=f"dir-{s}-unshown"))

    inputs = [model, seed, psi, tau, mix_seed, mix_cutoff, restrict, layer_start, layer_end, base_state, *sliders]

    @_user_errors
    def render(name, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, *strengths):  # type: ignore[no-untyped-def]
        sess = sessions.get(name)
        params = _params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths)
        t = time.perf_counter()
        arr, _ = sess.render(params)
        ms = (time.perf_counter() - t) * 1000
        where = "a projected image" if base is not None else f"seed {params.seed}"
        return enlarge(arr, DISPLAY), f"{where} · {ms:.0f} ms"

    for widget in [seed, psi, tau, mix_seed, mix_cutoff, restrict, layer_start, layer_end, *sliders]:
        widget.change(render, inputs, [image, source], trigger_mode="always_last", show_progress="hidden",
                      concurrency_id="render", concurrency_limit=4)
    seed.input(lambda: None, None, base_state)
    back_btn.click(lambda: None, None, base_state).then(render, inputs, [image, source])

    def random_seed():  # type: ignore[no-untyped-def]
        """A new seed, and back to it from a projected code (as typing a seed does; the seed box's
        change alone re-rendered the projected code, so Random showed nothing new)."""
        return int(np.random.randint(0, 2**31)), None

    random_btn.click(random_seed, None, [seed, base_state])
    demo.load(render, inputs, [image, source])

    @_user_errors
    def download_code(name, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, *strengths):  # type: ignore[no-untyped-def]
        from latentatlas.latent.codes import save_codes

        sess = sessions.get(name)
        params = _params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths)
        code = sess.edited_code(params)
        folder = out_dirs.new()
        path = folder / (f"{name}-seed{params.seed}.npz" if base is None else f"{name}-projected.npz")
        save_codes(path, code.to("cpu"), model=name)
        return gr.update(value=str(path), visible=True)

    code_btn.click(download_code, inputs, code_file)
    return _Explore(render, inputs, [image, source], accordions, sliders, unshown, mix_cutoff, layer_start, layer_end, tau)


def _unshown_note(sess: ModelSession, s: int) -> str | None:
    """Which directions of set s have no slider (the page shows the first MAX_SLIDERS of a set), or None."""
    rest = sess.set_names(s)[MAX_SLIDERS:]
    if not rest:
        return None
    return (f"{len(rest)} more directions in this set have no slider (the page shows the first {MAX_SLIDERS}): "
            f"{', '.join(rest)}; `latentatlas traverse` walks any of them")


def _on_model_change(sessions: Sessions, model: gr.Dropdown, base_state: gr.State, proj_ctl: gr.State, explore: _Explore,
                     project: _Project) -> None:
    """A new StyleGAN2 model: its direction sets, layer count and prior, then a fresh render; the
    previous model's projected code is dropped (it would mean nothing to this one)."""

    def on_model(name, ctl):  # type: ignore[no-untyped-def]
        ctl.pop("projected", None)
        sess = sessions.get(name)
        updates: list[Any] = []
        for s in range(MAX_SETS):
            title = sess.set_title(s)
            updates.append(gr.update(label=title or "", visible=title is not None))
        for s in range(MAX_SETS):
            for k in range(MAX_SLIDERS):
                name_k, lim = sess.slider(s, k)
                updates.append(gr.update(label=name_k, visible=bool(name_k), value=0, minimum=-lim, maximum=lim))
        for s in range(MAX_SETS):
            note = _unshown_note(sess, s)
            updates.append(gr.update(value=note or "", visible=note is not None))
        n = sess.num_ws
        has_prior = sess.prior is not None
        updates += [gr.update(maximum=n, value=0), gr.update(maximum=n, value=0), gr.update(maximum=n, value=n),
                    gr.update(interactive=has_prior, value=0), gr.update(interactive=has_prior, value=0),
                    gr.update(interactive=has_prior, value=False), None, gr.update(interactive=False)]
        return updates

    e = explore
    model.change(on_model, [model, proj_ctl], [*e.accordions, *e.sliders, *e.unshown, e.mix_cutoff, e.layer_start, e.layer_end, e.tau,
                                               project.prior_w, project.whiten, base_state, project.to_explore]).then(
        e.render, e.inputs, e.outputs)


# ---------------------------------------------------------------------------------------- Interpolate


def _interpolate_tab(sessions: Sessions, model: gr.Dropdown, limits: UploadLimits, out_dirs: OutputFolders, proj_ctl: gr.State) -> None:
    with gr.Tab("Interpolate", id="interpolate"):
        with gr.Row():
            with gr.Column(scale=1):
                ends = []
                for key, label, seed_v in (("a", "From", 0), ("b", "To", 1)):
                    with gr.Group():
                        seed = whole_number_input(gr.Number(seed_v, label=f"{label} seed", precision=0, minimum=0, maximum=MAX_SEED,
                                                            elem_id=f"seed-{key}"))
                        file = gr.File(label=f"...or {label.lower()} an image (projected) or a saved code (.npz)",
                                       file_types=["image", ".npz"], type="filepath", elem_id=f"file-{key}", height=120)
                    ends.append((seed, file))
                frames = gr.Slider(2, MAX_FRAMES // 2, value=16, step=1, label="Frames", elem_id="frames")  # interpolate's --frames
                method = gr.Radio(["lerp", "slerp"], value="lerp", label="Interpolation", elem_id="interp-method",
                                  info="lerp in w, as the StyleGAN paper; slerp keeps z on its sphere (in w it turns about 0, far from the mean w)")
                space = gr.Radio(["z", "w"], value="w", label="Space (codes and images: w)", elem_id="interp-space")
                ipsi = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Truncation psi")
                isteps = gr.Slider(10, 500, value=60, step=10, label="Projection steps (for uploaded images)", elem_id="interp-steps")
                with gr.Row():
                    interp_btn = gr.Button("Interpolate", variant="primary", elem_id="interpolate-btn")
                    interp_stop = gr.Button("Stop", elem_id="interp-stop-btn")
            with gr.Column(scale=2):
                strip = gr.Image(label="Strip", type="numpy", interactive=False, elem_id="strip", format="png")
                anim = gr.Image(label="Animation", type="filepath", interactive=False, elem_id="animation")
                status = gr.Markdown("", elem_id="interp-status")

    def check_file(name, f):  # type: ignore[no-untyped-def]
        """Say at once what an uploaded end is, or why it can't be used (and clear it)."""
        if f is None:
            return None, ""
        try:
            return f, _describe_end(sessions.get(name), f, limits)
        except UserError as e:
            gr.Warning(str(e))
            return None, ""

    for _, file in ends:
        file.upload(check_file, [model, file], [file, status])
        file.clear(lambda: "", None, status)

    @_user_errors
    def run_interpolation(name, a, fa, b, fb, n, meth, sp, p, n_steps, ctl):  # type: ignore[no-untyped-def]
        sess = sessions.get(name)
        n, n_steps = whole("frames", n), whole("projection steps", n_steps)
        sess.check_frames(n)  # before any projection below: a request the app would refuse costs no work
        if sp == "z" and any(f is not None and not _is_code_file(f) for f in (fa, fb)):
            raise UserError("an uploaded image is projected to w: interpolate in space w")
        codes, labels = [], []
        for which, seed_v, f in (("start", a, fa), ("end", b, fb)):
            if f is None:
                codes.append(whole_seed(f"{which} seed", seed_v))
                labels.append(f"seed {codes[-1]}")
            elif _is_code_file(f):
                codes.append(sess.code_file(f, limits))
                labels.append(f"{Path(f).name} (saved code)")
            else:
                code = None
                with _stoppable(ctl) as stop:
                    for msg, code in _projected_end(sess, f, n_steps, limits, stop):
                        if code is None:
                            yield gr.update(), gr.update(), f"projecting the {which} image {Path(f).name}: {msg}"
                if code is None:
                    yield gr.update(), gr.update(), f"stopped while projecting the {which} image {Path(f).name}: nothing interpolated"
                    return
                codes.append(code)
                labels.append(f"{Path(f).name} (projected, {n_steps} steps)")
        with sess.lock:
            out = sess.interpolation(codes[0], codes[1], n, meth, sp, finite("truncation psi", p))
        yield _strip(out), _gif(out, out_dirs), f"{labels[0]} → {labels[1]}: {n} frames, {meth} in {sp}"

    # Not in the Project tab's queue: seeds and codes need no projection, and an uploaded image's
    # projection waits for its turn itself (`_PROJECTING`), saying so.
    interp_btn.click(run_interpolation, [model, ends[0][0], ends[0][1], ends[1][0], ends[1][1], frames, method, space, ipsi,
                                         isteps, proj_ctl], [strip, anim, status], concurrency_id="interpolate", concurrency_limit=2)
    interp_stop.click(stop_projections, proj_ctl, None, queue=False)


def _is_code_file(path: str) -> bool:
    return str(path).lower().endswith(".npz")


def _describe_end(sess: ModelSession, path: str, limits: UploadLimits) -> str:
    if _is_code_file(path):
        code = sess.code_file(path, limits)
        return f"{Path(path).name}: a {code.space} code of this model"
    _, notes = load_upload(path, sess.generator.img_resolution, limits)
    return f"{Path(path).name}: an image, projected when you interpolate" + (f" ({'; '.join(notes)})" if notes else "")


def _projected_end(sess: ModelSession, path: str, steps: int, limits: UploadLimits,
                   stop: threading.Event | None = None) -> Iterator[tuple[str, Any]]:
    """An uploaded image's projected w+ code, made once per image and step count: yields (progress, None)
    while projecting, then ('done', code), or ('stopped', None) when `stop` ended it early (not kept)."""
    from latentatlas.latent.codes import LatentCode

    key = (file_key(path), steps)
    code = sess.projections.peek(key)
    if code is None:
        target, _ = load_upload(path, sess.generator.img_resolution, limits)
        proj = None
        for step, _img, loss, proj in _projection_steps(sess, target, "w", 0.0, steps, stop or threading.Event()):
            if proj is None:
                yield _progress(step, steps, loss), None
        if proj is None or len(proj.losses["total"]) < steps:
            yield "stopped", None
            return
        code = sess.projections.put(key, LatentCode("w+", proj.ws[:1].detach()))
    yield "done", code


def _progress(step: int, steps: int, loss: float) -> str:
    if step < 0:
        return "waiting for another projection to finish (one runs at a time)"
    return f"step {step + 1}/{steps} · loss {loss:.4f}"


@contextmanager
def _stoppable(ctl: dict[str, Any]) -> Iterator[threading.Event]:
    """A new projection's stop event, which either tab's Stop sets while it runs (`stop_projections`)."""
    stop = threading.Event()
    stops = ctl.setdefault("stops", set())
    stops.add(stop)
    try:
        yield stop
    finally:
        stops.discard(stop)


def stop_projections(ctl: dict[str, Any]) -> None:
    """Stop, in either tab: ends this page's running projections."""
    for stop in list(ctl.get("stops", ())):
        stop.set()


STRIP = DISPLAY // 2  # the strip's frames are at most this high: a row of thumbnails (the GIF shows them at DISPLAY)


def _strip(frames: np.ndarray) -> np.ndarray:
    """uint8 frames [T, H, W, 3] side by side, each reduced to at most STRIP px high."""
    return np.concatenate([reduce(f, STRIP) for f in frames], axis=1)


def _gif(frames: np.ndarray, out_dirs: OutputFolders) -> str:
    """The uint8 frames there and back as a GIF at the display size (`fit_display`: small models
    enlarged, nearest, large ones reduced); each frame is resized once."""
    from latentatlas.io.images import save_animation

    gif = out_dirs.new() / "interpolation.gif"
    shown = np.stack([fit_display(f, DISPLAY) for f in frames])
    save_animation(gif, np.concatenate([shown, shown[::-1]]), fps=12)
    return str(gif)


# ---------------------------------------------------------------------------------------- Project


@dataclass
class _Project:
    """The Project tab's widgets a model change resets."""

    prior_w: Any
    whiten: Any
    to_explore: Any


def _project_tab(sessions: Sessions, model: gr.Dropdown, limits: UploadLimits, tabs: gr.Tabs, base_state: gr.State,
                 proj_ctl: gr.State, explore: _Explore) -> _Project:
    first = sessions.get(sessions.names(STYLEGAN2)[0])
    with gr.Tab("Project", id="project"):
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label=f"Image to project (at most {megabytes(limits.max_bytes)} MB)", file_types=["image"],
                                 type="filepath", elem_id="upload")
                pspace = gr.Radio(["w", "w+"], value="w", label="Space", elem_id="proj-space")
                # benchmarks/projection_quality.py: on faces64, lambda >= 1e-4 wrecks the fit; 1e-6..1e-5 is the useful range.
                prior_w = gr.Slider(0, 1e-4, value=0.0, step=1e-6, label="Gaussian prior weight lambda (0 = plain)",
                                    interactive=first.prior is not None, elem_id="prior")
                # `project --whiten`: codes stay where sampled codes are, at a price in fit (README, Measured).
                whiten = gr.Checkbox(False, label="Whitened prior coordinates (codes stay in distribution)",
                                     interactive=first.prior is not None, elem_id="proj-whiten")
                steps = gr.Slider(10, 1000, value=150, step=10, label="Steps", elem_id="steps")
                with gr.Row():
                    proj_btn = gr.Button("Project", variant="primary", elem_id="project-btn")
                    stop_btn = gr.Button("Stop", elem_id="stop-btn")
            with gr.Column(scale=1):
                with gr.Row():
                    target_view = gr.Image(label="Target", type="numpy", interactive=False, height=DISPLAY, elem_id="target")
                    recon_view = gr.Image(label="Reconstruction", type="numpy", interactive=False, height=DISPLAY, elem_id="recon")
                status = gr.Markdown("", elem_id="proj-status")
                to_explore = gr.Button("Edit in Explore", interactive=False, elem_id="to-explore")

    @_user_errors
    def run_projection(name, file, sp, lam, white, n_steps, ctl):  # type: ignore[no-untyped-def]
        sess = sessions.get(name)
        n_steps = whole("steps", n_steps)
        target, notes = load_upload(file, sess.generator.img_resolution, limits)
        target_arr = enlarge(to_rgb8(target[0]), DISPLAY)
        note = f" ({'; '.join(notes)})" if notes else ""
        said = f"; loss: {sess.projection_loss().said}"
        yield target_arr, None, f"starting{note}{said}", gr.update(interactive=False)
        proj = None
        with _stoppable(ctl) as stop:
            for step, img, loss, proj in _projection_steps(sess, target, sp, finite("prior weight", lam), n_steps, stop, whiten=bool(white)):
                if proj is None:
                    shown = enlarge(to_rgb8(img[0]), DISPLAY) if img is not None else gr.update()
                    yield target_arr, shown, _progress(step, n_steps, loss), gr.update()
        if proj is None:
            yield (target_arr, None, f"stopped before it started (another projection was running): no code{note}{said}",
                   gr.update(interactive=bool(ctl.get("projected"))))  # an earlier code of this page stays
            return
        ctl["projected"] = {"model": name, "w": proj.ws[0].cpu().numpy()}
        mse = reconstruction_errors(proj.images.cpu(), target)["mse"][0]
        stopped = " (stopped early)" if len(proj.losses["total"]) < n_steps else ""
        where = ""
        if sess.prior is not None:  # how typical the code is: sampled codes sit near the prior's dimension
            d2 = float(sess.prior.mahalanobis(proj.w.double().cpu())[0]) / (proj.w.shape[1] if proj.w.ndim == 3 else 1)
            where = f", Mahalanobis {d2:,.0f} per layer (samples: about {sess.prior.dim})"
        yield (target_arr, enlarge(to_rgb8(proj.images[0].cpu()), DISPLAY),
               f"done{stopped}: {len(proj.losses['total'])} steps, pixel MSE {mse:.4f}{where}{note}{said}", gr.update(interactive=True))

    proj_btn.click(run_projection, [model, upload, pspace, prior_w, whiten, steps, proj_ctl],
                   [target_view, recon_view, status, to_explore], concurrency_id="projection", concurrency_limit=1)

    stop_btn.click(stop_projections, proj_ctl, None, queue=False)

    def on_upload(name, f):  # type: ignore[no-untyped-def]
        try:
            target, notes = load_upload(f, sessions.get(name).generator.img_resolution, limits)
        except UserError as e:  # say why, and clear the field so another file can be dropped
            gr.Warning(str(e))
            return None, None, ""
        return enlarge(to_rgb8(target[0]), DISPLAY), f, "; ".join(notes)

    upload.upload(on_upload, [model, upload], [target_view, upload, status])

    @_user_errors
    def send_to_explore(name, ctl):  # type: ignore[no-untyped-def]
        projected = ctl.get("projected")
        if projected is None:
            raise UserError("project an image first")
        _projected_for(projected, name)
        return projected, gr.Tabs(selected="explore")

    to_explore.click(send_to_explore, [model, proj_ctl], [base_state, tabs]).then(explore.render, explore.inputs, explore.outputs)
    return _Project(prior_w, whiten, to_explore)


def _projected_for(projected: dict[str, Any], name: str) -> np.ndarray:
    """A projected code's w+ array, refused for any model but the one it was projected with (another
    model's code, even of the same shape, means nothing to this one)."""
    if projected["model"] != name:
        raise UserError(f"the projected code belongs to {projected['model']}, and the model is now {name}: "
                        f"project the image again with {name}, or go back to the seed")
    return projected["w"]


def _projection_steps(sess: ModelSession, target, space: str, lam: float, steps: int,  # type: ignore[no-untyped-def]
                      stop: threading.Event, whiten: bool = False) -> Iterator[tuple[int, Any, float, Any]]:
    """The projector (`_project`) in a worker thread, once no other projection runs (`_PROJECTING`):
    yields (-1, None, nan, None) while it waits for its turn, (step, preview images, loss, None) as it
    runs, then (steps done, None, last loss shown, the projection), whose step count tells a stopped
    run; stopped before its turn came, it ends with no projection, and both tabs say so as they say
    a stop during the run (no error). Errors come out here as UserErrors; `stop`, or closing this
    generator (the user left the page), ends the worker, waiting or running."""
    updates: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            if not _PROJECTING.acquire(blocking=False):
                updates.put((-1, None, float("nan")))
                while not _PROJECTING.acquire(timeout=0.25):
                    if stop.is_set():
                        return  # no projection: stopped before its turn
            try:
                result["projection"] = _project(sess, target, space, lam, steps, stop, updates, whiten)
            finally:
                _PROJECTING.release()
        except Exception as e:  # reported to the page below
            result["error"] = e

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    loss = float("nan")
    try:
        while thread.is_alive() or not updates.empty():
            try:
                step, img, loss = updates.get(timeout=0.25)
            except queue.Empty:
                continue
            yield step, img, loss, None
    finally:
        stop.set()  # the user left or pressed Stop: end the worker too
    if "error" in result:
        err = result["error"]
        raise err if isinstance(err, UserError) else UserError(f"projection failed: {type(err).__name__}: {err}")
    if "projection" in result:
        proj = result["projection"]
        yield len(proj.losses["total"]), None, loss, proj


# ---------------------------------------------------------------------------------------- Local edit


def _local_edit_tab(demo: gr.Blocks, sessions: Sessions, limits: UploadLimits) -> None:
    names = sessions.names(STYLEMAP)
    with gr.Tab("Local edit", id="local"):
        if not names:
            gr.Markdown(NO_STYLEMAP, elem_id="local-message")
            return
        first = sessions.stylemap(names[0])
        res = first.resolution
        kinds = [(label, kind) for kind, label in PICTURE_KINDS.items()]
        lmodel = gr.Dropdown(names, value=names[0], label="StyleMapGAN model", elem_id="local-model")
        with gr.Row():
            with gr.Column(scale=1):
                src_kind = gr.Radio(kinds, value="synthfaces", label="Source: the image to edit", elem_id="src-kind")
                # The kind shows and hides these groups, never the seed box itself (`whole_number_input`).
                with gr.Group(elem_id="src-seed-group") as src_seed_group:
                    src_seed = whole_number_input(gr.Number(0, label="Source seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="src-seed"))
                with gr.Group(visible=False, elem_id="src-file-group") as src_file_group:
                    src_file = gr.File(label=f"Source image or its stylemap .npz (at most {megabytes(limits.max_bytes)} MB)", file_types=["image", ".npz"], type="filepath",
                                       elem_id="src-file", height=120)
                src_view = gr.Image(label="Source", type="numpy", interactive=False, height=DISPLAY, width=DISPLAY,
                                    elem_id="src-image", format="png")
            with gr.Column(scale=1):
                ref_kind = gr.Radio(kinds, value="synthfaces", label="Reference: where the region comes from", elem_id="ref-kind")
                with gr.Group(elem_id="ref-seed-group") as ref_seed_group:
                    ref_seed = whole_number_input(gr.Number(1, label="Reference seed", precision=0, minimum=0, maximum=MAX_SEED, elem_id="ref-seed"))
                with gr.Group(visible=False, elem_id="ref-file-group") as ref_file_group:
                    ref_file = gr.File(label=f"Reference image or its stylemap .npz (at most {megabytes(limits.max_bytes)} MB)", file_types=["image", ".npz"], type="filepath",
                                       elem_id="ref-file", height=120)
                editor = capped_paint_editor(gr.ImageEditor(label="Paint the region", type="numpy", image_mode="RGBA", sources=(),
                                        transforms=(), layers=False, canvas_size=(PAINT, PAINT), format="png", height=DISPLAY + 60,
                                        brush=gr.Brush(default_size=max(4, PAINT // 12), colors=["#ff00ff"], color_mode="fixed"),
                                        eraser=gr.Eraser(default_size=max(4, PAINT // 12)), elem_id="ref-editor"))
                mask_kind = gr.Radio(_mask_choices(res), value=MASK_DRAWN, label="Mask", elem_id="mask-kind")
            with gr.Column(scale=1):
                result = gr.Image(label="Result", type="numpy", interactive=False, height=DISPLAY, width=DISPLAY,
                                  elem_id="local-result", format="png")
                status = gr.Markdown("", elem_id="local-status")
                strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Blend strength", elem_id="strength")
                with gr.Row():
                    dx = gr.Slider(-(res // 2), res // 2, value=0, step=1, label="Shift dx (px)", elem_id="dx")
                    dy = gr.Slider(-(res // 2), res // 2, value=0, step=1, label="Shift dy (px)", elem_id="dy")
                per_layer = gr.Checkbox(False, label="Blend every layer's stylemap (sharper outline; a shift always does)",
                                        elem_id="per-layer")
                grow = gr.Slider(0, res // 4, value=0, step=1, elem_id="grow",
                                 label="Grow the mask (px): neighbouring cells carry more of the part, and change more around it")
                refine = gr.Checkbox(False, elem_id="refine",
                                     label=f"Refine encoded pictures ({REFINE_STEPS} optimisation steps each, once: a closer "
                                           "reconstruction for seconds per picture)")

    # The strokes as a grey image, kept server-side: reading the editor's value costs the browser an
    # export of its canvas, so only painting does; slider changes reuse the kept strokes.
    drawn = gr.State(None)
    src_inputs, ref_inputs = [lmodel, src_kind, src_seed, src_file], [lmodel, ref_kind, ref_seed, ref_file]
    edit_inputs = [*src_inputs, *ref_inputs[1:], drawn, mask_kind, dx, dy, strength, per_layer, grow, refine]

    def view(name, kind, seed, f, size=DISPLAY):  # type: ignore[no-untyped-def]
        """The picture as shown (None until it can be made: the edit's status says why)."""
        try:
            image, _ = sessions.stylemap(name).picture(Picture(kind, whole_seed("seed", seed), f), limits)
        except UserError:
            return None
        return enlarge(to_rgb8(image[0]), size)

    def show_reference(name, kind, seed, f, value):  # type: ignore[no-untyped-def]
        """The reference as the editor's background; strokes already painted stay (same size only)."""
        background = view(name, kind, seed, f, PAINT)
        layers = [layer for layer in (value or {}).get("layers") or []
                  if background is not None and layer is not None and layer.shape[:2] == background.shape[:2]]
        return {"background": background, "layers": layers, "composite": None}, _drawn_alpha({"layers": layers})

    def run_edit(name, sk, ss, sf, rk, rs, rf, alpha, mk, dx_v, dy_v, strength_v, per_layer_v, grow_v, refine_v):  # type: ignore[no-untyped-def]
        """The result, or the result left as it was and the reason in the status line."""
        try:
            sess = sessions.stylemap(name)
            shift = whole("shift dx", dx_v), whole("shift dy", dy_v)
            mask = sess.mask(mk, alpha if mk == MASK_DRAWN else None, whole("grow", grow_v, 0))
            out = sess.edit(Picture(sk, whole_seed("source seed", ss), sf), Picture(rk, whole_seed("reference seed", rs), rf), mask, shift,
                            bool(per_layer_v), float(strength_v), limits, REFINE_STEPS if refine_v else 0)
        except UserError as e:
            return gr.update(), f"**{e}**"
        return enlarge(out.image, DISPLAY), _edit_status(out, mk, *shift)

    def on_paint(value, name, sk, ss, sf, rk, rs, rf, _old, *rest):  # type: ignore[no-untyped-def]
        """New strokes: keep them, then the edit with them."""
        alpha = _drawn_alpha(value)
        return alpha, *run_edit(name, sk, ss, sf, rk, rs, rf, alpha, *rest)

    def check_upload(name, f):  # type: ignore[no-untyped-def]
        """Encode an uploaded picture now (once: it is kept), or say why it can't be used and clear it."""
        try:
            sessions.stylemap(name).picture(Picture("upload", 0, f), limits)
        except UserError as e:
            gr.Warning(str(e))
            return None
        return f

    def on_kind(kind):  # type: ignore[no-untyped-def]
        """The seed's group or the file's. An update sent to the seed box itself would make Gradio
        replace it, for this session, with a fresh copy that lacks `whole_number_input`'s check."""
        return gr.update(visible=kind != "upload"), gr.update(visible=kind == "upload")

    def on_model(name):  # type: ignore[no-untyped-def]
        r = sessions.stylemap(name).resolution
        choices = _mask_choices(r)
        return (gr.update(minimum=-(r // 2), maximum=r // 2, value=0), gr.update(minimum=-(r // 2), maximum=r // 2, value=0),
                gr.update(choices=choices, value=MASK_DRAWN), gr.update(maximum=r // 4, value=0))

    fast: dict[str, Any] = dict(trigger_mode="always_last", show_progress="hidden", concurrency_id="local-edit", concurrency_limit=4)
    src_kind.change(on_kind, src_kind, [src_seed_group, src_file_group], queue=False)
    ref_kind.change(on_kind, ref_kind, [ref_seed_group, ref_file_group], queue=False)
    src_file.upload(check_upload, [lmodel, src_file], src_file)
    ref_file.upload(check_upload, [lmodel, ref_file], ref_file)
    gr.on([src_kind.change, src_seed.change, src_file.change], view, src_inputs, src_view, **fast).then(
        run_edit, edit_inputs, [result, status], **fast)
    gr.on([ref_kind.change, ref_seed.change, ref_file.change], show_reference, [*ref_inputs, editor], [editor, drawn], **fast).then(
        run_edit, edit_inputs, [result, status], **fast)
    editor.input(on_paint, [editor, *edit_inputs], [drawn, result, status], **fast)
    editor.clear(show_reference, [*ref_inputs, editor], [editor, drawn]).then(run_edit, edit_inputs, [result, status])
    gr.on([mask_kind.change, dx.change, dy.change, strength.change, per_layer.change, grow.change, refine.change], run_edit,
          edit_inputs, [result, status], **fast)
    demo.load(view, src_inputs, src_view).then(show_reference, [*ref_inputs, editor], [editor, drawn]).then(
        run_edit, edit_inputs, [result, status])
    lmodel.change(on_model, lmodel, [dx, dy, mask_kind, grow]).then(view, src_inputs, src_view).then(
        show_reference, [*ref_inputs, editor], [editor, drawn]).then(run_edit, edit_inputs, [result, status])


def _mask_choices(resolution: int) -> list[tuple[str, str]]:
    """The brush, and the synthfaces face regions where the model is large enough for them."""
    from latentatlas.data.synthfaces import MIN_RESOLUTION, REGIONS

    regions = [(f"{r} (synthfaces region)", r) for r in REGIONS] if resolution >= MIN_RESOLUTION else []
    return [("drawn with the brush", MASK_DRAWN), *regions]


def _drawn_alpha(value: dict[str, Any] | None) -> np.ndarray | None:
    """The strokes of the editor's layers as one grey image [H, W] (their largest alpha), or None."""
    layers = [np.asarray(layer) for layer in (value or {}).get("layers") or [] if layer is not None]
    alphas = [layer[..., 3] for layer in layers if layer.ndim == 3 and layer.shape[-1] == 4]
    if not alphas:
        return None
    alphas = [a for a in alphas if a.shape == alphas[0].shape]
    return np.max(np.stack(alphas), axis=0)


def _edit_status(out: LocalEdit, mask_kind: str, dx: int, dy: int) -> str:
    """The status line under the result: how much of the stylemap came from the reference, and the time."""
    if out.note and out.coverage == 0:
        if out.note != EMPTY_MASK_NOTE:  # a shift's own ways to select nothing (a faint mask, a region moved out): the note says which
            return f"Nothing selected: {out.note} · {out.ms:.0f} ms"
        hint = "paint on the reference with the brush" if mask_kind == MASK_DRAWN else "pick another region"
        return f"Nothing selected yet: {hint}. The result is the source as the model rebuilds it · {out.ms:.0f} ms"
    moved = f", moved by {dx},{dy} px" if (dx, dy) != (0, 0) else ""
    return f"{out.coverage:.0%} of the stylemap cells from the reference{moved} · {out.ms:.0f} ms"


# ---------------------------------------------------------------------------------------- shared


def finite(label: str, value: Any, what: str = "a finite number") -> float:
    """A widget's number as the page's API may send it: NaN, inf or no number a UserError naming
    the widget and asking for `what`. Gradio's bounds check passes NaN (it fails no comparison):
    a NaN psi drew NaN pictures without a word."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{label} {value!r}: give {what}") from None
    return require_number(label, number, what=what)


def whole(label: str, value: Any, default: int | None = None) -> int:
    """A widget's whole number (`finite`), None being `default` when there is one: int() of a NaN
    was 'cannot convert float NaN to integer' in the page."""
    if value is None and default is not None:
        return default
    return int(round(finite(label, value, "a whole number")))


def whole_seed(label: str, value: Any) -> int:
    """A seed widget's value (empty: 0), checked as every seed is (`io.errors.require_seed`)."""
    return require_seed(label, whole(label, value, 0))


def whole_number_input(number: gr.Number) -> gr.Number:
    """A precision-0 Number whose value is checked (`whole`) before Gradio's own rounding, which casts
    with int() too, so a NaN sent to the page's API ended there, before any handler. Wraps this
    instance's method (a Gradio component subclass would make Gradio write a .pyi beside this module),
    so no handler may send the box a gr.update: Gradio would go on, for that session, with a fresh
    copy built from the update, unchecked. Show and hide it through a container (Local edit's kinds)."""
    preprocess = number.preprocess

    def checked(payload: Any) -> Any:
        if payload is not None:
            try:
                whole(str(number.label or "number"), payload)
            except UserError as e:
                raise gr.Error(str(e)) from None
        return preprocess(payload)

    number.preprocess = checked  # type: ignore[method-assign]
    return number



def _params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths) -> ExploreParams:  # type: ignore[no-untyped-def]
    values = {}
    for i, v in enumerate(strengths):
        if v:
            values[(i // MAX_SLIDERS, i % MAX_SLIDERS)] = float(v)
    layers = None
    if restrict_v:
        start, end = whole("first layer", ls_v), whole("end layer", le_v)
        if end <= start:
            raise UserError("the end layer must come after the first layer")
        layers = (start, end)
    cutoff = whole("mixing layer", cut_v)
    return ExploreParams(  # the mix seed is read only when mixing is on (a cutoff of 0 is none)
        seed=whole_seed("seed", seed_v), psi=float(psi_v), tau=float(tau_v), strengths=values, layers=layers,
        mix_seed=whole_seed("mix seed", mix_v) if cutoff > 0 else None, mix_cutoff=cutoff,
        base=None if base is None else _projected_for(base, sess.name),
    )


def _project(sess: ModelSession, target, space: str, lam: float, steps: int, stop: threading.Event, updates: queue.Queue,  # type: ignore[no-untyped-def]
             whiten: bool = False):
    """The library projector with the loss `project` would pick for this model (`ModelSession.projection_loss`)."""
    from latentatlas.inversion.projector import ProjectorConfig, project

    g = sess.generator
    loss = sess.projection_loss()
    # 5000 samples for w's mean and spread, not the CLI's 10k: the page starts sooner, and the mean's
    # sampling error is 1/sqrt(5000) = 1.4 % of w's spread per dimension against 1.0 %.
    cfg = ProjectorConfig(space=space, steps=steps, prior_weight=lam, perceptual_weight=loss.perceptual_weight,
                          mse_weight=loss.mse_weight, w_avg_samples=5000, whiten=whiten)
    last: dict[str, float] = {"total": 0.0}

    def progress(step: int, losses: dict[str, float]) -> bool:
        last.update(losses)
        return stop.is_set()

    def preview(step: int, images) -> None:  # type: ignore[no-untyped-def]
        updates.put((step, images, last["total"]))

    # No sess.lock: renders go on beside a projection. The generator was frozen at load
    # (requires_grad False), so `project`'s `frozen` changes no flag, and its passes only read the
    # weights (values derived from them are cached on the tensors, the same whoever makes them).
    return project(g, target.to(g.device), loss.perceptual, cfg,
                   prior=sess.prior if (lam > 0 or whiten) else None, progress=progress, preview=preview, preview_every=10)


def serve(sessions: Sessions, host: str = "127.0.0.1", port: int = 7860, limits: UploadLimits = UploadLimits(),
          block: bool = True, announce: Callable[[str], None] | None = None) -> tuple[gr.Blocks, str]:
    """Start the app; returns (app, local URL). block=False returns at once (tests).

    `announce(url)` runs once the server listens: a port in use or an address this machine does
    not have was a Gradio traceback after the models had loaded and after the CLI had already
    said it was serving; now it is one line and nothing is announced."""
    demo = build_app(sessions, limits)
    demo.queue(default_concurrency_limit=2, max_size=32)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts to fetch
    # The middleware must be on the app before it serves (Starlette refuses middleware added after);
    # launch passes app_kwargs to the FastAPI app it creates. num_workers=0: Gradio's static-file
    # workers (GRADIO_NUM_WORKERS) are servers of their own with the same file= route, without it.
    from starlette.middleware import Middleware

    try:
        _, url, _ = demo.launch(server_name=host, server_port=port, max_file_size=limits.max_bytes, prevent_thread_lock=True,
                                ssr_mode=False, quiet=True, footer_links=[], show_error=True, theme=theme, num_workers=0,
                                app_kwargs={"middleware": [Middleware(RefuseWebFileRoutes)]})
    except (OSError, OverflowError) as e:  # Gradio: "Cannot find empty port in range: P-P" for a port in use or a foreign address
        raise UserError(f"cannot listen at {host}:{port} ({str(e).split('.')[0]}): if the port is in use or the address "
                        "is not this machine's, give another --port or --host") from None
    if announce is not None:
        announce(url)
    if block:
        demo.block_thread()
    return demo, url
