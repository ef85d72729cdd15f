"""What every latentatlas GAN trainer shares: Adam as StyleGAN2 sets it up, gradient averaging
over torchrun processes, EMA, the portable checkpoint format, config checks on resume, the
training loop with its progress bar, time limit and stop on a signal, and joining the process group.

A trainer object used with `run_loop` has `cfg` (a RunSettings), `rank`, `world`, `nimg`,
`G_ema`, `train_step() -> dict`, `save()`, `save_portable()`, `write_samples()` and
`export(path=None, info=None, half=False)` (the EMA networks as a model file: RUN/model.safetensors
unless given, with `export_info(info)`; fp16 with `half`);
TrainerBase gives it the factor monitor's `measure_factors()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from latentatlas.data import synthfaces
from latentatlas.io.atomic import atomic_path
from latentatlas.io.errors import UserError, check_max_minutes, require_at_least, require_number, require_seed
from latentatlas.io.tensorfile import read_training_state, restoring_state
from latentatlas.runtime import rank_device, set_tf32
from latentatlas.training import stats_log
from latentatlas.training.schedule import Schedule
from latentatlas.training.stop_signal import stop_on_signal

# A run folder: the full resumable state (this machine), the portable checkpoint (small
# safetensors files that travel between machines) and the model file the commands load.
STATE_FILE = "state.pt"
PORTABLE_DIR = "portable"
MODEL_FILE = "model.safetensors"
BEST_MODEL_FILE = "best.safetensors"  # --keep-best (training/factor_monitor.py)

# What a resumed run may change. The batch too, as NVIDIA's code resumes any config from a pickle:
# a step at 64 px on a GPU waits on launches more than on arithmetic, so a larger batch may cost
# little more per step (benchmarks/train_step.py --batches measures it) and a run started small
# can go on with more images per step. What is derived from the batch (R1 gamma and the EMA
# half-life when left at their defaults) follows it. The regularisation weights, read afresh at
# every step, may change too (a critic that pulls away from the generator, seen in stats.jsonl,
# calls for a larger R1 gamma); the resumed run takes this command's values, defaults included.
# Not the learning rate: the optimiser's saved state carries its own.
CONFIG_KEYS_FREE_ON_RESUME = ("total_kimg", "snapshot_kimg", "sample_kimg", "batch", "r1_gamma", "pl_weight", "style_mixing",
                              "metrics_kimg", "metrics_num", "keep_best", "mirror")
# The JSON-lines logs a run folder keeps and its portable checkpoint carries (metadata key: file):
# the tick means of the losses, and the factor monitor's lines (training/factor_monitor.py).
CARRIED_LOGS = {"stats_log": stats_log.LOG_FILE, "metrics_log": stats_log.METRICS_FILE}
# The random streams each process draws from, saved for every rank (lists in state.pt, NAME.RANK
# in the portable train.safetensors): torch's CPU generator (z and noise on CPU, style mixing's
# coin), the data order (a folder's picks), and on CUDA the GPU's generator (z and noise there).
RNG_STREAMS = {"rng": "CPU", "data_rng": "data-order", "cuda_rng": "CUDA"}
# Every portable file's metadata: the save it belongs to (common.save_portable).
SAVE_ID_KEY = "save_id"
# The loop also writes the state this often, whatever snapshot_kimg says: on 2 CPU cores 50 kimg
# of a 64 px StyleMapGAN take 75 minutes, all of it lost to a SIGKILL without this (about 0.3 s a
# write there).
STATE_EVERY_MINUTES = 15.0


@dataclass
class RunSettings:
    """What both trainers' configs hold and this module reads: the data, the run's length and
    batch, the seed, and the schedules of checkpoints, sample sheets and the factor monitor.
    Each trainer's config adds its networks and losses (and may change a default, e.g. the batch)."""

    data: str = "synthfaces"  # or a folder of images
    resolution: int = 64
    batch: int = 64
    total_kimg: float = 1000.0
    seed: int = 0
    snapshot_kimg: float = 50.0
    sample_kimg: float = 50.0
    metrics_kimg: float = 0.0  # synthfaces: factor coverage every N kimg into metrics.jsonl (training/factor_monitor.py)
    metrics_num: int = 2000
    keep_best: str = "none"  # or a ranking of training/factor_monitor.BEST_RANKINGS: RUN/best.safetensors
    mirror: bool = False  # a folder's images x-flipped at random, half of them (NVIDIA's --mirror; StyleMapGAN's training always flips)
    extra: dict[str, Any] = field(default_factory=dict)


