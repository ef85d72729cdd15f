"""GANSpace (Härkönen et al. 2020): principal components of W as edit directions.

Incremental PCA over many mapping samples (default 300k), so memory stays flat; each
component's scale is its standard deviation, and an edit can be restricted to a range of
W+ layers (the paper's "layer-wise" edits, e.g. layers 0-3 for pose, 4-7 for features).
"""

from __future__ import annotations

import torch

from latentatlas.directions.files import Directions, model_fingerprint
from latentatlas.io.errors import UserError, require_at_least
from latentatlas.models.stylegan2 import Generator


@torch.no_grad()
def ganspace(
    generator: Generator,
    num_samples: int = 300_000,
    components: int = 80,
    batch: int | None = None,
    seed: int = 0,
    layers: tuple[int, int] | None = None,
    progress: bool = True,
) -> Directions:
    from sklearn.decomposition import IncrementalPCA
    from tqdm import tqdm

    require_at_least("--components", components, 1)
    if components > generator.w_dim:
        raise UserError(f"at most {generator.w_dim} components in a {generator.w_dim}-d W, asked for {components}")
    require_at_least("--samples", num_samples, components, "one per PCA component; or ask for fewer --components")
    if batch is None:  # 10k rows a batch, but never fewer than the components (IncrementalPCA's need)
        batch = max(components, min(10_000, num_samples))
    if batch < components:
        raise UserError(f"the PCA batch ({batch}) must be at least the number of components ({components})")
    pca = IncrementalPCA(n_components=components)
    g = torch.Generator().manual_seed(seed)
    for i in tqdm(range(0, num_samples, batch), disable=not progress, desc="GANSpace PCA", unit="batch"):
        n = min(batch, num_samples - i)
        if n < components:
            break  # IncrementalPCA needs each batch to hold at least `components` samples
        z = torch.randn(n, generator.z_dim, generator=g).to(generator.device)
        pca.partial_fit(generator.mapping(z)[:, 0].double().cpu().numpy())
    vectors = torch.from_numpy(pca.components_).float()
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    scales = torch.from_numpy(pca.explained_variance_).float().sqrt()
    return Directions(
        vectors=vectors, scales=scales, names=[f"pc{k}" for k in range(components)], space="w", method="ganspace",
        model=model_fingerprint(generator), layers=layers,
        info={"num_samples": num_samples, "explained_variance_ratio": pca.explained_variance_ratio_.tolist()},
    )
