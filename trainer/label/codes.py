"""Audio -> ACE-Step 5 Hz audio codes: 48 kHz stereo -> VAE latents (25 Hz) -> audio tokenizer.

The tokenizer (diffusers `AceStepAudioTokenizer`) pools 5 latent frames with an attention pooler
and quantizes with a residual FSQ (levels 8,8,8,5,5,5: 64,000 codes, one quantizer), so one code
stands for 0.2 s. Its weights come from, in order (state.label.options.codec_source):
  diffusers  <model>/audio_tokenizer/                      AceStepAudioTokenizer.from_pretrained
  imported   <model>/audio_tokenizer_original/model.safetensors   (trainer/model/convert.py keeps it aside)
  original   models/*/checkpoints/acestep-v15-*/model.safetensors (the release layout)
The last two hold the original names (`tokenizer.attention_pooler.layers.0.self_attn.q_proj.weight`):
the prefix goes and the attention projections get diffusers' names, exactly as for the DiT.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from state.label.options import CodecSource
from trainer.model.convert import ATTENTION_RENAMES, _rename

# Buffers the original module keeps that diffusers recomputes (rotary tables, FSQ level tables).
_DERIVED_BUFFERS = re.compile(r"(rotary_emb\.inv_freq|_levels|_basis|scales|soft_clamp_input_value|implicit_codebook)$")


@dataclass
class Codec:
    """What trainer.dataset.preprocess.encode_latents needs from a pipeline (vae, sample_rate,
    latents_per_second), plus the tokenizer and the silence latent that pads its last window."""

    vae: torch.nn.Module
    tokenizer: torch.nn.Module
    silence: torch.Tensor | None   # [1, T, C]
    sample_rate: int
    latents_per_second: float

    @property
    def codebook_size(self) -> int:
        return int(self.tokenizer.quantizer.codebook_size)


def original_tokenizer_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tokenizer.*` keys of an original checkpoint under diffusers' names (detokenizer keys dropped)."""
    out = {}
    for key, value in sd.items():
        if key.startswith("tokenizer.") and not _DERIVED_BUFFERS.search(key):
            out[_rename(key[len("tokenizer."):], ATTENTION_RENAMES)] = value
    return out


def tokenizer_config_from_weights(sd: dict[str, torch.Tensor], original: dict) -> dict:
    """AceStepAudioTokenizer kwargs: sizes from the weights (XL's tokenizer is narrower than its DiT),
    the rest (head_dim, pool window, FSQ levels, rope, window) from the original config."""
    proj = sd["audio_acoustic_proj.weight"]                   # (hidden, acoustic)
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"attention_pooler\.layers\.(\d+)\.", k))}
    head_dim = int(original.get("head_dim", 128))
    cfg = {
        "hidden_size": int(proj.shape[0]),
        "audio_acoustic_hidden_dim": int(proj.shape[1]),
        "intermediate_size": int(sd["attention_pooler.layers.0.mlp.gate_proj.weight"].shape[0]),
        "num_attention_pooler_hidden_layers": max(layers) + 1,
        "num_attention_heads": int(sd["attention_pooler.layers.0.self_attn.to_q.weight"].shape[0]) // head_dim,
        "num_key_value_heads": int(sd["attention_pooler.layers.0.self_attn.to_k.weight"].shape[0]) // head_dim,
        "head_dim": head_dim,
        "fsq_dim": int(sd["quantizer.project_in.weight"].shape[1]),
        "fsq_input_levels": list(original.get("fsq_input_levels") or [8, 8, 8, 5, 5, 5]),
        "fsq_input_num_quantizers": int(original.get("fsq_input_num_quantizers", 1)),
        "pool_window_size": int(original.get("pool_window_size", 5)),
    }
    for k in ("rope_theta", "rms_norm_eps", "sliding_window", "attention_bias"):
        if k in original:
            cfg[k] = original[k]
    if isinstance(original.get("layer_types"), list):
        cfg["layer_types"] = original["layer_types"][: cfg["num_attention_pooler_hidden_layers"]]
    if len(cfg["fsq_input_levels"]) != sd["quantizer.project_in.weight"].shape[0]:
        raise ValueError(f"FSQ levels {cfg['fsq_input_levels']} do not match the quantizer's "
                         f"{sd['quantizer.project_in.weight'].shape[0]} dimensions.")
    return cfg


