"""Small damaged or crafted model files: each is refused with one UserError line naming the file,
and none makes latentatlas allocate what the file does not hold (a few bytes must not ask for
terabytes). Every file is built here, from the tiny test generator or from nothing."""

from __future__ import annotations

import json
import math
import pickle
import time
from collections import OrderedDict

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import latentatlas.io.checkpoints as checkpoints
from latentatlas.io.checkpoints import import_official_pickle, import_rosinality, load_any, load_model, save_model
from latentatlas.io.errors import UserError
from latentatlas.io.safe_pickle import load_official_pickle
from conftest import one_line_error
from pickle_standins import EasyDict, official_init_kwargs, record_of, rosinality_state_dict, standin_modules, write_official_pickle


def refused(call, path, *words: str) -> str:
    """The UserError message of call(path), checked to be one line that names the file and holds `words`."""
    with pytest.raises(UserError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for w in words:
        assert w in message, message
    return message


# ---------------------------------------------------------------------------------------
# Tensors that claim more than their storage holds


class Claim:
    """Pickles as PyTorch's tensor rebuild call over a 4-element storage, with any sizes and strides."""

    def __init__(self, size, stride, offset=0):
        self.args = (torch.zeros(4).storage(), offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("size, stride, offset", [
    ((2**28,), (1,), 0),  # 1 GB claimed by 16 bytes: set_() would grow the storage to it
    ((2**20, 2**20), (0, 0), 0),  # a broadcast view: fits its storage, but 2**40 elements once copied
    ((4,), (1,), 1),  # one element past the end
    ((4,), (-1,), 3),  # negative stride
    ((-4,), (1,), 0),  # negative size
], ids=["huge", "broadcast", "past-end", "negative-stride", "negative-size"])
def test_a_pickled_tensor_that_does_not_fit_its_storage_is_refused(tmp_path, size, stride, offset):
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Claim(size, stride, offset)}, protocol=4))
    refused(load_official_pickle, path, "not a valid network pickle")


def test_a_pickled_tensor_that_fits_its_storage_still_loads(tmp_path):
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"x": torch.arange(6.0).reshape(2, 3)[:, 1:], "empty": torch.zeros(0, 7)}))
    data = load_official_pickle(str(path))
    assert torch.equal(data["x"], torch.tensor([[1.0, 2], [4, 5]])) and data["empty"].shape == (0, 7)


def test_a_torch_checkpoint_tensor_broadcast_from_a_few_bytes_is_refused(tmp_path, tiny_generator):
    """torch.load refuses a view past its storage's end itself; a broadcast view it loads."""
    sd = rosinality_state_dict(tiny_generator)
    sd["noises.noise_0"] = torch.zeros(1).expand(2**20, 2**20)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": sd}, path)
    assert path.stat().st_size < 1_000_000
    refused(import_rosinality, path, "not a valid PyTorch checkpoint")


def test_the_cli_reports_a_crafted_pickle_in_one_line(tmp_path, run_cli):
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Claim((2**20, 2**20), (2**20, 1))}, protocol=4))
    one_line_error(*run_cli("info", path), "net.pkl", "not a valid network pickle")


# ---------------------------------------------------------------------------------------
# Code behind the globals the pickle loader does allow


class RunsCode:
    """Unpickling it runs a shell command that leaves `marker` behind."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class StorageBytes:
    """Pickles as PyTorch pickles a tensor storage: torch.storage._load_from_bytes(torch.save bytes)."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.data,))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_storage_whose_bytes_are_a_torch_save_of_code_is_refused_without_running_it(tmp_path, zip_format):
    """The loader allows torch.storage._load_from_bytes (every pickled tensor's storage goes through
    it) and reads its bytes with torch.load; PyTorch's own _load_from_bytes would run them."""
    import io

    marker = tmp_path / "ran"
    buf = io.BytesIO()
    torch.save(RunsCode(marker), buf, _use_new_zipfile_serialization=zip_format)
    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"G_ema": StorageBytes(buf.getvalue())}))
    refused(load_official_pickle, path, "refusing to load", "torch.save file", "system")
    assert not marker.exists()


