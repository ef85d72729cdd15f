"""Score a set of paths (linear or warped) against the synthfaces ground truth.

One function for the `directions score` command and the method-comparison benchmark, so every
method is measured the same way: the same start codes, path length (in units of w_std, the
typical distance of w from its mean), frames, and reconstructor budget.
"""

from __future__ import annotations

from typing import Any

from latentatlas.directions.files import sample_w
from latentatlas.directions.reconstructor import check_inputs
from latentatlas.directions.warped import PathSet
from latentatlas.inversion.projector import w_statistics
from latentatlas.io.errors import UserError, require_at_least, require_number
from latentatlas.metrics.paths import path_responses, summarize
from latentatlas.models.stylegan2 import Generator
from latentatlas.training.attributes import FactorPredictor


def score_paths(
    generator: Generator,
    predictor: FactorPredictor,
    paths: PathSet,
    starts: int = 64,
    steps: int = 9,
    length: float = 0.5,
    top: int = 20,
    reconstructor_steps: int = 0,
    reconstructor_batch: int = 16,
    reconstructor_input: str = "difference",
    seed: int = 7,
) -> dict[str, Any]:
    """Per-path main factor, steepness and drift; disentanglement, completeness; optional reconstructor accuracy.

    A linear set made for a layer range is walked in w+ moving only those layers, as `traverse`
    applies it (walked in w, every layer would move: another edit than the one the file holds);
    the range is recorded as "layers" (null: every layer).
    """
    check_score_settings(starts, steps, length, top, reconstructor_steps, reconstructor_batch, reconstructor_input)
    if paths.space != "w":
        raise UserError("scoring walks paths in W: these directions are in z")
    if reconstructor_steps > 0 and len(paths) < 2:  # before the walks, not after them (they take the time)
        raise UserError(f"the reconstructor needs at least 2 paths to tell apart, and this file has {len(paths)}; "
                        "use --reconstructor-steps 0")
    _, w_std = w_statistics(generator, 5000)
    w0 = sample_w(generator, starts, seed=seed)
    if paths.walk_space == "w+":
        w0 = w0.unsqueeze(1).repeat(1, generator.num_ws, 1)
    k = min(top, len(paths))
    slopes, signed, pearson = path_responses(generator, predictor, [paths.walk(i) for i in range(k)], w0, length * w_std, steps)
    summary = summarize(slopes, signed)
    summary.update({"method": paths.method, "layers": list(paths.layers) if paths.layers is not None else None,
                    "length_w_units": length * w_std, "slopes": slopes.tolist(), "pearson": pearson.tolist()})
    if reconstructor_steps > 0:
        from latentatlas.directions.reconstructor import reconstructor_accuracy

        summary["reconstructor"] = reconstructor_accuracy(
            generator, paths.field, k, paths.walk_space, w_std, reconstructor_steps, reconstructor_batch, seed=seed,
            progress=False, inputs=reconstructor_input,
        )
    return summary


def check_score_settings(starts: int, steps: int, length: float, top: int, reconstructor_steps: int = 0,
                         reconstructor_batch: int = 16, reconstructor_input: str = "difference") -> None:
    """The walk's settings, checked before any work: a slope needs 2 frames and a path of some length
    (else the scores are NaN), and at least one start code and one path; two paths when a
    reconstructor is to tell them apart."""
    require_at_least("--starts", starts, 1, "start codes per path")
    require_at_least("--frames", steps, 2, "frames per path: a slope needs two")
    require_at_least("--top", top, 1, "directions to score")
    if reconstructor_steps > 0:
        require_at_least("--top", top, 2, "paths for the reconstructor to tell apart; or --reconstructor-steps 0")
    require_number("--length", length, above=0, what="a positive half path length in w_std units", example="0.5")
    require_at_least("--reconstructor-steps", reconstructor_steps, 0, "0: skip the reconstructor")
    require_at_least("--reconstructor-batch", reconstructor_batch, 1, "image pairs per step")
    check_inputs(reconstructor_input)
