"""Data-parallel training on CPU: 2 gloo ranks under torchrun against 1 process (trainer/train/distributed.py).

Two torchrun launches in all (each costs a few seconds of imports per rank): one stopped and resumed on
one process, one whose rank 1 is killed.
"""
from __future__ import annotations

import json
import os
import signal

import pytest

from state import jobs
from trainer.train.checkpoint import list_checkpoints, step_of

from train_kit import adapter_tensors, end_of, read_events, wait_for

LAUNCH_S = 240  # torchrun + two ranks importing torch and diffusers on a busy 2-core box


def losses(job_dir, after: float = 0.0):
    return {e["step"]: e["loss"] for e in read_events(job_dir, "step") if e["t"] > after}


def final(job_dir):
    return adapter_tensors(job_dir / "final" / "pytorch_lora_weights.safetensors")


def ended(job_dir, after: float = 0.0):
    return lambda: any(e["t"] > after for e in read_events(job_dir, "end")) and not jobs.is_alive(job_dir)


@pytest.mark.long
def test_two_ranks_train_what_one_process_trains_and_stop_resume_on_one(train_kit, tmp_path):
    # a constant schedule, so the run's length (which only the stop decides) does not change the steps
    same = {"grad_accum": 2, "scheduler": "constant", "warmup_ratio": 0.0}
    two = train_kit.run_dir("two", max_steps=400, gpus=2, **same)  # 2 ranks, one micro-batch each per step
    jobs.launch(two, "train")
    assert wait_for(lambda: any(e["step"] >= 2 for e in read_events(two, "step")), LAUNCH_S), read_events(two)[-3:]
    jobs.request(two, "stop")  # the real control flag: rank 0 reads it, every rank stops at the same step
    assert wait_for(ended(two), 120)

    end = end_of(two)
    assert end["status"] == "stopped" and end["gpus"] == 2, read_events(two)[-3:]
    starts = read_events(two, "start")
    assert len(starts) == 1 and starts[0]["config"]["gpus"] == 2  # rank 0 alone writes events
    (ck,) = read_events(two, "checkpoint")
    k = ck["step"]
    assert ck["reason"] == "stop" and k >= 2 and end["saved_step"] == k
    steps = read_events(two, "step")
    assert {s["global_batch"] for s in steps} == {2} and {s["gpus"] for s in steps} == {2}

    # one process accumulating the same 2 micro-batches per step, 2 steps past the stop
    one = train_kit.run_dir("one", max_steps=k + 2, **same)
    assert train_kit.run(one) == 0
    a, b = losses(one), losses(two)
    assert sorted(b) == list(range(1, k + 1))
    for s in b:  # the same loss step for step: the ranks' shares add up to the accumulated batch
        assert a[s] == pytest.approx(b[s], rel=1e-5, abs=1e-7), s

    # the 2-rank checkpoint resumes on one process and ends on the adapter the 1-process run trained
    jobs.clear_flag(two, "stop")  # a launch from the dashboard clears it; this in-process run started earlier
    cfg = train_kit.config(tmp_path / "finish.json", max_steps=k + 2, **same)
    assert train_kit.run(two, "--resume", "latest", "--config", str(cfg)) == 0
    assert read_events(two, "resumed")[-1]["step"] == k and end_of(two)["status"] == "completed"
    assert any("gpus 2 → 1" in w["message"] for w in read_events(two, "warning"))
    assert sorted(losses(two, end["t"])) == [k + 1, k + 2]
    fa, fb = final(one), final(two)
    assert fa.keys() == fb.keys() and fa
    assert max((fa[n] - fb[n]).abs().max().item() for n in fa) < 1e-5


@pytest.mark.long
def test_a_killed_rank_ends_the_run_with_its_reason_and_a_resumable_checkpoint(train_kit, tmp_path):
    job = train_kit.run_dir("kill", max_steps=2, grad_accum=2, checkpoint_every=2)
    assert train_kit.run(job) == 0  # one process writes step-000002 ...
    train_kit.config(job / "config.json", max_steps=400, grad_accum=2, checkpoint_every=2, gpus=2)
    launched = jobs.launch(job, "train", ["--resume", "latest"])  # ... which 2 ranks resume
    t0 = launched["started_at"]
    assert wait_for(lambda: any(e["step"] >= 4 for e in read_events(job, "step")), LAUNCH_S), read_events(job)[-3:]
    rank1 = json.loads((job / ".ranks" / "rank-1.json").read_text())
    os.kill(rank1["pid"], signal.SIGKILL)
    assert wait_for(ended(job, t0), 120)

    assert [e["step"] for e in read_events(job, "resumed")] == [2]
    assert end_of(job)["status"] == "failed" and jobs.status(job).status == "failed"
    err = [e for e in read_events(job, "error") if e["t"] > t0][-1]
    assert err["rank"] == 1 and "Rank 1 of 2" in err["message"] and "killed" in err["message"], err["message"]
    newest = step_of(list_checkpoints(job)[-1])
    assert newest >= 4 and f"step-{newest:06d}" in err["message"] and "resumable" in err["message"]

    jobs.clear_flag(job, "stop")  # torchrun's SIGTERM to rank 0 asked for a stop; a new launch clears it
    cfg = train_kit.config(tmp_path / "more.json", max_steps=newest + 1, grad_accum=2, checkpoint_every=2)
    assert train_kit.run(job, "--resume", "latest", "--config", str(cfg)) == 0
    assert read_events(job, "resumed")[-1]["step"] == newest and end_of(job)["status"] == "completed"