def check_monitor_settings(metrics_kimg: float, metrics_num: int, data: str, keep_best: str = "none") -> None:
    """Both trainers' configs: the factor monitor's settings (training/factor_monitor.py), refused as one line before a run starts."""
    from latentatlas.training.factor_monitor import BEST_RANKINGS

    require_number("--metrics-kimg", metrics_kimg, at_least=0, what="a finite number >= 0 (0: off)", example="10")
    require_at_least("--metrics-num", metrics_num, 2, "samples to measure: a spread needs two")
    if metrics_kimg > 0 and data != "synthfaces":
        raise UserError("--metrics-kimg measures synthfaces factors: it needs --data synthfaces")
    if keep_best != "none" and keep_best not in BEST_RANKINGS:
        raise UserError(f"--keep-best {keep_best}: use none, {', '.join(BEST_RANKINGS)}")
    if keep_best != "none" and not metrics_kimg > 0:
        raise UserError(f"--keep-best {keep_best} ranks the factor monitor's lines: give --metrics-kimg too (e.g. 10)")


def check_run_settings(cfg: Any, kind: str, network_config: Callable[[], Any]) -> None:
    """Both trainers' configs, refused as one line before the run folder is made: the run's length
    and batch (--kimg 0 wrote the untrained networks as a finished model; a negative or NaN --kimg,
    or --batch 0, failed with a traceback), the factor monitor's settings, and the network's own
    (`network_config()`, whose ValueError names the setting, e.g. mapping_layers 0), and the
    numbers that NaN or a sign would break (--lr nan reached Adam's traceback, --snapshot-kimg nan
    a cast's, and --gamma was not checked at all)."""
    require_number("--kimg", cfg.total_kimg, above=0, what="a positive number of thousands of training images", example="1000")
    require_at_least("--batch", cfg.batch, 1, "images per step, over all processes")
    require_number("--lr", cfg.lr, above=0, what="a positive learning rate", example="0.002")
    require_seed("--seed", cfg.seed)
    if cfg.r1_gamma is not None:
        require_number("--gamma", cfg.r1_gamma, at_least=0, what="an R1 weight >= 0 (0: no R1)", example="10")
    for option, kimg in (("--snapshot-kimg", cfg.snapshot_kimg), ("--sample-kimg", cfg.sample_kimg)):
        require_number(option, kimg, at_least=0, what="a finite number >= 0 (0: only at the end)", example="50")
    check_monitor_settings(cfg.metrics_kimg, cfg.metrics_num, cfg.data, cfg.keep_best)
    if cfg.mirror and cfg.data == "synthfaces":
        raise UserError("--mirror flips a folder's images; synthfaces renders both yaw and light directions already, "
                        "and a flip would swap their sides without the factors knowing")
    if cfg.data == "synthfaces" and cfg.resolution < synthfaces.MIN_RESOLUTION:
        raise UserError(f"--resolution {cfg.resolution}: synthfaces renders at least {synthfaces.MIN_RESOLUTION} px; "
                        f"use {synthfaces.MIN_RESOLUTION} or more, or train on a folder of images (--data)")
    try:
        network_config()
    except ValueError as e:
        raise UserError(f"bad {kind} settings: {e}") from None


