"""The recipe (issue 13): bucketed whole-track batches, validation that perturbs nothing, the best checkpoint,
forks on resume, settings changed at resume, stop exporting final/, and honest second stops."""
from __future__ import annotations

import json

import pytest
import torch

from state import jobs
from state.train.config import TrainConfig, make_plan, recipe_steps, validation_split
from trainer.train.batches import BatchOrder

from train_kit import adapter_tensors, end_of, read_events

# ---- data order ---------------------------------------------------------------------------------

def test_bucketed_epochs_cover_every_track_once_with_less_padding():
    frames = [100, 900, 120, 880, 110, 950, 130, 870, 105, 905, 115, 890]
    order = BatchOrder(seed=3, frames=frames, batch_size=2, grad_accum=1, bucket=True)
    plain = BatchOrder(seed=3, frames=frames, batch_size=2, grad_accum=1, bucket=False)

    def padding(o, epoch):
        batches = [o.indices(epoch * o.per_epoch + b, 0) for b in range(o.per_epoch)]
        assert sorted(i for b in batches for i in b) == list(range(len(frames)))  # each track once per epoch
        return sum(max(frames[i] for i in b) * len(b) - sum(frames[i] for i in b) for b in batches)

    assert all(padding(order, e) < 0.2 * padding(plain, e) for e in range(3))
    assert order.indices(7, 0) == BatchOrder(3, frames, 2, 1, True).indices(7, 0)  # a resume replays it
    assert order._epoch(0) != order._epoch(1)  # and every epoch is shuffled anew


def test_a_bucketed_batch_loss_is_the_frame_weighted_mean_of_per_track_losses(tiny_pipe):
    from trainer.train.objective import Objective, compute_loss, dit_forward, make_batch

    H = tiny_pipe.transformer.config.hidden_size
    D = tiny_pipe.transformer.config.audio_acoustic_hidden_dim
    tracks = [{"latents": torch.randn(T, D), "context_latents": torch.randn(T, 2 * D),
               "encoder_hidden_states": torch.randn(6, H), "encoder_attention_mask": torch.ones(6, dtype=torch.bool)}
              for T in (30, 24)]
    obj = Objective("logit_normal_max2", -0.4, 1.0, 0.0)
    batch = make_batch(tracks, 0, torch.device("cpu"))
    null = torch.zeros(1, 1, H)
    with torch.no_grad():
        torch.manual_seed(5)
        whole = compute_loss(tiny_pipe.transformer, batch, null, obj, torch.float32)
        torch.manual_seed(5)  # the same draws, replayed track by track
        t = obj.sample_t(2, torch.device("cpu"))
        noise = torch.randn_like(batch["latents"])
        sq, n = 0.0, 0
        for i, tr in enumerate(tracks):
            T = tr["latents"].shape[0]
            x0 = tr["latents"].unsqueeze(0)
            x_t = t[i] * noise[i:i + 1, :T] + (1 - t[i]) * x0
            one = {"padded": False}
            pred = dit_forward(tiny_pipe.transformer, x_t, t[i:i + 1], tr["encoder_hidden_states"].unsqueeze(0),
                               tr["context_latents"].unsqueeze(0), one)
            sq += (pred - (noise[i:i + 1, :T] - x0)).pow(2).mean(-1).sum()
            n += T
    assert torch.allclose(whole, sq / n, rtol=1e-5, atol=1e-6)


def test_the_default_schedule_grows_with_the_dataset_and_is_in_steps():
    assert TrainConfig().max_steps == 0 and TrainConfig().epochs == 0 and TrainConfig().clip_seconds == 0.0
    plans = {n: make_plan(TrainConfig(), n) for n in (5, 20, 50)}
    assert all(p.source == "recipe" for p in plans.values())
    assert plans[5].total_steps < plans[20].total_steps < plans[50].total_steps
    # every size gets well over a hundred passes over its data (the undertrained default did 20)
    assert all(p.total_steps / n >= 120 for n, p in plans.items()), {n: p.total_steps for n, p in plans.items()}
    assert make_plan(TrainConfig(max_steps=77), 5).total_steps == 77 and recipe_steps(5) == plans[5].total_steps


def test_validation_holds_out_tracks_only_when_there_are_enough():
    ids = [f"t{i}.wav" for i in range(20)]
    train, val, held = validation_split(ids, TrainConfig())
    assert held and len(val) == 2 and not set(train) & set(val) and len(train) + len(val) == 20
    # chosen by id, not by position: the same tracks whatever the row order
    assert {ids[i] for i in val} == {list(reversed(ids))[i] for i in validation_split(list(reversed(ids)), TrainConfig())[1]}
    small = validation_split(ids[:5], TrainConfig())
    assert small[2] is False and small[0] == list(range(5)) and len(small[1]) == 5


# ---- validation, best checkpoint -----------------------------------------------------------------

