"""The release models built on the meta device from state.train.shapes: exact parameter counts, no memory.

Each builder constructs the real class (diffusers / transformers) with the published config, so a
count here is the count of the module training and inference load.
"""
from __future__ import annotations

import torch

from state.train import shapes


def build_dit(config: dict, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from diffusers import AceStepTransformer1DModel

    with torch.device("meta"):
        dit = AceStepTransformer1DModel(**config)
    # nn.Module.to: diffusers' ModelMixin.to logs a warning about fp32-kept modules, which this model has none of
    return torch.nn.Module.to(dit, dtype)


def build_condition_encoder(config: dict) -> torch.nn.Module:
    from diffusers.pipelines.ace_step.modeling_ace_step import AceStepConditionEncoder

    with torch.device("meta"):
        return AceStepConditionEncoder(**config)


def build_text_encoder(config: dict) -> torch.nn.Module:
    from transformers import Qwen3Config, Qwen3Model

    with torch.device("meta"):
        return Qwen3Model(Qwen3Config(**config))


def build_vae(config: dict) -> torch.nn.Module:
    from diffusers import AutoencoderOobleck

    with torch.device("meta"):
        return AutoencoderOobleck(**config)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def release_param_counts(size: str) -> dict[str, int]:
    """Parameters of each component of a release model ("2B" or "XL"), counted on the meta device."""
    r = shapes.RELEASE[size]
    return {"dit": n_params(build_dit(r["transformer"])),
            "condition_encoder": n_params(build_condition_encoder(r["condition_encoder"])),
            "text_encoder": n_params(build_text_encoder(r["text_encoder"])),
            "vae": n_params(build_vae(r["vae"]))}