class TrainerBase:
    """What both trainers do the same way: the processes and the per-process batch, the data
    source and its seeds, the broadcast of the initial weights, the real batches, and the
    resumable checkpoints (the full state and the portable folder).

    A subclass names its parts: `networks()` {name: module}, `optimizers()` {name: (optimizer,
    the module it steps)}, and anything else to carry in `extra_state()` / `load_extra_state()`.
    """

    cfg: Any
    _monitor: Any = None  # training/factor_monitor.py, made by start_factor_monitor
    _best: dict[str, Any] | None = None  # the monitor line of RUN/best.safetensors (--keep-best)

    def start_factor_monitor(self) -> None:
        """Rank 0 reads the predictor and makes the renders' features once. run_loop calls it before
        the first step: a predictor that cannot be read stops the run before it trains, not
        metrics_kimg later, and the monitor's code is imported with the rest (an edit to the
        checkout under a running job once broke its first measurement, 6 kimg in)."""
        if self.rank == 0 and self._monitor is None:
            from latentatlas.training.factor_monitor import FactorMonitor

            self._monitor = FactorMonitor(self.run_dir, self.cfg.metrics_num, self.cfg.resolution, self.device)

    def measure_factors(self) -> None:
        """A factor monitor line for G_ema now (rank 0): run_loop calls it every cfg.metrics_kimg,
        for either trainer. With cfg.keep_best, a line that ranks better than the kept one exports
        the EMA networks to RUN/best.safetensors in fp16 (as bundled models are; half the size,
        which an A/B lease's two arms need to come back), the line in its metadata."""
        if self.rank != 0:
            return
        from latentatlas.training.factor_monitor import ranks_better

        self.start_factor_monitor()
        line = self._monitor.measure(self.G_ema, self.nimg / 1000)
        if self.cfg.keep_best == "none":
            return
        path = self.run_dir / BEST_MODEL_FILE
        if ranks_better(line, self._best, self.cfg.keep_best):
            self.export(path, {"monitor": line, "kept_by": self.cfg.keep_best}, half=True)
            self._best = line

    def export_info(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a model file that training writes records of it (both trainers' export), `info` added."""
        return {"trained_on": self.cfg.data, "kimg": self.nimg / 1000, "train_config": asdict(self.cfg), **(info or {})}

    def read_kept_best(self) -> str | None:
        """With --keep-best, the line of RUN/best.safetensors, read once the run has resumed (rank 0),
        so a resumed chunk ranks against it. The file stays in the run folder and does not travel
        in portable/: a run resumed elsewhere starts a new best. A kept model past the point this
        run resumed from (a discarded branch, or an earlier run in the folder) or trained with
        other settings is no longer this run's: it is moved aside, not overwritten; returns what
        was moved, for the log. A file there that is not such a model stops the run before it trains."""
        from latentatlas.io.checkpoints import read_model_metadata

        path = self.run_dir / BEST_MODEL_FILE
        if self.rank != 0 or self.cfg.keep_best == "none" or not path.exists():
            return None
        try:
            info = json.loads(read_model_metadata(path)["info"])
            kimg, line, trained = info.get("kimg"), info.get("monitor"), info.get("train_config") or {}
            differs = config_differences(trained, asdict(self.cfg))
        except (UserError, ValueError, TypeError, AttributeError) as e:  # not ours, or its metadata is not a dict of ours
            raise UserError(f"{path} is not a model that --keep-best kept ({e}): move it away or use another --out") from None
        if not isinstance(line, dict) or not isinstance(kimg, (int, float)):
            why = "holds no monitor line"
        elif kimg > self.nimg / 1000 + 1e-9:
            why = f"was kept at {kimg:g} kimg, past this run's {self.nimg / 1000:g}"
        elif differs:
            why = f"was trained with other settings ({', '.join(differs)})"
        else:
            self._best = line
            return None
        aside, n = path.with_name(f"best-set-aside-{kimg}kimg.safetensors"), 1
        while aside.exists():  # an earlier one of the same kimg stays too
            n += 1
            aside = path.with_name(f"best-set-aside-{kimg}kimg-{n}.safetensors")
        path.replace(aside)
        return f"{path.name} {why}: moved to {aside.name}; a new best starts"

    def networks(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors to keep beside the networks and optimisers (StyleGAN2: the path-length mean)."""
        return {}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def setup_processes(self, cfg: Any, run_dir: str | Path, device: str | torch.device) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        if cfg.batch % self.world:
            raise UserError(f"--batch {cfg.batch} must be divisible by the number of processes ({self.world})")
        self.batch_gpu = cfg.batch // self.world
        if self.batch_gpu % min(cfg.mbstd_group, self.batch_gpu):
            raise UserError(f"the per-process batch {self.batch_gpu} must be divisible by the minibatch-std group {cfg.mbstd_group}")

    def setup_data(self) -> None:
        """Data source and seeds (after the networks are built), then rank 0's weights everywhere."""
        self.step = 0
        self.nimg = 0
        self.data_gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.rank)
        self.folder = None
        if self.cfg.data != "synthfaces":
            from latentatlas.data.folder import FolderImages

            self.folder = FolderImages(self.cfg.data, self.cfg.resolution, self.rank, self.world)
        torch.manual_seed(self.cfg.seed * 1000 + self.rank + 1)
        if self.world > 1:
            for module in self.networks().values():
                tensors = list(module.parameters()) + list(module.buffers())
                for t in tensors:
                    dist.broadcast(t.data, src=0)
                mark_changed(tensors)  # written through .data, which bumps nothing (mark_changed says why it matters)

    def real_batch(self) -> torch.Tensor:
        if self.folder is not None:
            return self.folder.batch(self.batch_gpu, self.data_gen, mirror=self.cfg.mirror).to(self.device)
        seed = (self.cfg.seed * 1_000_003 + self.step) * self.world + self.rank
        images, _ = synthfaces.sample(self.batch_gpu, seed=seed, resolution=self.cfg.resolution, device=self.device)
        return images

    # ------------------------------------------------------------------ checkpoints
    def rng_state(self) -> dict[str, torch.Tensor]:
        """This process's random streams (RNG_STREAMS; CUDA's is empty off CUDA)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)
        return {"rng": torch.get_rng_state(), "data_rng": self.data_gen.get_state(), "cuda_rng": cuda}

    def all_rng_states(self, gather: bool = True) -> dict[str, list[torch.Tensor]]:
        """Every process's random streams, by rank: each process draws its own z, noise and data,
        and a resumed process that kept its setup seed would draw its first chunk's again.

        Under torchrun a collective (all processes call it at the same step); gather=False gives
        this process's alone, for a save it makes alone (an error on rank 0 between steps)."""
        mine = self.rng_state()
        ranks: list[Any] = [mine]
        if gather and self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, mine)
        return {name: [r[name] for r in ranks] for name in RNG_STREAMS}

    def restore_rng(self, saved: dict[str, list[torch.Tensor | None]], source: Path) -> None:
        """Each process takes back its own streams (after step and nimg are restored). One the file
        lacks (saved on CPU and resumed on CUDA, or by a latentatlas that kept rank 0's only) is
        reseeded from (seed, rank, images seen), said in one stderr line: the setup seed would
        replay the first chunk's draws."""
        setters: dict[str, Callable[[torch.Tensor], Any]] = {"rng": torch.set_rng_state, "data_rng": self.data_gen.set_state}
        seeders: dict[str, Callable[[int], Any]] = {"rng": torch.default_generator.manual_seed, "data_rng": self.data_gen.manual_seed}
        if self.device.type == "cuda":
            setters["cuda_rng"] = lambda state: torch.cuda.set_rng_state(state, self.device)

            def seed_cuda(seed: int) -> None:
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed(seed)

            seeders["cuda_rng"] = seed_cuda
        missing = []
        for name, set_state in setters.items():
            states = saved.get(name) or []
            state = states[self.rank] if self.rank < len(states) else None
            if state is not None and state.numel():
                set_state(state.cpu())
            else:
                seeders[name](resume_seed(self.cfg.seed, self.rank, self.nimg, name))
                missing.append(RNG_STREAMS[name])
        if missing:
            print(f"{source}: no saved {', '.join(missing)} random state for process {self.rank} (saved on another "
                  f"device, by rank 0 alone at an error, or by an older latentatlas): reseeded from seed {self.cfg.seed}, "
                  f"rank {self.rank} and {self.nimg} images seen, so the draws go on fresh but differ from an uninterrupted "
                  "run's", file=sys.stderr)

    def state_dict(self, rng: dict[str, list[torch.Tensor]]) -> dict[str, Any]:
        out: dict[str, Any] = {k: m.state_dict() for k, m in self.networks().items()}
        out.update({f"opt_{k}": opt.state_dict() for k, (opt, _) in self.optimizers().items()})
        out.update(self.extra_state())
        out.update({"config": asdict(self.cfg), "step": self.step, "nimg": self.nimg, "world": self.world, **rng})
        return out

    def save(self, gather: bool = True) -> Path:
        """The full training state (fp32, both Adam moments, every process's random streams) in
        run_dir, written atomically by rank 0. Under torchrun all processes call it at the same
        step (it gathers their streams), unless gather=False: a save rank 0 makes alone keeps
        only its own streams (the others are reseeded on resume)."""
        path = self.run_dir / STATE_FILE
        rng = self.all_rng_states(gather)
        if self.rank == 0:
            with atomic_path(path) as tmp:
                torch.save(self.state_dict(rng), tmp)
        return path

    def load(self, path: Path) -> None:
        hint = f"remove it to start again (or to resume from {PORTABLE_DIR}/ when the run folder holds one)"
        state = read_training_state(path, self.device, hint)
        with restoring_state(path, hint):
            check_config(state["config"], asdict(self.cfg), int(state["world"]), self.world, path)
            for k, m in self.networks().items():
                m.load_state_dict(state[k])
            for k, (opt, _) in self.optimizers().items():
                opt.load_state_dict(state[f"opt_{k}"])
            self.load_extra_state(state)
            self.step, self.nimg = int(state["step"]), int(state["nimg"])
            # A state written before the streams were kept per rank holds rank 0's alone, as one tensor each.
            self.restore_rng({name: v if isinstance(v, list) else [v]
                              for name in RNG_STREAMS if (v := state.get(name)) is not None}, path)

    def save_portable(self) -> Path:
        """Networks in fp32 and Adam's second moments in bf16, as files under 16 MiB each.

        Small enough to carry between machines (a GPU lease, a laptop); the first moments are
        not kept: with beta1 = 0 (StyleGAN2's Adam) they are just the last gradient. Under
        torchrun all processes call it at the same step (it gathers their random streams).
        """
        folder = self.run_dir / PORTABLE_DIR
        rng = self.all_rng_states()
        if self.rank == 0:
            extra = {k: v.detach().cpu().reshape(-1) if v.ndim == 0 else v.detach().cpu() for k, v in self.extra_state().items()}
            streams = {f"{name}.{rank}": t for name, ts in rng.items() for rank, t in enumerate(ts) if t.numel()}
            save_portable(folder, self.networks(), {k: opt for k, (opt, _) in self.optimizers().items()},
                          {**extra, **streams},
                          {**portable_meta(asdict(self.cfg), self.step, self.nimg, self.world),
                           **{key: stats_log.carried_text(self.run_dir, name) for key, name in CARRIED_LOGS.items()}})
        return folder

    def load_portable(self, folder: Path) -> dict[str, str]:
        """Resume from a portable folder; returns its metadata (config, counters, carried logs)."""
        meta = read_portable_meta(folder)
        check_config(json.loads(meta["config"]), asdict(self.cfg), int(meta["world"]), self.world, folder)
        t = load_portable(folder, self.networks(), self.optimizers(), self.device)
        self.load_extra_state(t)
        self.step, self.nimg = int(meta["step"]), int(meta["nimg"])
        # Files written before the streams were kept per rank hold rank 0's as NAME (and no CUDA stream).
        self.restore_rng({name: [t.get(f"{name}.{rank}", t.get(name) if rank == 0 else None) for rank in range(self.world)]
                          for name in RNG_STREAMS}, folder)
        return meta


def resume_seed(seed: int, rank: int, nimg: int, stream: str) -> int:
    """A seed for a stream a resumed process has no saved state for, one for every (run seed, rank,
    images seen, stream): the setup seed (seed * 1000 + rank + 1) would draw what the run has drawn
    already. A hash, which no other seed of the run coincides with as sums of small numbers could."""
    digest = hashlib.sha256(f"latentatlas-resume/{seed}/{rank}/{nimg}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def adam(params: Iterable[torch.nn.Parameter], lr: float, reg_interval: int | None = None) -> torch.optim.Adam:
    """Adam with betas (0, 0.99); with lazy regularisation every `reg_interval` steps, lr and betas
    are corrected by reg_interval / (reg_interval + 1) (StyleGAN2)."""
    ratio = 1.0 if not reg_interval else reg_interval / (reg_interval + 1)
    # foreach: one kernel per operation for all parameters (PyTorch picks it by itself only on
    # CUDA; on CPU the per-parameter loop also reads each step counter back with .item()).
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8, foreach=True)


# A 64 px model's training step on a GPU is bound by the number of operations launched, not by
# arithmetic (faces64-narrow at batch 64 ran 10 steps/s on an H200; a step issues about 5,700
# operations, counted with torch.profiler on CPU), so the per-parameter bookkeeping below works on
# all parameters at once: 4,900 operations a step on CPU.


def reduce_grads(module: torch.nn.Module, world: int) -> None:
    """Average gradients over the torchrun processes and clamp NaN/inf, as one flat tensor (as
    NVIDIA's training loop): a few operations per backward pass instead of several per parameter."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    if world > 1:
        dist.all_reduce(flat)
        flat /= world
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    torch._foreach_copy_(grads, [part.view_as(g) for part, g in zip(flat.split([g.numel() for g in grads]), grads)])


def mark_changed(tensors: list[torch.Tensor]) -> None:
    """Bump the version counters of tensors an optimiser or the EMA has just written in place.

    Why: models/derived.py keeps values derived from weights that need no gradient where they are
    read (the generators in the critic's no_grad step and in the factor monitor, the frozen critic
    in the generator's step) and knows a weight changed only by its version counter. PyTorch's CPU
    foreach ops fall back to single-tensor ops, which bump it; its fused CUDA path of
    `torch._foreach_*_` (Adam with foreach=True, the EMA's lerp) has no kernel that does. On the
    2026-11-29 H200 lease the factor monitor's lines stayed within 0.4 of each other in a process
    and jumped by 4 at the next process's start: the cached parts of G_ema (mapping, affines,
    demodulation sums, folded up-sampling kernels) were read as at the first line. The bumps launch
    nothing: 40 us a call for faces64's 82 generator tensors on CPU, a few calls a training step.
    One call per tensor (5 us for all 82 as a list, which needs torch 2.5; pyproject allows 2.4).
    """
    for t in tensors:
        torch.autograd.graph.increment_version(t)


def optimise(pairs: list[tuple[torch.nn.Module, torch.optim.Optimizer]], loss: torch.Tensor, world: int) -> None:
    """One step of each optimiser on `loss`; gradients averaged over processes, NaN/inf clamped."""
    for _, opt in pairs:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for module, opt in pairs:
        reduce_grads(module, world)
        opt.step()
        mark_changed(list(module.parameters()))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, module: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * module for parameters; buffers copied (each in one foreach call)."""
    params = list(ema.parameters())
    torch._foreach_lerp_(params, list(module.parameters()), 1.0 - beta)
    buffers = list(ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(module.buffers()))
    mark_changed(params + buffers)  # derived values kept on the EMA's weights (mark_changed says why)


def config_differences(saved_cfg: dict[str, Any], mine_cfg: dict[str, Any]) -> list[str]:
    """The settings two run configs differ in, leaving out those a resumed run may change."""
    saved = {k: v for k, v in saved_cfg.items() if k not in CONFIG_KEYS_FREE_ON_RESUME}
    mine = {k: v for k, v in mine_cfg.items() if k not in CONFIG_KEYS_FREE_ON_RESUME}
    # A setting added since the run was saved is missing from its config: equal when left at None.
    return sorted(k for k in set(mine) | set(saved) if saved.get(k) != mine.get(k))


def check_config(saved_cfg: dict[str, Any], mine_cfg: dict[str, Any], saved_world: int, world: int, source: Path) -> None:
    diff = config_differences(saved_cfg, mine_cfg)
    if diff:
        raise UserError(f"{source} was trained with other settings ({', '.join(diff)}): use another --out or the same settings")
    if saved_world != world:
        raise UserError(f"{source} was trained with {saved_world} processes, now {world}: resume with the same count")


# ---------------------------------------------------------------------------------------
# Portable checkpoints: networks in fp32, Adam's second moments in bf16, one file per network


def save_portable(folder: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                  tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """`{name}.safetensors` per module and `train.safetensors` (optimiser second moments in bf16,
    the given tensors, metadata). The first moments are not kept: with beta1 = 0 they are just
    the last gradient.

    Each file is written atomically, but one after another: a process killed between two leaves
    some files of this save beside others of the last. So every file's metadata carries the same
    SAVE_ID_KEY (images seen and a random token), and load_portable refuses a set whose ids differ."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_id = {SAVE_ID_KEY: f"{meta.get('nimg', '?')}-{secrets.token_hex(8)}"}
    for name, module in modules.items():
        with atomic_path(folder / f"{name}.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp), metadata=save_id)
    out = dict(tensors)
    for tag, opt in optimizers.items():
        for i, st in opt.state_dict()["state"].items():
            out[f"opt_{tag}.{i}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().to(torch.bfloat16).contiguous()
            out[f"opt_{tag}.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
    with atomic_path(folder / "train.safetensors") as tmp:
        save_file(out, str(tmp), metadata={**meta, **save_id})
    return folder


def read_portable_meta(folder: Path, name: str = "train") -> dict[str, str]:
    """The metadata of `{name}.safetensors` in a portable folder (train's: config, counters, logs)."""
    from safetensors import safe_open

    with safe_open(str(folder / f"{name}.safetensors"), framework="pt") as f:
        return f.metadata() or {}


def check_one_save(folder: Path, names: list[str]) -> None:
    """Refuse a portable folder whose files come from different saves (a save killed between two
    files): resuming would pair networks and optimiser states of different steps without a word.
    Files written before the ids existed have none; a set of such files alone is accepted."""
    ids = {name: read_portable_meta(folder, name).get(SAVE_ID_KEY) for name in [*names, "train"]}
    if len(set(ids.values())) > 1:
        groups: dict[str | None, list[str]] = {}
        for name, save_id in ids.items():
            groups.setdefault(save_id, []).append(f"{name}.safetensors")
        saves = "; ".join(f"{', '.join(files)} from " + (f"the save at {i.split('-')[0]} images" if i else "an older save")
                          for i, files in groups.items())
        raise UserError(f"{folder} mixes files of different saves ({saves}), as a run stopped while writing it leaves: "
                        f"resume from the run's {STATE_FILE}, or put back one save's {len(ids)} files "
                        f"(a committed run: git checkout {folder})")


def load_portable(folder: Path, modules: dict[str, torch.nn.Module],
                  optimizers: dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]],
                  device: torch.device) -> dict[str, torch.Tensor]:
    """Load what save_portable wrote into the modules and optimisers, once its files are known to
    be one save's; returns train.safetensors' tensors."""
    from safetensors.torch import load_file

    check_one_save(folder, list(modules))
    for name, module in modules.items():
        module.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(device)))
    t = load_file(str(folder / "train.safetensors"))
    for tag, (opt, module) in optimizers.items():
        state = opt.state_dict()
        for i, _ in enumerate(module.parameters()):
            key = f"opt_{tag}.{i}.exp_avg_sq"
            if key in t:
                sq = t[key].float().to(device)
                state["state"][i] = {"step": t[f"opt_{tag}.{i}.step"].reshape([]), "exp_avg": torch.zeros_like(sq), "exp_avg_sq": sq}
        opt.load_state_dict(state)
    return t


