"""Shared fixtures: tiny generators with random (non-default) weights, and an in-process CLI runner."""

from __future__ import annotations

import sys

import pytest
import torch

from latentatlas.models.stylegan2 import Generator, GeneratorConfig

torch.set_num_threads(2)


def randomize(generator: Generator, seed: int = 0) -> Generator:
    """Give every parameter random values (official init leaves noise_strength and biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in generator.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(torch.randn([], generator=g) * 0.5)
            elif name.endswith("affine.bias"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        generator.mapping.w_avg.copy_(0.3 * torch.randn(generator.w_dim, generator=g))
    return generator.eval().requires_grad_(False)


def tiny_config(**kw) -> GeneratorConfig:
    base = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16)
    base.update(kw)
    return GeneratorConfig(**base)


@pytest.fixture
def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return randomize(Generator(tiny_config()))


def one_line_error(code: int, out: str, err: str, *words: str) -> None:
    """A user error as the CLI must report it: exit code 2, one line on stderr (no traceback,
    no progress bar: nothing ran), holding each of `words`."""
    assert code == 2, (code, err)
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `latentatlas ARGS...` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        from latentatlas.cli import main

        monkeypatch.setattr(sys, "argv", ["latentatlas", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def damaged_torch_saves(folder, obj) -> dict[str, object]:
    """torch.save files of `obj` in `folder`, each damaged as a disk or a transfer damages a genuine
    file, by what was done: one byte of the pickle in the middle turned into no opcode (PyTorch's
    safe loader opens its error with "Weights only load failed", as for a refusal), the same byte
    made to recall an object never stored (a KeyError; `obj` must pickle something twice, such as
    two tensors, whose second mention is such a recall), and the file cut in half."""
    import io
    import pickletools
    import zipfile
    from pathlib import Path

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    whole = buffer.getvalue()
    archive = zipfile.ZipFile(io.BytesIO(whole))
    pickled = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    start = whole.index(pickled)  # torch.save stores its members, uncompressed
    ops = list(pickletools.genops(pickled))
    middle = next(pos for op, _, pos in ops if pos >= len(pickled) // 2)
    recall = next(pos for op, _, pos in ops if op.name == "BINGET")
    out = {}
    for name, at, byte in (("flipped", middle, 0xFF), ("recalls nothing", recall + 1, 0xFE)):
        damaged = bytearray(whole)
        damaged[start + at] = byte
        out[name] = Path(folder) / f"{name.replace(' ', '_')}.pt"
        out[name].write_bytes(bytes(damaged))
    out["cut"] = Path(folder) / "cut.pt"
    out["cut"].write_bytes(whole[:len(whole) // 2])
    return out
