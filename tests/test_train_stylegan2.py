import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from latentatlas.io.checkpoints import load_model
from latentatlas.io.errors import UserError
from latentatlas.models.stylegan2 import Discriminator, DiscriminatorConfig
from latentatlas.training.stylegan2 import STATE_FILE, TrainConfig, train

TINY = dict(resolution=16, batch=8, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16,
            snapshot_kimg=0.016, sample_kimg=0.032)
TINY_ARGS = ["--resolution", "16", "--batch", "8", "--z-dim", "16", "--w-dim", "16", "--mapping-layers", "2",
             "--channel-base", "128", "--channel-max", "16", "--device", "cpu"]


def test_official_discriminator_names_and_size():
    d = Discriminator(DiscriminatorConfig())
    assert sum(p.numel() for p in d.parameters()) == 29_012_513  # 1024 px config-f, as the official D
    assert "b1024.fromrgb.weight" in d.state_dict() and "b4.out.bias" in d.state_dict()


def test_training_updates_every_parameter_and_resumes_exactly(tmp_path):
    straight = train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "a", progress=False)
    assert straight["finished"] and straight["kimg"] == 0.048
    part = train(TrainConfig(total_kimg=0.024, **TINY), tmp_path / "b", progress=False)
    assert part["kimg"] == 0.024
    resumed = train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "b", progress=False)
    assert resumed["resumed_from_kimg"] == 0.024 and resumed["finished"]
    a, _ = load_model(tmp_path / "a" / "model.safetensors")
    b, _ = load_model(tmp_path / "b" / "model.safetensors")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    state = torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)
    assert state["step"] == 6 and float(state["pl_mean"]) > 0  # path-length regulariser ran
    assert float(state["G"]["mapping.w_avg"].abs().sum()) > 0  # w_avg is tracked (it starts at zero)
    # Every parameter of G, D and G_ema moved from where the run began (noise strengths, biases,
    # mapping, torgb, every discriminator block): no part is left out of its optimiser or the EMA.
    from latentatlas.training.stylegan2 import Trainer

    init = Trainer(TrainConfig(**TINY), tmp_path / "unused")
    for net, start in (("G", init.G), ("D", init.D), ("G_ema", init.G_ema)):
        params = dict(start.named_parameters())
        assert params and set(params) <= set(state[net]), net
        unchanged = [k for k, p in params.items() if torch.equal(state[net][k], p.detach().cpu())]
        assert not unchanged, (net, unchanged)
    # A grid every sample_kimg (32 images) and one where the run ends.
    assert sorted(p.name for p in (tmp_path / "a").glob("samples-*.png")) == ["samples-000000032.png", "samples-000000048.png"]
    with pytest.raises(UserError, match="other settings"):
        train(TrainConfig(total_kimg=0.1, **{**TINY, "lr": 0.001}), tmp_path / "a", progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "latentatlas.cli", *args]


# A training process whose second state write dies by SIGKILL half-way through the temp file.
_KILLED_MID_WRITE = """
import io, json, os, signal, sys
import torch
from latentatlas.training.stylegan2 import STATE_FILE, TrainConfig, train

real_save, writes = torch.save, []

def save(obj, f, *args, **kwargs):
    if STATE_FILE in os.path.basename(str(f)):  # the state, or the temp file it is written to
        writes.append(f)
        if len(writes) == 2:
            buf = io.BytesIO()
            real_save(obj, buf)
            with open(f, "wb") as out:
                out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

torch.save = save
train(TrainConfig(**json.loads(sys.argv[2])), sys.argv[1], progress=False)
"""


def test_kill_minus_nine_mid_write_resumes_from_last_checkpoint(tmp_path):
    from pathlib import Path

    run = tmp_path / "run"
    cfg = dict(TINY, total_kimg=0.032, snapshot_kimg=0.008)  # a state write after every step of 8 images
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(run), json.dumps(cfg)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = torch.load(run / STATE_FILE, weights_only=True)  # the first write, whole
    assert saved["nimg"] == 8 and saved["step"] == 1
    (half,) = run.glob(f".{STATE_FILE}.*.tmp.pt")  # the second, which the kill cut short
    assert 0 < half.stat().st_size
    # Cut short: its zip archive has no central directory (the end of the file never came).
    with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading zip archive: failed finding central directory"):
        torch.load(half, weights_only=True)
    result = train(TrainConfig(**{**cfg, "total_kimg": 0.016}), run, progress=False)
    assert result["resumed_from_kimg"] == 0.008 and result["finished"] and result["kimg"] == 0.016
    assert not half.exists() and not list(run.glob(".*.tmp*")) and not list((run / "portable").glob(".*.tmp*"))


