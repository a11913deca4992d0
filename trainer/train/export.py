"""The finished adapter in `final/`, in both formats users need (ACESTEP.md §3):

    pytorch_lora_weights.safetensors   diffusers: `pipe.load_lora_weights(final_dir)`
    adapter_config.json +              original ACE-Step PEFT format (official UI, Side-Step, ComfyUI):
    adapter_model.safetensors            keys base_model.model.layers.N.{self_attn|cross_attn}.{q,k,v,o}_proj.lora_{A,B}.weight
    training_meta.json                 base model, variant, shift, recommended steps/guidance, rank, alpha, ...
    README.md                          model card (trainer/train/card.py), with the last preview in samples/

diffusers reads neither adapter_config.json nor network alphas from the PEFT file, so without
help it would load an adapter with alpha != rank at the wrong scale. Both safetensors files
therefore carry diffusers' own `lora_adapter_metadata` header (other loaders ignore it), with
lora_dropout 0: diffusers 0.42 creates the LoRA dropout modules in training mode even in an eval
pipeline, so the trained dropout would make every generation random.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from peft import LoraConfig
from safetensors.torch import save_file

from state.fsutil import atomic_write_text, read_json_object, staged_dir, write_json
from state.listen.previews import step_samples
from state.model.catalog import DEMO_MODEL_ID, KNOWN_MODELS, info_for
from state.train.config import ATTN_BLOCKS, ATTN_PROJS, TrainConfig
from trainer.train.adapter import TO_ORIGINAL, adapter_state, to_original_key
from trainer.train.card import model_card

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
PEFT_FILE = "adapter_model.safetensors"
META_FILE = "training_meta.json"


def export_final(job_dir: Path, transformer, cfg: TrainConfig, steps: int, dataset_size: int,
                 model_dir: str | None = None, extra_meta: dict | None = None,
                 ema_tensors: dict | None = None) -> Path:
    """Write final/ atomically (temp folder, then rename over any previous export).

    `extra_meta` goes into training_meta.json (e.g. a stop's `exported_at_step` / `total_steps`);
    `ema_tensors`, when the run kept an EMA of the LoRA weights, become a second adapter in final/ema/.
    """
    final = Path(job_dir) / "final"
    with staged_dir(final, prefix=".final-") as tmp:
        tensors = adapter_state(transformer)
        # dropout is a training-time setting; diffusers' load_lora_weights leaves the new LoRA dropout
        # modules in training mode, so a non-zero value here would make inference random
        lora_meta = {**_jsonable(transformer.peft_config["default"].to_dict()), "lora_dropout": 0.0}
        meta = {**training_meta(cfg, steps, dataset_size, len(tensors), model_dir), **(extra_meta or {})}
        _write_adapter(tmp, tensors, cfg, lora_meta, meta, preview=newest_preview(job_dir))
        if ema_tensors is not None:
            (tmp / "ema").mkdir()  # no preview: the previews were rendered with the live weights, not the EMA
            _write_adapter(tmp / "ema", ema_tensors, cfg, lora_meta, {**meta, "ema_decay": cfg.ema_decay})
    return final


def _write_adapter(dest: Path, tensors: dict, cfg: TrainConfig, lora_meta: dict, meta: dict,
                   preview: tuple[Path, str | None] | None = None) -> None:
    """One adapter folder: both formats, training_meta.json, the model card (with the preview in it)."""
    from diffusers import AceStepPipeline

    AceStepPipeline.save_lora_weights(dest, transformer_lora_layers=tensors,
                                      transformer_lora_adapter_metadata=lora_meta)
    _write_original(dest, tensors, cfg, lora_meta)
    write_json(dest / META_FILE, meta)
    samples = []
    if preview is not None:  # the card's audio travels with the folder (a zip download, an upload)
        (dest / "samples").mkdir()
        shutil.copy2(preview[0], dest / "samples" / preview[0].name)
        samples.append(preview[0].name)
    atomic_write_text(dest / "README.md", str(model_card(meta, cfg.to_dict(), samples=samples,
                                                         prompt=preview[1] if preview else None)))


def newest_preview(run_dir: Path) -> tuple[Path, str | None] | None:
    """The last training preview (samples/step-NNNNNN.wav) and its prompt's caption, or None."""
    found = step_samples(run_dir)
    if not found:
        return None
    wav = found[-1][1]
    prompt = read_json_object(wav.with_suffix(".json"))[0].get("prompt")  # a damaged one only loses the caption
    caption = prompt.get("caption") if isinstance(prompt, dict) else None
    return wav, caption


def _write_original(dest: Path, tensors: dict, cfg: TrainConfig, lora_meta: dict) -> None:
    original = {to_original_key(k): v for k, v in tensors.items()}
    # diffusers prefixes its metadata keys with the component name when it saves; do the same so
    # `load_lora_weights(dir, weight_name="adapter_model.safetensors")` gets alpha right.
    header = {"format": "pt", "lora_adapter_metadata": json.dumps(
        {f"transformer.{k}": v for k, v in lora_meta.items()}, indent=2, sort_keys=True)}
    save_file(original, str(dest / PEFT_FILE), metadata=header)
    LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
               target_modules=_original_targets(cfg), base_model_name_or_path=cfg.model_id).save_pretrained(dest)


def _original_targets(cfg: TrainConfig) -> list[str] | str:
    """Plain names, like upstream's adapters, unless only one attention kind is adapted."""
    names = [TO_ORIGINAL[m] for m in cfg.target_modules]
    attn = [TO_ORIGINAL[m] for m in cfg.target_modules if m in ATTN_PROJS]
    if not attn or set(cfg.target_blocks) == set(ATTN_BLOCKS):
        return names
    mlp = [n for n in names if n not in attn]
    parts = [rf"layers\.\d+\.(?:{'|'.join(cfg.target_blocks)})\.(?:{'|'.join(attn)})"]
    if mlp:
        parts.append(rf"layers\.\d+\.mlp\.(?:{'|'.join(mlp)})")
    return "|".join(f"(?:{p})" for p in parts)


def training_meta(cfg: TrainConfig, steps: int, dataset_size: int, n_tensors: int,
                  model_dir: str | None = None) -> dict:
    # a known id's table entry wins; otherwise the loaded folder's transformer config says the variant
    info = info_for(cfg.model_id if cfg.model_id in KNOWN_MODELS else (model_dir or cfg.model_id))
    return {
        "base_model_id": cfg.model_id, "variant": info.variant, "shift": cfg.shift,
        "recommended_steps": info.steps, "recommended_guidance": info.guidance,
        "rank": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules), "target_blocks": list(cfg.target_blocks),
        "dataset_size": dataset_size, "steps": steps, "learning_rate": cfg.learning_rate,
        "timestep_sampling": cfg.timestep_sampling, "cond_dropout": cfg.cond_dropout,
        "adapter_tensors": n_tensors, "config_hash": cfg.hash(), "demo_model": cfg.model_id == DEMO_MODEL_ID,
        "files": {"diffusers": DIFFUSERS_FILE, "acestep_peft": ["adapter_config.json", PEFT_FILE]},
        "created_at": time.time(), "trainer": "AceLoRA",
    }


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

