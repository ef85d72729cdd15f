"""StyleMapGAN training as in the paper (Kim et al. 2021) and naver-ai/StyleMapGAN's train.py.

Per step, in the official order:
1. G: non-saturating adversarial loss on G(z);
2. E: latent cycle MSE(w, E(G(w))) (w the stylemap, G(w) detached);
3. D: logistic loss on reals and fakes, plus the domain-guided term softplus(D(G(E(x))));
4. D: lazy R1 on reals every `d_reg_interval` steps;
5. E and G together: image cycle MSE(x, G(E(x))) + perceptual distance + softplus(-D(G(E(x))));
6. EMA (0.999) of G and E.
The perceptual distance is LPIPS-VGG when its two weight files are given, else (synthfaces) the
mean squared difference of the factor predictor's features, or none: projection's "auto" rule
(inversion.losses.auto_perceptual), at its own scale (perceptual_loss says why).

Resumable (`state.pt` written atomically), portable checkpoints (`portable/`, files under
16 MiB for the faces64-stylemap config), `model.safetensors` (G_ema + E_ema), sample sheets,
torchrun-capable: the machinery is `training.common`, shared with the StyleGAN2 trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from latentatlas.data import synthfaces
from latentatlas.io.errors import UserError
from latentatlas.io.images import make_grid, save_image
from latentatlas.models.stylegan2 import Discriminator, DiscriminatorConfig
from latentatlas.models.stylemap import Encoder, Generator, StyleMapConfig, faces64_stylemap_config
from latentatlas.training import common

STATE_FILE, MODEL_FILE, PORTABLE_DIR = common.STATE_FILE, common.MODEL_FILE, common.PORTABLE_DIR
_F64 = faces64_stylemap_config()


@dataclass
class StyleMapTrainConfig(common.RunSettings):
    batch: int = 16  # official: 16
    latent_spatial_size: int = _F64.latent_spatial_size  # defaults: the faces64-stylemap config
    style_dim: int = _F64.style_dim
    mapping_layers: int = _F64.mapping_layers
    channel_base: int = _F64.channel_base
    channel_multiplier: int = _F64.channel_multiplier
    channel_max: int = _F64.channel_max
    small_generator: bool = _F64.small_generator
    lr: float = 0.002
    r1_gamma: float = 10.0
    d_reg_interval: int = 16
    ema_beta: float = 0.999
    mbstd_group: int = 4
    perceptual: str = "auto"  # auto (factors for synthfaces, else none), factors, lpips, none
    vgg: str | None = None  # LPIPS: torchvision vgg16 weights
    lpips_lin: str | None = None  # LPIPS: lpips' linear heads
    lambda_adv: float = 1.0
    lambda_w_rec: float = 1.0
    lambda_d: float = 1.0
    lambda_indomain_d: float = 1.0
    lambda_x_rec: float = 1.0
    lambda_perceptual: float = 1.0
    lambda_indomain_e: float = 1.0

    def __post_init__(self) -> None:
        common.check_run_settings(self, "StyleMapGAN", self.model_config)

    def model_config(self) -> StyleMapConfig:
        return StyleMapConfig(
            resolution=self.resolution, latent_spatial_size=self.latent_spatial_size, style_dim=self.style_dim,
            mapping_layers=self.mapping_layers, channel_base=self.channel_base, channel_multiplier=self.channel_multiplier,
            channel_max=self.channel_max, small_generator=self.small_generator,
        )

    def discriminator_config(self) -> DiscriminatorConfig:
        # The StyleGAN2 residual discriminator (the same network as StyleMapGAN's), with G's channels.
        return DiscriminatorConfig(img_resolution=self.resolution, channel_base=self.channel_base * self.channel_multiplier,
                                   channel_max=self.channel_max, mbstd_group_size=self.mbstd_group)

    def perceptual_kind(self) -> str:
        """factors, lpips or none: "auto" as projection picks it (inversion.losses.auto_perceptual),
        with this run's data as the domain."""
        if self.perceptual == "auto":
            from latentatlas.inversion.losses import auto_perceptual

            picked = auto_perceptual(bool(self.vgg or self.lpips_lin), lambda: self.data == "synthfaces")
            return {"lpips": "lpips", "factor": "factors", None: "none"}[picked]
        return self.perceptual


