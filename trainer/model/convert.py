"""Import the original ACE-Step 1.5 release layout into a diffusers-format folder (ACESTEP.md §2).

Input (`checkpoints/`):  acestep-v15-{base,sft,turbo}/ {config.json, model.safetensors, silence_latent.pt},
                         vae/ (diffusers AutoencoderOobleck), Qwen3-Embedding-0.6B/ (text encoder + tokenizer).
Output: model_index.json, transformer/, condition_encoder/, vae/, text_encoder/, tokenizer/, scheduler/,
plus audio_tokenizer_original/ holding the 5 Hz tokenizer/detokenizer weights under their original
names when the checkpoint has them (kept for auto-labelling; the text2music pipeline does not use them).

Every key must land somewhere: modules are loaded with strict=True, so a checkpoint whose names
drift fails here with the missing/unexpected keys listed, not later with silent random weights.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from state.fsutil import staged_dir

# diffusers 0.42 renamed the attention projections; diffusers' own conversion script predates it.
ATTENTION_RENAMES = [(".q_proj.", ".to_q."), (".k_proj.", ".to_k."), (".v_proj.", ".to_v."),
                     (".o_proj.", ".to_out.0."), (".q_norm.", ".norm_q."), (".k_norm.", ".norm_k.")]
# The original wraps the patchify convs in Sequential(Lambda, Conv, Lambda); only index 1 has weights.
DECODER_RENAMES = [("proj_in.1.", "proj_in_conv."), ("proj_out.1.", "proj_out_conv.")]

TRANSFORMER_CONFIG_KEYS = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                           "num_key_value_heads", "head_dim", "in_channels", "audio_acoustic_hidden_dim",
                           "patch_size", "rope_theta", "attention_bias", "attention_dropout", "rms_norm_eps",
                           "sliding_window", "layer_types"]
CONDITION_CONFIG_KEYS = ["hidden_size", "intermediate_size", "text_hidden_dim", "timbre_hidden_dim",
                         "num_lyric_encoder_hidden_layers", "num_timbre_encoder_hidden_layers",
                         "num_attention_heads", "num_key_value_heads", "head_dim", "rope_theta",
                         "attention_bias", "attention_dropout", "rms_norm_eps", "sliding_window"]
AUDIO_TOKENIZER_PREFIXES = ("tokenizer.", "detokenizer.")
TEXT_ENCODER_DIR = "Qwen3-Embedding-0.6B"
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "chat_template.jinja"]


def _rename(key: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        key = key.replace(old, new)
    return key


def split_original_state_dict(sd: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
    """model.safetensors -> (transformer, condition encoder, audio tokenizer/detokenizer) state dicts."""
    transformer, condition, audio_tok, unknown = {}, {}, {}, []
    for key, value in sd.items():
        if key.startswith("decoder."):
            transformer[_rename(_rename(key[len("decoder."):], DECODER_RENAMES), ATTENTION_RENAMES)] = value
        elif key.startswith("encoder."):
            condition[_rename(key[len("encoder."):], ATTENTION_RENAMES)] = value
        elif key == "null_condition_emb":
            condition[key] = value
        elif key.startswith(AUDIO_TOKENIZER_PREFIXES):
            audio_tok[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} keys in model.safetensors belong to no known part "
                         f"(first: {unknown[:5]}). Is this an ACE-Step 1.5 DiT checkpoint?")
    return transformer, condition, audio_tok


def to_original_state_dict(transformer_sd: dict, condition_sd: dict) -> dict[str, torch.Tensor]:
    """The inverse of `split_original_state_dict` (without the silence latent, which has its own file)."""
    inv_attn = [(new, old) for old, new in ATTENTION_RENAMES]
    inv_dec = [(new, old) for old, new in DECODER_RENAMES]
    out = {}
    for key, value in transformer_sd.items():
        out["decoder." + _rename(_rename(key, inv_attn), inv_dec)] = value
    for key, value in condition_sd.items():
        if key == "silence_latent":
            continue
        out[key if key == "null_condition_emb" else "encoder." + _rename(key, inv_attn)] = value
    return out


def transformer_config(original: dict, condition_sd: dict) -> dict:
    cfg = {k: original[k] for k in TRANSFORMER_CONFIG_KEYS if k in original}
    cfg["is_turbo"] = bool(original.get("is_turbo", False))
    cfg["model_version"] = original.get("model_version")
    # XL feeds a 2048-wide condition encoder into a 2560-wide DiT; the weights say which.
    enc_hidden = condition_sd["null_condition_emb"].shape[-1] if "null_condition_emb" in condition_sd else None
    if enc_hidden and enc_hidden != original["hidden_size"]:
        cfg["encoder_hidden_size"] = int(enc_hidden)
    return cfg


def condition_config(original: dict, condition_sd: dict) -> dict:
    cfg = {k: original[k] for k in CONDITION_CONFIG_KEYS if k in original}
    # Where the encoder is narrower than the DiT (XL), its sizes come from its own weights.
    if "null_condition_emb" in condition_sd:
        cfg["hidden_size"] = int(condition_sd["null_condition_emb"].shape[-1])
    gate = condition_sd.get("lyric_encoder.layers.0.mlp.gate_proj.weight")
    if gate is not None:
        cfg["intermediate_size"] = int(gate.shape[0])
    q = condition_sd.get("lyric_encoder.layers.0.self_attn.to_q.weight")
    k = condition_sd.get("lyric_encoder.layers.0.self_attn.to_k.weight")
    if q is not None and k is not None:
        head_dim = int(cfg.get("head_dim", 128))
        cfg["num_attention_heads"] = int(q.shape[0]) // head_dim
        cfg["num_key_value_heads"] = int(k.shape[0]) // head_dim
    for name, prefix in (("num_lyric_encoder_hidden_layers", "lyric_encoder.layers."),
                         ("num_timbre_encoder_hidden_layers", "timbre_encoder.layers.")):
        idx = {int(m.group(1)) for key in condition_sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", key))}
        if idx:
            cfg[name] = max(idx) + 1
    return cfg


def find_dit_dir(checkpoints: Path, variant: str | None = None) -> Path:
    """The acestep-v15-* folder to import; with several and no `variant`, prefer base (most plastic)."""
    cands = sorted(p for p in checkpoints.iterdir()
                   if p.is_dir() and (p / "model.safetensors").is_file() and (p / "config.json").is_file()
                   and p.name.startswith("acestep-v15"))
    if variant:
        cands = [p for p in cands if p.name == variant or p.name.endswith("-" + variant)]
    if not cands:
        raise FileNotFoundError(
            f"No acestep-v15-*/ folder with config.json and model.safetensors under {checkpoints}"
            + (f" for variant {variant!r}" if variant else "") + ". Point the import at the release's checkpoints/ folder.")
    for pref in ("base", "sft", "turbo"):
        for p in cands:
            if p.name.endswith("-" + pref):
                return p
    return cands[0]


def import_original(checkpoints: Path, dest: Path, variant: str | None = None) -> Path:
    """Convert `checkpoints/` into a diffusers folder at `dest` (built in a temp dir, then renamed)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder
    from safetensors.torch import load_file, save_file

    checkpoints, dest = Path(checkpoints), Path(dest)
    dit_dir = find_dit_dir(checkpoints, variant)
    vae_dir, te_dir = checkpoints / "vae", checkpoints / TEXT_ENCODER_DIR
    for p, what in ((vae_dir, "VAE folder"), (te_dir, "text encoder folder")):
        if not p.is_dir():
            raise FileNotFoundError(f"{what} not found at {p}; the release's checkpoints/ folder should contain it.")
    original = json.loads((dit_dir / "config.json").read_text(encoding="utf-8"))
    transformer_sd, condition_sd, audio_tok_sd = split_original_state_dict(load_file(dit_dir / "model.safetensors"))

    transformer = AceStepTransformer1DModel(**transformer_config(original, condition_sd))
    _load_strict(transformer, transformer_sd, "transformer")
    condition = AceStepConditionEncoder(**condition_config(original, condition_sd))
    silence = _silence_latent(dit_dir / "silence_latent.pt")
    if silence is not None:
        condition.silence_latent = silence  # replaces the default [1, 15000, dim] buffer, any length
    _load_strict(condition, condition_sd, "condition encoder", ignore={"silence_latent"})

    dest.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(dest) as tmp:
        transformer.save_pretrained(tmp / "transformer")
        condition.save_pretrained(tmp / "condition_encoder")
        FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0).save_pretrained(tmp / "scheduler")
        shutil.copytree(vae_dir, tmp / "vae")
        shutil.copytree(te_dir, tmp / "text_encoder")
        (tmp / "tokenizer").mkdir()
        for name in TOKENIZER_FILES:
            if (te_dir / name).is_file():
                shutil.copy2(te_dir / name, tmp / "tokenizer" / name)
        if audio_tok_sd:
            (tmp / "audio_tokenizer_original").mkdir()
            save_file({k: v.contiguous() for k, v in audio_tok_sd.items()},
                      str(tmp / "audio_tokenizer_original" / "model.safetensors"))
            (tmp / "audio_tokenizer_original" / "config.json").write_text(json.dumps(original, indent=2))
        (tmp / "model_index.json").write_text(json.dumps(_model_index(te_dir), indent=2))
        (tmp / "acelora_import.json").write_text(json.dumps({
            "source": str(dit_dir), "variant": transformer.config.model_version or dit_dir.name.rsplit("-", 1)[-1],
            "is_turbo": bool(transformer.config.is_turbo), "audio_tokenizer_keys": len(audio_tok_sd),
        }, indent=2))
    return dest


