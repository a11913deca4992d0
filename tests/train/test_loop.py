"""The training job in-process on the tiny model: learning, stop/resume, NaN, refused checkpoints."""
from __future__ import annotations

import json
import math

import pytest
import torch

from state import jobs

from train_kit import adapter_tensors, end_of, read_events, structured_latents


def losses(job_dir):
    return {e["step"]: e["loss"] for e in read_events(job_dir, "step")}


def test_loss_halves_on_a_learnable_dataset(train_kit, monkeypatch):
    structured_latents(monkeypatch)
    job = train_kit.run_dir("learn", max_steps=80, learning_rate=3e-3, rank=8, alpha=8.0, seed=1)
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    curve = losses(job)
    first = sum(curve[s] for s in range(1, 6)) / 5
    last = sum(curve[s] for s in range(76, 81)) / 5
    assert last <= 0.5 * first, (first, last)
    start = read_events(job, "start")[0]
    assert start["total_steps"] == 80 and start["dataset_size"] == 3 and start["device"] == "cpu"
    assert start["warmup_steps"] == math.ceil(0.03 * 80) and start["objective"]["mu"] == -0.4
    step = read_events(job, "step")[-1]
    assert step["rss_mb"] > 0 and step["gpu_mem_alloc_mb"] is None and step["eta_s"] == 0
    assert end_of(job)["status"] == "completed" and (job / "final" / "pytorch_lora_weights.safetensors").is_file()