def perceptual_loss(kind: str, cfg: StyleMapTrainConfig,
                    device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """(a, b) -> per-image distance, or None.

    The factor distance is the *mean* squared difference of the predictor's features, where
    projection's (inversion.losses.factor_feature_distance) is their sum: the rule that picks
    it is shared (perceptual_kind), the scale is not, on purpose. This term is weighed by
    lambda_perceptual against the image MSE and the adversarial terms in every E and G step;
    the sum would make it as many times larger as the features are wide (256 for the bundled
    predictor), so a resumed run (faces64-stylemap's among them) would change its objective
    mid-run. Both images change every step here, so projection's cached target features would
    not help either."""
    if kind == "none":
        return None
    if kind == "lpips":
        if not (cfg.vgg and cfg.lpips_lin):
            raise UserError("the LPIPS loss needs both --vgg and --lpips-lin files")
        from latentatlas.inversion.losses import LPIPSVGG

        net = LPIPSVGG.from_files(cfg.vgg, cfg.lpips_lin).to(device).eval().requires_grad_(False)
        return lambda a, b: net(a, b).reshape(a.shape[0], -1).mean(1)
    if kind == "factors":
        from latentatlas.training.attributes import load_predictor

        pred = load_predictor("factors", device)
        return lambda a, b: (pred.features(a) - pred.features(b)).square().mean(1)
    raise UserError(f"perceptual loss {kind!r}: use auto, factors, lpips or none")


class StyleMapTrainer(common.TrainerBase):
    def __init__(self, cfg: StyleMapTrainConfig, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.setup_processes(cfg, run_dir, device)
        model_cfg = cfg.model_config()  # checked with the config (common.check_run_settings)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.G = Generator(model_cfg).to(self.device).train().requires_grad_(False)
            self.E = Encoder(model_cfg).to(self.device).train().requires_grad_(False)
            self.D = Discriminator(cfg.discriminator_config()).to(self.device).train().requires_grad_(False)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.E_ema = copy.deepcopy(self.E).eval()
        self.opt_G = common.adam(self.G.parameters(), cfg.lr)
        self.opt_E = common.adam(self.E.parameters(), cfg.lr)
        self.opt_D = common.adam(self.D.parameters(), cfg.lr, cfg.d_reg_interval)
        self.percept = perceptual_loss(cfg.perceptual_kind(), cfg, self.device)
        self.setup_data()

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"G": self.G, "D": self.D, "E": self.E, "G_ema": self.G_ema, "E_ema": self.E_ema}

    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer, torch.nn.Module]]:
        return {"G": (self.opt_G, self.G), "D": (self.opt_D, self.D), "E": (self.opt_E, self.E)}

    def train_step(self) -> dict[str, float]:
        cfg, stats, world = self.cfg, {}, self.world
        n = self.batch_gpu
        real = self.real_batch()
        # 1. G adversarial; 2. E latent cycle on the (detached) fakes.
        self.G.requires_grad_(True)
        code = self.G.mapping(torch.randn(n, self.G.z_dim, device=self.device))
        fake = self.G(code)
        adv = F.softplus(-self.D(fake)).mean()
        common.optimise([(self.G, self.opt_G)], adv * cfg.lambda_adv, world)
        self.G.requires_grad_(False)
        self.E.requires_grad_(True)
        w_rec = F.mse_loss(self.E(fake.detach()), code.detach())
        common.optimise([(self.E, self.opt_E)], w_rec * cfg.lambda_w_rec, world)
        self.E.requires_grad_(False)
        stats["G_adv"], stats["w_rec"] = adv.item(), w_rec.item()
        # 3. D: reals, fakes, and the domain-guided term on reconstructions.
        self.D.requires_grad_(True)
        with torch.no_grad():
            fake = self.G(self.G.mapping(torch.randn(n, self.G.z_dim, device=self.device)))
            rec = self.G(self.E(real))
        logits_fake, logits_real = self.D(fake), self.D(real)
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        indomain_d = F.softplus(self.D(rec)).mean()
        common.optimise([(self.D, self.opt_D)], loss_d * cfg.lambda_d + indomain_d * cfg.lambda_indomain_d, world)
        stats["D"], stats["D_rec"], stats["D_real"], stats["D_fake"] = torch.stack(
            [loss_d, indomain_d, logits_real.mean(), logits_fake.mean()]).tolist()
        # 4. Lazy R1.
        if cfg.r1_gamma > 0 and self.step % cfg.d_reg_interval == 0:
            r = real.detach().requires_grad_(True)
            logits = self.D(r)
            (grad,) = torch.autograd.grad(logits.sum(), r, create_graph=True)
            r1 = grad.square().sum([1, 2, 3]).mean()
            # + 0 * logits[0], as naver-ai's train.py: the critic's output bias, which the input
            # gradient does not depend on, gets a zero gradient, so Adam steps (and decays) it as there.
            common.optimise([(self.D, self.opt_D)], r1 * (cfg.r1_gamma / 2) * cfg.d_reg_interval + 0 * logits[0, 0], world)
            stats["R1"] = r1.item()
        self.D.requires_grad_(False)
        # 5. Image cycle through E and G, both updated.
        self.E.requires_grad_(True)
        self.G.requires_grad_(True)
        rec = self.G(self.E(real))
        x_rec = F.mse_loss(rec, real)
        perc = self.percept(real, rec).mean() if self.percept is not None else torch.zeros([], device=self.device)
        indomain_e = F.softplus(-self.D(rec)).mean()
        total = x_rec * cfg.lambda_x_rec + perc * cfg.lambda_perceptual + indomain_e * cfg.lambda_indomain_e
        common.optimise([(self.E, self.opt_E), (self.G, self.opt_G)], total, world)
        self.E.requires_grad_(False)
        self.G.requires_grad_(False)
        stats["x_rec"], stats["percept"], stats["E_adv"] = x_rec.item(), perc.item(), indomain_e.item()
        # 6. EMA.
        common.ema_update(self.G_ema, self.G, cfg.ema_beta)
        common.ema_update(self.E_ema, self.E, cfg.ema_beta)
        self.nimg += cfg.batch
        self.step += 1
        return stats

    # ------------------------------------------------------------------ files
    def write_samples(self) -> Path:
        """Row 1-2: random samples (G_ema); row 3: fixed renders; row 4: their reconstructions G_ema(E_ema(x))."""
        path = self.run_dir / f"samples-{self.nimg:09d}.png"
        if self.rank == 0:
            g = torch.Generator().manual_seed(123)
            z = torch.randn(16, self.G.z_dim, generator=g).to(self.device)
            real, _ = synthfaces.sample(8, seed=424242, resolution=self.cfg.resolution, device=self.device)
            if self.folder is not None:
                real = self.folder.batch(8, torch.Generator().manual_seed(424242)).to(self.device)
            with torch.no_grad():
                img = torch.cat([self.G_ema(self.G_ema.mapping(z)), real, self.G_ema(self.E_ema(real))])
            save_image(path, make_grid(img.cpu(), cols=8))
        return path

    def export(self, path: Path | None = None, info: dict[str, Any] | None = None, half: bool = False) -> Path:
        from latentatlas.io.checkpoints import save_stylemap_model

        path = path or self.run_dir / MODEL_FILE
        if self.rank == 0:
            save_stylemap_model(path, self.G_ema, self.E_ema, metadata=self.export_info(info), dtype=torch.float16 if half else None)
        return path


def train(
    cfg: StyleMapTrainConfig,
    run_dir: str | Path,
    device: str | torch.device = "cpu",
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train until total_kimg (or max_minutes of this run), resuming from run_dir/state.pt or run_dir/portable."""
    trainer, result = common.train_run(lambda folder: StyleMapTrainer(cfg, folder, device), run_dir, device, max_minutes, progress)
    result["ema_checksum"] = float(sum(p.double().sum() for m in (trainer.G_ema, trainer.E_ema) for p in m.parameters()))
    return result
