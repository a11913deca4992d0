"""Import the original ACE-Step 1.5 release layout into a diffusers-format folder (ACESTEP.md §2).

Input (`checkpoints/`):  acestep-v15-{base,sft,turbo}/ {config.json, silence_latent.pt, and model.safetensors
                         or, for the XL DiTs, model.safetensors.index.json + its shards},
                         vae/ (diffusers AutoencoderOobleck), Qwen3-Embedding-0.6B/ (text encoder + tokenizer).
Output: model_index.json, transformer/, condition_encoder/, vae/, text_encoder/, tokenizer/, scheduler/,
plus audio_tokenizer_original/ holding the 5 Hz tokenizer/detokenizer weights under their original
names when the checkpoint has them (kept for auto-labelling; the text2music pipeline does not use them).

Every key must land somewhere: names and shapes are checked against diffusers' modules before a
single weight is read, so a checkpoint whose names drift fails here with the missing/unexpected
keys listed, not later with silent random weights.

Memory: the modules are built with their parameters on the meta device, and each weight file is
read and assigned into them in turn (`load_state_dict(assign=True)`, no copy), so a 9 GB XL DiT is
in memory once, never once as a state dict plus once as a module. Buffers are built for real, so a
non-persistent one (not in any checkpoint) still holds its computed value.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

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
SHARD_INDEX = "model.safetensors.index.json"  # the XL DiTs ship sharded
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "chat_template.jinja"]


def _rename(key: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        key = key.replace(old, new)
    return key


def route(key: str) -> tuple[str, str] | None:
    """Where an original key goes: ("transformer" | "condition" | "audio_tokenizer", new key), or None."""
    if key.startswith("decoder."):
        return "transformer", _rename(_rename(key[len("decoder."):], DECODER_RENAMES), ATTENTION_RENAMES)
    if key.startswith("encoder."):
        return "condition", _rename(key[len("encoder."):], ATTENTION_RENAMES)
    if key == "null_condition_emb":
        return "condition", key
    if key.startswith(AUDIO_TOKENIZER_PREFIXES):
        return "audio_tokenizer", key  # kept under the original names (trainer/label/codes.py reads them)
    return None


def split_original_state_dict(sd: dict) -> tuple[dict, dict, dict]:
    """Original keys -> (transformer, condition encoder, audio tokenizer/detokenizer) dicts.

    Values pass through untouched, so this splits tensors and shapes alike."""
    parts: dict[str, dict] = {"transformer": {}, "condition": {}, "audio_tokenizer": {}}
    unknown = []
    for key, value in sd.items():
        where = route(key)
        if where is None:
            unknown.append(key)
        else:
            parts[where[0]][where[1]] = value
    if unknown:
        raise ValueError(f"{len(unknown)} keys in the DiT weights belong to no known part "
                         f"(first: {unknown[:5]}). Is this an ACE-Step 1.5 DiT checkpoint?")
    return parts["transformer"], parts["condition"], parts["audio_tokenizer"]


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


def transformer_config(original: dict, condition_shapes: dict) -> dict:
    """diffusers config of the DiT; `condition_shapes` maps condition-encoder keys to shapes."""
    cfg = {k: original[k] for k in TRANSFORMER_CONFIG_KEYS if k in original}
    cfg["is_turbo"] = bool(original.get("is_turbo", False))
    cfg["model_version"] = original.get("model_version")
    # XL feeds a 2048-wide condition encoder into a 2560-wide DiT; the weights say which.
    null = condition_shapes.get("null_condition_emb")
    enc_hidden = null[-1] if null is not None else None
    if enc_hidden and enc_hidden != original["hidden_size"]:
        cfg["encoder_hidden_size"] = int(enc_hidden)
    return cfg


def condition_config(original: dict, condition_shapes: dict) -> dict:
    """diffusers config of the condition encoder, its sizes read off its own weights' shapes."""
    cfg = {k: original[k] for k in CONDITION_CONFIG_KEYS if k in original}
    # Where the encoder is narrower than the DiT (XL), its sizes come from its own weights.
    if "null_condition_emb" in condition_shapes:
        cfg["hidden_size"] = int(condition_shapes["null_condition_emb"][-1])
    gate = condition_shapes.get("lyric_encoder.layers.0.mlp.gate_proj.weight")
    if gate is not None:
        cfg["intermediate_size"] = int(gate[0])
    q = condition_shapes.get("lyric_encoder.layers.0.self_attn.to_q.weight")
    k = condition_shapes.get("lyric_encoder.layers.0.self_attn.to_k.weight")
    if q is not None and k is not None:
        head_dim = int(cfg.get("head_dim", 128))
        cfg["num_attention_heads"] = int(q[0]) // head_dim
        cfg["num_key_value_heads"] = int(k[0]) // head_dim
    for name, prefix in (("num_lyric_encoder_hidden_layers", "lyric_encoder.layers."),
                         ("num_timbre_encoder_hidden_layers", "timbre_encoder.layers.")):
        idx = {int(m.group(1)) for key in condition_shapes if (m := re.match(re.escape(prefix) + r"(\d+)\.", key))}
        if idx:
            cfg[name] = max(idx) + 1
    return cfg


