"""The one exception type for problems a user can fix (bad file, bad argument).

The CLI turns it into a one-line message and exit code 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """Something wrong with what the user gave us; the message says what and what to do."""


def require_at_least(option: str, value: int, minimum: int, why: str = "") -> int:
    """`value` of the option named `option` when it is at least `minimum`; else a UserError that
    names the option, the least it takes and, when given, why (one check for every count option)."""
    if value < minimum:
        raise UserError(f"{option} {value}: use at least {minimum}" + (f" ({why})" if why else ""))
    return value
