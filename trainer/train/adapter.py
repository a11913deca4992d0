"""The adapter (LoRA, DoRA or LoKr, all peft): built in one place, read out, and loaded back with proof
that every tensor landed.

ACESTEP.md §4: upstream resume silently dropped every LoRA weight because key names did not
match, so `load_adapter_strict` refuses unless the file's keys equal the model's adapter keys
exactly and each loaded tensor reads back equal.
"""
from __future__ import annotations

import json
import re

import torch
from peft import LoKrConfig, LoraConfig, PeftConfig
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

from state.train.config import ATTN_PROJS, MLP_PROJS, TrainConfig

# diffusers 0.42 name -> original ACE-Step release name (ACESTEP.md §1, §3)
TO_ORIGINAL = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out.0": "o_proj",
               "gate_proj": "gate_proj", "up_proj": "up_proj", "down_proj": "down_proj"}


# peft's parameter prefixes: LoRA and DoRA weights are `lora_A/lora_B/lora_magnitude_vector`, LoKr's `lokr_w1/w2...`
ADAPTER_PREFIXES = ("lora_", "lokr_")


def is_adapter_param(name: str) -> bool:
    return any(p in name for p in ADAPTER_PREFIXES)


def adapter_config(cfg: TrainConfig) -> PeftConfig:
    """The peft config for `cfg.adapter_type`, aimed at the targets `target_regex` names.

    LoKr has no input dropout; `dropout` becomes its rank dropout (each step drops rank components).
    """
    target = target_regex(cfg)
    if cfg.adapter_type == "lokr":
        return LoKrConfig(r=cfg.rank, alpha=cfg.alpha, rank_dropout=cfg.dropout, module_dropout=0.0,
                          init_weights=True, target_modules=target)
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, init_lora_weights=True,
                      use_dora=cfg.adapter_type == "dora", target_modules=target)


def inference_metadata(config: PeftConfig) -> dict:
    """The config as diffusers' `lora_adapter_metadata` header wants it: JSON values, every dropout 0.

    diffusers' loaders create the dropout modules in training mode even in an eval pipeline, so a
    trained dropout left in here would make every generation random.
    """
    meta = _jsonable(config.to_dict())
    for k in ("lora_dropout", "rank_dropout", "module_dropout"):
        if k in meta:
            meta[k] = 0.0
    return meta


def target_regex(cfg: TrainConfig) -> str:
    """A regex target (peft full-matches a string) so only the DiT blocks' projections are adapted."""
    attn = [re.escape(m) for m in cfg.target_modules if m in ATTN_PROJS]
    mlp = [re.escape(m) for m in cfg.target_modules if m in MLP_PROJS]
    parts = []
    if attn and cfg.target_blocks:
        parts.append(rf"layers\.\d+\.(?:{'|'.join(cfg.target_blocks)})\.(?:{'|'.join(attn)})")
    if mlp:
        parts.append(rf"layers\.\d+\.mlp\.(?:{'|'.join(mlp)})")
    return "|".join(f"(?:{p})" for p in parts)


def add_lora(transformer: torch.nn.Module, cfg: TrainConfig) -> list[torch.nn.Parameter]:
    """Freeze the base, attach the adapter, keep its weights fp32 (the master copy, ACESTEP.md §4)."""
    transformer.requires_grad_(False)
    transformer.add_adapter(adapter_config(cfg))
    params = [p for n, p in transformer.named_parameters() if is_adapter_param(n)]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def adapter_state(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Diffusers-style keys (`layers.0.self_attn.to_q.lora_A.weight`), fp32, on CPU: copies, never views of
    the live weights (on a CPU run `.float().cpu()` would return the parameter itself)."""
    return {k: v.detach().float().cpu().clone() for k, v in get_peft_model_state_dict(transformer).items()}


def load_adapter_strict(transformer: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> int:
    """Load `tensors` into the attached adapter; returns the count loaded, or raises naming what differs."""
    expected = {k: v.shape for k, v in get_peft_model_state_dict(transformer).items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise AdapterMismatch(
            f"The checkpoint's adapter does not match this model's LoRA layers: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). Nothing was loaded. "
            "Resume with the same rank, targets and base model, or start a new run.")
    wrong = [k for k, shape in expected.items() if tuple(tensors[k].shape) != tuple(shape)]
    if wrong:
        raise AdapterMismatch(f"Adapter tensor shapes differ from the model's (e.g. {wrong[0]}: "
                              f"{tuple(tensors[wrong[0]].shape)} vs {tuple(expected[wrong[0]])}); the rank differs.")
    set_peft_model_state_dict(transformer, tensors)
    readback = get_peft_model_state_dict(transformer)
    unequal = [k for k in expected if not torch.equal(readback[k].float().cpu(), tensors[k].float())]
    if unequal:
        raise AdapterMismatch(f"{len(unequal)} adapter tensors did not load (e.g. {unequal[0]}); refusing to continue.")
    return len(expected)


class AdapterMismatch(RuntimeError):
    """A checkpoint or adapter file that does not fit the model; resuming would train from noise."""


def to_original_key(key: str) -> str:
    """`layers.3.self_attn.to_out.0.lora_B.weight` -> `base_model.model.layers.3.self_attn.o_proj.lora_B.weight`
    (likewise DoRA's `lora_magnitude_vector` and LoKr's `lokr_w1`, `lokr_w2_a`, ...)."""
    m = re.fullmatch(r"(layers\.\d+\.(?:self_attn|cross_attn|mlp))\.(.+?)\."
                     r"(lora_[AB]\.weight|lora_magnitude_vector|lokr_w[12](?:_[ab])?|lokr_t2)", key)
    if m is None or m.group(2) not in TO_ORIGINAL:
        raise ValueError(f"No original ACE-Step name for adapter key {key!r}")
    return f"base_model.model.{m.group(1)}.{TO_ORIGINAL[m.group(2)]}.{m.group(3)}"


def _jsonable(d: dict) -> dict:
    """peft configs hold sets and enums; diffusers json-dumps this dict into the file header."""
    out = {}
    for k, v in d.items():
        if isinstance(v, set):
            v = sorted(v)
        elif hasattr(v, "value") and not isinstance(v, (int, float, str, bool)):
            v = v.value
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[k] = v
    return out
