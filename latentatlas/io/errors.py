"""The one exception type for problems a user can fix (bad file, bad argument).

The CLI turns it into a one-line message and exit code 2; anything else is a bug and
keeps its traceback.
"""

import math
from pathlib import Path


class UserError(Exception):
    """Something wrong with what the user gave us; the message says what and what to do."""


def require_file(path: Path, hint: str = "") -> None:
    """An input that must be a file. A folder given there was called 'no such file', which sent
    users looking for a file that was missing when they had named the wrong thing. `hint` says
    which file to give, where the option's own words say more than 'a file' (e.g. "give the
    Inception-v3 TorchScript file"): it replaces 'give a file', and follows 'no such file'."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file: {hint or 'give a file'}")
    if not path.is_file():
        raise UserError(f"{path}: no such file" + (f"; {hint}" if hint else ""))


def require_at_least(option: str, value: int, minimum: int, why: str = "") -> int:
    """`value` of the option named `option` when it is at least `minimum`; else a UserError that
    names the option, the least it takes and, when given, why (one check for every count option)."""
    if value < minimum:
        raise UserError(f"{option} {value}: use at least {minimum}" + (f" ({why})" if why else ""))
    return value


def require_number(option: str, value: float, *, what: str, at_least: float | None = None, above: float | None = None,
                   example: str = "") -> float:
    """`value` of the option named `option` when it is finite and within the bound; else a UserError
    that names the option and says what to give. NaN fails no `<` test and inf passes every lower
    bound, so a bare `value <= 0` check let `--lr nan` reach Adam's traceback and `--snapshot-kimg
    nan` a cast's (one check for every number option)."""
    if not (math.isfinite(value) and (at_least is None or value >= at_least) and (above is None or value > above)):
        raise UserError(f"{option} {value:g}: give {what}" + (f", e.g. {example}" if example else ""))
    return value


MAX_SEED = 2**32 - 1  # numpy's RandomState takes no more; our derived seeds multiply and offset them


def require_seed(option: str, value: int) -> int:
    """A seed option's value when it is 0..MAX_SEED; else one line (a seed of 2e12 overflowed a
    derived seed's int64 in the predictor's trainer, a traceback)."""
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{option} {value}: seeds are 0..{MAX_SEED}")
    return value


def check_max_minutes(max_minutes: float | None) -> None:
    """Every resumable job's --max-minutes (both trainers, the predictor, warped paths): NaN or inf
    meant no limit, and 0 or less a single step, all without a word."""
    if max_minutes is not None:
        require_number("--max-minutes", max_minutes, above=0, what="a positive number of minutes", example="8")