def portable_meta(cfg: dict[str, Any], step: int, nimg: int, world: int) -> dict[str, str]:
    return {"config": json.dumps(cfg), "step": str(step), "nimg": str(nimg), "world": str(world)}


# ---------------------------------------------------------------------------------------
# Runs


def clean_stale_temp_files(run_dir: Path) -> None:
    """A process killed while writing leaves a temp file (io.atomic's `.NAME.XXXX.tmp.EXT`, which
    .gitignore matches); the complete checkpoint is intact. The portable folder's too: it is
    committed, and a leftover there would travel with it."""
    for folder in (run_dir, run_dir / PORTABLE_DIR):
        for p in folder.glob(".*.tmp*"):
            p.unlink(missing_ok=True)


def setup_cuda(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        # Fixed shapes: let cuDNN pick the fastest kernels. TF32 matrix units: about 1e-3
        # relative error per product, far below the noise of GAN training.
        torch.backends.cudnn.benchmark = True
        set_tf32(True)


def run_loop(trainer: Any, max_minutes: float | None, progress: bool) -> tuple[dict[str, float], str | None, float]:
    """Train until cfg.total_kimg, max_minutes or a SIGINT/SIGTERM (training/stop_signal.py):
    samples and checkpoints on schedule, the state also every STATE_EVERY_MINUTES, a progress
    bar on rank 0, and at the end state, portable checkpoint, samples and model file. An error
    between steps (writing samples, the factor monitor) saves the state of the whole step first.
    Returns (last losses, what stopped it early: "max_minutes", a signal's name or None, seconds)."""
    from tqdm import tqdm

    cfg = trainer.cfg
    total = int(cfg.total_kimg * 1000)
    start = time.time()
    snapshots = Schedule(cfg.snapshot_kimg, trainer.nimg)
    samples = Schedule(cfg.sample_kimg, trainer.nimg)
    monitor = Schedule(cfg.metrics_kimg, trainer.nimg)  # the factor monitor (synthfaces)
    measured_at = None
    bar = tqdm(total=total / 1000, initial=trainer.nimg / 1000, unit="kimg", disable=not progress or trainer.rank != 0,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}]{postfix}")
    stats: dict[str, float] = {}
    ticks = stats_log.TickLog(trainer.run_dir, trainer.nimg, enabled=trainer.rank == 0)
    stopped_by: str | None = None
    saved_at = start  # when the state was last written
    if monitor.active:
        trainer.start_factor_monitor()
    with stop_on_signal(announce=trainer.rank == 0) as request:
        while trainer.nimg < total:
            before = trainer.nimg
            stats = trainer.train_step()
            ticks.add(stats, trainer.nimg)
            bar.update((min(trainer.nimg, total) - before) / 1000)  # the last batch may pass the total
            bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()}, refresh=False)
            with ticks.maintenance():
                try:
                    if samples.due(trainer.nimg):
                        trainer.write_samples()
                    if monitor.due(trainer.nimg):
                        trainer.measure_factors()
                        measured_at = trainer.nimg
                except Exception:
                    # The step is whole: keep it (up to STATE_EVERY_MINUTES of work) before the error
                    # ends the run. Rank 0 alone is here, so it keeps its own random streams only.
                    trainer.save(gather=False)
                    raise
                time_up = max_minutes is not None and time.time() - start > max_minutes * 60
                # Under torchrun every step asks the others (one tiny all-reduce): a signal may reach
                # one process only, and each process's clock passes a limit at its own step, while a
                # save gathers every process's random streams, so all must save at the same step.
                state_due, stop = any_process([time.time() - saved_at > STATE_EVERY_MINUTES * 60,
                                               time_up or request.name is not None], trainer.world, trainer.device)
                if snapshots.due(trainer.nimg) or state_due:
                    trainer.save()
                    saved_at = time.time()
            if stop:
                if trainer.nimg < total:  # a stop asked at the last step is no early stop
                    stopped_by = request.name or ("max_minutes" if time_up else "a signal to another process")
                break
        bar.close()
        ticks.flush(trainer.nimg)
        if monitor.active and measured_at != trainer.nimg:
            trainer.measure_factors()  # where the run stops, so every chunk ends with a line
        trainer.save()  # still inside: a first signal here does not cut the final writes short
        trainer.save_portable()
        trainer.write_samples()
        trainer.export()
    return stats, stopped_by, time.time() - start