def test_validation_does_not_change_training_and_survives_a_resume(train_kit, monkeypatch):
    from trainer.train import loop as train_mod

    off = train_kit.run_dir("val-off", max_steps=6, val_every=0)
    on = train_kit.run_dir("val-on", max_steps=6, val_every=2)
    assert train_kit.run(off) == 0 and train_kit.run(on) == 0
    a = adapter_tensors(off / "final" / "pytorch_lora_weights.safetensors")
    b = adapter_tensors(on / "final" / "pytorch_lora_weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same adapter with validation on and off
    vals = {e["step"]: e for e in read_events(on, "validation")}
    assert sorted(vals) == [0, 2, 4, 6] and len(vals[2]["per_timestep"]) == 8 and vals[0]["held_out"] is False

    split = train_kit.run_dir("val-split", max_steps=6, val_every=2)
    real, calls = train_mod.make_batch, []

    def batch_then_stop(*x, **k):
        calls.append(1)
        if len(calls) == 3:
            jobs.request(split, "stop")
        return real(*x, **k)

    monkeypatch.setattr(train_mod, "make_batch", batch_then_stop)
    assert train_kit.run(split) == 0 and end_of(split)["status"] == "stopped"
    monkeypatch.setattr(train_mod, "make_batch", real)
    jobs.clear_flag(split, "stop")
    assert train_kit.run(split, "--resume", "latest") == 0
    again = {e["step"]: e["loss"] for e in read_events(split, "validation")}
    assert again == {s: e["loss"] for s, e in vals.items()}  # identical numbers across the stop/resume


def test_the_best_checkpoint_survives_pruning(train_kit, monkeypatch):
    from trainer.train.validation import Validator

    fake = iter([[5.0] * 8, [1.0] * 8, [3.0] * 8, [4.0] * 8, [4.5] * 8, [4.6] * 8])  # best at step 2
    monkeypatch.setattr(Validator, "evaluate", lambda self, tr: next(fake))
    job = train_kit.run_dir("best", max_steps=10, val_every=2, checkpoint_every=2, keep_last=1)
    assert train_kit.run(job) == 0
    best = json.loads((job / "checkpoints" / "best.json").read_text())
    assert best["step"] == 2 and best["loss"] == 1.0
    assert sorted(p.name for p in (job / "checkpoints").glob("step-*")) == ["step-000002", "step-000010"]
    assert [e["step"] for e in read_events(job, "validation") if e["best"]] == [0, 2]
    meta = json.loads((job / "final" / "training_meta.json").read_text())
    assert meta["best_step"] == 2 and meta["exported_at_step"] == 10


def test_early_stop_after_patience(train_kit, monkeypatch):
    from trainer.train.validation import Validator

    fake = iter([[5.0] * 8, [2.0] * 8, [3.0] * 8, [4.0] * 8, [4.0] * 8, [4.0] * 8])
    monkeypatch.setattr(Validator, "evaluate", lambda self, tr: next(fake))
    job = train_kit.run_dir("early", max_steps=20, val_every=2, early_stop_patience=2)
    assert train_kit.run(job) == 0
    end = end_of(job)
    assert end["status"] == "completed" and end["early_stop"] is True
    assert max(e["step"] for e in read_events(job, "step")) == 6 and (job / "final").is_dir()


# ---- resume: forks, changed settings ----------------------------------------------------------

def test_resuming_an_older_checkpoint_forks_and_latest_never_continues_the_abandoned_branch(train_kit):
    job = train_kit.run_dir("fork", max_steps=8, checkpoint_every=2, keep_last=5, val_every=0)
    assert train_kit.run(job) == 0
    assert train_kit.run(job, "--resume", "step-000004") == 0
    aside = [p for p in (job / "checkpoints").iterdir() if p.name.startswith("abandoned-")]
    assert len(aside) == 1 and sorted(p.name for p in aside[0].iterdir()) == ["step-000006", "step-000008"]
    assert read_events(job, "resumed")[-1]["forked"] is True
    assert any("forks there" in e["message"] for e in read_events(job, "warning"))
    # the new branch saved its own step 6 and 8 (no silent skip over the old folders)
    saved = [e for e in read_events(job, "checkpoint") if e["t"] > read_events(job, "resumed")[-1]["t"]]
    assert [(e["step"], e["written"]) for e in saved] == [(6, True), (8, True)]


def test_a_changed_learning_rate_reaches_the_optimizer_and_fixed_fields_are_refused(train_kit, tmp_path):
    job = train_kit.run_dir("lr", max_steps=8, checkpoint_every=4, scheduler="constant", warmup_ratio=0.0)
    assert train_kit.run(job) == 0
    cfg = train_kit.config(tmp_path / "more.json", max_steps=8, checkpoint_every=4, scheduler="constant",
                           warmup_ratio=0.0, learning_rate=5e-4, weight_decay=0.05)
    assert train_kit.run(job, "--resume", "step-000004", "--config", str(cfg)) == 0
    after = [s for s in read_events(job, "step") if s["t"] > read_events(job, "resumed")[-1]["t"]]
    assert after and all(s["lr"] == pytest.approx(5e-4) for s in after)
    assert any("learning_rate 0.001 → 0.0005" in e["message"] for e in read_events(job, "warning"))
    bad = train_kit.config(tmp_path / "rank.json", max_steps=8, rank=8)
    assert train_kit.run(job, "--resume", "latest", "--config", str(bad)) == 1
    assert "rank: checkpoint step-000008 was trained with 4" in read_events(job, "error")[-1]["message"]


# ---- stopping --------------------------------------------------------------------------------

def test_stop_saves_and_exports_final_marked_with_its_step(train_kit, monkeypatch):
    from trainer.train import loop as train_mod

    job = train_kit.run_dir("stop-export", max_steps=10)
    real, calls = train_mod.make_batch, []

    def batch_then_stop(*x, **k):
        calls.append(1)
        if len(calls) == 3:
            jobs.request(job, "stop")
        return real(*x, **k)

    monkeypatch.setattr(train_mod, "make_batch", batch_then_stop)
    assert train_kit.run(job) == 0
    meta = json.loads((job / "final" / "training_meta.json").read_text())
    assert (meta["exported_at_step"], meta["total_steps"], meta["stopped"]) == (3, 10, True)
    assert end_of(job)["saved_step"] == 3 and (job / "checkpoints" / "step-000003").is_dir()


def test_a_second_stop_signal_waits_for_the_save_or_reports_what_was_lost(tmp_path):
    import signal

    from state.events import EventWriter
    from trainer.job import JobContext, StopNow

    ctx = JobContext(tmp_path, EventWriter(tmp_path))
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ctx.install_signal_handlers()
        done = []
        with pytest.raises(StopNow, match="finished first"):
            with ctx.critical("saving a checkpoint"):
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)  # the second one arrives mid-save
                done.append("the save finished")
        assert done == ["the save finished"]
        with pytest.raises(StopNow):  # outside a save it stops at once
            signal.raise_signal(signal.SIGTERM)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


