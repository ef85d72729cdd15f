"""Replay a whole forward pass as one CUDA graph.

A generator at batch 1 launches a few hundred small kernels; on a GPU the launches, not the
arithmetic, set the time. Capturing the pass once and replaying it removes that overhead
(the idea behind `torch.compile(mode="reduce-overhead")`, without its compile time). The
price: the batch size and input shape are fixed at capture, and the output buffer is reused,
so each call returns a copy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class CudaGraphed:
    """`fn(x)` captured for inputs shaped like `example`; call it like fn (no gradients)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, warmup: int = 3) -> None:
        if example.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA tensor; on CPU call the function directly")
        self.static_in = example.detach().clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(warmup):  # lets cuDNN pick its algorithms before capture
                fn(self.static_in)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.static_out = fn(self.static_in)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape != self.static_in.shape:
            raise ValueError(f"this graph was captured for inputs of shape {list(self.static_in.shape)}, got {list(x.shape)}")
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out.clone()
