"""Deterministic weights for StyleMapGAN state dicts, shared by the parity maker and its test.

tests/fixtures/make_stylemap_parity.py fills the official naver-ai/StyleMapGAN Generator and
Encoder with these values before running them, and tests/test_stylemap_parity.py fills ours
with the same call instead of reading stored weights (the 512-channel official layers would
be tens of MB). Both sides use the official parameter names, so one function keyed by name
and shape gives both models the same numbers; keeping it in one place means the two cannot
drift apart. It needs only torch, so the maker can import it without the project.
"""

from __future__ import annotations

import re

import torch

# Buffers the constructors compute (the FIR blur kernels): copied, never filled.
BUFFER_SUFFIX = ".kernel"


def is_filled(name: str) -> bool:
    """Whether fill_state gives this state-dict entry a value (everything but the blur kernels)."""
    return not name.endswith(BUFFER_SUFFIX)


def fill_state(shapes: dict[str, tuple[int, ...]], seed: int, lr_mul: float) -> dict[str, torch.Tensor]:
    """Values for every entry of `shapes` (official names), drawn in sorted-name order from one
    seeded torch.Generator, so the result depends only on (names, shapes, seed, lr_mul).

    The scales keep every layer's output near unit size and every term non-zero, so the
    comparison exercises biases and gains: equalised weights are standard normal; mapping
    (EqualLinear) weights and biases are divided by lr_mul, as the official init stores them,
    so the runtime product with lr_mul is of unit size; biases are 0.1 * normal, except
    gamma's, which are 1 + 0.1 * normal (the official init is 1).
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name in sorted(shapes):
        if not is_filled(name):
            raise ValueError(f"{name}: a constructor-made buffer, not filled")
        v = torch.randn(tuple(shapes[name]), generator=gen, dtype=torch.float32)
        if re.fullmatch(r"mapping_z\.\d+\.weight", name):
            v = v / lr_mul
        elif re.fullmatch(r"mapping_z\.\d+\.bias", name):
            v = 0.1 * v / lr_mul
        elif name.endswith("gamma.bias"):
            v = 1 + 0.1 * v
        elif name.endswith("bias"):
            v = 0.1 * v
        out[name] = v
    return out
