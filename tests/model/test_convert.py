"""trainer.model.convert: the original release layout (one file or sharded) round-trips to identical
diffusers outputs."""
from __future__ import annotations

import shutil

import pytest
import safetensors.torch
import torch

from trainer.model import convert

import release_kit


def _write_original(pipe, root, silence_frames=None, extra_keys=None, shards=0, name="acestep-v15-base"):
    """A tiny checkpoints/ folder in the release's layout, using the ORIGINAL key names."""
    sd = release_kit.original_state_dict(pipe)
    assert not any(".to_q." in k or ".to_out.0." in k or "proj_in_conv" in k for k in sd)
    return release_kit.write_checkpoints(pipe, root, name, shards=shards, silence_frames=silence_frames,
                                         extra_keys=extra_keys)


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


AUDIO_TOK = {"tokenizer.audio_acoustic_proj.weight": torch.randn(4, 8, generator=torch.Generator().manual_seed(1)),
             "detokenizer.proj_out.weight": torch.randn(8, 4, generator=torch.Generator().manual_seed(2))}


def _tensors(pipe) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name in ("transformer", "condition_encoder")
            for k, v in getattr(pipe, name).state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def _import_twice(pipe, tmp_path, monkeypatch, shards=3):
    """Import the same checkpoint written whole and sharded; record which files each import read."""
    reads = []
    real = safetensors.torch.load_file

    def spy(path, *a, **k):
        out = real(path, *a, **k)
        reads.append((str(path), len(out)))
        return out

    monkeypatch.setattr(safetensors.torch, "load_file", spy)
    whole = convert.import_original(_write_original(pipe, tmp_path / "whole", extra_keys=AUDIO_TOK),
                                    tmp_path / "from-whole")
    whole_reads, reads[:] = list(reads), []
    sharded_ckpt = _write_original(pipe, tmp_path / "sharded", extra_keys=AUDIO_TOK, shards=shards)
    sharded = convert.import_original(sharded_ckpt, tmp_path / "from-shards")
    return whole, whole_reads, sharded, list(reads), sharded_ckpt / "acestep-v15-base"


def test_sharded_import_equals_the_unsharded_one(tiny_pipe, tmp_path, monkeypatch):
    from trainer.model.load import load_pipeline

    whole, whole_reads, sharded, shard_reads, dit = _import_twice(tiny_pipe, tmp_path, monkeypatch)
    shard_files = convert.dit_weight_files(dit)
    assert len(shard_files) >= 3 and not (dit / "model.safetensors").exists()
    # shard by shard: each file read once, in index order, and never all keys in one read
    assert [p for p, _ in shard_reads] == [str(f) for f in shard_files]
    n_keys = whole_reads[0][1]
    assert len(whole_reads) == 1 and all(n < n_keys for _, n in shard_reads) and sum(n for _, n in shard_reads) == n_keys
    a, b = (load_pipeline(p, device="cpu", dtype=torch.float32) for p in (whole, sharded))
    _assert_same(_tensors(a), _tensors(b))
    _assert_same(_tensors(a), _tensors(tiny_pipe))  # and both exactly the weights that were exported
    assert torch.equal(a.condition_encoder.silence_latent, b.condition_encoder.silence_latent)
    kept = [safetensors.torch.load_file(str(p / "audio_tokenizer_original" / "model.safetensors"))
            for p in (whole, sharded)]
    _assert_same(kept[0], kept[1])
    _assert_same(kept[0], AUDIO_TOK)
    assert (sharded / "acelora_import.json").read_text().count("model-0000") == len(shard_files)


def _xl_shaped(pipe):
    """The tiny pipeline reshaped like XL: a wider DiT fed by a narrower condition encoder."""
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepConditionEncoder

    torch.manual_seed(3)
    t_cfg = {k: v for k, v in pipe.transformer.config.items() if not k.startswith("_")}
    t_cfg.update(hidden_size=48, intermediate_size=96, num_hidden_layers=3, encoder_hidden_size=32,
                 layer_types=None)
    c_cfg = {k: v for k, v in pipe.condition_encoder.config.items() if not k.startswith("_")}
    c_cfg.update(hidden_size=32, intermediate_size=80, num_lyric_encoder_hidden_layers=2)
    condition = AceStepConditionEncoder(**c_cfg).eval()
    condition.silence_latent = pipe.condition_encoder.silence_latent.clone()
    pipe.transformer, pipe.condition_encoder = AceStepTransformer1DModel(**t_cfg).eval(), condition
    return pipe


def test_xl_shaped_sharded_import_is_exact(tiny_pipe, tmp_path):
    from trainer.model.load import load_pipeline

    xl = _xl_shaped(tiny_pipe)
    ckpt = _write_original(xl, tmp_path, shards=4, name="acestep-v15-xl-base")
    out = convert.import_original(ckpt, tmp_path / "converted")
    converted = load_pipeline(out, device="cpu", dtype=torch.float32)
    for name in ("transformer", "condition_encoder"):  # sizes read off the weights, not the DiT's config
        made, exported = (dict(getattr(p, name).config) for p in (converted, xl))
        assert {k: v for k, v in made.items() if not k.startswith("_")} == \
            {k: v for k, v in exported.items() if not k.startswith("_")}, name
    assert converted.transformer.config.encoder_hidden_size == 32
    _assert_same(_tensors(converted), _tensors(xl))
    # Equal weights and configs; the outputs agree to float rounding only, because CPU kernels sum in
    # another order when a loaded tensor is not 64-byte aligned (cloning it makes them bit-equal).
    assert torch.allclose(_transformer_out(converted), _transformer_out(xl), rtol=0, atol=1e-5)


def test_broken_shards_are_named(tiny_pipe, tmp_path):
    ckpt = _write_original(tiny_pipe, tmp_path, shards=3)
    dit = ckpt / "acestep-v15-base"
    first = convert.dit_weight_files(dit)[0]
    first.unlink()
    with pytest.raises(FileNotFoundError, match=first.name):
        convert.import_original(ckpt, tmp_path / "bad")
    (dit / convert.SHARD_INDEX).write_text("{not json")
    with pytest.raises(ValueError, match="shard index"):
        convert.import_original(ckpt, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_wrong_shapes_fail_before_reading_weights(tiny_pipe, tmp_path, monkeypatch):
    ckpt = _write_original(tiny_pipe, tmp_path)
    cfg_path = ckpt / "acestep-v15-base" / "config.json"
    import json
    cfg = json.loads(cfg_path.read_text())
    cfg["intermediate_size"] *= 2  # a config.json that does not belong to these weights
    cfg_path.write_text(json.dumps(cfg))
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: pytest.fail("read weights first"))
    with pytest.raises(ValueError, match="another shape"):
        convert.import_original(ckpt, tmp_path / "bad")


def test_linked_import_shares_the_vae_and_text_encoder_files(tiny_pipe, tmp_path):
    ckpt = _write_original(tiny_pipe, tmp_path)
    out = convert.import_original(ckpt, tmp_path / "linked", link=True)
    for src, dst in ((ckpt / "vae", out / "vae"), (ckpt / convert.TEXT_ENCODER_DIR, out / "text_encoder")):
        for f in src.iterdir():
            assert (dst / f.name).stat().st_ino == f.stat().st_ino, f
    shutil.rmtree(ckpt)  # the fetch job deletes the download: the linked files stay
    from trainer.model.load import load_pipeline
    assert load_pipeline(out, device="cpu", dtype=torch.float32).vae is not None