def train_run(make_trainer: Callable[[Path], Any], run_dir: str | Path, device: str | torch.device,
              max_minutes: float | None, progress: bool) -> tuple[Any, dict[str, Any]]:
    """Set up CUDA, build the trainer, make the run folder, resume (state file first, else the
    portable folder), run the loop, report the run: (trainer, report).

    The folder is made only once the trainer has accepted its settings: a batch that the
    processes cannot share, or a data folder without images, is refused before anything is
    written. Both trainers' train() go through here; each adds its own checksum of the EMA networks.
    """
    run_dir = Path(run_dir)
    check_max_minutes(max_minutes)
    setup_cuda(device)
    trainer = make_trainer(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if trainer.rank == 0:
        clean_stale_temp_files(run_dir)
    state_path, portable = run_dir / STATE_FILE, run_dir / PORTABLE_DIR
    resumed_from = 0
    carried: dict[str, str] = {}
    if state_path.exists():
        trainer.load(state_path)
        resumed_from = trainer.nimg
    elif (portable / "train.safetensors").exists():
        carried = trainer.load_portable(portable)
        resumed_from = trainer.nimg
    if trainer.rank == 0:
        for key, name in CARRIED_LOGS.items():
            stats_log.restore(run_dir, resumed_from, carried.get(key), name)
        moved = trainer.read_kept_best()
        if moved:
            print(moved, file=sys.stderr)
    if trainer.world > 1:
        dist.barrier()
    stats, stopped_by, elapsed = run_loop(trainer, max_minutes, progress)
    if trainer.world > 1:
        dist.barrier()  # rank 0's files are complete before any process leaves
    return trainer, {
        "rank": trainer.rank,
        "world": trainer.world,
        "kimg": trainer.nimg / 1000,
        "resumed_from_kimg": resumed_from / 1000,
        "kimg_per_min": round((trainer.nimg - resumed_from) / 1000 / max(elapsed / 60, 1e-9), 3),
        "finished": stopped_by is None and trainer.nimg >= int(trainer.cfg.total_kimg * 1000),
        "stopped_by": stopped_by,
        "model": str(run_dir / MODEL_FILE),
        # --keep-best: the kept model and its line (None when off, or before its first line)
        "best": trainer._best and {"model": str(run_dir / BEST_MODEL_FILE), **trainer._best},
        "state": str(state_path),
        "last_losses": stats,
    }


def any_process(mine: list[bool], world: int, device: torch.device) -> list[bool]:
    """Each flag true when any process's is, agreed by all in one all-reduce: whether to stop or to
    write the state now. Each process's clock passes a limit at its own step, and a process that
    stopped or saved alone would leave the others waiting in their next collective."""
    if world <= 1:
        return mine
    flags = torch.tensor([float(m) for m in mine], device=device)
    dist.all_reduce(flags)  # sum: true when any process's is
    return [bool(f > 0) for f in flags.tolist()]


def finish_distributed() -> None:
    """Leave the torchrun process group (a process that exits with it still open can abort in
    gloo's teardown: 'terminate called without an active exception')."""
    if dist.is_initialized():
        dist.destroy_process_group()


def init_distributed(device: str) -> str:
    """Join the torchrun process group if there is one; return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    return rank_device(device)
