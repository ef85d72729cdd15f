"""Read NVIDIA's network pickles without running any of their code.

Official stylegan2-ada-pytorch / stylegan3 pickles store each network as a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the whole
source of the network module (which the official loader exec()s) and the module state.
Here a restricted unpickler maps that reconstructor to a record that keeps only the class
name and state, builds tensors with PyTorch's own rebuild functions, and refuses every
other global, so a pickle that names `os.system` (or anything else) fails before it runs.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from latentatlas.io.errors import UserError


@dataclass
class PersistentRecord:
    """What an official persistent object leaves us: its class name and its state dict."""

    class_name: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return self._dict("_init_kwargs")

    def _dict(self, key: str) -> dict[str, Any]:
        """state[key] as a dict ({} when absent), or one line saying the record is malformed:
        the unpickler builds whatever the file says, so a list here would otherwise fail later as
        a TypeError or AttributeError traceback."""
        value = self.state.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"the {self.class_name} record's {key} is a {type(value).__name__}, not a dict of names")
        return dict(value)

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and buffers under official names, walking `_modules` like state_dict()."""
        out: dict[str, torch.Tensor] = {}
        non_persistent = self.state.get("_non_persistent_buffers_set") or set()
        if not isinstance(non_persistent, (set, frozenset)):
            raise UserError(f"the {self.class_name} record's _non_persistent_buffers_set is a {type(non_persistent).__name__}, not a set")
        for kind in ("_parameters", "_buffers"):
            for name, t in self._dict(kind).items():
                if t is not None and not (kind == "_buffers" and name in non_persistent):
                    out[prefix + name] = t.detach() if isinstance(t, torch.Tensor) else t
        for name, sub in self._dict("_modules").items():
            if isinstance(sub, PersistentRecord):
                out.update(sub.named_tensors(prefix + name + "."))
            elif sub is not None:
                raise UserError(f"unexpected sub-module {name!r} of type {type(sub).__name__} in the pickle")
        return out


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise UserError("the pickle holds a persistent object record of an unknown layout")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UserError("the pickle holds a persistent object whose state is not a dict")
    return PersistentRecord(class_name=str(meta["class_name"]), state=state)


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict: a dict that tolerates the BUILD opcode."""


# What PyTorch's safe loader (torch.load(weights_only=True)) says when it refuses a file for what the
# file asks for rather than for how its bytes are laid out: a global it will not import (not
# allowed, or from a blocked module such as os), or a kind of tensor it builds only when the
# module that makes them is imported first (nested jagged tensors, DTensors).
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)")
_REFUSED_KIND = re.compile(r"must be imported to load ([^\n]+)")
# Where its own error begins within the text it wraps around every error of its unpickler.
_UNPICKLER_ERROR = "WeightsUnpickler error:"


def safe_loader_refusal(e: BaseException) -> str | None:
    """What a file that PyTorch's safe loader (torch.load(weights_only=True)) refused holds, in our
    words, for "it holds ..."; None when `e` is no such refusal.

    Why: PyTorch opens every error of its unpickler with "Weights only load failed" and advice to
    re-run torch.load with weights_only=False, which would run whatever code the file carries; a
    refusal is worth telling as such (nothing ran, the file is not one we read), with the name of
    the global it refused. A pickle that merely breaks its rules (an unknown opcode, a stack that
    does not add up) is damage, told by the caller as an unreadable file: one flipped byte in a
    genuine checkpoint was called a file that "holds data that is not a pickle of tensors"."""
    if not isinstance(e, pickle.UnpicklingError):
        return None
    text = str(e)
    if found := _REFUSED_GLOBAL.search(text):
        return f"objects other than tensors ({found.group(1)}), which could run code"
    if found := _REFUSED_KIND.search(text):
        return f"{found.group(1).strip().rstrip('.')}, which the safe loader does not read"
    return None


def load_error_line(e: BaseException) -> str:
    """The first line of what `e` says, for a one-line message, without PyTorch's safe-loader
    preamble: for an error of its unpickler that preamble is the first line, and it advises
    re-running torch.load with weights_only=False (which would run the file's code); its own
    error ("Unsupported operand 255") follows a marker."""
    text = str(e)
    if _UNPICKLER_ERROR in text:
        text = text.split(_UNPICKLER_ERROR, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0][:200] if lines else ""
    if not first or "weights_only" in first:  # a preamble without a marker: say nothing rather than that
        return type(e).__name__
    return first


# What a damaged or crafted pickle raises while loading, with pickle's unpickler or PyTorch's safe
# one (one flipped byte of a torch.save file gave each of these; torch asserts a persistent id's type).
DAMAGED_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                         AssertionError, RuntimeError, MemoryError, OverflowError, RecursionError)


def _load_storage_from_bytes(b: bytes) -> Any:
    # torch.storage._load_from_bytes would call torch.load without weights_only.
    try:
        return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        what = safe_loader_refusal(e)
        if what is None:  # damaged bytes: load_official_pickle says the file is not readable
            raise pickle.UnpicklingError(load_error_line(e)) from None
        raise UserError(f"refusing to load: a tensor storage in the pickle is a torch.save file that holds {what}") from None


class BadTensorView(ValueError):
    """A pickled tensor whose sizes, strides and offset do not describe data its storage holds."""


def view_problem(size: Any, stride: Any, offset: Any, available: int) -> str | None:
    """Why a tensor view of `size`, `stride` and `offset` over a storage of `available` elements
    must not be built, or None when it may.

    Why: PyTorch rebuilds a pickled tensor with set_(), which grows the storage to whatever the
    view claims, so 4 bytes in the file can claim a tensor of 2**40 elements and get the
    allocation (or a model built to that shape gets it). A view with more elements than its
    storage (stride 0, overlaps) is refused too: the weights of a network are never broadcast,
    and a broadcast view lets a few bytes stand for a huge tensor that a model built to its
    shape would then allocate for real.
    """
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(isinstance(v, int) for v in (*size, *stride, offset))):
        return f"a tensor with malformed sizes {size!r}, strides {stride!r} or offset {offset!r}"
    if min((*size, *stride, offset), default=0) < 0:
        return f"a tensor with negative sizes, strides or offset ({list(size)}, {list(stride)}, {offset})"
    numel = math.prod(size)
    if numel == 0:
        return None
    needed = offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1
    if needed > available or numel > available:
        return f"a tensor of shape {list(size)} over a storage of {available} elements"
    return None


def loaded_view_problem(obj: Any) -> str | None:
    """view_problem of the first tensor in `obj` (nested dicts, lists, tuples) that has one, or None.

    For checkpoints read with torch.load(weights_only=True): its storages cannot grow, so a view
    past their end fails there already, but a broadcast view of a few bytes loads as a tensor of
    any size, and the model built to its shape would allocate that size for real.
    """
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor) and item.layout == torch.strided:
            storage = item.untyped_storage().nbytes() // item.element_size()
            problem = view_problem(tuple(item.shape), item.stride(), item.storage_offset(), storage)
            if problem:
                return problem
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _rebuild_tensor_checked(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 after view_problem has found nothing wrong."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise BadTensorView(f"a tensor rebuilt from a {type(storage).__name__}, not a storage")
    problem = view_problem(tuple(size) if isinstance(size, (tuple, list)) else size,
                           tuple(stride) if isinstance(stride, (tuple, list)) else stride, storage_offset, storage._size())
    if problem:
        raise BadTensorView(problem)
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, *rest)


def _torch_dtype(name: str) -> Any:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise UserError(f"refusing to load: the pickle names torch.{name}, which is not a dtype")
    return dtype


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_checked,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


def _numpy_global(module: str, name: str) -> Any:
    import numpy as np

    if name == "dtype":
        return np.dtype
    if name == "scalar":

        def scalar(dtype: Any, data: Any = None) -> Any:
            if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
                raise UserError("refusing to load: the pickle rebuilds a numpy object scalar")
            return np.frombuffer(data, dtype=dtype)[0]

        return scalar
    if name == "_reconstruct":

        def reconstruct(cls: Any, shape: Any, dtype: Any) -> Any:
            if cls is not np.ndarray or np.dtype(dtype).hasobject:
                raise UserError("refusing to load: the pickle rebuilds a numpy subclass")
            return np.ndarray.__new__(np.ndarray, shape, dtype)

        return reconstruct
    if name == "ndarray":
        return np.ndarray
    raise UserError(f"refusing to load: the pickle asks for {module}.{name}, which is not allowed")


class RestrictedUnpickler(pickle.Unpickler):
    """Builds tensors, plain containers and persistent-object records; nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module == "torch" and name in _TORCH_DTYPES:
            return _torch_dtype(name)
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_global(module, name)
        if module.startswith("dnnlib.tflib"):
            raise UserError(
                "this is a TensorFlow StyleGAN2 pickle; only PyTorch pickles (stylegan2-ada-pytorch, "
                "stylegan3) are supported: convert it with the official legacy.py first"
            )
        raise UserError(
            f"refusing to load: the pickle asks to import {module}.{name}, which is neither a tensor "
            "nor a known container (a network pickle never needs it; the file may carry code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UserError("refusing to load: the pickle uses persistent ids (not an official network pickle)")


_TORCH_DTYPES = {
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "half",
    "float",
    "double",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "long",
    "int",
}


def _object_array_in(obj: Any) -> bool:
    """Whether `obj` (nested dicts, lists, tuples, sets, records) holds a numpy array of Python
    objects. A plain array is rebuilt in two steps, _reconstruct (which refuses an object dtype)
    and then __setstate__, which may still give it one; its items passed this unpickler, so no
    code ran, but no network holds such an array, and nothing downstream should meet one."""
    import numpy as np

    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            if item.dtype.hasobject:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, PersistentRecord):
            stack.append(item.state)
    return False


def load_official_pickle(path: str) -> dict[str, Any]:
    """Unpickle an official network pickle safely; networks come back as PersistentRecords."""
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except UserError as e:  # the unpickler's refusals, which cannot know the file's name
        raise UserError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except BadTensorView as e:
        raise UserError(f"{path}: not a valid network pickle ({e}); the file is damaged or crafted") from None
    except DAMAGED_PICKLE_ERRORS as e:
        raise UserError(f"{path}: not a readable network pickle ({type(e).__name__}: {load_error_line(e)}); "
                        "is the file complete?") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the pickle holds a {type(data).__name__}, not the official dict(G, D, G_ema, ...)")
    if _object_array_in(data):
        raise UserError(f"{path}: refusing to load: the pickle holds a numpy array of Python objects")
    return data