def _multiarray():
    import numpy as np

    return np._core.multiarray if hasattr(np, "_core") else np.core.multiarray


class Reduces:
    """Pickles as call(*args): a file can hold any such call of a global the loader allows."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return (self.call, self.args)


@pytest.mark.parametrize("make, words", [
    (lambda np: Reduces(_multiarray().scalar, np.dtype(object), b"\0" * 8), "numpy object scalar"),
    (lambda np: Reduces(_multiarray()._reconstruct, OrderedDict, (0,), b"b"), "numpy subclass"),
    (lambda np: Reduces(_multiarray()._reconstruct, np.ndarray, (0,), np.dtype(object)), "numpy subclass"),
], ids=["object-scalar", "subclass", "object-array"])
def test_numpy_objects_beyond_plain_arrays_and_scalars_are_refused(tmp_path, make, words):
    """Object scalars would read 8 bytes of the file as a pointer; subclasses run their own code."""
    import numpy as np

    path = tmp_path / "net.pkl"
    path.write_bytes(pickle.dumps({"G_ema": make(np)}))
    refused(load_official_pickle, path, "refusing to load", words)
    path.write_bytes(pickle.dumps({"x": np.float32(1.5), "y": np.arange(3.0)}))  # what the refusals must let through
    data = load_official_pickle(str(path))
    assert data["x"] == np.float32(1.5) and data["x"].dtype == np.float32 and np.array_equal(data["y"], [0.0, 1.0, 2.0])


def test_an_object_array_given_its_dtype_after_it_is_rebuilt_is_refused(tmp_path):
    """numpy pickles an array as _reconstruct(ndarray, (0,), b'b') and then __setstate__ with the
    real dtype: the object dtype arrives after the _reconstruct check, so it is looked for in the
    whole result, however deep."""
    import numpy as np

    path = tmp_path / "net.pkl"
    for data in ({"G_ema": np.array([1, "a"], dtype=object)}, {"aug": [{"p": (np.array([None]),)}]}):
        path.write_bytes(pickle.dumps(data))
        refused(load_official_pickle, path, "net.pkl: refusing to load", "numpy array of Python objects")


# ---------------------------------------------------------------------------------------
# Configs that ask for more than the file's tensors


def rewrite_metadata(src, dst, **changes: str) -> None:
    with safe_open(str(src), "pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    save_file(tensors, str(dst), metadata=meta)


def test_a_config_of_z_dim_2_40_is_refused_at_once(tmp_path, tiny_generator):
    save_model(tmp_path / "good.safetensors", tiny_generator)
    cfg = {**tiny_generator.config.to_dict(), "z_dim": 2**40}
    rewrite_metadata(tmp_path / "good.safetensors", tmp_path / "bad.safetensors", generator_config=json.dumps(cfg))
    start = time.perf_counter()
    refused(load_model, tmp_path / "bad.safetensors", "z_dim must be at most 4096")
    assert time.perf_counter() - start < 2


def test_a_config_far_larger_than_its_tensors_is_stopped_before_it_allocates(tmp_path, tiny_generator):
    """Within the bounds a config can still ask for gigabytes (here about 4 GB): the constructor is
    stopped once its tensors would hold far more numbers than the file, before the allocation."""
    from latentatlas.io.checkpoints import AllocationBudget

    save_model(tmp_path / "good.safetensors", tiny_generator)
    cfg = {**tiny_generator.config.to_dict(), "img_resolution": 256, "channel_base": 2**20, "channel_max": 2048}
    rewrite_metadata(tmp_path / "good.safetensors", tmp_path / "bad.safetensors", generator_config=json.dumps(cfg))
    start = time.perf_counter()
    refused(load_model, tmp_path / "bad.safetensors", "asks for a model far larger than the", "not a valid model file")
    assert time.perf_counter() - start < 2
    assert load_model(tmp_path / "good.safetensors")[0].config == tiny_generator.config  # a file that fits builds
    budget = AllocationBudget({"w": torch.zeros(10)}, "f")
    with budget:
        torch.zeros(3, 4), torch.randn((2, 2)), torch.full([5], 1.0)
    assert budget.left == 2 * 10 + 2**20 - 12 - 4 - 5
    with pytest.raises(UserError, match="far larger than the 10 numbers"), budget:
        torch.empty(2**21)


def test_an_official_pickle_asking_for_z_dim_2_40_is_refused(tmp_path, tiny_generator):
    kwargs = official_init_kwargs(tiny_generator.config)
    kwargs["z_dim"] = 2**40
    path = tmp_path / "net.pkl"
    write_pickle_with(path, tiny_generator, kwargs)
    refused(import_official_pickle, path, "not a supported official StyleGAN2 pickle", "z_dim must be at most 4096")


def test_zero_element_tensors_cannot_set_a_huge_rosinality_config(tmp_path, tiny_generator):
    """Shapes like [1, 2**40, 4, 4] with no elements cost nothing to store; the config they imply must not be built."""
    sd = rosinality_state_dict(tiny_generator)
    for name in ["input.input"] + [f"convs.{2 * k}.conv.weight" for k in range(2)]:
        sd[name] = torch.empty(0, 2**40, 3, 3) if name != "input.input" else torch.empty(0, 2**40, 4, 4)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": sd}, path)
    refused(import_rosinality, path, "not a supported rosinality StyleGAN2 checkpoint", "channel_max must be at most 4096")


# ---------------------------------------------------------------------------------------
# Malformed or incomplete files: one line, not a traceback


def write_pickle_with(path, generator, init_kwargs, state_change=None) -> None:
    with standin_modules():
        g = record_of(generator, init_kwargs)
        if state_change:
            state_change(g.meta["state"])
        with open(path, "wb") as f:
            pickle.dump(dict(G_ema=g, training_set_kwargs=EasyDict(resolution=16)), f, protocol=4)


@pytest.mark.parametrize("info", ["{not json", "[1, 2]"])
def test_bad_info_metadata_is_one_line(tmp_path, tiny_generator, info):
    save_model(tmp_path / "good.safetensors", tiny_generator)
    rewrite_metadata(tmp_path / "good.safetensors", tmp_path / "bad.safetensors", info=info)
    refused(load_model, tmp_path / "bad.safetensors", "'info' metadata")


@pytest.mark.parametrize("change, words", [
    (lambda sd: sd.pop("to_rgb1.conv.weight"), "lacks to_rgb1.conv.weight"),
    (lambda sd: sd.pop("convs.0.conv.weight"), "lacks convs.0.conv.weight"),
    (lambda sd: sd.pop("convs.0.conv.modulation.bias"), "lacks convs.0.conv.modulation.bias"),
    (lambda sd: sd.update({"input.input": torch.zeros(16)}), "too few dimensions"),
    (lambda sd: sd.update({"noises.noise_0": torch.zeros(3)}), "wrong shape"),
    (lambda sd: sd.update({"conv1.conv.modulation.bias": "x"}), "not a tensor"),
], ids=["no-to_rgb1", "no-convs.0", "no-modulation-bias", "1-d-input", "noise-size", "not-a-tensor"])
def test_incomplete_rosinality_checkpoints_are_one_line(tmp_path, tiny_generator, change, words):
    sd = rosinality_state_dict(tiny_generator)
    change(sd)
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": sd}, path)
    refused(load_any, path, "not a supported rosinality StyleGAN2 checkpoint", words)


def _no_modules_dict(state):
    state["_modules"] = [1, 2]


@pytest.mark.parametrize("kwargs_change, state_change, words", [
    (lambda k: k.update(mapping_kwargs=[1, 2]), None, "mapping_kwargs is a list"),
    (lambda k: k["synthesis_kwargs"].update(channel_max=math.inf), None, "config is not supported"),
    (lambda k: k["synthesis_kwargs"].update(channel_base="many"), None, "config is not supported"),
    (lambda k: k["synthesis_kwargs"].update(resample_filter=4), None, "not a list of taps"),
    (None, _no_modules_dict, "_modules is a list"),
], ids=["mapping-list", "inf-channels", "str-channels", "int-filter", "modules-list"])
def test_malformed_official_pickles_are_one_line(tmp_path, tiny_generator, kwargs_change, state_change, words):
    kwargs = official_init_kwargs(tiny_generator.config)
    if kwargs_change:
        kwargs_change(kwargs)
    path = tmp_path / "net.pkl"
    write_pickle_with(path, tiny_generator, kwargs, state_change)
    refused(import_official_pickle, path, "not a supported official StyleGAN2 pickle", words)


def test_a_pickle_that_runs_out_of_memory_while_loading_is_one_line(tmp_path, monkeypatch):
    import latentatlas.io.safe_pickle as safe_pickle

    def out_of_memory(*args):
        raise MemoryError()

    write_official_pickle(tmp_path / "net.pkl", _tiny())
    monkeypatch.setitem(safe_pickle._ALLOWED, ("torch.storage", "_load_from_bytes"), out_of_memory)
    refused(load_official_pickle, tmp_path / "net.pkl", "not a readable network pickle", "MemoryError")


def _tiny():
    from conftest import tiny_config
    from latentatlas.models.stylegan2 import Generator

    return Generator(tiny_config())


def _stylemap_checkpoint():
    from test_stylemap import official_state_dicts

    return official_state_dicts(64, 8, 8, 3, {8: 32, 16: 32, 32: 16, 64: 8})


@pytest.mark.parametrize("change, words", [
    (lambda g, a: g.update({"mapping_z.1.weight": torch.zeros(8, 0)}), "gives no stylemap"),
    (lambda g, a: g.update({"decoder.input.input": [1]}), "not a tensor"),
    (lambda g, a: a.update(channel_multiplier="two"), "train_args are malformed"),
], ids=["zero-style-dim", "not-a-tensor", "bad-train-args"])
def test_incomplete_stylemapgan_checkpoints_are_one_line(tmp_path, change, words):
    from latentatlas.io.checkpoints import load_stylemap_any

    g, e = _stylemap_checkpoint()
    args = dict(lr_mul=0.01, channel_multiplier=1)
    change(g, args)
    path = tmp_path / "000100.pt"
    torch.save({"g_ema": g, "e_ema": e, "train_args": args}, path)
    refused(load_stylemap_any, path, "not a supported StyleMapGAN checkpoint", words)


def test_a_full_device_while_restoring_a_state_never_says_remove_it(tmp_path, monkeypatch) -> None:
    """Out of memory is a RuntimeError, as a tensor that does not fit is; only the second means a
    damaged state, and 'remove it to start again' on the first would throw a sound run away."""
    import torch

    from latentatlas.io.errors import UserError
    from latentatlas.io.tensorfile import read_training_state, restoring_state

    path = tmp_path / "state.pt"
    torch.save({"config": {}, "step": 3}, path)
    with pytest.raises(torch.OutOfMemoryError), restoring_state(path):
        raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(UserError, match="not a readable training state"), restoring_state(path):
        raise RuntimeError("size mismatch for weight")

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(torch, "load", full)
    with pytest.raises(torch.OutOfMemoryError):
        read_training_state(path)


def test_a_state_the_safe_loader_refuses_is_told_in_our_words(tmp_path) -> None:
    """A state.pt calling os.system showed PyTorch's refusal cut mid-sentence, advice to re-run
    torch.load with weights_only=False; the line says what it holds, that nothing ran, and the
    caller's hint."""
    import os

    import torch

    from latentatlas.io.errors import UserError
    from latentatlas.io.tensorfile import read_training_state

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "step": Evil()}, evil)
    with pytest.raises(UserError) as caught:
        read_training_state(evil, hint="remove it to start again")
    assert str(caught.value) == (f"{evil}: not a readable training state (it holds objects other than tensors (posix.system), "
                                 "which could run code; refused, nothing in it ran); remove it to start again")


