"""Values derived from a frozen weight, kept on the weight until it changes in place.

Why: at inference and in projection the generator's weights never change, yet every call
recomputed what depends only on them (the squared-weight sums behind demodulation, a
channels-last copy for CPU convolutions, Winograd-transformed filters). Caching them on the
tensor itself ties their lifetime to the weight and needs no registry. Only CPU tensors that
need no gradient are cached: on GPU these costs are negligible, and tracing tools
(torch.compile, CUDA graphs) see plain tensor code.

The price is memory: Winograd filters take 4x the weights of the layers that use them (36
numbers per 3x3 filter), a channels-last copy 1x; for a 1024 px config-f generator on CPU
that was 50 M numbers (0.19 GiB) beside its 30 M parameters after one image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def cached(weight: torch.Tensor, name: str, fn: Callable[[torch.Tensor], torch.Tensor],
           depends_on: Sequence[torch.Tensor | None] = ()) -> torch.Tensor:
    """fn(weight), computed once per (name, weight version) for a frozen CPU weight.

    `depends_on`: other frozen tensors fn reads (StyleMapGAN's beta weight beside its gamma
    weight); their versions join the name, so an in-place change of any of them is seen too."""
    tensors = (weight, *depends_on)
    if (weight.device.type != "cpu" or any(t is None or t.is_inference() for t in tensors)
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))):  # type: ignore[union-attr]
        return fn(weight)  # an inference-mode tensor has no version counter to key the cache by
    if depends_on:
        name = f"{name}@" + ",".join(f"{t._version}.{t.data_ptr()}" for t in depends_on)  # type: ignore[union-attr]
    key = (weight._version, weight.data_ptr(), weight.dtype)
    store = getattr(weight, "_latentatlas_derived", None)
    if store is None or store.get("_key") != key:
        store = {"_key": key}
        try:
            weight._latentatlas_derived = store  # type: ignore[attr-defined]
        except AttributeError:  # a tensor that takes no attributes: no cache
            return fn(weight)
    if name not in store:
        # Made outside inference mode even when called inside it: an inference tensor has no
        # version counter, so a value derived from this one (a transposed copy of a scaled
        # weight) could not be cached in turn.
        with torch.inference_mode(False):
            store[name] = fn(weight.detach())
    return store[name]