def _has_dit_weights(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / SHARD_INDEX).is_file()


def find_dit_dir(checkpoints: Path, variant: str | None = None) -> Path:
    """The acestep-v15-* folder to import; with several and no `variant`, prefer base (most plastic)."""
    cands = sorted(p for p in checkpoints.iterdir()
                   if p.is_dir() and _has_dit_weights(p) and (p / "config.json").is_file()
                   and p.name.startswith("acestep-v15"))
    if variant:
        cands = [p for p in cands if p.name == variant or p.name.endswith("-" + variant)]
    if not cands:
        raise FileNotFoundError(
            f"No acestep-v15-*/ folder with config.json and model.safetensors (or {SHARD_INDEX}) under "
            f"{checkpoints}" + (f" for variant {variant!r}" if variant else "")
            + ". Point the import at the release's checkpoints/ folder.")
    for pref in ("base", "sft", "turbo"):
        for p in cands:
            if p.name.endswith("-" + pref):
                return p
    return cands[0]


def dit_weight_files(dit_dir: Path) -> list[Path]:
    """model.safetensors, or the shards that model.safetensors.index.json names, in shard order."""
    single, index = dit_dir / "model.safetensors", dit_dir / SHARD_INDEX
    if single.is_file():
        return [single]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{index} is not a safetensors shard index ({exc}); download the DiT folder again.") from exc
    files = [dit_dir / name for name in sorted(set(weight_map.values()))]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{index} lists {len(missing)} shard(s) that are not in {dit_dir} (first: "
                                f"{missing[:3]}). Download the missing files, then import again.")
    return files