def load_original_tokenizer(weights: Path, config: Path | None):
    from diffusers.pipelines.ace_step import AceStepAudioTokenizer
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        sd = original_tokenizer_state_dict({k: f.get_tensor(k) for k in f.keys() if k.startswith("tokenizer.")})
    if not sd:
        raise ValueError(f"{weights} holds no tokenizer.* weights, so it cannot give 5 Hz audio codes.")
    original = json.loads(config.read_text(encoding="utf-8")) if config and config.is_file() else {}
    module = AceStepAudioTokenizer(**tokenizer_config_from_weights(sd, original))
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(f"The audio tokenizer weights in {weights} do not match diffusers' layout: "
                         f"{len(missing)} missing (first: {missing[:4]}), {len(unexpected)} unexpected "
                         f"(first: {unexpected[:4]}).")
    module.load_state_dict(sd, strict=True)
    return module


def _silence(source: CodecSource) -> torch.Tensor | None:
    """[1, T, C] silence latent: pads the last 5-frame window the way the pipeline does."""
    if source.silence is None:
        return None
    if source.silence.suffix == ".pt":
        raw = torch.load(source.silence, map_location="cpu", weights_only=True)  # stored [1, C, T]
        return raw.transpose(1, 2).float().contiguous()
    from safetensors import safe_open

    with safe_open(str(source.silence), framework="pt") as f:
        return f.get_tensor("silence_latent").float() if "silence_latent" in f.keys() else None


def load_codec(source: CodecSource, device: torch.device, dtype: torch.dtype) -> Codec:
    from diffusers import AutoencoderOobleck
    from diffusers.pipelines.ace_step import AceStepAudioTokenizer

    vae = AutoencoderOobleck.from_pretrained(str(source.vae_dir), torch_dtype=dtype).to(device).eval()
    if source.kind == "diffusers":
        tok = AceStepAudioTokenizer.from_pretrained(str(source.tokenizer), torch_dtype=dtype)
    else:
        tok = load_original_tokenizer(source.tokenizer, source.config).to(dtype)
    tok = tok.to(device).eval()
    if tok.config.fsq_input_num_quantizers != 1:
        raise ValueError("This audio tokenizer uses several quantizers; the 5 Hz LM reads one code per frame.")
    sr = int(vae.config.sampling_rate)
    hop = int(np.prod(vae.config.downsampling_ratios))
    if tok.config.audio_acoustic_hidden_dim != vae.config.decoder_input_channels:
        raise ValueError(f"The audio tokenizer expects {tok.config.audio_acoustic_hidden_dim}-dim latents but "
                         f"the VAE in {source.vae_dir} makes {vae.config.decoder_input_channels}: not the same model.")
    return Codec(vae, tok, _silence(source), sr, sr / hop)


@torch.no_grad()
def audio_codes(codec: Codec, audio: np.ndarray) -> list[int]:
    """(2, n) float32 at codec.sample_rate -> one code per 0.2 s (last window padded with silence)."""
    from trainer.dataset.preprocess import encode_latents

    latents = encode_latents(codec, audio)  # (T, C) float32 on CPU, 25 per second
    tok = codec.tokenizer
    x = latents.unsqueeze(0).to(device=tok.device, dtype=tok.dtype)   # (1, T, C)
    silence = codec.silence.to(device=tok.device, dtype=tok.dtype) if codec.silence is not None else None
    _quantized, indices = tok.tokenize(x, silence)                      # indices (1, T / 5, 1)
    return [int(i) for i in indices[0, :, 0].tolist()]


def codes_text(codes: list[int]) -> str:
    return "".join(f"<|audio_code_{c}|>" for c in codes)
