"""Tiny checkpoints in the ORIGINAL ACE-Step release layout (ACESTEP.md §2), written from a tiny
diffusers pipeline with the original key names: one model.safetensors (2B) or sharded with an
index (XL), plus the files a Hub repo of the release would hold around them."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from trainer.model import convert


def original_config(pipe) -> dict:
    """The release's config.json: DiT keys, the encoder's keys the DiT lacks, the variant."""
    t_cfg, c_cfg = dict(pipe.transformer.config), dict(pipe.condition_encoder.config)
    cfg = {k: t_cfg[k] for k in convert.TRANSFORMER_CONFIG_KEYS}
    cfg.update({k: c_cfg[k] for k in convert.CONDITION_CONFIG_KEYS if k not in cfg})
    cfg.update(is_turbo=bool(t_cfg.get("is_turbo")), model_version=t_cfg.get("model_version") or "base",
               architectures=["AceStepConditionGenerationModel"])
    if c_cfg["hidden_size"] != t_cfg["hidden_size"]:  # as the XL release spells its narrower encoder
        cfg.update(encoder_hidden_size=c_cfg["hidden_size"], encoder_intermediate_size=c_cfg["intermediate_size"])
    return cfg


def original_state_dict(pipe, extra_keys: dict | None = None) -> dict[str, torch.Tensor]:
    sd = convert.to_original_state_dict(pipe.transformer.state_dict(), pipe.condition_encoder.state_dict())
    sd.update(extra_keys or {})
    return {k: v.contiguous() for k, v in sd.items()}


def write_dit(pipe, dit: Path, shards: int = 0, silence_frames: int | None = None,
              extra_keys: dict | None = None) -> Path:
    """A DiT folder: config.json, silence_latent.pt ([1, C, T] as released), and the weights as one
    model.safetensors (shards=0) or split by huggingface_hub into about `shards` files + index."""
    dit.mkdir(parents=True, exist_ok=True)
    (dit / "config.json").write_text(json.dumps(original_config(pipe)))
    sd = original_state_dict(pipe, extra_keys)
    if shards:
        from huggingface_hub import split_torch_state_dict_into_shards

        per_shard = sum(v.numel() * v.element_size() for v in sd.values()) // shards + 1
        split = split_torch_state_dict_into_shards(sd, filename_pattern="model{suffix}.safetensors",
                                                   max_shard_size=per_shard)
        assert split.is_sharded, "the tiny checkpoint did not split"
        for filename, keys in split.filename_to_tensors.items():
            save_file({k: sd[k] for k in keys}, str(dit / filename), metadata={"format": "pt"})
        (dit / convert.SHARD_INDEX).write_text(json.dumps(
            {"metadata": split.metadata, "weight_map": split.tensor_to_filename}, indent=2))
    else:
        save_file(sd, str(dit / "model.safetensors"))
    silence = pipe.condition_encoder.silence_latent
    if silence_frames:
        silence = silence[:, :silence_frames]
    torch.save(silence.transpose(1, 2).contiguous(), dit / "silence_latent.pt")
    return dit


def write_shared(pipe, root: Path) -> Path:
    """vae/ and Qwen3-Embedding-0.6B/ (text encoder + tokenizer), as in ACE-Step/Ace-Step1.5."""
    pipe.vae.save_pretrained(root / "vae")
    te = root / convert.TEXT_ENCODER_DIR
    pipe.text_encoder.save_pretrained(te)
    pipe.tokenizer.save_pretrained(te)
    return root


def write_checkpoints(pipe, root: Path, name: str = "acestep-v15-base", **dit_kw) -> Path:
    """A release checkpoints/ folder: <name>/ plus the shared vae/ and text encoder."""
    ckpt = Path(root) / "checkpoints"
    write_dit(pipe, ckpt / name, **dit_kw)
    return write_shared(pipe, ckpt)


def folder_files(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under `root` as {repo path: bytes}, ready for FakeHub.add_repo."""
    root = Path(root)
    return {prefix + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
