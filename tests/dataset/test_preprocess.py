"""trainer.dataset.preprocess: shapes, the 25 Hz rate, pipeline-identical conditioning, the two-level cache."""
from __future__ import annotations

import json

import pytest
import torch

from state.events import EventWriter, read_all
from tests.conftest import write_tone
from trainer.dataset import preprocess
from trainer.job import JobContext, StopNow

MODEL = "tiny-test"


class Counter:
    def __init__(self):
        self.n = 0


def count_vae(monkeypatch, pipe) -> Counter:
    c, real = Counter(), pipe.vae.encode

    def encode(*a, **k):
        c.n += 1
        return real(*a, **k)

    monkeypatch.setattr(pipe.vae, "encode", encode)
    return c


def count_text(pipe) -> Counter:
    c = Counter()
    pipe.text_encoder.register_forward_hook(lambda *_: setattr(c, "n", c.n + 1))
    return c


def _row(path, **labels):
    return {"id": path.stem, "audio": str(path), "caption": "bright synth pop", "lyrics": "[Verse]\nla la",
            "bpm": 120, "keyscale": "C major", "timesignature": "4", "vocal_language": "en", **labels}


def _ctx(job_dir):
    return JobContext(job_dir, EventWriter(job_dir), {})


def test_shapes_and_25hz_rate(workspace, tiny_pipe, tmp_path):
    rows = [_row(write_tone(tmp_path / "a.wav", seconds=4.0, sr=44100, channels=1)),
            _row(write_tone(tmp_path / "b.wav", seconds=2.5, sr=48000))]
    a, b = preprocess.preprocess_rows(tiny_pipe, rows, MODEL)
    dim = tiny_pipe.transformer.config.audio_acoustic_hidden_dim
    assert a["latents"].shape == (100, dim) and a["frames"] == 100 and a["seconds"] == 4.0
    assert b["frames"] == 62  # 2.5 s = 62.5 frames: the partial hop is dropped, as the VAE does
    for item in (a, b):
        assert item["latents"].dtype == torch.float32 and item["latents"].device.type == "cpu"
        assert item["context_latents"].shape == (item["frames"], 2 * dim)
        L = item["encoder_hidden_states"].shape[0]
        assert item["encoder_hidden_states"].shape == (L, tiny_pipe.condition_encoder.config.hidden_size)
        assert item["encoder_attention_mask"].shape == (L,) and item["encoder_attention_mask"].dtype == torch.bool


def test_conditioning_matches_what_the_pipeline_feeds_the_transformer(workspace, tiny_pipe, tmp_path):
    row = _row(write_tone(tmp_path / "a.wav", seconds=4.0))
    item = preprocess.preprocess_rows(tiny_pipe, [row], MODEL)[0]
    seen = {}

    def capture(module, args, kwargs):
        seen.setdefault("ehs", kwargs["encoder_hidden_states"])
        seen.setdefault("ctx", kwargs["context_latents"])

    tiny_pipe.transformer.register_forward_pre_hook(capture, with_kwargs=True)
    tiny_pipe(prompt=row["caption"], lyrics=row["lyrics"], audio_duration=4.0, vocal_language="en",
              num_inference_steps=1, guidance_scale=1.0, bpm=120, keyscale="C major", timesignature="4",
              output_type="latent")
    assert torch.equal(seen["ehs"][0], item["encoder_hidden_states"])
    assert torch.equal(seen["ctx"][0], item["context_latents"])


def test_chunked_encode_matches_whole_file(tiny_pipe, tmp_path, monkeypatch):
    from trainer.dataset.audio import load_audio

    audio = load_audio(write_tone(tmp_path / "a.wav", seconds=4.0, freq=220.0)).samples
    calls = count_vae(monkeypatch, tiny_pipe)
    whole = preprocess.encode_latents(tiny_pipe, audio, chunk_seconds=10)
    assert calls.n == 1
    chunked = preprocess.encode_latents(tiny_pipe, audio, chunk_seconds=1, overlap_seconds=1)
    assert calls.n == 1 + 4
    assert chunked.shape == whole.shape == (100, 8)
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_second_run_makes_zero_vae_calls(workspace, tiny_pipe, tmp_path, monkeypatch):
    rows = [_row(write_tone(tmp_path / f"t{i}.wav", seconds=2.0, freq=200.0 + 100 * i), caption=f"take {i}")
            for i in range(3)]
    vae, text = count_vae(monkeypatch, tiny_pipe), count_text(tiny_pipe)
    cold = preprocess.preprocess_rows(tiny_pipe, rows, MODEL)
    assert vae.n == 3 and text.n == 3
    warm = preprocess.preprocess_rows(tiny_pipe, rows, MODEL)
    assert vae.n == 3 and text.n == 3
    for c, w in zip(cold, warm):
        for k in ("latents", "encoder_hidden_states", "encoder_attention_mask", "context_latents"):
            assert torch.equal(c[k], w[k])
    # another model id or preprocessing version is another cache entry
    preprocess.preprocess_rows(tiny_pipe, rows[:1], "other-model")
    assert vae.n == 4


