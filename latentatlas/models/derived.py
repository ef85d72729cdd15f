"""Values derived from a frozen weight, kept on the weight until it changes in place.

Why: at inference and in projection the generator's weights never change, yet every call
recomputed what depends only on them (the squared-weight sums behind demodulation, a
channels-last copy for CPU convolutions, Winograd-transformed filters, weights with the FIR
filter folded in). Caching them on the tensor itself ties their lifetime to the weight and
needs no registry. Only tensors that need no gradient are cached, on any device: a batch-1
pass of the 256 px StyleMapGAN config on CUDA re-derived all its weights on every call (scaled,
cast, concatenated, and 20 FIR foldings whose tensors alone come to about 1.6 GB of float32
read and written). Nothing is cached while torch.compile traces or a CUDA graph is
captured: those see plain tensor code (a graph captured after a cached call reads the cache).
A weight is known to have changed by its version counter alone, so code that writes weights in
place without bumping it must bump it itself: training does, after every optimiser step and EMA
update (training/common.mark_changed), since CUDA's fused foreach kernels are not known to.

The price is memory: Winograd filters take 4x the weights of the layers that use them (36
numbers per 3x3 filter), a channels-last copy 1x; for a 1024 px config-f generator on CPU
that was 50 M numbers (0.19 GiB) beside its 30 M parameters after one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# False: derive on every call, as before values were kept on GPU weights (benchmarks compare the two).
ENABLED = True


def cached(weight: torch.Tensor, name: str, fn: Callable[[torch.Tensor], torch.Tensor],
           depends_on: Sequence[torch.Tensor | None] = ()) -> torch.Tensor:
    """fn(weight), computed once per (name, weight version) for a frozen weight.

    `depends_on`: other frozen tensors fn reads (StyleMapGAN's beta weight beside its gamma
    weight, an FIR filter); a change of any of them (in place, or another tensor) replaces the
    value kept under `name`, so one name holds one value."""
    tensors = (weight, *depends_on)
    if (torch.compiler.is_compiling()  # first: dynamo cannot trace is_inference() and would break the graph here
            or not ENABLED or any(t is None or t.is_inference() for t in tensors)
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))):  # type: ignore[union-attr]
        return fn(weight)  # an inference-mode tensor has no version counter to key the cache by
    deps = tuple((t._version, t.data_ptr()) for t in depends_on)  # type: ignore[union-attr]
    key = (weight._version, weight.data_ptr(), weight.dtype)
    store = getattr(weight, "_latentatlas_derived", None)
    current = store is not None and store.get("_key") == key
    entry = store.get(name) if current else None
    if entry is not None and entry[0] == deps:
        return entry[1]
    if weight.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return fn(weight)  # a value made during capture would be computed only at replay: read, never make
    if not current:
        store = {"_key": key}
        try:
            weight._latentatlas_derived = store  # type: ignore[attr-defined]
        except AttributeError:  # a tensor that takes no attributes: no cache
            return fn(weight)
    # Made outside inference mode even when called inside it: an inference tensor has no
    # version counter, so a value derived from this one (a transposed copy of a scaled
    # weight) could not be cached in turn. And under no_grad: leaving inference mode turns
    # gradients back on, and a value made in a no_grad pass over trainable weights (a sample
    # grid during training) would keep their graph; the first backward through it after the
    # weights were frozen (stylemap refinement after such a pass) then failed.
    with torch.inference_mode(False), torch.no_grad():
        entry = store[name] = (deps, fn(weight.detach()))  # type: ignore[index]
    return entry[1]
