"""Audio codes for the LM path: where the tokenizer comes from, and the original-layout key mapping."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from state.label import options
from trainer.label.codes import Codec, audio_codes, codes_text, load_codec, load_original_tokenizer
from trainer.model.convert import ATTENTION_RENAMES

from label_kit import TINY_LEVELS, tiny_audio_tokenizer, write_tiny_lm

INVERSE = [(new, old) for old, new in ATTENTION_RENAMES]


def _to_original(sd: dict) -> dict:
    """diffusers names -> the release's `tokenizer.*` names (what trainer/model/convert.py keeps aside)."""
    out = {}
    for k, v in sd.items():
        for new, old in INVERSE:
            k = k.replace(new, old)
        out["tokenizer." + k] = v.contiguous()
    return out


def _original_checkpoint(folder, tok) -> None:
    folder.mkdir(parents=True)
    sd = _to_original(tok.state_dict())
    sd["tokenizer.attention_pooler.rotary_emb.inv_freq"] = torch.ones(8)   # derived buffer: ignored
    sd["detokenizer.embed_tokens.weight"] = torch.zeros(32, 32)            # not the tokenizer: ignored
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"head_dim": 16, "pool_window_size": 5, "sliding_window": 8,
                                                   "fsq_input_levels": TINY_LEVELS}))


def test_original_layout_tokenizer_matches_the_diffusers_module(tmp_path):
    tok = tiny_audio_tokenizer()
    _original_checkpoint(tmp_path / "acestep-v15-base", tok)
    loaded = load_original_tokenizer(tmp_path / "acestep-v15-base" / "model.safetensors",
                                     tmp_path / "acestep-v15-base" / "config.json")
    x = torch.randn(1, 20, 8)
    with torch.no_grad():
        q1, i1 = tok.tokenize(x)
        q2, i2 = loaded.eval().tokenize(x)
    assert torch.equal(i1, i2) and torch.allclose(q1, q2)
    assert loaded.quantizer.codebook_size == 16


def test_original_layout_with_drifted_names_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    _original_checkpoint(folder, tiny_audio_tokenizer())
    from safetensors.torch import load_file
    sd = load_file(str(folder / "model.safetensors"))
    sd["tokenizer.attention_pooler.layers.0.self_attn.q_proj_renamed.weight"] = sd.pop(
        "tokenizer.attention_pooler.layers.0.self_attn.q_proj.weight")
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises((ValueError, KeyError)):
        load_original_tokenizer(folder / "model.safetensors", folder / "config.json")


def test_codec_source_order_and_availability(tmp_path, workspace, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    avail = options.availability(model, "0.6B", model_name="tiny")
    assert not avail.ok and len(avail.reasons) == 2  # no LM, no audio tokenizer: both said in words
    assert "acestep-5Hz-lm-0.6B" in avail.reasons[0] and "audio tokenizer" in avail.reasons[1]

    # the release layout under models/ is found when the model itself has no tokenizer
    ckpt = workspace / "models" / "ACE-Step--Ace-Step1.5" / "checkpoints"
    _original_checkpoint(ckpt / "acestep-v15-base", tiny_audio_tokenizer())
    shutil.copytree(model / "vae", ckpt / "vae")
    src = options.codec_source(model)
    assert src.kind == "original" and src.vae_dir == ckpt / "vae"

    # the import's kept-aside weights beat the release folder, a diffusers audio_tokenizer/ beats both
    _original_checkpoint(model / "audio_tokenizer_original", tiny_audio_tokenizer())
    assert options.codec_source(model).kind == "imported"
    tiny_audio_tokenizer().save_pretrained(str(model / "audio_tokenizer"))
    assert options.codec_source(model).kind == "diffusers"

    write_tiny_lm(workspace / "models" / "ACE-Step--acestep-5Hz-lm-1.7B")
    avail = options.availability(model, "1.7B")
    assert avail.ok and avail.reasons == []


def test_audio_to_codes_one_per_fifth_of_a_second(tmp_path, workspace, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    _original_checkpoint(model / "audio_tokenizer_original", tiny_audio_tokenizer())
    codec = load_codec(options.codec_source(model), torch.device("cpu"), torch.float32)
    assert isinstance(codec, Codec) and codec.latents_per_second == 25.0
    audio = np.random.default_rng(0).standard_normal((2, 48000 * 3 + 1000)).astype(np.float32) * 0.1
    codes = audio_codes(codec, audio)
    assert len(codes) == 15 and all(0 <= c < 16 for c in codes)  # 75 latent frames / 5
    assert codes_text(codes[:2]) == f"<|audio_code_{codes[0]}|><|audio_code_{codes[1]}|>"