def _silence_latent(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    raw = torch.load(path, map_location="cpu", weights_only=True)  # stored [1, 64, T]
    if raw.dim() != 3:
        raise ValueError(f"{path}: expected a [1, channels, frames] tensor, got shape {tuple(raw.shape)}")
    return raw.transpose(1, 2).contiguous()  # [1, T, 64], the layout the pipeline slices


def _load_strict(module: torch.nn.Module, sd: dict, what: str, ignore: set[str] = frozenset()) -> None:
    expected = set(module.state_dict()) - set(ignore)
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(f"The {what} weights do not match diffusers' layout: {len(missing)} missing "
                         f"(first: {missing[:5]}), {len(unexpected)} unexpected (first: {unexpected[:5]}).")
    module.load_state_dict(sd, strict=False)
    dtypes = {v.dtype for v in sd.values() if v.is_floating_point()}
    if len(dtypes) == 1:  # keep the release's dtype (bf16) instead of doubling the folder's size
        module.to(dtypes.pop())


def _model_index(te_dir: Path) -> dict:
    """Class names without loading the 0.6B text encoder: its config names the model type."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    te_cfg = json.loads((te_dir / "config.json").read_text(encoding="utf-8"))
    te_class = MODEL_MAPPING_NAMES.get(te_cfg.get("model_type", ""), "Qwen3Model")
    try:
        tok_class = json.loads((te_dir / "tokenizer_config.json").read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, ValueError):
        tok_class = None
    if not tok_class or not hasattr(transformers, tok_class):
        tok_class = "PreTrainedTokenizerFast"
    import diffusers
    return {
        "_class_name": "AceStepPipeline", "_diffusers_version": diffusers.__version__,
        "audio_token_detokenizer": [None, None], "audio_tokenizer": [None, None],
        "condition_encoder": ["ace_step", "AceStepConditionEncoder"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", te_class], "tokenizer": ["transformers", tok_class],
        "transformer": ["diffusers", "AceStepTransformer1DModel"], "vae": ["diffusers", "AutoencoderOobleck"],
    }


def job_import(ctx, args) -> str:
    """Job kind "import-original": params `checkpoints` (folder), optional `variant`, `dest`/`name`."""
    from state import paths

    src = Path(ctx.params["checkpoints"]).expanduser()
    variant = ctx.params.get("variant")
    dit = find_dit_dir(src, variant)
    name = paths.check_name(ctx.params.get("name") or f"imported--{dit.name}", "model name")
    dest = Path(ctx.params.get("dest") or paths.models_dir() / name)
    ctx.phase("load", 0, 1)
    out = import_original(src, dest, variant)
    ctx.phase("load", 1, 1)
    ctx.emit("model", model_dir=str(out), source=str(dit))
    return "completed"
