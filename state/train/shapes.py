"""The release models' shapes, each number with its source, and the DiT config of any model id.

Stdlib only: the dashboard keys its cached memory estimates on these dicts, and the estimate job
(trainer/train/fake_step.py) builds the real diffusers/transformers modules from them on the meta
device. The sources are public files read while writing this; none is downloaded at run time.
"""
from __future__ import annotations

import json

from state import settings
from state.model.catalog import info_for

# diffusers 0.42.1 AceStepTransformer1DModel.__init__ defaults, which are the release 2B DiT
# (ACESTEP.md §3: hidden 2048, 24 layers, 16 heads, 8 KV heads, head_dim 128, MLP 6144). Counted on
# the meta device: 1,575,458,880 parameters (tests/train/test_estimate.py checks both facts).
DIT_2B = {
    "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "in_channels": 192, "audio_acoustic_hidden_dim": 64,
    "patch_size": 2, "rope_theta": 1000000.0, "attention_bias": False, "attention_dropout": 0.0,
    "rms_norm_eps": 1e-6, "sliding_window": 128, "layer_types": None, "encoder_hidden_size": None,
}

# XL DiT (acestep-v15-xl-base / -sft / -turbo). Sources, which agree on every number:
# - modelscope/DiffSynth-Studio diffsynth/configs/model_configs.py (commit 000ba473d40d), the entry for
#   ModelConfig(model_id="ACE-Step/acestep-v15-xl-base"): hidden_size 2560, intermediate_size 9728,
#   num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8, head_dim 128,
#   encoder_hidden_size 2048, layer_types ["sliding_attention", "full_attention"] * 16;
# - the model card of huggingface.co/scragnog/ace-step-1.5-gguf-merge-models ("All three models share
#   the XL architecture": hidden 2560, intermediate 9728, 32 heads (8 KV), 32 layers, encoder hidden
#   2048, head dim 128);
# - diffusers' own AceStepTransformer1DModel docstring: "the XL turbo has a smaller condition encoder
#   (encoder_hidden_size=2048) feeding a wider DiT (hidden_size=2560)".
DIT_XL = {**DIT_2B, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "encoder_hidden_size": 2048}

# The condition encoder is the same 2048-wide model for 2B and XL: DiffSynth-Studio loads both
# checkpoints' encoders into AceStepConditionEncoder with its defaults (diffsynth/models/
# ace_step_conditioner.py, commit 36c203da5738: hidden 2048, intermediate 6144, 16 heads, 8 KV heads,
# 8 lyric and 4 timbre layers, text_hidden_dim 1024), which are also diffusers 0.42.1's defaults.
CONDITION_ENCODER = {
    "hidden_size": 2048, "intermediate_size": 6144, "text_hidden_dim": 1024, "timbre_hidden_dim": 64,
    "num_lyric_encoder_hidden_layers": 8, "num_timbre_encoder_hidden_layers": 4, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "rope_theta": 1000000.0, "sliding_window": 128,
}

# Qwen3-Embedding-0.6B, the text encoder (transformers Qwen3Model). Source: DiffSynth-Studio
# diffsynth/models/ace_step_text_encoder.py (commit 36c203da5738), which builds the checkpoint's
# Qwen3Config in code; the published config.json has the same values.
TEXT_ENCODER = {
    "vocab_size": 151669, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "attention_bias": False,
}

# The release VAE (AutoencoderOobleck, 48 kHz, hop 2*4*4*6*10 = 1920, 64 latent channels). diffusers'
# defaults differ (44.1 kHz, downsampling [2, 4, 4, 8, 8]). Source: DiffSynth-Studio
# diffsynth/models/ace_step_vae.py (commit 36c203da5738), whose defaults load the release
# vae/diffusion_pytorch_model.safetensors: encoder_hidden_size 128, downsampling_ratios [2, 4, 4, 6, 10],
# channel_multiples [1, 2, 4, 8, 16], decoder_channels 128, decoder_input_channels 64, sampling_rate 48000.
VAE = {
    "encoder_hidden_size": 128, "downsampling_ratios": [2, 4, 4, 6, 10], "channel_multiples": [1, 2, 4, 8, 16],
    "decoder_channels": 128, "decoder_input_channels": 64, "audio_channels": 2, "sampling_rate": 48000,
}

RELEASE = {
    "2B": {"transformer": DIT_2B, "condition_encoder": CONDITION_ENCODER, "text_encoder": TEXT_ENCODER, "vae": VAE},
    "XL": {"transformer": DIT_XL, "condition_encoder": CONDITION_ENCODER, "text_encoder": TEXT_ENCODER, "vae": VAE},
}

LATENTS_PER_SECOND = 25.0  # 48 kHz / hop 1920 (ACESTEP.md §1)
# The longest conditioning a track can have: encode_prompt's max_text_length (256) + max_lyric_length
# (2048) + one timbre token (AceStepConditionEncoder packs lyrics, timbre, text). Estimates use it so the
# prediction holds for any labels; real tracks with short lyrics need slightly less.
COND_TOKENS = 256 + 2048 + 1


def dit_config(model_id: str) -> dict | None:
    """The DiT config an estimate for `model_id` is built from, or None when nothing is known.

    A model folder on disk wins (its transformer/config.json, with diffusers' defaults for missing
    keys); otherwise the release shapes of the catalog size (2B or XL).
    """
    folder = settings.resolve_model_dir(model_id) if model_id else None
    if folder is not None:
        try:
            cfg = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = None
        if isinstance(cfg, dict):
            return normalized(cfg)
    size = info_for(model_id).size if model_id else None
    return dict(RELEASE[size]["transformer"]) if size in RELEASE else None


def normalized(cfg: dict) -> dict:
    """A DiT config in one spelling, so a downloaded model's config.json and the release dict it equals
    key the same cached estimate: diffusers' defaults for missing keys, floats as floats, and the
    default layer pattern / encoder width written as None (what the constructor derives them from)."""
    out = {k: cfg.get(k, v) for k, v in DIT_2B.items()}
    for k, v in DIT_2B.items():
        if isinstance(v, float):
            out[k] = float(out[k])
    default_types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(out["num_hidden_layers"])]
    if out["layer_types"] == default_types:
        out["layer_types"] = None
    if out["encoder_hidden_size"] == out["hidden_size"]:
        out["encoder_hidden_size"] = None
    return out
