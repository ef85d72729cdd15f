"""Small damaged or crafted model files: each is refused with one UserError line naming the file,
and none makes latentatlas allocate what the file does not hold (a few bytes must not ask for
terabytes). Every file is built here, from the tiny test generator or from nothing."""

from __future__ import annotations

import json
import time

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from latentatlas.io.checkpoints import load_model, save_model
from latentatlas.io.errors import UserError


def refused(call, path, *words: str) -> str:
    """The UserError message of call(path), checked to be one line that names the file and holds `words`."""
    with pytest.raises(UserError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for w in words:
        assert w in message, message
    return message


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