def test_caption_edit_reencodes_text_only(workspace, tiny_pipe, tmp_path, monkeypatch):
    row = _row(write_tone(tmp_path / "a.wav", seconds=2.0))
    vae, text = count_vae(monkeypatch, tiny_pipe), count_text(tiny_pipe)
    before = preprocess.preprocess_rows(tiny_pipe, [row], MODEL)[0]
    edited = preprocess.preprocess_rows(tiny_pipe, [dict(row, caption="dark ambient drone")], MODEL)[0]
    assert vae.n == 1 and text.n == 2
    assert torch.equal(before["latents"], edited["latents"])
    assert not torch.equal(before["encoder_hidden_states"], edited["encoder_hidden_states"])
    preprocess.preprocess_rows(tiny_pipe, [dict(row, bpm=90)], MODEL)  # metadata is part of the text too
    assert vae.n == 1 and text.n == 3


def test_corrupt_cache_files_are_rebuilt(workspace, tiny_pipe, tmp_path, monkeypatch):
    from state import paths

    row = _row(write_tone(tmp_path / "a.wav", seconds=2.0))
    good = preprocess.preprocess_rows(tiny_pipe, [row], MODEL)[0]
    files = sorted((paths.cache_dir()).rglob("*.safetensors"))
    assert {f.parent.name for f in files} == {"latents", "cond"}
    for f in files:
        f.write_bytes(f.read_bytes()[:40])  # truncated mid-header
    vae, text = count_vae(monkeypatch, tiny_pipe), count_text(tiny_pipe)
    ctx = _ctx(tmp_path / "job")
    again = preprocess.preprocess_rows(tiny_pipe, [row], MODEL, ctx=ctx)[0]
    assert vae.n == 1 and text.n == 1
    assert torch.equal(good["latents"], again["latents"])
    warnings = [e for e in read_all(ctx.events.path) if e["type"] == "warning"]
    assert len(warnings) == 2 and all("unreadable" in w["message"] for w in warnings)
    preprocess.preprocess_rows(tiny_pipe, [row], MODEL)
    assert vae.n == 1  # the rebuilt files are good


def test_events_limits_and_stop(workspace, tiny_pipe, tmp_path):
    from state import jobs

    rows = [_row(write_tone(tmp_path / f"t{i}.wav", seconds=3.0)) for i in range(2)]
    ctx = _ctx(tmp_path / "job")
    items = preprocess.preprocess_rows(tiny_pipe, rows, MODEL, ctx=ctx, max_seconds=1.0)
    assert [i["frames"] for i in items] == [25, 25]
    events = read_all(ctx.events.path)
    phases = [(e["done"], e["total"]) for e in events if e["type"] == "phase" and e["name"] == "preprocess"]
    assert phases == [(0, 2), (1, 2), (2, 2)]
    assert any("first 1.0 s" in e["message"] for e in events if e["type"] == "warning")
    jobs.request(ctx.job_dir, "stop")
    with pytest.raises(StopNow):
        preprocess.preprocess_rows(tiny_pipe, rows, MODEL, ctx=ctx)


def test_free_encoders_keeps_what_training_needs(tiny_pipe):
    preprocess.free_encoders(tiny_pipe)
    assert tiny_pipe.vae is None and tiny_pipe.text_encoder is None
    assert tiny_pipe.condition_encoder.null_condition_emb.device.type == "cpu"
    assert preprocess.context_latents(tiny_pipe, 10).shape == (10, 16)


def test_job_preprocess_reads_manifest(workspace, tiny_model_dir, tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    write_tone(ds / "a.wav", seconds=1.0)
    (ds / "manifest.jsonl").write_text(json.dumps({"id": "a", "audio": "a.wav", "caption": "x"}) + "\n"
                                       + json.dumps({"id": "b", "audio": "b.wav", "status": "error"}) + "\n")
    ctx = _ctx(tmp_path / "job")
    ctx.params = {"manifest": str(ds / "manifest.jsonl"), "model_id": str(tiny_model_dir), "device": "cpu"}
    assert preprocess.job_preprocess(ctx, None) == "completed"
    done = [e for e in read_all(ctx.events.path) if e["type"] == "preprocessed"]
    assert done and done[0]["tracks"] == 1 and done[0]["frames"] == 25


def test_training_crops_get_a_prompt_with_the_crop_duration(workspace, tiny_pipe, tmp_path):
    row = _row(write_tone(tmp_path / "a.wav", seconds=4.0))
    whole = preprocess.preprocess_rows(tiny_pipe, [row], MODEL)[0]
    cropped = preprocess.preprocess_rows(tiny_pipe, [row], MODEL, clip_seconds=2.0)[0]
    assert torch.equal(cropped["latents"], whole["latents"])  # the audio side is the whole track either way
    want = preprocess.encode_conditioning(tiny_pipe, row, 2.0)
    assert torch.equal(cropped["encoder_hidden_states"], want["encoder_hidden_states"])
    assert not torch.equal(cropped["encoder_hidden_states"], whole["encoder_hidden_states"])
    longer = preprocess.preprocess_rows(tiny_pipe, [row], MODEL, clip_seconds=30.0)[0]  # crop > track
    assert torch.equal(longer["encoder_hidden_states"], whole["encoder_hidden_states"])
