"""StyleGAN2 training as in the paper (Karras et al. 2020) and NVIDIA's stylegan2-ada-pytorch.

Non-saturating logistic loss, lazy R1 on reals (every 16 D steps), lazy path-length
regularisation (every 4 G steps, batch halved), style-mixing regularisation, generator EMA
with ramp-up, Adam with betas (0, 0.99) and the lazy-regularisation correction of lr and
betas. Data: synthfaces rendered on the fly, or a folder of images.

Runs on CPU (tiny configs, tests), one GPU, or several processes under `torchrun`: each rank
draws its own data, gradients are averaged with all-reduce after every backward pass (the
official code's scheme; it works with the separate lazy-regularisation passes, which
DistributedDataParallel's single-backward hooks do not fit), and only rank 0 writes files.

A run directory holds `state.pt` (everything needed to resume: networks, optimisers, RNG
states, counters; written atomically, so `kill -9` at any moment leaves the last complete
checkpoint), `samples-XXXXXX.png` grids and `model.safetensors` (G_ema in our format).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from latentatlas.data import synthfaces
from latentatlas.io.atomic import atomic_path
from latentatlas.io.checkpoints import save_model
from latentatlas.io.errors import UserError
from latentatlas.io.images import make_grid, save_image
from latentatlas.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"
PORTABLE_DIR = "portable"  # compact checkpoint: small safetensors files that travel between machines


@dataclass
class TrainConfig:
    data: str = "synthfaces"  # or a folder of images
    resolution: int = 64
    batch: int = 64
    total_kimg: float = 1000.0
    z_dim: int = 256  # defaults: the bundled faces64 config
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 8192
    channel_max: int = 128
    lr: float = 0.0025
    r1_gamma: float | None = None  # None: 0.0002 * resolution^2 / batch (the ADA heuristic)
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    g_reg_interval: int = 4
    d_reg_interval: int = 16
    ema_kimg: float | None = None  # None: batch * 10 / 32
    ema_rampup: float | None = 0.05
    mbstd_group: int = 4
    seed: int = 0
    snapshot_kimg: float = 50.0
    sample_kimg: float = 50.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gamma(self) -> float:
        return self.r1_gamma if self.r1_gamma is not None else 0.0002 * self.resolution**2 / self.batch

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            z_dim=self.z_dim, w_dim=self.w_dim, img_resolution=self.resolution, mapping_layers=self.mapping_layers,
            channel_base=self.channel_base, channel_max=self.channel_max,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        return DiscriminatorConfig(
            img_resolution=self.resolution, channel_base=self.channel_base, channel_max=self.channel_max,
            mbstd_group_size=self.mbstd_group,
        )


def _adam(params, lr: float, reg_interval: int) -> torch.optim.Adam:  # type: ignore[no-untyped-def]
    ratio = reg_interval / (reg_interval + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.G = Generator(cfg.generator_config()).to(self.device).train().requires_grad_(False)
            self.D = Discriminator(cfg.discriminator_config()).to(self.device).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt_G = _adam(self.G.parameters(), cfg.lr, cfg.g_reg_interval)
        self.opt_D = _adam(self.D.parameters(), cfg.lr, cfg.d_reg_interval)
        self.pl_mean = torch.zeros([], device=self.device)
        self.step = 0
        self.nimg = 0
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.folder = None
        if cfg.data != "synthfaces":
            from latentatlas.data.folder import FolderImages

            self.folder = FolderImages(cfg.data, cfg.resolution, self.rank, self.world)
        torch.manual_seed(cfg.seed * 1000 + self.rank + 1)
        if self.world > 1:
            for module in (self.G, self.D, self.G_ema):
                for t in list(module.parameters()) + list(module.buffers()):
                    dist.broadcast(t.data, src=0)

    # ------------------------------------------------------------------ data
    def real_batch(self) -> torch.Tensor:
        if self.folder is not None:
            return self.folder.batch(self.batch_gpu, self.data_gen).to(self.device)
        seed = (self.cfg.seed * 1_000_003 + self.step) * self.world + self.rank
        images, _ = synthfaces.sample(self.batch_gpu, seed=seed, resolution=self.cfg.resolution, device=self.device)
        return images

    # ------------------------------------------------------------------ losses
    def _mapping(self, z: torch.Tensor, update_w_avg: bool = True) -> torch.Tensor:
        ws = self.G.mapping(z, update_w_avg=update_w_avg)
        if self.cfg.style_mixing > 0 and torch.rand([]).item() < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], []).item())
            ws = ws.clone()
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z))[:, cutoff:]
        return ws

    def _generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, self.G.z_dim, device=self.device)
        ws = self._mapping(z)
        return self.G.synthesis(ws, noise_mode="random"), ws

    def _reduce_grads(self, module: torch.nn.Module) -> None:
        if self.world == 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def _optimise(self, module: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self._reduce_grads(module)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def train_step(self) -> dict[str, float]:
        cfg, stats = self.cfg, {}
        # Generator: non-saturating loss.
        self.G.requires_grad_(True)
        img, _ = self._generate(self.batch_gpu)
        loss_g = F.softplus(-self.D(img)).mean()
        self._optimise(self.G, self.opt_G, loss_g)
        stats["G"] = loss_g.item()
        # Generator: lazy path-length regularisation.
        if cfg.pl_weight > 0 and self.step % cfg.g_reg_interval == 0:
            n = max(self.batch_gpu // cfg.pl_batch_shrink, 1)
            img, ws = self._generate(n)
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay)
            penalty = (lengths - self.pl_mean).square().mean()
            self._optimise(self.G, self.opt_G, penalty * cfg.pl_weight * cfg.g_reg_interval)
            stats["PL"] = penalty.item()
        self.G.requires_grad_(False)
        # Discriminator: fakes and reals.
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake, _ = self._generate(self.batch_gpu)
        real = self.real_batch()
        loss_d = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(real)).mean()
        self._optimise(self.D, self.opt_D, loss_d)
        stats["D"] = loss_d.item()
        # Discriminator: lazy R1 on reals.
        if cfg.gamma > 0 and self.step % cfg.d_reg_interval == 0:
            real = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.D(real).sum(), real, create_graph=True)
            r1 = grad.square().sum([1, 2, 3]).mean()
            self._optimise(self.D, self.opt_D, r1 * (cfg.gamma / 2) * cfg.d_reg_interval)
            stats["R1"] = r1.item()
        self.D.requires_grad_(False)
        # EMA of the generator.
        self.nimg += cfg.batch
        ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else cfg.batch * 10 / 32) * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.step += 1
        return stats

    # ------------------------------------------------------------------ files
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.cfg),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "pl_mean": self.pl_mean,
            "step": self.step,
            "nimg": self.nimg,
            "world": self.world,
            "rng": torch.get_rng_state(),
            "data_rng": self.data_gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else torch.zeros(0, dtype=torch.uint8),
        }

    def save(self) -> Path:
        path = self.run_dir / STATE_FILE
        if self.rank == 0:
            with atomic_path(path) as tmp:
                torch.save(self.state_dict(), tmp)
        return path

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self._check_config(state["config"], int(state["world"]), path)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.step, self.nimg = int(state["step"]), int(state["nimg"])
        if self.rank == 0:
            torch.set_rng_state(state["rng"].cpu())
            self.data_gen.set_state(state["data_rng"].cpu())
            if self.device.type == "cuda" and state["cuda_rng"].numel():
                torch.cuda.set_rng_state(state["cuda_rng"].cpu())

    def save_portable(self) -> Path:
        """Networks in fp32 and Adam's second moments in bf16, as files under 16 MiB each.

        Small enough to carry between machines (a GPU lease, a laptop); the first moments are
        not kept: with beta1 = 0 (StyleGAN2's Adam) they are just the last gradient.
        """
        from safetensors.torch import save_file

        folder = self.run_dir / PORTABLE_DIR
        if self.rank != 0:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            with atomic_path(folder / f"{name}.safetensors") as tmp:
                save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
        tensors: dict[str, torch.Tensor] = {"pl_mean": self.pl_mean.detach().cpu().reshape(1), "rng": torch.get_rng_state(),
                                            "data_rng": self.data_gen.get_state()}
        for tag, opt in (("G", self.opt_G), ("D", self.opt_D)):
            for i, st in opt.state_dict()["state"].items():
                tensors[f"opt_{tag}.{i}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().to(torch.bfloat16).contiguous()
                tensors[f"opt_{tag}.{i}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).cpu()
        meta = {"config": json.dumps(asdict(self.cfg)), "step": str(self.step), "nimg": str(self.nimg), "world": str(self.world)}
        with atomic_path(folder / "train.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return folder

    def load_portable(self, folder: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(folder / "train.safetensors"), framework="pt") as f:
            meta = f.metadata() or {}
        self._check_config(json.loads(meta["config"]), int(meta["world"]), folder)
        for name, module in (("G", self.G), ("D", self.D), ("G_ema", self.G_ema)):
            module.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(self.device)))
        t = load_file(str(folder / "train.safetensors"))
        for tag, opt, module in (("G", self.opt_G, self.G), ("D", self.opt_D, self.D)):
            state = opt.state_dict()
            for i, p in enumerate(module.parameters()):
                key = f"opt_{tag}.{i}.exp_avg_sq"
                if key in t:
                    sq = t[key].float().to(self.device)
                    state["state"][i] = {"step": t[f"opt_{tag}.{i}.step"].reshape([]), "exp_avg": torch.zeros_like(sq), "exp_avg_sq": sq}
            opt.load_state_dict(state)
        self.pl_mean = t["pl_mean"].reshape([]).to(self.device)
        self.step, self.nimg = int(meta["step"]), int(meta["nimg"])
        if self.rank == 0:
            torch.set_rng_state(t["rng"])
            self.data_gen.set_state(t["data_rng"])

    def _check_config(self, saved_cfg: dict[str, Any], saved_world: int, source: Path) -> None:
        ignore = ("total_kimg", "snapshot_kimg", "sample_kimg")
        saved = {k: v for k, v in saved_cfg.items() if k not in ignore}
        mine = {k: v for k, v in asdict(self.cfg).items() if k not in ignore}
        if saved != mine:
            diff = sorted(k for k in mine if saved.get(k) != mine[k])
            raise UserError(f"{source} was trained with other settings ({', '.join(diff)}): use another --out or the same settings")
        if saved_world != self.world:
            raise UserError(f"{source} was trained with {saved_world} processes, now {self.world}: resume with the same count")

    def write_samples(self) -> Path:
        path = self.run_dir / f"samples-{self.nimg:09d}.png"
        if self.rank == 0:
            z = torch.from_numpy(__import__("numpy").random.RandomState(123).randn(32, self.G.z_dim).astype("float32")).to(self.device)
            with torch.no_grad():
                img = self.G_ema(z)
            save_image(path, make_grid(img.cpu(), cols=8))
        return path

    def export(self) -> Path:
        path = self.run_dir / MODEL_FILE
        if self.rank == 0:
            save_model(path, self.G_ema, metadata={"trained_on": self.cfg.data, "kimg": self.nimg / 1000, "train_config": asdict(self.cfg)})
        return path


def clean_stale_temp_files(run_dir: Path) -> None:
    """A process killed while writing leaves a temp file; the complete checkpoint is intact."""
    for p in run_dir.glob(".*.tmp*"):
        p.unlink(missing_ok=True)


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train until total_kimg (or max_minutes of this run), resuming from run_dir/state.pt."""
    from tqdm import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if torch.device(device).type == "cuda":
        # Fixed shapes: let cuDNN pick the fastest kernels. TF32 matrix units: about 1e-3
        # relative error per product, far below the noise of GAN training (the official code
        # disables TF32 for bit-stable comparisons, not for quality).
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    trainer = Trainer(cfg, run_dir, device)
    if trainer.rank == 0:
        clean_stale_temp_files(run_dir)
    state_path = run_dir / STATE_FILE
    portable = run_dir / PORTABLE_DIR
    resumed_from = 0
    if state_path.exists():
        trainer.load(state_path)
        resumed_from = trainer.nimg
    elif (portable / "train.safetensors").exists():
        trainer.load_portable(portable)
        resumed_from = trainer.nimg
    if trainer.world > 1:
        dist.barrier()
    total = int(cfg.total_kimg * 1000)
    start = time.time()
    next_snapshot = (trainer.nimg // int(cfg.snapshot_kimg * 1000) + 1) * int(cfg.snapshot_kimg * 1000)
    next_sample = (trainer.nimg // int(cfg.sample_kimg * 1000) + 1) * int(cfg.sample_kimg * 1000)
    bar = tqdm(total=total / 1000, initial=trainer.nimg / 1000, unit="kimg", disable=not progress or trainer.rank != 0,
               bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} kimg [{elapsed}<{remaining}]{postfix}")
    stats: dict[str, float] = {}
    stopped_early = False
    while trainer.nimg < total:
        stats = trainer.train_step()
        bar.update(cfg.batch / 1000)
        bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()}, refresh=False)
        if trainer.nimg >= next_sample:
            trainer.write_samples()
            next_sample += int(cfg.sample_kimg * 1000)
        if trainer.nimg >= next_snapshot:
            trainer.save()
            next_snapshot += int(cfg.snapshot_kimg * 1000)
        if max_minutes is not None and time.time() - start > max_minutes * 60:
            stopped_early = trainer.nimg < total
            break
    bar.close()
    trainer.save()
    trainer.save_portable()
    trainer.write_samples()
    model_path = trainer.export()
    elapsed = time.time() - start
    checksum = float(sum(p.double().sum() for p in trainer.G_ema.parameters()))
    return {
        "rank": trainer.rank,
        "world": trainer.world,
        "kimg": trainer.nimg / 1000,
        "resumed_from_kimg": resumed_from / 1000,
        "kimg_per_min": round((trainer.nimg - resumed_from) / 1000 / max(elapsed / 60, 1e-9), 3),
        "finished": not stopped_early and trainer.nimg >= total,
        "model": str(model_path),
        "state": str(state_path),
        "last_losses": stats,
        "g_ema_checksum": checksum,
    }


def init_distributed(device: str) -> str:
    """Join the torchrun process group if there is one; return this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device