def test_stopped_at_once_says_how_many_steps_were_lost(train_kit, monkeypatch):
    from trainer.job import StopNow
    from trainer.train import loop as train_mod

    job = train_kit.run_dir("lost", max_steps=10, checkpoint_every=2, val_every=0)
    real, calls = train_mod.make_batch, []

    def batch_then_kill(*x, **k):
        calls.append(1)
        if len(calls) == 6:
            raise StopNow("signal 15 received twice")
        return real(*x, **k)

    monkeypatch.setattr(train_mod, "make_batch", batch_then_kill)
    assert train_kit.run(job) == 0
    end = end_of(job)
    assert end["status"] == "stopped" and end["saved"] is False and (end["saved_step"], end["lost_steps"]) == (4, 1)
    assert "lost" in read_events(job, "warning")[-1]["message"]


# ---- damaged checkpoints --------------------------------------------------------------------------

def test_resume_latest_skips_damaged_checkpoints_and_never_suggests_unsafe_loading(train_kit):
    job = train_kit.run_dir("damaged", max_steps=6, checkpoint_every=2, keep_last=5, val_every=0)
    assert train_kit.run(job) == 0
    (job / "checkpoints" / "step-000006" / "meta.json").write_text("{not json")
    (job / "checkpoints" / "step-000004" / "training_state.pt").write_bytes(b"\x80\x02garbage")
    (job / "checkpoints" / ".tmp-step-000008-abc").mkdir()  # an interrupted save
    assert train_kit.run(job, "--resume", "step-000004") == 1
    err = read_events(job, "error")[-1]["message"]
    assert "training_state.pt is damaged" in err and "weights_only" not in err
    assert train_kit.run(job, "--resume", "latest") == 0
    assert read_events(job, "resumed")[-1]["step"] == 2
    warnings = " ".join(e["message"] for e in read_events(job, "warning"))
    assert "step-000006" in warnings and "meta.json is damaged" in warnings
    assert "step-000004" in warnings and "training_state.pt is damaged" in warnings
    assert "weights_only" not in warnings and "half-written" in warnings
    assert not (job / "checkpoints" / ".tmp-step-000008-abc").exists()


def test_ema_of_the_lora_weights_is_exported_as_its_own_adapter(train_kit):
    job = train_kit.run_dir("ema", max_steps=6, ema_decay=0.5, val_every=0)
    assert train_kit.run(job) == 0, read_events(job, "error")
    live = adapter_tensors(job / "final" / "pytorch_lora_weights.safetensors")
    ema = adapter_tensors(job / "final" / "ema" / "pytorch_lora_weights.safetensors")
    assert live.keys() == ema.keys() and any(not torch.equal(live[k], ema[k]) for k in live)
    assert (job / "final" / "ema" / "adapter_config.json").is_file()
    assert json.loads((job / "final" / "ema" / "training_meta.json").read_text())["ema_decay"] == 0.5