def test_sigterm_stops_after_the_step_and_saves_like_max_minutes(tmp_path):
    """What `timeout`, a scheduler or a closing session send: the run saves everything it saves
    at --max-minutes and says why it stopped, instead of losing the steps since its last snapshot."""
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", "--out", str(run), "--kimg", "20", "--sample-kimg", "0.008", *TINY_ARGS),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(run.glob("samples-*.png")):
        time.sleep(0.2)
    assert not (run / STATE_FILE).exists()  # no snapshot yet: snapshot_kimg is 50
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: saving the training state" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stopped_by"] == "SIGTERM" and not result["finished"]
    saved = torch.load(run / STATE_FILE, weights_only=True)
    assert saved["nimg"] == round(result["kimg"] * 1000) > 0
    assert (run / "portable" / "train.safetensors").exists() and (run / "model.safetensors").exists()


def test_a_second_ctrl_c_interrupts_at_once_and_the_handlers_are_put_back():
    from latentatlas.training.stop_signal import stop_on_signal

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signal(announce=False) as request:
            signal.raise_signal(signal.SIGINT)
            assert request.name == "SIGINT"  # the first only asks
            signal.raise_signal(signal.SIGINT)
            time.sleep(1.0)  # Python runs the handler between bytecodes
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_state_is_written_every_few_minutes_whatever_snapshot_kimg_says(tmp_path, monkeypatch):
    """A SIGKILL cannot be caught: the timed writes bound what it loses on a slow machine."""
    from latentatlas.training import common, stylegan2

    written: list[int] = []
    real_save = stylegan2.Trainer.save

    def counting_save(self):  # type: ignore[no-untyped-def]
        written.append(self.nimg)
        return real_save(self)

    monkeypatch.setattr(stylegan2.Trainer, "save", counting_save)
    cfg = dict(TINY, snapshot_kimg=1000.0)
    train(TrainConfig(total_kimg=0.032, **cfg), tmp_path / "a", progress=False)
    assert written == [32]  # at the end only
    written.clear()
    monkeypatch.setattr(common, "STATE_EVERY_MINUTES", 0.0)
    train(TrainConfig(total_kimg=0.032, **cfg), tmp_path / "b", progress=False)
    assert written == [8, 16, 24, 32, 32]  # every step, then at the end


def test_two_process_gloo_training_keeps_ranks_in_sync(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "latentatlas.cli", "train", "--out", str(tmp_path / "ddp"), "--kimg", "0.032", *TINY_ARGS]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    assert sorted(r["rank"] for r in results) == [0, 1] and all(r["world"] == 2 for r in results)
    assert results[0]["g_ema_checksum"] == results[1]["g_ema_checksum"]
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_portable_checkpoint_resumes_without_state_file(tmp_path):
    import shutil

    train(TrainConfig(total_kimg=0.024, **TINY), tmp_path / "a", progress=False)
    portable = tmp_path / "a" / "portable"
    assert {p.name for p in portable.iterdir()} == {"G.safetensors", "D.safetensors", "G_ema.safetensors", "train.safetensors"}
    shutil.copytree(portable, tmp_path / "b" / "portable")  # what travels to another machine
    res = train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "b", progress=False)
    assert res["resumed_from_kimg"] == 0.024 and res["finished"]
    train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "c", progress=False)  # the same run, uninterrupted
    # Same data and RNG; only Adam's second moments went through bf16, so close but not equal:
    # about 1e-3 of how far the run moved the weights (a resume that restores the networks or
    # the optimiser's moments not at all ends 60-100% of that away).
    from latentatlas.training.stylegan2 import Trainer

    start = Trainer(TrainConfig(**TINY), tmp_path / "unused").G_ema  # the weights the runs began from
    b, _ = load_model(tmp_path / "b" / "model.safetensors")
    c, _ = load_model(tmp_path / "c" / "model.safetensors")
    moved = max((y - z).abs().max().item() for y, z in zip(c.parameters(), start.parameters()))
    apart = max((x - y).abs().max().item() for x, y in zip(b.parameters(), c.parameters()))
    assert moved > 1e-3 and apart < 0.01 * moved, (apart, moved)


def test_a_portable_folder_mixed_from_two_saves_is_refused_and_its_temp_files_go(tmp_path):
    """The portable files are written one after another: a run killed between two leaves files of
    two saves, which resumed silently paired networks and optimiser states of different steps. A
    killed write also leaves a temp file there, which the folder's commit would carry along."""
    import shutil
    import subprocess
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.torch import save_file

    from latentatlas.io.atomic import atomic_path

    train(TrainConfig(total_kimg=0.016, **TINY), tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a" / "portable", tmp_path / "old")
    train(TrainConfig(total_kimg=0.032, **TINY), tmp_path / "a", progress=False)
    mixed = tmp_path / "b" / "portable"
    shutil.copytree(tmp_path / "old", mixed)
    shutil.copy(tmp_path / "a" / "portable" / "G.safetensors", mixed)  # killed after the first file
    try:
        with atomic_path(mixed / "D.safetensors") as tmp:
            leftover = mixed / tmp.name
            raise InterruptedError  # a SIGKILL in the second write leaves its temp file
    except InterruptedError:
        leftover.write_bytes(b"half")
    with pytest.raises(UserError, match=r"G.safetensors from the save at 32 images; D.safetensors, G_ema.safetensors, "
                                        r"train.safetensors from the save at 16 images.*resume from the run's state.pt"):
        train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "b", progress=False)
    assert not leftover.exists()
    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") and (repo / ".git").exists():  # a checkout: the temp name is one .gitignore matches
        ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", f"runs/faces64-narrow/portable/{leftover.name}"])
        assert ignored.returncode == 0
    # One save's files resume, and so do files written before the ids existed (the committed runs').
    shutil.copy(tmp_path / "old" / "G.safetensors", mixed)
    for path in mixed.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            meta, tensors = f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
        meta.pop("save_id")
        save_file(tensors, str(path), metadata=meta or None)
    assert train(TrainConfig(total_kimg=0.024, **TINY), tmp_path / "b", progress=False)["resumed_from_kimg"] == 0.016