def test_every_kind_of_safe_loader_refusal_is_told_as_one(tmp_path) -> None:
    """PyTorch words a refusal three ways (a global not allowed, one from a blocked module, a kind of
    tensor it reads only after an import); each is a refusal, not damage."""
    from latentatlas.io.errors import UserError
    from latentatlas.io.safe_pickle import safe_loader_refusal
    from latentatlas.io.tensorfile import read_training_state

    path = tmp_path / "state.pt"
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # torch.save's legacy format opens with a pickle; os is blocked
    with pytest.raises(UserError) as caught:
        read_training_state(path, hint="remove it to start again")
    assert str(caught.value) == (f"{path}: not a readable training state (it holds objects other than tensors (os.system), "
                                 "which could run code; refused, nothing in it ran); remove it to start again")
    # A DTensor's global is refused only while torch.distributed.tensor is not imported (another
    # test may have imported it), so its refusal is PyTorch's text (torch 2.13) as raised.
    refusal = pickle.UnpicklingError("Weights only load failed. ``torch.distributed.tensor`` must be imported to load DTensors\n "
                                     "In PyTorch 2.6, we changed the default value of the `weights_only` argument ...\n")
    assert safe_loader_refusal(refusal) == "DTensors, which the safe loader does not read"


def test_a_damaged_state_is_called_unreadable_not_refused(tmp_path) -> None:
    """PyTorch opens every error of its safe loader with "Weights only load failed", a flipped
    byte's too: garbage, or one damaged byte of a genuine state, was told as refused data that is
    "not a pickle of tensors". The line gives the unpickler's own error, never PyTorch's advice
    to load with weights_only=False (its first line)."""
    import torch

    from conftest import damaged_torch_saves
    from latentatlas.io.errors import UserError
    from latentatlas.io.tensorfile import read_training_state

    garbage = tmp_path / "state.pt"
    garbage.write_bytes(b"garbage\n")  # what the review's state.pt held
    files = damaged_torch_saves(tmp_path, {"config": {"lr": 0.002}, "step": torch.tensor(3), "w": torch.zeros(4)})
    for path, error in ((garbage, "UnpicklingError: Unsupported operand 103"), (files["flipped"], "UnpicklingError: Unsupported operand 255"),
                        (files["recalls nothing"], "KeyError: 254"), (files["cut"], "RuntimeError: PytorchStreamReader failed")):
        with pytest.raises(UserError) as caught:
            read_training_state(path, hint="remove it to start again")
        message = str(caught.value)
        assert message.startswith(f"{path}: not a readable training state ({error}") and message.endswith("); remove it to start again")
        assert "weights_only" not in message and "refused" not in message and "\n" not in message


def test_a_damaged_storage_in_an_official_pickle_is_called_unreadable_not_refused(tmp_path):
    """A tensor storage of an official pickle is a torch.save file, read with the safe loader: one
    flipped byte in it was told as a refusal ("a torch.save file that holds data that is not a
    pickle of tensors") and a KeyError as PyTorch's whole text."""
    from conftest import damaged_torch_saves

    storages = [torch.arange(6.0).untyped_storage(), torch.ones(2).untyped_storage()]  # two, so the pickle recalls a name
    files = damaged_torch_saves(tmp_path, storages)
    for name, error in (("flipped", "UnpicklingError: Unsupported operand 255"), ("recalls nothing", "KeyError: 254"),
                        ("cut", "RuntimeError: PytorchStreamReader failed")):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps({"G_ema": StorageBytes(files[name].read_bytes())}))
        message = refused(load_official_pickle, path, f"not a readable network pickle ({error}", "is the file complete?")
        assert "weights_only" not in message and "refus" not in message