def test_stop_checkpoint_resume_matches_an_uninterrupted_run(train_kit, monkeypatch):
    from trainer.train import loop as train_mod

    whole = train_kit.run_dir("whole", max_steps=10)
    assert train_kit.run(whole) == 0

    # the same run, stopped through the real control flag while step 4 is in flight
    split = train_kit.run_dir("split", max_steps=10)
    calls = {"n": 0}
    real_batch = train_mod.make_batch

    def batch_then_stop(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            jobs.request(split, "stop")
        return real_batch(*a, **kw)

    monkeypatch.setattr(train_mod, "make_batch", batch_then_stop)
    assert train_kit.run(split) == 0
    assert end_of(split)["status"] == "stopped"
    ck = read_events(split, "checkpoint")
    assert [(c["step"], c["reason"]) for c in ck] == [(4, "stop")]
    saved = adapter_tensors(split / "checkpoints" / "step-000004" / "adapter_model.safetensors")
    monkeypatch.setattr(train_mod, "make_batch", real_batch)
    jobs.clear_flag(split, "stop")

    assert train_kit.run(split, "--resume", "latest") == 0
    resumed = read_events(split, "resumed")[0]
    assert resumed["step"] == 4 and resumed["adapter_tensors"] == len(saved) == 32
    assert min(s["step"] for s in read_events(split, "step") if s["t"] > resumed["t"]) == 5
    assert end_of(split)["status"] == "completed"

    # same losses step for step, and the same adapter at the end: RNG, optimizer, data order restored
    a, b = losses(whole), losses(split)
    assert sorted(b) == list(range(1, 11))
    for s in range(1, 11):
        assert a[s] == pytest.approx(b[s], rel=1e-5, abs=1e-7), s
    fa = adapter_tensors(whole / "final" / "pytorch_lora_weights.safetensors")
    fb = adapter_tensors(split / "final" / "pytorch_lora_weights.safetensors")
    assert fa.keys() == fb.keys()
    assert all(torch.allclose(fa[k], fb[k], rtol=1e-5, atol=1e-7) for k in fa)


def test_save_now_and_keep_last(train_kit):
    job = train_kit.run_dir("keep", max_steps=9, checkpoint_every=2, keep_last=2, val_every=0)
    jobs.request(job, "save_now")  # taken after step 1
    assert train_kit.run(job) == 0
    ck = [(c["step"], c["reason"]) for c in read_events(job, "checkpoint")]
    assert ck[0] == (1, "save_now") and (8, "periodic") in ck
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["step-000006", "step-000008"]
    meta = json.loads((job / "checkpoints" / "step-000008" / "meta.json").read_text())
    assert meta["step"] == 8 and meta["model_id"] == str(train_kit.model_dir) and meta["adapter_tensors"] == 32
    state = torch.load(job / "checkpoints" / "step-000008" / "training_state.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng"} <= state.keys() and {"python", "numpy", "torch", "cuda"} <= state["rng"].keys()


def test_nan_loss_fails_clearly_and_keeps_the_last_good_checkpoint(train_kit, monkeypatch):
    from trainer.train import loop as train_mod

    real = train_mod.compute_loss
    calls = {"n": 0}

    def nan_at_7(*a, **kw):
        calls["n"] += 1
        loss = real(*a, **kw)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(train_mod, "compute_loss", nan_at_7)
    job = train_kit.run_dir("nan", max_steps=20, checkpoint_every=3)
    assert train_kit.run(job) == 1
    err = read_events(job, "error")[0]
    assert "NaN" in err["message"] and "step 7" in err["message"] and "step-000006" in err["message"]
    assert "learning rate" in err["hint"]
    assert end_of(job)["status"] == "failed"
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    good = adapter_tensors(job / "checkpoints" / "step-000006" / "adapter_model.safetensors")
    assert all(torch.isfinite(v).all() for v in good.values())

    monkeypatch.setattr(train_mod, "compute_loss", real)  # the last good checkpoint resumes
    assert train_kit.run(job, "--resume", "latest") == 0 and end_of(job)["status"] == "completed"


def _trained(train_kit, name):
    job = train_kit.run_dir(name, max_steps=4, checkpoint_every=4)
    assert train_kit.run(job) == 0
    return job, job / "checkpoints" / "step-000004"


def test_tampered_adapter_keys_are_refused(train_kit):
    from safetensors.torch import load_file, save_file

    from state.fsutil import file_sha256

    job, ck = _trained(train_kit, "tamper-keys")
    t = load_file(str(ck / "adapter_model.safetensors"))
    t["layers.0.self_attn.q_proj.lora_A.weight"] = t.pop("layers.0.self_attn.to_q.lora_A.weight")  # upstream's bug
    save_file(t, str(ck / "adapter_model.safetensors"))
    meta = json.loads((ck / "meta.json").read_text())
    meta["adapter_sha256"] = file_sha256(ck / "adapter_model.safetensors")  # a consistent file, wrong keys
    (ck / "meta.json").write_text(json.dumps(meta))
    assert train_kit.run(job, "--resume", "step-000004") == 1
    err = read_events(job, "error")[-1]
    assert "1 missing" in err["message"] and "1 unexpected" in err["message"] and "q_proj" in err["message"]
    assert err["hint"] and end_of(job)["status"] == "failed" and not read_events(job, "resumed")


def test_altered_adapter_bytes_and_other_base_model_are_refused(train_kit, tiny_model_dir, tmp_path):
    import shutil

    job, ck = _trained(train_kit, "tamper-bytes")
    data = bytearray((ck / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (ck / "adapter_model.safetensors").write_bytes(bytes(data))
    assert train_kit.run(job, "--resume", "latest") == 1
    assert "checksum" in read_events(job, "error")[-1]["message"]

    job2, _ = _trained(train_kit, "other-base")
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    cfg = train_kit.config(tmp_path / "other.json", model_id=str(other))
    assert train_kit.run(job2, "--resume", "latest", "--config", str(cfg)) == 1
    assert "same base model" in read_events(job2, "error")[-1]["message"]


def test_batches_with_accumulation_and_whole_tracks(train_kit):
    # batch 2 of whole tracks (different lengths: the padded path) x 2 accumulation, gradient checkpointing on
    job = train_kit.run_dir("accum", max_steps=0, epochs=2, batch_size=2, grad_accum=2, clip_seconds=0.0,
                            gradient_checkpointing=True, optimizer="adamw")
    assert train_kit.run(job) == 0, read_events(job, "error")
    start = read_events(job, "start")[0]
    assert (start["steps_per_epoch"], start["total_steps"], start["warmup_steps"]) == (1, 2, 1)
    steps = read_events(job, "step")
    assert [s["step"] for s in steps] == [1, 2] and steps[-1]["epoch"] == 2.0  # batches never span epochs
    assert all(math.isfinite(s["loss"]) and s["samples_per_s"] > 0 for s in steps)