def test_the_path_length_penalty_keeps_the_new_mean_in_its_graph_as_nvidia(tmp_path):
    """NVIDIA's loss.py: pl_mean = self.pl_mean.lerp(pl_lengths.mean(), pl_decay) enters the
    penalty with its gradient (the batch's own pull on the mean); only the stored mean is detached.
    The mean was detached before the penalty, which changes G's gradient by about pl_decay."""
    import math

    from latentatlas.training.stylegan2 import Trainer

    t = Trainer(TrainConfig(**TINY), tmp_path)
    cfg = t.cfg
    t.G.requires_grad_(True)
    params = list(t.G.parameters())

    def grads(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g if g is not None else torch.zeros_like(p) for g, p in
                zip(torch.autograd.grad(loss, params, allow_unused=True), params)]

    t.pl_mean = torch.tensor(0.3)
    torch.manual_seed(1)
    loss, _ = t._path_length_loss()
    ours, stored = grads(loss), t.pl_mean

    def official(detach: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """loss.py's lines, on the same draws (detach: the old code's mean)."""
        torch.manual_seed(1)
        gen_img, gen_ws = t._generate(cfg.batch // cfg.pl_batch_shrink)
        pl_noise = torch.randn_like(gen_img) / math.sqrt(gen_img.shape[2] * gen_img.shape[3])
        (pl_grads,) = torch.autograd.grad((gen_img * pl_noise).sum(), gen_ws, create_graph=True)
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        mean = pl_lengths.mean()
        pl_mean = torch.tensor(0.3).lerp(mean.detach() if detach else mean, cfg.pl_decay)
        loss_gpl = (pl_lengths - pl_mean).square() * cfg.pl_weight
        return grads((gen_img[:, 0, 0, 0] * 0 + loss_gpl).mean() * cfg.g_reg_interval), pl_mean.detach()

    reference, reference_mean = official(detach=False)
    assert torch.equal(stored, reference_mean) and not stored.requires_grad
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(ours, reference))
    detached, _ = official(detach=True)  # the test tells the two apart
    assert not all(torch.allclose(a, b, rtol=1e-5, atol=1e-8) for a, b in zip(ours, detached))


def test_the_regularisation_passes_step_every_parameter_as_nvidia(tmp_path):
    """NVIDIA's loss.py adds gen_img[:, 0, 0, 0] * 0 to the path-length loss and real_logits * 0
    to R1: the parameters a penalty does not reach (the toRGB biases, the critic's output bias)
    get a zero gradient, so Adam steps them too (its second moment decays, its step count goes
    on). Without, their gradient was None and Adam skipped them in those passes."""
    from latentatlas.training.stylegan2 import Trainer

    t = Trainer(TrainConfig(**TINY), tmp_path)
    t.train_step()  # step 0: the main and the regularisation pass of G and of D
    for opt, module in ((t.opt_G, t.G), (t.opt_D, t.D)):
        behind = [name for name, p in module.named_parameters() if float(opt.state[p]["step"]) != 2]
        assert behind == []


def test_a_narrow_generator_keeps_a_wide_critic(tmp_path):
    """--d-channel-base sizes the discriminator on its own (faces64-narrow: a 32-channel top block
    judged by a 128-channel critic); runs made before the setting existed resume unchanged."""
    from latentatlas.training.stylegan2 import Trainer

    narrow = {**TINY, "channel_base": 64}
    t = Trainer(TrainConfig(total_kimg=0.016, d_channel_base=256, **narrow), tmp_path / "a")
    assert t.G.synthesis.b16.conv1.weight.shape[0] == 4  # min(64 / 16, 16)
    assert t.D.b16.conv0.weight.shape[0] == 16  # min(256 / 16, 16): the critic's own width
    res = train(TrainConfig(total_kimg=0.016, d_channel_base=256, **narrow), tmp_path / "a", progress=False)
    assert res["finished"]
    with pytest.raises(UserError, match="d_channel_base"):  # resuming with another critic is refused
        train(TrainConfig(total_kimg=0.032, **narrow), tmp_path / "a", progress=False)
    saved = torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)["config"]
    assert saved["d_channel_base"] == 256

    # A run saved before d_channel_base existed has no such key: it resumes when the setting is left unset.
    from latentatlas.training.common import check_config

    older = {k: v for k, v in saved.items() if k != "d_channel_base"}
    check_config(older, {**saved, "d_channel_base": None}, 1, 1, tmp_path)
    with pytest.raises(UserError, match="d_channel_base"):
        check_config(older, saved, 1, 1, tmp_path)


