"""Build official-format network pickles without NVIDIA's code, for tests.

Stand-in modules named `torch_utils.persistence` and `dnnlib.util` are registered only while
pickling, so the file references exactly the globals an official pickle does; they are removed
before loading, which proves the loader never needs (or runs) them.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict

import torch


def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called: loading uses our own
    raise RuntimeError("the stand-in reconstructor must never run")


class EasyDict(dict):
    pass


class PersistentStandIn:
    def __init__(self, class_name: str, state: dict):
        self.meta = dict(
            type="class",
            version=6,
            module_src="import os\nos.system('echo the module source was executed')\n",
            class_name=class_name,
            state=state,
        )

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def standin_modules():
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    EasyDict.__module__ = "dnnlib.util"
    mods = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name in mods:
            sys.modules.pop(name, None)


_CLASS_NAMES = {
    "Generator": "training.networks.Generator",
    "MappingNetwork": "training.networks.MappingNetwork",
    "SynthesisNetwork": "training.networks.SynthesisNetwork",
    "SynthesisBlock": "training.networks.SynthesisBlock",
    "SynthesisLayer": "training.networks.SynthesisLayer",
    "ToRGBLayer": "training.networks.ToRGBLayer",
    "FullyConnectedLayer": "training.networks.FullyConnectedLayer",
}


def record_of(module: torch.nn.Module, init_kwargs: dict | None = None) -> PersistentStandIn:
    """A persistent record shaped like the official one: the module __dict__ essentials."""
    state = {
        "training": False,
        "_parameters": OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False)) for k, v in module._parameters.items()),
        "_buffers": OrderedDict((k, v.detach().clone()) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_modules": OrderedDict((k, record_of(v)) for k, v in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": EasyDict(init_kwargs or {}),
        "some_float": 0.5,
    }
    return PersistentStandIn(_CLASS_NAMES[type(module).__name__], state)


def official_init_kwargs(cfg, flat: bool = False) -> dict:
    """The Generator's `_init_kwargs` as the ADA code (nested) or stylegan3 (flat) stores them."""
    mapping = EasyDict(num_layers=cfg.mapping_layers)
    synthesis = EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=cfg.num_fp16_res,
                         conv_clamp=cfg.conv_clamp)
    base = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                img_channels=cfg.img_channels, mapping_kwargs=mapping)
    if flat:
        base.update(synthesis)
    else:
        base["synthesis_kwargs"] = synthesis
    return base


def write_official_pickle(path, generator, flat: bool = False, extra: dict | None = None) -> None:
    with standin_modules():
        g = record_of(generator, official_init_kwargs(generator.config, flat))
        data = dict(G=g, D=None, G_ema=g, augment_pipe=None, training_set_kwargs=EasyDict(resolution=16))
        data.update(extra or {})
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)


def rosinality_state_dict(generator) -> dict:
    """Our (official-named) weights renamed the way rosinality's stylegan2-pytorch stores them."""
    sd = generator.state_dict()
    out = {}
    for i in range(generator.config.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(dst, src):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def rgb(dst, src):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("conv1", "synthesis.b4.conv1")
    rgb("to_rgb1", "synthesis.b4.torgb")
    out["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for k, r in enumerate(generator.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0")
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1")
        rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb")
        out[f"noises.noise_{2 * k + 1}"] = sd[f"synthesis.b{r}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * k + 2}"] = sd[f"synthesis.b{r}.conv1.noise_const"][None, None]
    return {k: v.clone() for k, v in out.items()}
