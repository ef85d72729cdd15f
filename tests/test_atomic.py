"""Atomic writes: a failed write keeps the old file and leaves no temp file behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentatlas.io.atomic import atomic_path, write_json


def test_write_json_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_json(target, {"a": [1, 2]})
    write_json(target, {"b": 3}, indent=None)
    assert target.read_text() == '{"b": 3}\n'
    assert json.loads(target.read_text()) == {"b": 3}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json(target, {"old": True})
    with pytest.raises(TypeError):
        write_json(target, {"bad": object()})  # not JSON-serialisable: the encoder fails inside the write
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