def test_optimise_clamps_non_finite_gradients_and_ema_blends_parameters():
    from latentatlas.training import common

    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    w0, b0 = m.weight.detach().clone(), m.bias.detach().clone()
    inf = float("inf")
    coeff = torch.tensor([[float("nan"), inf, 1.0], [0.0, -inf, 2.0]])
    common.optimise([(m, opt)], (m.weight * coeff).sum() + 3 * m.bias.sum(), world=1)
    clamped = torch.tensor([[0.0, 1e5, 1.0], [0.0, -1e5, 2.0]])
    assert torch.equal(m.weight.detach(), w0 - clamped) and torch.allclose(m.bias.detach(), b0 - 3)

    src, ema = torch.nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        src.weight.uniform_(); src.bias.uniform_(); src.running_mean.uniform_()
        ema.weight.fill_(2.0); ema.bias.fill_(-1.0)
    src.num_batches_tracked += 7
    common.ema_update(ema, src, beta=0.9)
    assert torch.allclose(ema.weight, 0.9 * 2.0 + 0.1 * src.weight) and torch.allclose(ema.bias, 0.9 * -1.0 + 0.1 * src.bias)
    assert torch.equal(ema.running_mean, src.running_mean) and int(ema.num_batches_tracked) == 7


def test_a_resumed_run_may_change_its_batch_and_r1_gamma(tmp_path):
    first = train(TrainConfig(total_kimg=0.016, **TINY), tmp_path / "r", progress=False)
    assert first["kimg"] == 0.016
    resumed = train(TrainConfig(total_kimg=0.048, **{**TINY, "batch": 16, "r1_gamma": 1.0}), tmp_path / "r", progress=False)
    assert resumed["resumed_from_kimg"] == 0.016 and resumed["finished"] and resumed["kimg"] == 0.048
    state = torch.load(tmp_path / "r" / STATE_FILE, weights_only=True)
    assert state["step"] == 2 + 2 and state["config"]["batch"] == 16  # two steps of 8, then two of 16
    assert state["config"]["r1_gamma"] == 1.0
    with pytest.raises(UserError, match="other settings"):  # the architecture still may not change
        train(TrainConfig(total_kimg=0.1, **{**TINY, "channel_max": 32}), tmp_path / "r", progress=False)


