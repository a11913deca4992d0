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

from safetensors.torch import save_file

from state.fsutil import atomic_write_text, read_json_object, staged_dir, write_json
from state.listen.previews import step_samples
from state.model.catalog import DEMO_MODEL_ID, KNOWN_MODELS, info_for
from state.train.config import ATTN_BLOCKS, ATTN_PROJS, TrainConfig
from trainer.train.adapter import TO_ORIGINAL, adapter_config, adapter_state, inference_metadata, to_original_key
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
        lora_meta = inference_metadata(transformer.peft_config["default"])
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
    # the same peft config (LoraConfig, with use_dora for DoRA, or LoKrConfig) on the release's module names
    config = adapter_config(cfg)
    config.target_modules = _original_targets(cfg)
    config.base_model_name_or_path = cfg.model_id
    config.save_pretrained(str(dest))


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
        "adapter_type": cfg.adapter_type, "rank": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout,
        "target_modules": list(cfg.target_modules), "target_blocks": list(cfg.target_blocks),
        "dataset_size": dataset_size, "steps": steps, "learning_rate": cfg.learning_rate,
        "timestep_sampling": cfg.timestep_sampling, "cond_dropout": cfg.cond_dropout,
        "adapter_tensors": n_tensors, "config_hash": cfg.hash(), "demo_model": cfg.model_id == DEMO_MODEL_ID,
        "files": {"diffusers": DIFFUSERS_FILE, "acestep_peft": ["adapter_config.json", PEFT_FILE]},
        "created_at": time.time(), "trainer": "AceLoRA",
    }


MERGED_DIR = "merged"  # beside final/, not in it: publish and Hub sync take final/, and a whole model is GBs


def export_merged(job_dir: Path, model_dir: str | Path, scale: float) -> Path:
    """<run>/merged/: the base pipeline with final/'s adapter fused in at `scale`, saved as a whole diffusers
    pipeline for tools that take only complete models (`AceStepPipeline.from_pretrained(merged_dir)`).

    Built on the CPU in the base's stored dtype, so it never needs GPU memory beside a training run.
    """
    from trainer.listen.generate import load_adapter
    from trainer.model.load import load_pipeline

    final = Path(job_dir) / "final"
    pipe = load_pipeline(model_dir, device="cpu", dtype=stored_dtype(model_dir))
    load_adapter(pipe, final, "merged")
    pipe.fuse_lora(components=["transformer"], lora_scale=float(scale), adapter_names=["merged"])
    pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go
    dest = Path(job_dir) / MERGED_DIR
    with staged_dir(dest, prefix=".merged-") as tmp:
        pipe.save_pretrained(str(tmp))
        write_json(tmp / "acelora_merged.json", {"base_model_id": str(model_dir), "adapter": str(final),
                                                 "scale": float(scale), "created_at": time.time()})
    return dest


def stored_dtype(model_dir: str | Path):
    """The dtype the transformer's weights are saved in (float32 when it cannot be read)."""
    import torch
    from safetensors import safe_open

    from trainer.model.load import resolve_model_dir

    folder = Path(resolve_model_dir(model_dir)) / "transformer"
    names = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                dtype = names.get(st.get_slice(k).get_dtype())
                if dtype is not None:
                    return dtype
    return torch.float32


def job_merge(ctx, args) -> str:
    """Job kind "merge": fuse a finished run's adapter into a whole pipeline after the fact.

    params.json: `run` (a run id under lora_output/, or a run folder) and `scale` (default 1.0).
    """
    from state import paths
    from trainer.model.load import resolve_model_dir

    run = str(ctx.params.get("run") or "")
    run_dir = Path(run) if Path(run).is_dir() else paths.run_dir(run)
    if not (run_dir / "final" / DIFFUSERS_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no finished adapter (final/{DIFFUSERS_FILE}); name a run that "
                                "completed or was stopped, in params.json `run`.")
    scale = float(ctx.params.get("scale", 1.0))
    if not 0.0 < scale <= 4.0:
        raise ValueError(f"scale must be between 0 (exclusive) and 4, got {scale}.")
    cfg = TrainConfig.load(run_dir / "config.json")
    ctx.phase("save", 0, 1, what="merged")
    merged = export_merged(run_dir, resolve_model_dir(cfg.model_id), scale)
    ctx.phase("save", 1, 1, what="merged", merged_dir=str(merged))
    return "completed"
