"""The factor predictor: a small CNN that reads synthfaces factors back from an image.

It is how every method is scored against the ground truth (a path's effect on each factor,
a projection's factor recovery), and its penultimate features are the feature space of the
domain FID ("factor-feature FID", not to be confused with Inception FID).

Training renders fresh faces on the fly (no fixed data set, so no over-fitting), regresses
continuous factors with MSE and binary ones with a logistic loss, and is resumable.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from latentatlas.data import synthfaces
from latentatlas.io.atomic import atomic_path, state_path
from latentatlas.io.errors import UserError, check_max_minutes, require_at_least, require_number, require_seed
from latentatlas.io.tensorfile import read_training_state, restoring_state
from latentatlas.training.common import setup_cuda

INPUT_RESOLUTION = 64
HELD_OUT_SEED = 987_654_321


class FactorPredictor(nn.Module):
    """64x64 RGB in [-1, 1] -> factor estimates; `features` gives the penultimate layer."""

    def __init__(self, num_factors: int = synthfaces.NUM_FACTORS, width: int = 32, feature_dim: int = 256) -> None:
        super().__init__()
        self.num_factors, self.width, self.feature_dim = num_factors, width, feature_dim
        chans = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i in range(4):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.SiLU(),
                nn.Conv2d(chans[i + 1], chans[i + 1], 3, stride=2, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.SiLU(),
            ]
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * 16, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, num_factors)
        self.register_buffer("binary", synthfaces.BINARY.clone()[:num_factors])
        self._folded: tuple[tuple, list[tuple[torch.Tensor, torch.Tensor, int]]] | None = None

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """Resize any square image batch to the predictor's 64 px (area filter)."""
        if images.shape[-1] != INPUT_RESOLUTION or images.shape[-2] != INPUT_RESOLUTION:
            images = F.interpolate(images, size=(INPUT_RESOLUTION, INPUT_RESOLUTION), mode="area")
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images)
        folded = self._folded_trunk()
        if folded is None:
            return self.embed(self.trunk(x))
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        for weight, bias, stride in folded:
            x = F.silu(F.conv2d(x, weight, bias, stride=stride, padding=1))
        return self.embed(x)

    def _folded_trunk(self) -> list[tuple[torch.Tensor, torch.Tensor, int]] | None:
        """The trunk's (weight, bias, stride) per convolution with its batch norm folded in, for a
        frozen predictor in eval mode (as the projector, the metrics and StyleMapGAN training use
        it), else None. Why: at batch 1 the predictor's forward and backward pass were a quarter
        of a 64 px projector step, most of it per-operator cost; without the 8 batch norms, and
        with channels-last activations on CPU (oneDNN's fast layout there), 2 cores took 12.6
        against 17.9 ms. Kept until a weight or statistic changes in place."""
        if self.training:
            return None
        tensors = [*self.trunk.parameters(), *self.trunk.buffers()]
        if any(t.requires_grad for t in tensors):
            return None
        cacheable = not any(t.is_inference() for t in tensors)
        key = tuple((t._version, t.data_ptr(), t.device) for t in tensors) if cacheable else None
        if key is not None and self._folded is not None and self._folded[0] == key:
            return self._folded[1]
        folded = []
        for conv, bn in zip(self.trunk[0::3], self.trunk[1::3]):
            scale = bn.weight / (bn.running_var + bn.eps).sqrt()
            weight = conv.weight * scale.reshape(-1, 1, 1, 1)
            if weight.device.type == "cpu":
                weight = weight.contiguous(memory_format=torch.channels_last)
            folded.append((weight, (conv.bias - bn.running_mean) * scale + bn.bias, conv.stride[0]))
        if key is not None:
            self._folded = (key, folded)
        return folded

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw outputs: regression values for continuous factors, logits for binary ones."""
        return self.head(self.features(images))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Factor estimates in factor units: continuous as regressed, binary as probabilities."""
        out = self(images)
        return torch.where(self.binary, torch.sigmoid(out), out)


