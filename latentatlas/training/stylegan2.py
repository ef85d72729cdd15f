"""StyleGAN2 training as in the paper (Karras et al. 2020) and NVIDIA's stylegan2-ada-pytorch.

Non-saturating logistic loss, lazy R1 on reals (every 16 D steps), lazy path-length
regularisation (every 4 G steps, batch halved), style-mixing regularisation, generator EMA
with ramp-up, Adam with betas (0, 0.99) and the lazy-regularisation correction of lr and
betas. Data: synthfaces rendered on the fly, or a folder of images.

Runs on CPU (tiny configs, tests), one GPU, or several processes under `torchrun`: each rank
draws its own data, gradients are averaged with all-reduce after every backward pass (the
official code's scheme; it works with the separate lazy-regularisation passes, which
DistributedDataParallel's single-backward hooks do not fit), and only rank 0 writes files.

A run directory holds `state.pt` (everything needed to resume: networks, optimisers, every
process's RNG states, counters; written atomically, so `kill -9` at any moment leaves the last
complete checkpoint), `samples-XXXXXX.png` grids and `model.safetensors` (G_ema in our format).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from latentatlas.io.checkpoints import save_model
from latentatlas.io.images import make_grid, save_image
from latentatlas.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from latentatlas.training import common

STATE_FILE, MODEL_FILE, PORTABLE_DIR = common.STATE_FILE, common.MODEL_FILE, common.PORTABLE_DIR


@dataclass
class TrainConfig(common.RunSettings):
    z_dim: int = 256  # defaults: the bundled faces64 config
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 8192
    channel_max: int = 128
    d_channel_base: int | None = None  # None: the generator's; faces64-narrow keeps the 128-channel critic
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

    def __post_init__(self) -> None:
        common.check_run_settings(self, "StyleGAN2", self.generator_config)

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
            img_resolution=self.resolution, channel_base=self.d_channel_base or self.channel_base,
            channel_max=self.channel_max, mbstd_group_size=self.mbstd_group,
        )


_adam = common.adam


class Trainer(common.TrainerBase):
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.setup_processes(cfg, run_dir, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.G = Generator(cfg.generator_config()).to(self.device).train().requires_grad_(False)
            self.D = Discriminator(cfg.discriminator_config()).to(self.device).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.opt_G = _adam(self.G.parameters(), cfg.lr, cfg.g_reg_interval)
        self.opt_D = _adam(self.D.parameters(), cfg.lr, cfg.d_reg_interval)
        self.pl_mean = torch.zeros([], device=self.device)
        self.setup_data()

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

    def _path_length_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The lazy path-length loss to optimise (weight and interval applied) and the mean penalty,
        as NVIDIA's loss.py: the new path-length mean stays in the graph for this batch's penalty
        (its gradient counts the batch's own pull on the mean), only the stored mean is detached;
        img[:, 0, 0, 0] * 0 gives the parameters the penalty does not reach (the toRGB biases) a
        zero gradient, so Adam steps (and decays) them as there."""
        cfg = self.cfg
        img, ws = self._generate(max(self.batch_gpu // cfg.pl_batch_shrink, 1))
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(lengths.mean(), cfg.pl_decay)
        self.pl_mean = pl_mean.detach()
        penalty = (lengths - pl_mean).square()
        loss = (img[:, 0, 0, 0] * 0 + penalty * cfg.pl_weight).mean() * cfg.g_reg_interval
        return loss, penalty.mean()

    def _optimise(self, module: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        common.optimise([(module, opt)], loss, self.world)

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
            loss_pl, penalty = self._path_length_loss()
            self._optimise(self.G, self.opt_G, loss_pl)
            stats["PL"] = penalty.item()
        self.G.requires_grad_(False)
        # Discriminator: fakes and reals.
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake, _ = self._generate(self.batch_gpu)
        real = self.real_batch()
        logits_fake, logits_real = self.D(fake), self.D(real)
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        self._optimise(self.D, self.opt_D, loss_d)
        stats["D"], stats["D_real"], stats["D_fake"] = torch.stack([loss_d, logits_real.mean(), logits_fake.mean()]).tolist()
        # Discriminator: lazy R1 on reals.
        if cfg.gamma > 0 and self.step % cfg.d_reg_interval == 0:
            real = real.detach().requires_grad_(True)
            logits = self.D(real)
            (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
            r1 = grad.square().sum([1, 2, 3])
            # logits * 0, as NVIDIA's loss.py: the critic's output bias, which the input gradient
            # does not depend on, gets a zero gradient, so Adam steps (and decays) it as there.
            self._optimise(self.D, self.opt_D, (logits[:, 0] * 0 + r1 * (cfg.gamma / 2)).mean() * cfg.d_reg_interval)
            stats["R1"] = r1.mean().item()
        self.D.requires_grad_(False)
        # EMA of the generator.
        self.nimg += cfg.batch
        ema_nimg = (cfg.ema_kimg if cfg.ema_kimg is not None else cfg.batch * 10 / 32) * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        common.ema_update(self.G_ema, self.G, beta)
        self.step += 1
        return stats

    # ------------------------------------------------------------------ files
    def networks(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]]:
        return {"G": (self.opt_G, self.G), "D": (self.opt_D, self.D)}

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"pl_mean": self.pl_mean}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.pl_mean = state["pl_mean"].reshape([]).to(self.device)

    def write_samples(self) -> Path:
        path = self.run_dir / f"samples-{self.nimg:09d}.png"
        if self.rank == 0:
            z = torch.from_numpy(__import__("numpy").random.RandomState(123).randn(32, self.G.z_dim).astype("float32")).to(self.device)
            with torch.no_grad():
                img = self.G_ema(z)
            save_image(path, make_grid(img.cpu(), cols=8))
        return path

    def export(self, path: Path | None = None, info: dict[str, Any] | None = None, half: bool = False) -> Path:
        path = path or self.run_dir / MODEL_FILE
        if self.rank == 0:
            save_model(path, self.G_ema, metadata=self.export_info(info), dtype=torch.float16 if half else None)
        return path


init_distributed = common.init_distributed


def train(
    cfg: TrainConfig,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train until total_kimg (or max_minutes of this run), resuming from run_dir/state.pt or run_dir/portable."""
    trainer, result = common.train_run(lambda folder: Trainer(cfg, folder, device), run_dir, device, max_minutes, progress)
    result["g_ema_checksum"] = float(sum(p.double().sum() for p in trainer.G_ema.parameters()))
    return result
