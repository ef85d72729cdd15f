"""Reading our .safetensors files (models, directions, predictors) with one-line errors.

Why: every file kind we write is safetensors with JSON metadata, and a user may hand any of
them over by path: missing, cut short by a full disk, or some other file. Each reader needs
the same three outcomes (no such file, unreadable, or tensors and metadata), so they come
from here and the message names the kind of file that was expected. A file of the right kind
can still be wrong inside (written by hand or by another version, or by a run that diverged):
tensors holding NaN are refused on reading, and `fields` turns a missing or malformed field
met while the caller builds its object into the same kind of one-line error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from latentatlas.io.errors import UserError, require_file
from latentatlas.io.safe_pickle import load_error_line, safe_loader_refusal


def read_metadata(path: str | Path, what: str) -> dict[str, str]:
    """The file's metadata, from its header alone (no tensor is read)."""
    path = Path(path)
    require_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable {what} file ({e}); is it complete?") from None


def read_tensors(path: str | Path, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of the file, on the CPU."""
    return read_metadata(path, what), load_tensors(path, what)


def load_tensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors alone, for a caller that has read and checked the metadata already."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable {what} file ({e}); is it complete?") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{path}: {what} tensor {name} holds NaN or infinite values; make the file again")
    return tensors


@contextmanager
def fields(path: str | Path, what: str) -> Iterator[None]:
    """Wraps building an object from a file's metadata and tensors: a missing key, malformed JSON or
    a tensor of the wrong shape becomes one UserError line instead of a traceback."""
    try:
        yield
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"{path}: a {what} file with a missing or malformed field ({type(e).__name__}: {e}); "
                        "make it again with this version of latentatlas") from None


def read_training_state(path: str | Path, device: str | torch.device = "cpu",
                        hint: str = "remove it to start again") -> dict[str, Any]:
    """The state a resumable run saved (torch.save of a dict holding its 'config'), read with
    torch.load(weights_only=True), or one line naming the file and saying what to do (`hint`): a
    state cut short by a full disk, damaged, or some other file under its name was a traceback.
    Restore from it inside `restoring_state`, which does the same for a field missing or malformed."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except torch.OutOfMemoryError:  # a sound state on a full device: never say remove it
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable state is the user's file to remove
        what = safe_loader_refusal(e)  # in our words: PyTorch's text advises turning the safe loader off
        why = f"it holds {what}; refused, nothing in it ran" if what is not None else f"{type(e).__name__}: {load_error_line(e)}"
        raise UserError(f"{path}: not a readable training state ({why}); {hint}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        what = f"a {type(state).__name__}" if not isinstance(state, dict) else "a dict without its 'config'"
        raise UserError(f"{path}: not a readable training state ({what}); {hint}")
    return state


@contextmanager
def restoring_state(path: str | Path, hint: str = "remove it to start again") -> Iterator[None]:
    """Wraps restoring modules and counters from read_training_state's dict: a missing key or a
    tensor that does not fit becomes the same one line (UserErrors, such as a config that
    differs, pass as they are)."""
    try:
        yield
    except (UserError, torch.OutOfMemoryError):  # OOM is a RuntimeError, and the state is sound: never say remove it
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as e:
        raise UserError(f"{path}: not a readable training state ({type(e).__name__}: {load_error_line(e)}); {hint}") from None