def _weight_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Every key's shape, from the safetensors headers only (no tensor is read)."""
    from safetensors import safe_open

    shapes, seen_in = {}, {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for key in h.keys():
                if key in shapes:
                    raise ValueError(f"{key} is in both {seen_in[key]} and {f.name}; the shards overlap.")
                shapes[key], seen_in[key] = tuple(h.get_slice(key).get_shape()), f.name
    return shapes


def import_original(checkpoints: Path, dest: Path, variant: str | None = None, *, link: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    before_swap: Callable[[Path], None] | None = None) -> Path:
    """Convert `checkpoints/` into a diffusers folder at `dest` (built in a temp dir, then renamed).

    `link`: hard-link the VAE and text encoder files instead of copying them (same disk; used by
    the fetch job, which then deletes the download). `progress(done, total)` counts bytes of DiT
    weights read, then written. `before_swap(tmp)` may add files before the folder appears.
    """
    from accelerate import init_empty_weights
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
    files = dit_weight_files(dit_dir)
    transformer_shapes, condition_shapes, _ = split_original_state_dict(_weight_shapes(files))

    with init_empty_weights(include_buffers=False):  # parameters on meta: no memory until assigned
        transformer = AceStepTransformer1DModel(**transformer_config(original, condition_shapes))
        condition = AceStepConditionEncoder(**condition_config(original, condition_shapes))
    _check_layout(transformer, transformer_shapes, "transformer")
    _check_layout(condition, condition_shapes, "condition encoder", ignore={"silence_latent"})
    silence = _silence_latent(dit_dir / "silence_latent.pt")
    if silence is not None:
        condition.silence_latent = silence  # replaces the default [1, 15000, dim] buffer, any length

    total = sum(f.stat().st_size for f in files)
    done, dtypes, audio_tok_sd = 0, {"transformer": set(), "condition": set()}, {}
    for f in files:  # one weight file in memory at a time, assigned into the modules without a copy
        t_sd, c_sd, a_sd = split_original_state_dict(load_file(str(f)))
        transformer.load_state_dict(t_sd, strict=False, assign=True)
        condition.load_state_dict(c_sd, strict=False, assign=True)
        audio_tok_sd.update(a_sd)
        dtypes["transformer"] |= {v.dtype for v in t_sd.values() if v.is_floating_point()}
        dtypes["condition"] |= {v.dtype for v in c_sd.values() if v.is_floating_point()}
        del t_sd, c_sd
        done += f.stat().st_size
        if progress:
            progress(done, 2 * total)
    for module, what in ((transformer, "transformer"), (condition, "condition")):
        _assert_materialised(module, what)
        if len(dtypes[what]) == 1:  # keep the release's dtype (bf16) instead of doubling the folder's size
            dtype = dtypes[what].pop()
            if any(t.is_floating_point() and t.dtype != dtype for t in [*module.parameters(), *module.buffers()]):
                module.to(dtype)  # the built buffers (silence latent) follow the weights

    dest.parent.mkdir(parents=True, exist_ok=True)
    copy = _link_or_copy if link else shutil.copy2
    with staged_dir(dest) as tmp:
        transformer.save_pretrained(tmp / "transformer")
        condition.save_pretrained(tmp / "condition_encoder")
        FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0).save_pretrained(tmp / "scheduler")
        ignore = shutil.ignore_patterns(".cache")  # huggingface_hub's download bookkeeping
        shutil.copytree(vae_dir, tmp / "vae", copy_function=copy, ignore=ignore)
        shutil.copytree(te_dir, tmp / "text_encoder", copy_function=copy, ignore=ignore)
        (tmp / "tokenizer").mkdir()
        for name in TOKENIZER_FILES:
            if (te_dir / name).is_file():
                copy(te_dir / name, tmp / "tokenizer" / name)
        if audio_tok_sd:
            (tmp / "audio_tokenizer_original").mkdir()
            save_file({k: v.contiguous() for k, v in audio_tok_sd.items()},
                      str(tmp / "audio_tokenizer_original" / "model.safetensors"))
            (tmp / "audio_tokenizer_original" / "config.json").write_text(json.dumps(original, indent=2))
        (tmp / "model_index.json").write_text(json.dumps(_model_index(te_dir), indent=2))
        (tmp / "acelora_import.json").write_text(json.dumps({
            "source": str(dit_dir), "variant": transformer.config.model_version or dit_dir.name.rsplit("-", 1)[-1],
            "is_turbo": bool(transformer.config.is_turbo), "audio_tokenizer_keys": len(audio_tok_sd),
            "weight_files": [f.name for f in files], "linked": bool(link),
        }, indent=2))
        if before_swap:
            before_swap(tmp)
    if progress:
        progress(2 * total, 2 * total)
    return dest


def _link_or_copy(src, dst) -> None:
    """A hard link (no second copy on disk) where the filesystem allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _silence_latent(path: Path) -> torch.Tensor | None:
    if not path.is_file():
        return None
    raw = torch.load(path, map_location="cpu", weights_only=True)  # stored [1, 64, T]
    if raw.dim() != 3:
        raise ValueError(f"{path}: expected a [1, channels, frames] tensor, got shape {tuple(raw.shape)}")
    return raw.transpose(1, 2).contiguous()  # [1, T, 64], the layout the pipeline slices


def _check_layout(module: torch.nn.Module, shapes: dict, what: str, ignore: set[str] = frozenset()) -> None:
    """Names and shapes of the checkpoint against the module's, before any weight is read."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items() if k not in ignore}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ValueError(f"The {what} weights do not match diffusers' layout: {len(missing)} missing "
                         f"(first: {missing[:5]}), {len(unexpected)} unexpected (first: {unexpected[:5]}).")
    wrong = [f"{k} {tuple(shapes[k])} vs {expected[k]}" for k in sorted(expected) if tuple(shapes[k]) != expected[k]]
    if wrong:
        raise ValueError(f"The {what} weights have {len(wrong)} tensor(s) of another shape than the config "
                         f"builds (first: {wrong[:3]}). Is config.json from the same checkpoint?")


def _assert_materialised(module: torch.nn.Module, what: str) -> None:
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # _check_layout makes this unreachable; it guards against a silent random-weights model
        raise RuntimeError(f"The {what} still has {len(left)} unloaded tensor(s) after import (first: {left[:3]}).")


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
    out = import_original(src, dest, variant, progress=lambda done, total: ctx.phase("import", done, total))
    ctx.emit("model", model_dir=str(out), source=str(dit))
    return "completed"
