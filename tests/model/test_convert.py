"""trainer.model.convert: the original release layout round-trips to identical diffusers outputs."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from trainer.model import convert


def _write_original(pipe, root, silence_frames=None, extra_keys=None):
    """A tiny checkpoints/ folder in the release's layout, using the ORIGINAL key names."""
    ckpt = root / "checkpoints"
    dit = ckpt / "acestep-v15-base"
    dit.mkdir(parents=True)
    t_cfg, c_cfg = dict(pipe.transformer.config), dict(pipe.condition_encoder.config)
    original_cfg = {k: t_cfg[k] for k in convert.TRANSFORMER_CONFIG_KEYS}
    original_cfg.update({k: c_cfg[k] for k in convert.CONDITION_CONFIG_KEYS if k not in original_cfg})
    original_cfg.update(is_turbo=False, model_version="base", architectures=["AceStepConditionGenerationModel"])
    (dit / "config.json").write_text(json.dumps(original_cfg))
    sd = convert.to_original_state_dict(pipe.transformer.state_dict(), pipe.condition_encoder.state_dict())
    assert not any(".to_q." in k or ".to_out.0." in k or "proj_in_conv" in k for k in sd)
    sd.update(extra_keys or {})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(dit / "model.safetensors"))
    silence = pipe.condition_encoder.silence_latent
    if silence_frames:
        silence = silence[:, :silence_frames]
    torch.save(silence.transpose(1, 2).contiguous(), dit / "silence_latent.pt")  # release stores [1, C, T]
    pipe.vae.save_pretrained(ckpt / "vae")
    te = ckpt / "Qwen3-Embedding-0.6B"
    pipe.text_encoder.save_pretrained(te)
    pipe.tokenizer.save_pretrained(te)
    return ckpt


def _transformer_out(pipe, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = pipe.transformer.config
    x = torch.randn(1, 13, c.audio_acoustic_hidden_dim, generator=g)
    ctx = torch.randn(1, 13, c.in_channels - c.audio_acoustic_hidden_dim, generator=g)
    ehs = torch.randn(1, 7, pipe.condition_encoder.config.hidden_size, generator=g)
    t = torch.tensor([0.37])
    with torch.no_grad():
        return pipe.transformer(hidden_states=x, timestep=t, timestep_r=t, encoder_hidden_states=ehs,
                                context_latents=ctx, return_dict=False)[0]


def test_original_keys_follow_acestep_names(tiny_pipe):
    sd = convert.to_original_state_dict(tiny_pipe.transformer.state_dict(), tiny_pipe.condition_encoder.state_dict())
    assert "decoder.proj_in.1.weight" in sd and "decoder.proj_out.1.bias" in sd
    assert "decoder.layers.0.self_attn.q_proj.weight" in sd and "decoder.layers.1.cross_attn.o_proj.weight" in sd
    assert "decoder.layers.0.self_attn.q_norm.weight" in sd
    assert "encoder.lyric_encoder.layers.0.self_attn.k_norm.weight" in sd
    assert "null_condition_emb" in sd and "silence_latent" not in str(list(sd))


def test_import_round_trip_is_exact(tiny_pipe, tmp_path):
    from trainer.model.load import load_pipeline

    audio_tok = {"tokenizer.audio_acoustic_proj.weight": torch.randn(4, 8),
                 "detokenizer.proj_out.weight": torch.randn(8, 4)}
    ckpt = _write_original(tiny_pipe, tmp_path, extra_keys=audio_tok)
    out = convert.import_original(ckpt, tmp_path / "converted")
    assert (out / "model_index.json").is_file() and (out / "scheduler" / "scheduler_config.json").is_file()
    kept = out / "audio_tokenizer_original" / "model.safetensors"
    assert kept.is_file()
    converted = load_pipeline(out, device="cpu", dtype=torch.float32)
    assert converted.scheduler.config.num_train_timesteps == 1 and converted.scheduler.config.shift == 1.0
    assert torch.equal(_transformer_out(converted), _transformer_out(tiny_pipe))
    for name in ("transformer", "condition_encoder"):
        a = getattr(tiny_pipe, name).state_dict()
        b = getattr(converted, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # text side unchanged too: same prompt encodes identically
    enc = [p.encode_prompt("a song", "[Verse] la", device="cpu") for p in (tiny_pipe, converted)]
    assert all(torch.equal(x, y) for x, y in zip(*enc))


def test_short_silence_latent_replaces_the_buffer(tiny_pipe, tmp_path):
    from trainer.model.load import load_pipeline

    ckpt = _write_original(tiny_pipe, tmp_path, silence_frames=300)
    out = convert.import_original(ckpt, tmp_path / "converted")
    converted = load_pipeline(out, device="cpu", dtype=torch.float32)
    assert converted.condition_encoder.silence_latent.shape == (1, 300, 8)
    assert torch.equal(converted.condition_encoder.silence_latent, tiny_pipe.condition_encoder.silence_latent[:, :300])
    assert torch.equal(_transformer_out(converted), _transformer_out(tiny_pipe))


def test_unknown_or_missing_keys_fail_loudly(tiny_pipe, tmp_path):
    ckpt = _write_original(tiny_pipe, tmp_path, extra_keys={"decoder.surprise.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected"):
        convert.import_original(ckpt, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    shutil.rmtree(ckpt / "vae")
    with pytest.raises(FileNotFoundError, match="VAE"):
        convert.import_original(ckpt, tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="acestep-v15"):
        convert.import_original(tmp_path, tmp_path / "bad")


def test_import_job_writes_into_workspace_models(workspace, tiny_pipe, tmp_path):
    from state import paths
    from state.events import EventWriter, read_all
    from trainer.job import JobContext

    ckpt = _write_original(tiny_pipe, tmp_path)
    ctx = JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), {"checkpoints": str(ckpt)})
    assert convert.job_import(ctx, None) == "completed"
    dest = paths.models_dir() / "imported--acestep-v15-base"
    assert (dest / "model_index.json").is_file()
    assert [e["model_dir"] for e in read_all(ctx.events.path) if e["type"] == "model"] == [str(dest)]
