"""The Gradio web app: Explore, Interpolate and Project tabs over `app.session`.

A thin layer: widgets in, `ExploreParams` or a projection out. Models are chosen from a
fixed list made at start-up (bundled names and paths given on the command line); nothing a
web user types is ever opened as a path. Uploads are capped in bytes by the server and in
pixels before decoding; a bad upload is a message in the page, never a crash. Projections
run one at a time (a queue) in a worker thread that the Stop button ends.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network at run time

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from latentatlas.app.session import ExploreParams, ModelSession, enlarge, to_rgb8  # noqa: E402
from latentatlas.app.uploads import UploadLimits, load_upload  # noqa: E402
from latentatlas.io.errors import UserError  # noqa: E402

MAX_SETS = 3  # direction sets shown (e.g. GANSpace, supervised, warped)
MAX_SLIDERS = 20  # sliders per set
DISPLAY = 256  # displayed image size (small models are enlarged, nearest neighbour)


class Sessions:
    """Models by name, loaded on first use and kept."""

    def __init__(self, models: dict[str, str], device: str, directions: dict[str, list[str]]) -> None:
        if not models:
            raise UserError("no model to serve")
        self.models, self.device, self.directions = models, device, directions
        self._loaded: dict[str, ModelSession] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self.models)

    def get(self, name: str) -> ModelSession:
        if name not in self.models:
            raise UserError(f"unknown model {name!r}")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = ModelSession(name, self.models[name], self.device, self.directions.get(name))
            return self._loaded[name]


def _user_errors(fn):  # type: ignore[no-untyped-def]
    """Show library UserErrors as a message in the page instead of a failed request."""

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise gr.Error(str(e)) from None

    wrapped.__name__ = fn.__name__
    return wrapped


def build_app(sessions: Sessions, limits: UploadLimits = UploadLimits()) -> gr.Blocks:
    first = sessions.get(sessions.names()[0])
    tmpdir = Path(tempfile.mkdtemp(prefix="latentatlas-app-"))
    with gr.Blocks(title="latentatlas", analytics_enabled=False) as demo:
        gr.Markdown("## latentatlas — map, search and travel a GAN's latent space")
        model = gr.Dropdown(sessions.names(), value=sessions.names()[0], label="Model", elem_id="model")
        base_state = gr.State(None)  # a projected w+ code being edited, or None (use the seed)
        proj_ctl = gr.State({})  # per-user projection control: {"stop": Event, "w": code}
        with gr.Tabs(selected="explore") as tabs:
            # ---------------------------------------------------------------- Explore
            with gr.Tab("Explore", id="explore"):
                with gr.Row():
                    with gr.Column(scale=1):
                        with gr.Row():
                            seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=2**32 - 1, elem_id="seed")
                            random_btn = gr.Button("Random", elem_id="random", scale=0)
                        psi = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Truncation psi", elem_id="psi")
                        tau = gr.Slider(0, 4, value=0, step=0.1, label="PCA compression tau (0 = off)", elem_id="tau",
                                        interactive=first.prior is not None)
                        with gr.Row():
                            mix_seed = gr.Number(1, label="Mix with seed", precision=0, minimum=0, elem_id="mix-seed")
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
                accordions = []
                for s in range(MAX_SETS):
                    ds = first.sets[s] if s < len(first.sets) else None
                    with gr.Accordion(ds.title if ds else "", open=s == 0, visible=ds is not None) as acc:
                        accordions.append(acc)
                        with gr.Row():
                            for k in range(MAX_SLIDERS):
                                name = ds.names[k] if ds and k < len(ds) else ""
                                sliders.append(gr.Slider(-3, 3, value=0, step=0.1, label=name, visible=bool(name),
                                                         min_width=160, elem_id=f"dir-{s}-{k}"))
            # ---------------------------------------------------------------- Interpolate
            with gr.Tab("Interpolate", id="interpolate"):
                with gr.Row():
                    with gr.Column(scale=1):
                        with gr.Row():
                            seed_a = gr.Number(0, label="From seed", precision=0, minimum=0, elem_id="seed-a")
                            seed_b = gr.Number(1, label="To seed", precision=0, minimum=0, elem_id="seed-b")
                        frames = gr.Slider(2, 60, value=10, step=1, label="Frames", elem_id="frames")
                        method = gr.Radio(["slerp", "lerp"], value="slerp", label="Interpolation")
                        space = gr.Radio(["z", "w"], value="w", label="Space")
                        ipsi = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Truncation psi")
                        interp_btn = gr.Button("Interpolate", variant="primary", elem_id="interpolate-btn")
                    with gr.Column(scale=2):
                        strip = gr.Image(label="Strip", type="numpy", interactive=False, elem_id="strip", format="png")
                        anim = gr.Image(label="Animation", type="filepath", interactive=False, elem_id="animation")
            # ---------------------------------------------------------------- Project
            with gr.Tab("Project", id="project"):
                with gr.Row():
                    with gr.Column(scale=1):
                        upload = gr.File(label=f"Image to project (at most {limits.max_bytes // 2**20} MB)", file_types=["image"],
                                         type="filepath", elem_id="upload")
                        pspace = gr.Radio(["w", "w+"], value="w", label="Space", elem_id="proj-space")
                        # benchmarks/projection_quality.py: on faces64, lambda >= 1e-4 wrecks the fit; 1e-6..1e-5 is the useful range.
                        prior_w = gr.Slider(0, 1e-4, value=0.0, step=1e-6, label="Gaussian prior weight lambda (0 = plain)",
                                            interactive=first.prior is not None, elem_id="prior")
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

        # ---------------------------------------------------------------- Explore events
        explore_inputs = [model, seed, psi, tau, mix_seed, mix_cutoff, restrict, layer_start, layer_end, base_state, *sliders]

        @_user_errors
        def render(name, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, *strengths):  # type: ignore[no-untyped-def]
            sess = sessions.get(name)
            params = _params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths)
            t = time.perf_counter()
            arr, _ = sess.render(params)
            ms = (time.perf_counter() - t) * 1000
            where = "a projected image" if base is not None else f"seed {int(seed_v or 0)}"
            return enlarge(arr, DISPLAY), f"{where} · {ms:.0f} ms"

        for widget in [seed, psi, tau, mix_seed, mix_cutoff, restrict, layer_start, layer_end, *sliders]:
            widget.change(render, explore_inputs, [image, source], trigger_mode="always_last", show_progress="hidden",
                          concurrency_id="render", concurrency_limit=4)
        seed.input(lambda: None, None, base_state)
        back_btn.click(lambda: None, None, base_state).then(render, explore_inputs, [image, source])
        random_btn.click(lambda: int(np.random.randint(0, 2**31)), None, seed)

        def on_model(name):  # type: ignore[no-untyped-def]
            sess = sessions.get(name)
            updates: list[Any] = []
            for s in range(MAX_SETS):
                ds = sess.sets[s] if s < len(sess.sets) else None
                updates.append(gr.update(label=ds.title if ds else "", visible=ds is not None))
            for s in range(MAX_SETS):
                ds = sess.sets[s] if s < len(sess.sets) else None
                for k in range(MAX_SLIDERS):
                    name_k = ds.names[k] if ds and k < len(ds) else ""
                    updates.append(gr.update(label=name_k, visible=bool(name_k), value=0))
            n = sess.num_ws
            has_prior = sess.prior is not None
            updates += [gr.update(maximum=n, value=0), gr.update(maximum=n, value=0), gr.update(maximum=n, value=n),
                        gr.update(interactive=has_prior, value=0), gr.update(interactive=has_prior, value=0), None]
            return updates

        model.change(on_model, model, [*accordions, *sliders, mix_cutoff, layer_start, layer_end, tau, prior_w, base_state]).then(
            render, explore_inputs, [image, source])
        demo.load(render, explore_inputs, [image, source])

        @_user_errors
        def download_code(name, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, *strengths):  # type: ignore[no-untyped-def]
            from latentatlas.latent.codes import save_codes

            sess = sessions.get(name)
            code = sess.edited_code(_params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths))
            folder = Path(tempfile.mkdtemp(dir=tmpdir))
            path = folder / (f"{name}-seed{int(seed_v or 0)}.npz" if base is None else f"{name}-projected.npz")
            save_codes(path, code.to("cpu"), model=name)
            return gr.update(value=str(path), visible=True)

        code_btn.click(download_code, explore_inputs, code_file)

        # ---------------------------------------------------------------- Interpolate events
        @_user_errors
        def run_interpolation(name, a, b, n, meth, sp, p):  # type: ignore[no-untyped-def]
            import torch

            from latentatlas.io.images import save_animation

            sess = sessions.get(name)
            with sess.lock:
                out = sess.interpolation(int(a or 0), int(b or 0), int(n), meth, sp, float(p))
            strip_arr = np.concatenate(list(out), axis=1)
            gif = Path(tempfile.mkdtemp(dir=tmpdir)) / "interpolation.gif"
            frames_t = torch.from_numpy(np.concatenate([out, out[::-1]])).permute(0, 3, 1, 2).float() / 127.5 - 1
            save_animation(gif, torch.nn.functional.interpolate(frames_t, scale_factor=max(1, DISPLAY // out.shape[1]), mode="nearest"), fps=12)
            return strip_arr, str(gif)

        interp_btn.click(run_interpolation, [model, seed_a, seed_b, frames, method, space, ipsi], [strip, anim])

        # ---------------------------------------------------------------- Project events
        def run_projection(name, file, sp, lam, n_steps, ctl):  # type: ignore[no-untyped-def]
            try:
                sess = sessions.get(name)
                target, notes = load_upload(file, sess.generator.img_resolution, limits)
            except UserError as e:
                raise gr.Error(str(e)) from None
            target_arr = enlarge(to_rgb8(target[0]), DISPLAY)
            note = f" ({'; '.join(notes)})" if notes else ""
            yield target_arr, None, f"starting{note}", gr.update(interactive=False)
            stop = threading.Event()
            ctl["stop"] = stop
            updates: queue.Queue = queue.Queue()
            result: dict[str, Any] = {}

            def work() -> None:
                try:
                    result["projection"] = _project(sess, target, sp, float(lam), int(n_steps), stop, updates)
                except Exception as e:  # reported in the page below
                    result["error"] = e

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            try:
                while thread.is_alive() or not updates.empty():
                    try:
                        step, img, losses = updates.get(timeout=0.25)
                    except queue.Empty:
                        continue
                    yield target_arr, enlarge(to_rgb8(img[0]), DISPLAY), f"step {step + 1}/{int(n_steps)} · loss {losses:.4f}", gr.update()
            finally:
                stop.set()  # the user left or pressed Stop: end the worker too
            if "error" in result:
                err = result["error"]
                raise gr.Error(str(err) if isinstance(err, UserError) else f"projection failed: {type(err).__name__}: {err}")
            proj = result["projection"]
            ctl["w"] = proj.ws[0].cpu().numpy()
            mse = float((proj.images.cpu() - target).square().mean())
            stopped = " (stopped early)" if stop.is_set() and len(proj.losses["total"]) < int(n_steps) else ""
            yield (target_arr, enlarge(to_rgb8(proj.images[0].cpu()), DISPLAY),
                   f"done{stopped}: {len(proj.losses['total'])} steps, pixel MSE {mse:.4f}{note}", gr.update(interactive=True))

        proj_btn.click(run_projection, [model, upload, pspace, prior_w, steps, proj_ctl],
                                    [target_view, recon_view, status, to_explore], concurrency_id="projection", concurrency_limit=1)

        def stop_projection(ctl):  # type: ignore[no-untyped-def]
            if "stop" in ctl:
                ctl["stop"].set()

        stop_btn.click(stop_projection, proj_ctl, None, queue=False)
        def on_upload(name, f):  # type: ignore[no-untyped-def]
            try:
                target, notes = load_upload(f, sessions.get(name).generator.img_resolution, limits)
            except UserError as e:  # say why, and clear the field so another file can be dropped
                gr.Warning(str(e))
                return None, None, ""
            return enlarge(to_rgb8(target[0]), DISPLAY), f, "; ".join(notes)

        upload.upload(on_upload, [model, upload], [target_view, upload, status])

        def send_to_explore(ctl):  # type: ignore[no-untyped-def]
            if "w" not in ctl:
                raise gr.Error("project an image first")
            return ctl["w"], gr.Tabs(selected="explore")

        to_explore.click(send_to_explore, proj_ctl, [base_state, tabs]).then(render, explore_inputs, [image, source])
    return demo


def _params(sess, seed_v, psi_v, tau_v, mix_v, cut_v, restrict_v, ls_v, le_v, base, strengths) -> ExploreParams:  # type: ignore[no-untyped-def]
    values = {}
    for i, v in enumerate(strengths):
        if v:
            values[(i // MAX_SLIDERS, i % MAX_SLIDERS)] = float(v)
    layers = None
    if restrict_v:
        start, end = int(ls_v), int(le_v)
        if end <= start:
            raise UserError("the end layer must come after the first layer")
        layers = (start, end)
    return ExploreParams(
        seed=int(seed_v or 0), psi=float(psi_v), tau=float(tau_v), strengths=values, layers=layers,
        mix_seed=int(mix_v or 0), mix_cutoff=int(cut_v), base=base,
    )


def _project(sess: ModelSession, target, space: str, lam: float, steps: int, stop: threading.Event, updates: queue.Queue):  # type: ignore[no-untyped-def]
    """The library projector with the loss the CLI picks for synthfaces models (factor features + MSE)."""
    from latentatlas.inversion.losses import factor_feature_distance
    from latentatlas.inversion.projector import ProjectorConfig, project

    g = sess.generator
    predictor = sess.predictor()
    cfg = ProjectorConfig(space=space, steps=steps, prior_weight=lam, mse_weight=1.0, w_avg_samples=5000)
    last: dict[str, float] = {"total": 0.0}

    def progress(step: int, losses: dict[str, float]) -> bool:
        last.update(losses)
        return stop.is_set()

    def preview(step: int, images) -> None:  # type: ignore[no-untyped-def]
        updates.put((step, images, last["total"]))

    with sess.lock:
        return project(g, target.to(g.device), factor_feature_distance(predictor.features), cfg,
                       prior=sess.prior if lam > 0 else None, progress=progress, preview=preview, preview_every=10)


def serve(sessions: Sessions, host: str = "127.0.0.1", port: int = 7860, limits: UploadLimits = UploadLimits(),
          block: bool = True) -> tuple[gr.Blocks, str]:
    """Start the app; returns (app, local URL). block=False returns at once (tests)."""
    demo = build_app(sessions, limits)
    demo.queue(default_concurrency_limit=2, max_size=32)
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])  # no web fonts to fetch
    _, url, _ = demo.launch(server_name=host, server_port=port, max_file_size=limits.max_bytes, prevent_thread_lock=not block,
                            ssr_mode=False, quiet=not block, footer_links=[], show_error=True, theme=theme)
    return demo, url
