"""SeFa (Shen & Zhou 2021): closed-form directions from the style-affine weights.

The affine layers map w to per-channel styles; the directions that change the styles most
are the top eigenvectors of A^T A, where A stacks the (column-normalised) affine weights of
the chosen layers. No sampling is needed for the directions; samples only set each
direction's scale (std of w along it), so strengths compare with the other methods.

A has one row per style channel, so A^T A has rank at most the number of channels stacked;
the eigenvectors beyond the rank span A's null space and change no style at all. They are
dropped (eigenvalues under RANK_TOLERANCE x the largest), so a short layer range gives fewer
directions than asked for; info["components_asked"] and info["rank"] say so.

The layers are the conv layers (w+ layers 0..num_ws - 2): the last w feeds only the final
ToRGB, whose affine is left out, so a range ends at num_ws - 1 at most. Directions made with
the default range still edit every w+ layer.
"""

from __future__ import annotations

import torch

from latentatlas.directions.files import Directions, model_fingerprint, sample_w, scales_along
from latentatlas.io.errors import UserError, require_at_least
from latentatlas.models.stylegan2 import Generator

RANK_TOLERANCE = 1e-6  # eigenvalues of A^T A below this x the largest belong to its null space


def affine_layers(generator: Generator) -> list[torch.nn.Module]:
    """The style-affine layers in w+ order (conv layers and ToRGB share a w; ToRGBs excluded)."""
    return [layer.affine for _, layer in generator.synthesis.noise_layers()]


@torch.no_grad()
def sefa(
    generator: Generator,
    layers: tuple[int, int] | None = None,
    components: int = 80,
    scale_samples: int = 20_000,
    seed: int = 0,
) -> Directions:
    """The top `components` SeFa directions of the conv layers [start, end) (all when None); fewer
    when the stacked affine weights have a lower rank (see the module's docstring)."""
    require_at_least("--components", components, 1)
    affines = affine_layers(generator)
    start, end = layers if layers is not None else (0, len(affines))
    if not 0 <= start < end <= len(affines):
        raise UserError(f"--layers {start}-{end}: SeFa factorises the {len(affines)} conv layers' style affines (the last "
                        f"w feeds only the final ToRGB); give start-end within 0-{len(affines)} (end excluded)")
    a = torch.cat([m.weight.detach().double().cpu() for m in affines[start:end]], dim=0)  # [sum C, w_dim]
    a = a / a.norm(dim=1, keepdim=True)  # each style channel's weight vector to unit norm
    eigvals, eigvecs = torch.linalg.eigh(a.T @ a)
    rank = int((eigvals > RANK_TOLERANCE * eigvals.max()).sum())
    order = eigvals.argsort(descending=True)[: min(components, rank)]
    vectors = eigvecs[:, order].T.float()
    samples = sample_w(generator, scale_samples, seed=seed)
    return Directions(
        vectors=vectors, scales=scales_along(vectors, samples), names=[f"sefa{k}" for k in range(len(order))],
        space="w", method="sefa", model=model_fingerprint(generator), layers=layers,
        info={"eigenvalues": eigvals[order].tolist(), "components_asked": components, "rank": rank},
    )
