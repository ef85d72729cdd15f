"""Supervised directions: InterFaceGAN boundaries, conditional directions, vector arithmetic.

Given codes and one score per code for each named attribute (synthfaces factors predicted by
the factor predictor, or any user-given scores), an attribute's direction is
- "svm": the unit normal of a linear SVM separating the top and the bottom fraction of the
  codes by score (InterFaceGAN), or
- "mean": the difference of the means of the top and bottom groups (vector arithmetic);
and a conditional direction removes the components along the directions of other named
attributes, so editing one leaves those alone (to first order).
factor_directions makes them from a model alone: its sampled w codes scored by the factor
predictor (the command's --predictor, the bundled directions, the directions table).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentatlas.directions.files import Directions, scales_along
from latentatlas.io.errors import UserError
from latentatlas.io.npzfile import read_npz

if TYPE_CHECKING:  # imported where used: the predictor's module loads the training code
    from latentatlas.models.stylegan2 import Generator
    from latentatlas.training.attributes import FactorPredictor

SCORES_LAYOUT = "latents [N, D], scores [N, F], names [F]"


def load_scores(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A user's scores file (.npz): codes [N, D], scores [N, F] and the F attribute names.

    Codes must be finite: a NaN reached the SVM as sklearn's traceback, and the mean method
    as NaN directions. (Scores are checked per attribute in `boundary`.)
    """
    data = read_npz(path)
    missing = [k for k in ("latents", "scores", "names") if k not in data]
    if missing:
        raise UserError(f"{path}: needs arrays {SCORES_LAYOUT}; it has no {', '.join(missing)}")
    try:
        codes, scores = (torch.from_numpy(np.asarray(data[k], dtype=np.float32)) for k in ("latents", "scores"))
        names = [str(n) for n in data["names"]]
        scores = scores.reshape(len(scores), -1)
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: needs arrays {SCORES_LAYOUT} of numbers and names ({e})") from None
    bad = int((~torch.isfinite(codes)).sum())
    if bad:
        raise UserError(f"{path}: latents hold {bad} NaN or infinite values; remove the codes that have them")
    check_scores(codes, scores, names, where=path)
    return codes, scores, names


def check_scores(codes: torch.Tensor, scores: torch.Tensor, names: list[str], where: str | Path = "") -> None:
    """Scores [N, F] fit their N codes and F names and are finite, or one line that begins with
    `where` (load_scores gives the file's path, so the user learns which file to fix) and says
    what to give. One check for the scores file, `supervised` and `boundary` alike."""
    at = f"{where}: " if str(where) else ""
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise UserError(f"{at}scores are {list(scores.shape)} for {len(names)} names: give scores [N, {len(names)}], "
                        "a column per name")
    if codes.shape[0] != scores.shape[0]:
        raise UserError(f"{at}{codes.shape[0]} codes but {scores.shape[0]} rows of scores: give one row of scores per code")
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise UserError(f"{at}scores hold {bad} NaN or infinite values; remove the codes that have them, or score them again")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # each name becomes a direction's: the file would be refused when read (files.file_names)
        raise UserError(f"{at}the scores name {twice[0]!r} more than once: give each column its own name")


METHODS = ("svm", "mean")


def check_method(method: str) -> str:
    """`method` when it is one of METHODS, else one line naming the option (the CLI checks it before
    it samples and scores the codes, which is most of the work)."""
    if method not in METHODS:
        raise UserError(f"method (--method) must be {' or '.join(METHODS)}: got {method!r}")
    return method