def test_settings_the_processes_refuse_leave_no_run_folder(tmp_path, monkeypatch):
    from latentatlas.training import common

    empty = tmp_path / "no-images"
    empty.mkdir()
    with pytest.raises(UserError, match="no-images"):
        train(TrainConfig(total_kimg=0.016, **{**TINY, "data": str(empty)}), tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    # torchrun with 3 processes and --batch 8: refused before the folder is made (it was left empty)
    monkeypatch.setattr(common.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(common.dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(common.dist, "get_rank", lambda: 0)
    with pytest.raises(UserError, match="divisible by the number of processes"):
        train(TrainConfig(total_kimg=0.016, **TINY), tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()


def test_stats_log_keeps_tick_means_and_follows_the_checkpoints(tmp_path, monkeypatch):
    import math
    import shutil

    import torch.nn.functional as F

    from latentatlas.training import stats_log
    from latentatlas.training.stylegan2 import Trainer

    monkeypatch.setattr(stats_log, "TICK_KIMG", 0.016)  # a tick every two steps of 8
    write_samples = Trainer.write_samples

    def slow_samples(self):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return write_samples(self)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "write_samples", slow_samples)  # the grid at 0.032 kimg, in the third tick
        train(TrainConfig(total_kimg=0.048, **TINY), tmp_path / "a", progress=False)
    log = tmp_path / "a" / stats_log.LOG_FILE
    lines = stats_log.read_lines(log)
    assert [line["kimg"] for line in lines] == [0.016, 0.032, 0.048]
    for line in lines:
        assert all(math.isfinite(line[k]) for k in ("G", "D", "D_real", "D_fake", "sec_per_kimg", "maintenance_sec"))
        # softplus is convex: the mean loss is at least the loss of the mean scores
        assert line["D"] >= float(F.softplus(torch.tensor(line["D_fake"])) + F.softplus(torch.tensor(-line["D_real"]))) - 1e-6
    assert lines[2]["maintenance_sec"] >= 1.0  # the loop times the (slow) sample grid as maintenance
    assert "R1" in lines[0] and "R1" not in lines[1]  # lazy R1 ran at step 0 only (every 16 steps)
    assert "PL" in lines[0] and "PL" not in lines[1] and "PL" in lines[2]  # steps 0 and 4

    # A process killed after its last checkpoint leaves lines past it, the last one cut short.
    with log.open("a") as f:
        f.write(json.dumps({"kimg": 0.056, "G": 1.0}) + "\n" + '{"kimg": 0.0')
    train(TrainConfig(total_kimg=0.064, **TINY), tmp_path / "a", progress=False)
    resumed = stats_log.read_lines(log)
    assert [line["kimg"] for line in resumed] == [0.016, 0.032, 0.048, 0.064] and resumed[:3] == lines

    # The portable checkpoint carries the log to another machine, where it goes on.
    shutil.copytree(tmp_path / "a" / "portable", tmp_path / "b" / "portable")
    train(TrainConfig(total_kimg=0.080, **TINY), tmp_path / "b", progress=False)
    travelled = stats_log.read_lines(tmp_path / "b" / stats_log.LOG_FILE)
    assert travelled[:4] == resumed and [line["kimg"] for line in travelled][4:] == [0.08]


def test_tick_speed_leaves_out_maintenance(tmp_path, monkeypatch):
    """Seconds per kimg count the training steps only; samples, snapshots and the monitor are the
    tick's maintenance_sec (NVIDIA's Timing/maintenance_sec). A fake clock makes it exact."""
    from types import SimpleNamespace

    from latentatlas.training import stats_log

    clock = [100.0]
    monkeypatch.setattr(stats_log, "time", SimpleNamespace(time=lambda: clock[0]))
    ticks = stats_log.TickLog(tmp_path, 0)
    clock[0] += 1.0
    ticks.add({"G": 1.0}, 2000)
    with ticks.maintenance():
        clock[0] += 10.0
    clock[0] += 1.0
    ticks.add({"G": 3.0}, 4000)  # the tick ends at 4 kimg: 12 s, 10 of them maintenance
    clock[0] += 2.0
    ticks.add({"G": 5.0}, 8000)  # the next: 2 s of steps, none of maintenance
    lines = stats_log.read_lines(tmp_path / stats_log.LOG_FILE)
    assert lines == [{"kimg": 4.0, "sec_per_kimg": 0.5, "maintenance_sec": 10.0, "G": 2.0},
                     {"kimg": 8.0, "sec_per_kimg": 0.5, "maintenance_sec": 0.0, "G": 5.0}]


def _agree_on_stop(rank: int, port: int, results) -> None:  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    from latentatlas.training.common import any_process, finish_distributed

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    results[rank] = (any_process([rank == 0, False], 2, torch.device("cpu")), any_process([False, rank == 1], 2, torch.device("cpu")))
    finish_distributed()


def test_processes_agree_when_one_runs_out_of_time():
    """--max-minutes under torchrun: each process's clock passes the limit at its own step; one
    that stopped (or wrote the state, which gathers every process's random streams) alone would
    leave the other waiting in its next collective."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_agree_on_stop, args=(port, results), nprocs=2, join=True)
    assert dict(results) == {0: ([True, False], [False, True]), 1: ([True, False], [False, True])}


def _next_z(trainer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The z the trainer's next step draws first (on CPU, from torch's generator), left undrawn."""
    with torch.random.fork_rng(devices=[]):
        return torch.randn(trainer.batch_gpu, trainer.G.z_dim)


def _resume_each_rank(rank: int, port: int, run: str, results) -> None:  # type: ignore[no-untyped-def]
    import contextlib
    import io
    from pathlib import Path

    import torch.distributed as dist
    from safetensors import safe_open
    from safetensors.torch import save_file

    from latentatlas.training.common import finish_distributed
    from latentatlas.training.stylegan2 import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    cfg, folder = TrainConfig(total_kimg=0.032, **TINY), Path(run)
    first = Trainer(cfg, folder)
    z_first = _next_z(first)
    for _ in range(2):
        first.train_step()
    first.save()
    first.save_portable()  # both collectives: rank 0 has written both before any process builds the next trainer
    z_next, data_next = _next_z(first), first.data_gen.get_state()
    out = {}
    for source in ("state", "portable"):
        t = Trainer(cfg, folder)
        t.load(folder / STATE_FILE) if source == "state" else t.load_portable(folder / "portable")
        out[source] = torch.equal(_next_z(t), z_next) and torch.equal(t.data_gen.get_state(), data_next)
    # The portable file as a latentatlas that kept rank 0's streams only wrote it (the committed runs').
    dist.barrier()
    if rank == 0:
        path = folder / "portable" / "train.safetensors"
        with safe_open(str(path), framework="pt") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        legacy = {k: v for k, v in tensors.items() if not k.endswith(".1")}
        legacy.update({name: legacy.pop(f"{name}.0") for name in ("rng", "data_rng")})
        save_file(legacy, str(path), metadata=meta)
    dist.barrier()
    draws, told = [], io.StringIO()
    for _ in range(2):
        t = Trainer(cfg, folder)
        with contextlib.redirect_stderr(told):
            t.load_portable(folder / "portable")
        draws.append(_next_z(t))  # one stderr line a resume
    out["legacy"] = (torch.equal(draws[0], z_next), torch.equal(draws[0], draws[1]), torch.equal(draws[0], z_first),
                     told.getvalue())
    results[rank] = out
    finish_distributed()


def test_every_process_resumes_its_own_random_streams(tmp_path):
    """Each torchrun process draws its own z, noise and data. Every one's streams are saved (state
    and portable checkpoint) and each takes its own back, where only rank 0's were and the others
    replayed their first chunk's draws. A stream the file lacks (here rank 1's in a file written
    before; on CUDA also a CPU-saved run's GPU stream) is reseeded from the run's seed, the rank and
    the images seen: no replay of the first step's z, the same on every resume, said on stderr."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_resume_each_rank, args=(port, str(tmp_path / "run"), results), nprocs=2, join=True)
    assert results[0]["state"] and results[1]["state"]
    assert results[0]["portable"] and results[1]["portable"]
    assert results[0]["legacy"] == (True, True, False, "")  # rank 0's streams, under the plain names
    same_as_saved, same_each_time, replays_first_step, told = results[1]["legacy"]
    assert not same_as_saved and same_each_time and not replays_first_step
    assert told.count("\n") == 2 and "no saved CPU, data-order random state for process 1" in told and "reseeded" in told


def test_factor_monitor_measures_spread_and_follows_the_checkpoints(tmp_path):
    """The monitor's std ratios read the samples' spread (renders of one face: none; fresh renders:
    the renders' own), and a run with --metrics-kimg writes a line on schedule and where it stops,
    trimmed on resume and carried by the portable checkpoint like stats.jsonl."""
    import shutil

    from latentatlas.data import synthfaces
    from latentatlas.training import stats_log
    from latentatlas.training.factor_monitor import FactorMonitor

    class Renders(torch.nn.Module):  # a stand-in generator: z -> renders (one face, or one per z)
        z_dim, device = 4, torch.device("cpu")

        def __init__(self, one_face: bool) -> None:
            super().__init__()
            self.one_face, self.calls = one_face, 0

        def forward(self, z, truncation_psi=1.0):  # type: ignore[no-untyped-def]
            self.calls += 1
            seed = 5 if self.one_face else 10_000 + 1000 * self.calls
            images, _ = synthfaces.sample(len(z), seed=seed, resolution=32)
            return images[:1].expand(len(z), -1, -1, -1) if self.one_face else images

    monitor = FactorMonitor(tmp_path, num=300, resolution=32, device=torch.device("cpu"))
    same = monitor.measure(Renders(one_face=True), kimg=1.0)
    fresh = monitor.measure(Renders(one_face=False), kimg=2.0)
    assert set(same["std_ratio"]) == set(synthfaces.FACTOR_NAMES) and same["num"] == 300
    assert max(same["std_ratio"].values()) < 0.05 and same["factors_under_half"] == sorted(synthfaces.FACTOR_NAMES)
    assert fresh["mean_std_ratio_capped"] > 0.85 and fresh["factors_under_half"] == []
    assert fresh["factor_fid"] < same["factor_fid"] / 10
    assert [line["kimg"] for line in stats_log.read_lines(tmp_path / stats_log.METRICS_FILE)] == [1.0, 2.0]

    cfg = dict(TINY, metrics_kimg=0.016, metrics_num=64)
    train(TrainConfig(total_kimg=0.040, **cfg), tmp_path / "a", progress=False)
    log = tmp_path / "a" / stats_log.METRICS_FILE
    lines = stats_log.read_lines(log)
    assert [line["kimg"] for line in lines] == [0.016, 0.032, 0.04]  # on schedule, then where it stopped
    with log.open("a") as f:
        f.write(json.dumps({"kimg": 0.056}) + "\n")  # past the checkpoint: dropped on resume
    shutil.copytree(tmp_path / "a" / "portable", tmp_path / "b" / "portable")
    train(TrainConfig(total_kimg=0.048, **cfg), tmp_path / "a", progress=False)
    assert [line["kimg"] for line in stats_log.read_lines(log)] == [0.016, 0.032, 0.04, 0.048]
    train(TrainConfig(total_kimg=0.048, **cfg), tmp_path / "b", progress=False)
    assert stats_log.read_lines(tmp_path / "b" / stats_log.METRICS_FILE)[:3] == lines
    with pytest.raises(UserError, match="synthfaces"):
        TrainConfig(data=str(tmp_path), metrics_kimg=10)


def test_keep_best_keeps_the_ema_generator_of_the_best_monitor_line_across_chunks(tmp_path, monkeypatch):
    """--keep-best: RUN/best.safetensors is the EMA generator as it was at the best line so far (not
    the last), a resumed chunk ranks its lines against the kept one (read back from the file, so a
    worse line after a resume keeps it), and the ranking may change on resume. A kept model past the
    point a run resumes from (here: a fresh run in the folder) is moved aside, not ranked against;
    a diverged line (NaN FID) never becomes the best for good."""
    import shutil

    from latentatlas.io.checkpoints import read_model_metadata
    from latentatlas.training import factor_monitor

    script = {0.008: (5.0, 3), 0.016: (3.0, 4), 0.024: (4.0, 2), 0.032: (6.0, 6), 0.040: (2.0, 5), 0.048: (9.0, 1)}
    weights_at: dict[float, float] = {}

    def checksum(generator) -> float:  # type: ignore[no-untyped-def]
        return float(sum(p.half().double().sum() for p in generator.parameters()))  # the kept file is fp16

    def scripted_measure(self, generator, kimg):  # type: ignore[no-untyped-def]
        weights_at[kimg] = checksum(generator)
        fid, under = script[kimg]
        return {"kimg": kimg, "num": 32, "factor_fid": fid, "factors_under_half": [f"f{i}" for i in range(under)]}

    monkeypatch.setattr(factor_monitor.FactorMonitor, "__init__", lambda self, *args, **kwargs: None)
    monkeypatch.setattr(factor_monitor.FactorMonitor, "measure", scripted_measure)
    cfg = dict(TINY, metrics_kimg=0.008, metrics_num=32)
    best = tmp_path / "run" / "best.safetensors"

    def kept() -> tuple[float, float]:
        generator, _ = load_model(best)
        return json.loads(read_model_metadata(best)["info"])["monitor"]["kimg"], checksum(generator)

    result = train(TrainConfig(total_kimg=0.032, keep_best="fid", **cfg), tmp_path / "run", progress=False)
    assert sorted(weights_at) == [0.008, 0.016, 0.024, 0.032]
    assert kept() == (0.016, weights_at[0.016]) and weights_at[0.016] != weights_at[0.032]
    assert result["best"]["kimg"] == 0.016 and result["best"]["model"] == str(best)
    train(TrainConfig(total_kimg=0.040, keep_best="coverage", **cfg), tmp_path / "run", progress=False)
    assert kept() == (0.016, weights_at[0.016])  # 5 under half at 0.040 against the kept line's 4
    result = train(TrainConfig(total_kimg=0.048, keep_best="coverage", **cfg), tmp_path / "run", progress=False)
    assert kept() == (0.048, weights_at[0.048]) and result["best"]["factors_under_half"] == ["f0"]
    # A fresh start in the folder (state and portable checkpoint gone): the old run's best is set aside.
    (tmp_path / "run" / STATE_FILE).unlink()
    shutil.rmtree(tmp_path / "run" / "portable")
    script.update({0.008: (7.0, 9), 0.016: (8.0, 9)})
    result = train(TrainConfig(total_kimg=0.016, keep_best="coverage", **cfg), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "best-set-aside-0.048kimg.safetensors").exists()
    assert kept() == (0.008, weights_at[0.008]) and result["best"]["kimg"] == 0.008
    # A kept model of other settings (another seed: not a setting a resume may change) is set aside too.
    train(TrainConfig(total_kimg=0.008, keep_best="coverage", **dict(cfg, seed=1)), tmp_path / "other", progress=False)
    shutil.copy(tmp_path / "other" / "best.safetensors", best)
    train(TrainConfig(total_kimg=0.024, keep_best="coverage", **cfg), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "best-set-aside-0.008kimg.safetensors").exists() and kept()[0] == 0.024
    # A file there whose metadata is not a kept model's stops the run before it trains, in one line.
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(best)), str(best), metadata={**read_model_metadata(best), "info": "[1, 2]"})
    with pytest.raises(UserError, match="best.safetensors is not a model that --keep-best kept"):
        train(TrainConfig(total_kimg=0.032, keep_best="coverage", **cfg), tmp_path / "run", progress=False)

    line = {"num": 32, "factor_fid": 3.0, "factors_under_half": []}
    assert factor_monitor.ranks_better(line, None, "fid")
    assert not factor_monitor.ranks_better(line, dict(line, factor_fid=2.0), "fid")
    assert factor_monitor.ranks_better(line, dict(line, factor_fid=2.0, num=64), "fid")  # other sample counts: not comparable
    assert factor_monitor.ranks_better(line, dict(line, factor_fid=2.0, factors_under_half=["roll"]), "coverage")
    assert factor_monitor.ranks_better(line, dict(line, factor_fid=float("nan")), "fid")  # NaN ranks last
    assert not factor_monitor.ranks_better(dict(line, factor_fid=float("nan")), None, "fid")  # and is never kept
    assert factor_monitor.coverage({"roll": {"samples_std": float("nan"), "renders_std": 1.0}})["factors_under_half"] == ["roll"]
    with pytest.raises(UserError, match="--keep-best coverage ranks the factor monitor's lines: give --metrics-kimg"):
        TrainConfig(keep_best="coverage")
    with pytest.raises(UserError, match="--keep-best last: use none, fid, coverage"):
        TrainConfig(keep_best="last", metrics_kimg=10)


def test_an_error_between_steps_keeps_the_step_and_the_monitor_is_made_before_the_first(tmp_path, monkeypatch):
    """An error in the samples or the factor monitor saves the state of the step just made before it
    ends the run (a 2-core run lost 11 minutes of training to one), and the monitor reads its
    predictor before the first step, so a predictor it cannot read costs no training."""
    from latentatlas.training import factor_monitor, stylegan2

    def broken_measure(self, generator, kimg):  # type: ignore[no-untyped-def]
        raise RuntimeError("the monitor broke")

    monkeypatch.setattr(factor_monitor.FactorMonitor, "measure", broken_measure)
    cfg = dict(TINY, snapshot_kimg=1000.0, sample_kimg=1000.0, metrics_kimg=0.024, metrics_num=32)
    with pytest.raises(RuntimeError, match="the monitor broke"):
        train(TrainConfig(total_kimg=0.040, **cfg), tmp_path / "a", progress=False)
    assert torch.load(tmp_path / "a" / STATE_FILE, weights_only=True)["nimg"] == 24

    steps: list[int] = []
    real_step = stylegan2.Trainer.train_step

    def counting_step(self):  # type: ignore[no-untyped-def]
        steps.append(self.nimg)
        return real_step(self)

    def unreadable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise UserError("factors.safetensors: not a readable factor predictor file")

    monkeypatch.setattr(stylegan2.Trainer, "train_step", counting_step)
    monkeypatch.setattr(factor_monitor.FactorMonitor, "__init__", unreadable)
    with pytest.raises(UserError, match="not a readable factor predictor"):
        train(TrainConfig(total_kimg=0.040, **cfg), tmp_path / "b", progress=False)
    assert steps == [] and not (tmp_path / "b" / STATE_FILE).exists()


def test_loop_schedules_keep_their_kimg_marks_across_a_resume():
    """Samples, snapshots, the monitor and the log's ticks fire at multiples of their period, also
    in a run resumed between two marks; a step past several marks fires once; 0 never fires."""
    from latentatlas.training.schedule import Schedule

    fresh, resumed, off, big = Schedule(0.016, 0), Schedule(0.016, 24), Schedule(0, 0), Schedule(0.016, 0)
    fired = {name: [n for n in steps if s.due(n)] for name, s, steps in
             (("fresh", fresh, range(8, 72, 8)), ("resumed", resumed, range(8, 72, 8)), ("off", off, range(8, 72, 8)),
              ("big batches", big, (40, 80, 90, 100)))}
    assert fired == {"fresh": [16, 32, 48, 64], "resumed": [32, 48, 64], "off": [], "big batches": [40, 80, 100]}
    assert not off.active and fresh.active


def test_weights_written_without_a_version_bump_are_not_read_stale(monkeypatch):
    """models/derived.py keeps values derived from weights that need no gradient where they are
    read (the generators under no_grad in the critic's step and the factor monitor, the frozen
    critic in the generator's step) and tells a changed weight by its version counter. CUDA's
    fused foreach kernels (Adam with foreach=True, the EMA's lerp) do not bump it, and on the
    2026-11-29 H200 lease the monitor read a stale G_ema; CPU's foreach falls back to ops that do.
    Simulated here with writes through .data, which bump nothing: after ema_update and optimise
    each module must compute what a fresh copy of its weights computes."""
    import copy

    from latentatlas.models.stylegan2 import Generator, GeneratorConfig
    from latentatlas.training import common

    torch.manual_seed(0)
    cfg = GeneratorConfig(z_dim=16, w_dim=16, mapping_layers=2, img_resolution=16, channel_base=128, channel_max=16)
    dcfg = DiscriminatorConfig(img_resolution=16, channel_base=128, channel_max=16)
    z = torch.randn(2, 16)
    x = torch.randn(2, 3, 16, 16)

    def render(m: Generator) -> torch.Tensor:
        with torch.no_grad():  # as the critic's step makes its fakes
            return m(z, noise_mode="const")

    def judge(d: Discriminator) -> torch.Tensor:
        d.requires_grad_(False)  # as the generator's step reads the critic: frozen, gradients on
        return d(x.requires_grad_(True)).detach()

    def fresh(m: torch.nn.Module, make) -> torch.nn.Module:  # type: ignore[no-untyped-def]
        new = make()
        new.load_state_dict(m.state_dict())
        return new

    class DataSGD(torch.optim.SGD):  # writes as the fused CUDA kernels do: no version bump
        @torch.no_grad()
        def step(self, closure=None):  # type: ignore[no-untyped-def, override]
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.data.add_(p.grad, alpha=-group["lr"])

    def lerp_without_bump(dst, src, weight):  # type: ignore[no-untyped-def]
        for d, s in zip(dst, src):
            d.data.lerp_(s.data, weight)

    # The EMA.
    g = Generator(cfg)
    ema = copy.deepcopy(g)
    render(ema)  # derived values now kept on ema's weights
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    monkeypatch.setattr(torch, "_foreach_lerp_", lerp_without_bump)
    common.ema_update(ema, g, beta=0.5)
    assert torch.allclose(render(ema), render(fresh(ema, lambda: Generator(cfg))), atol=1e-5)

    # An optimiser step on the generator, read under no_grad afterwards.
    render(g)
    g.requires_grad_(True)
    common.optimise([(g, DataSGD(g.parameters(), lr=0.1))], g(z, noise_mode="const").square().mean(), world=1)
    assert torch.allclose(render(g), render(fresh(g, lambda: Generator(cfg))), atol=1e-5)

    # An optimiser step on the critic, read frozen with gradients on afterwards.
    d = Discriminator(dcfg)
    judge(d)
    d.requires_grad_(True)
    common.optimise([(d, DataSGD(d.parameters(), lr=0.1))], d(x).square().mean(), world=1)
    assert torch.allclose(judge(d), judge(fresh(d, lambda: Discriminator(dcfg))), atol=1e-5)