def factor_loss(outputs: torch.Tensor, factors: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
    cont = F.mse_loss(outputs[:, ~binary], factors[:, ~binary])
    if not binary.any():
        return cont
    return cont + 0.1 * F.binary_cross_entropy_with_logits(outputs[:, binary], factors[:, binary])


@dataclass
class TrainConfig:
    steps: int = 20_000
    batch: int = 128
    lr: float = 2e-3
    width: int = 32
    seed: int = 0
    render_resolution: int = 64

    def __post_init__(self) -> None:
        """Refused as one line before any work, as the GAN trainers' configs are (training/common.py)."""
        require_at_least("--steps", self.steps, 1, "optimisation steps")
        require_at_least("--batch", self.batch, 2, "rendered faces per step: batch norm needs two")
        require_at_least("--width", self.width, 1, "channels of the first layer")
        require_number("--lr", self.lr, above=0, what="a positive learning rate", example="0.002")
        require_seed("--seed", self.seed)


def _batch(step: int, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, factors = synthfaces.sample(cfg.batch, seed=cfg.seed * 10_000_019 + step, resolution=cfg.render_resolution, device=device)
    return images, factors


def train(
    out: str | Path,
    cfg: TrainConfig,
    device: str | torch.device = "cpu",
    resume: bool = True,
    progress: bool = True,
    max_steps_this_run: int | None = None,
    max_minutes: float | None = None,
) -> FactorPredictor:
    """Train (or resume) a predictor; the checkpoint `out`.state.pt is rewritten atomically.

    Stops after cfg.steps in total, after max_steps_this_run, or after max_minutes (chunked
    runs on a time-limited machine). The predictor file `out` is written when all steps are
    done; a run stopped by max_minutes also writes it, marked `"complete": false` in its
    info, so a lease that ran short still returns usable weights.
    """
    import time

    from tqdm import tqdm

    check_max_minutes(max_minutes)
    out = Path(out)
    state_file = state_path(out)
    device = torch.device(device)
    setup_cuda(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the same initial weights for the same config
        model = FactorPredictor(width=cfg.width).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step = 0
    if resume and state_file.exists():
        state = read_training_state(state_file, device)
        if state["config"] != asdict(cfg):
            raise UserError(f"{state_file} was trained with another config {state['config']}: remove it or match it")
        with restoring_state(state_file):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step = int(state["step"])
    end = cfg.steps if max_steps_this_run is None else min(cfg.steps, step + max_steps_this_run)
    model.train()
    bar = tqdm(total=end - step, disable=not progress, desc="factor predictor", unit="step")
    last_save = step
    start = time.time()
    timed_out = False
    while step < end:
        if max_minutes is not None and time.time() - start > max_minutes * 60:
            timed_out = True
            break
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        images, factors = _batch(step, cfg, device)
        loss = factor_loss(model(images), factors, model.binary)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step - last_save >= 1000 or step == end:
            _save_state(state_file, model, opt, step, cfg)
            last_save = step
    bar.close()
    if step != last_save:
        _save_state(state_file, model, opt, step, cfg)
    model.eval()
    if step >= cfg.steps or timed_out:
        save_predictor(out, model, {"train": asdict(cfg), "steps": step, "complete": step >= cfg.steps})
    return model


def _save_state(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, cfg: TrainConfig) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "config": asdict(cfg)}, tmp)


def save_predictor(path: str | Path, model: FactorPredictor, info: dict[str, Any]) -> None:
    meta = {
        "format": "latentatlas",
        "kind": "factor-predictor",
        "config": json.dumps({"num_factors": model.num_factors, "width": model.width, "feature_dim": model.feature_dim}),
        "factors": json.dumps(list(synthfaces.FACTOR_NAMES)),
        "info": json.dumps(info),
    }
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)


def load_predictor(path: str | Path, device: str | torch.device = "cpu") -> FactorPredictor:
    """Load a predictor file, or the bundled one by name ('factors')."""
    from latentatlas.io import tensorfile
    from latentatlas.models.bundled import resolve_predictor

    path = resolve_predictor(path)
    meta, tensors = tensorfile.read_tensors(path, "factor predictor")
    if meta.get("kind") != "factor-predictor":
        raise UserError(f"{path}: not a latentatlas factor predictor")
    with tensorfile.fields(path, "factor predictor"):
        if json.loads(meta["factors"]) != list(synthfaces.FACTOR_NAMES):
            raise UserError(f"{path}: trained on another set of synthfaces factors; retrain it")
        model = FactorPredictor(**json.loads(meta["config"]))
        model.load_state_dict(tensors)
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def evaluate(model: FactorPredictor, n: int = 2000, seed: int = HELD_OUT_SEED, resolution: int = 64, batch: int = 250) -> dict[str, float]:
    """Per-factor R^2 (continuous) and accuracy (binary) on held-out renders."""
    device = next(model.parameters()).device
    preds, truths = [], []
    for i in range(0, n, batch):
        images, factors = synthfaces.sample(min(batch, n - i), seed=seed + i, resolution=resolution, device=device)
        preds.append(model.predict(images))
        truths.append(factors)
    p, t = torch.cat(preds), torch.cat(truths)
    scores = {}
    for j, factor in enumerate(synthfaces.FACTORS):
        if factor.binary:
            scores[factor.name] = float(((p[:, j] > 0.5).float() == t[:, j]).float().mean())
        else:
            ss_res = ((p[:, j] - t[:, j]) ** 2).sum()
            ss_tot = ((t[:, j] - t[:, j].mean()) ** 2).sum()
            scores[factor.name] = float(1 - ss_res / ss_tot)
    return scores