def _groups(scores: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(scores)
    k = max(int(n * fraction), 2)
    if 2 * k > n:
        raise UserError(f"need more codes: top and bottom {fraction:.0%} overlap with {n} codes")
    order = scores.argsort()
    return order[-k:], order[:k]


def boundary(codes: torch.Tensor, scores: torch.Tensor, method: str = "svm", fraction: float = 0.1, seed: int = 0,
             name: str = "the score") -> torch.Tensor:
    """Unit direction in which the score grows, from codes [N, D] and scores [N]; `name` (the
    attribute's) goes into the messages.

    When the top and bottom groups hold the same codes (duplicates) there is no direction: the
    difference of means, or the SVM's normal, is 0, and 0/0 gave NaN vectors. When they share a
    score (every score equal, or a tie across the cut) the groups are drawn by the sort's tie-break,
    not by the score, and the direction means nothing: constant scores gave every attribute the
    same arbitrary vector, written without a word.
    """
    check_scores(codes, scores.unsqueeze(1), [name])
    check_method(method)
    top, bottom = _groups(scores, fraction)
    shared = float(scores[top].min())
    if shared <= float(scores[bottom].max()):
        if float(scores.min()) == float(scores.max()):
            raise UserError(f"{name}: every code scores {shared:g}, so the scores tell no top and bottom groups apart: "
                            "give scores that vary across the codes")
        raise UserError(f"{name}: the top and bottom {fraction:.0%} of the codes by score both hold codes scoring {shared:g}, "
                        "so the scores do not tell them apart: give scores that vary more, or a smaller --fraction")
    if method == "mean":
        d = codes[top].double().mean(0) - codes[bottom].double().mean(0)
    else:  # svm
        from sklearn.svm import LinearSVC

        x = torch.cat([codes[top], codes[bottom]]).double().numpy()
        y = [1] * len(top) + [0] * len(bottom)
        mu, sd = x.mean(0), x.std(0) + 1e-12
        clf = LinearSVC(C=1.0, max_iter=20_000, random_state=seed).fit((x - mu) / sd, y)
        d = torch.from_numpy(clf.coef_[0] / sd)  # normal in the original (unstandardised) coordinates
    norm = float(d.norm())
    if not norm > 1e-12 * max(float(codes.abs().max()), 1.0):
        raise UserError(f"{name}: the top and bottom {fraction:.0%} of the codes by score do not differ, so they give no "
                        "direction; give distinct codes")
    return (d / norm).float()


def condition(direction: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Remove from `direction` its component in the span of `others` [M, D]; unit result."""
    if others.numel() == 0:
        return direction
    b = others.double().T  # [D, M]
    d = direction.double()
    coef = torch.linalg.lstsq(b, d.unsqueeze(1)).solution
    out = d - (b @ coef).squeeze(1)
    if out.norm() < 1e-6:
        raise UserError("the direction lies within the span of the conditioning directions")
    return (out / out.norm()).float()


def check_conditional(conditional_on: list[str] | None, names: list[str]) -> None:
    """The attributes to hold fixed must be among those scored: checked before the boundaries are fitted."""
    unknown = [c for c in conditional_on or [] if c not in names]
    if unknown:
        raise UserError(f"cannot condition on {', '.join(unknown)}: not among the attributes; use some of {', '.join(names)}")


def supervised(
    codes: torch.Tensor,
    scores: torch.Tensor,
    names: list[str],
    model: str,
    method: str = "svm",
    fraction: float = 0.1,
    conditional_on: list[str] | None = None,
    layers: tuple[int, int] | None = None,
) -> Directions:
    """One direction per attribute column of scores [N, F]; conditioned on the named others if asked."""
    check_scores(codes, scores, names)
    check_conditional(conditional_on, names)
    check_method(method)
    raw = torch.stack([boundary(codes, scores[:, j], method, fraction, name=names[j]) for j in range(len(names))])
    vectors = raw
    if conditional_on:
        cond_idx = [names.index(c) for c in conditional_on]
        vectors = torch.stack(
            [condition(raw[j], raw[[i for i in cond_idx if i != j]]) for j in range(len(names))]
        )
    return Directions(
        vectors=vectors, scales=scales_along(vectors, codes), names=list(names), space="w",
        method=f"supervised-{method}" + ("-conditional" if conditional_on else ""), model=model, layers=layers,
        info={"fraction": fraction, "conditional_on": conditional_on or [], "num_codes": int(codes.shape[0])},
    )


def factor_directions(
    generator: Generator,
    predictor: FactorPredictor,
    samples: int,
    *,
    seed: int = 0,
    method: str = "svm",
    fraction: float = 0.1,
    conditional_on: list[str] | None = None,
    layers: tuple[int, int] | None = None,
    progress: bool = False,
) -> Directions:
    """One direction per synthfaces factor, from `samples` w codes of `generator` (sample_w, seeded
    `seed`) scored by the factor predictor: `directions supervised --predictor`, the bundled
    supervised directions and the directions table's, made one way."""
    from latentatlas.data.synthfaces import FACTOR_NAMES
    from latentatlas.directions.files import model_fingerprint, sample_w
    from latentatlas.metrics.paths import factors_of_w

    codes = sample_w(generator, samples, seed=seed, progress=progress)
    scores = factors_of_w(generator, predictor, codes)
    return supervised(codes, scores, list(FACTOR_NAMES), model_fingerprint(generator), method=method, fraction=fraction,
                      conditional_on=conditional_on, layers=layers)
