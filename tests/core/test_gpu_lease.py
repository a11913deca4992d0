"""The GPU lease (DESIGN.md "One GPU, many jobs"): one holder at a time, visible waiting, dead holders replaced."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from state import device as dev
from state.events import EventWriter, read_all

from locations import REPO

HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from state import device
holder, _ = device.try_acquire("cuda:0", {job!r}, "train")
print("held" if holder is None else "busy", flush=True)
time.sleep(60)
"""


def _holder(tmp_path, name="run-a"):
    job = tmp_path / name
    job.mkdir()
    env = {**os.environ, "ACELORA_HOME": os.environ["ACELORA_HOME"]}
    p = subprocess.Popen([sys.executable, "-c", HOLD.format(repo=str(REPO), job=str(job))], env=env,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p, job


def test_a_live_holder_blocks_and_a_dead_one_is_taken_over(workspace, tmp_path):
    p, job = _holder(tmp_path)
    try:
        holder, _ = dev.try_acquire("cuda:0", tmp_path / "mine", "ab")
        assert holder is not None and holder.holder == "run-a (train)" and holder.pid == p.pid
        assert dev.try_acquire("cuda:1", tmp_path / "mine", "ab") == (None, None)  # another GPU is free
        dev.release("cuda:1")
    finally:
        p.kill()
        p.wait()
    holder, taken_over = dev.try_acquire("cuda:0", tmp_path / "mine", "ab")
    assert holder is None and taken_over is not None and taken_over.pid == p.pid
    assert dev.lease_holder("cuda:0").pid == os.getpid()
    dev.release("cuda:0")
    assert dev.lease_holder("cuda:0") is None and not dev.lease_path("cuda:0").exists()


def test_release_never_frees_someone_elses_lease(workspace, tmp_path):
    p, _job = _holder(tmp_path)
    try:
        dev.release("cuda:0")  # not ours: a no-op
        assert dev.lease_holder("cuda:0").pid == p.pid
    finally:
        p.kill()
        p.wait()


CONTEND = """
import sys, time, json
sys.path.insert(0, {repo!r})
from state import device
spans = []
for _ in range(15):
    while device.try_acquire("cuda:0", {job!r}, "job")[0] is not None:
        time.sleep(0.002)
    t0 = time.time(); time.sleep(0.01); t1 = time.time()
    device.release("cuda:0")
    spans.append((t0, t1))
print(json.dumps(spans))
"""


def test_two_jobs_never_hold_the_lease_at_once(workspace, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CONTEND.format(repo=str(REPO), job=str(tmp_path / f"j{i}"))],
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    spans = sorted(s for p in procs for s in json.loads(p.communicate(timeout=120)[0]))
    assert len(spans) == 45
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two holders overlapped"


def test_a_job_waits_visibly_then_runs(workspace, tmp_path):
    import torch

    from trainer.job import JobContext, StopNow

    p, _job = _holder(tmp_path, "long-run")
    me = tmp_path / "ab-job"
    ctx = JobContext(me, EventWriter(me))
    try:
        jobs_flag_after = time.time() + 1.0

        def stop_soon():
            return time.time() > jobs_flag_after
        ctx.stop_requested = stop_soon  # a user presses Stop while the job waits
        with pytest.raises(StopNow, match="long-run"):
            with ctx.gpu_lease(torch.device("cuda", 0), poll_s=0.05):
                pass
        waits = [e for e in read_all(me / "events.jsonl") if e["type"] == "phase"]
        assert waits[0]["name"] == "wait_gpu" and waits[0]["holder"] == "long-run (train)"
        assert len(waits) == 1  # one event per holder, not one per poll
    finally:
        p.kill()
        p.wait()
    ctx.stop_requested = lambda: False
    with ctx.gpu_lease(torch.device("cuda", 0), poll_s=0.05):
        assert dev.lease_holder("cuda:0").pid == os.getpid()
    assert dev.lease_holder("cuda:0") is None
    assert any("Took over cuda:0" in e.get("message", "") for e in read_all(me / "events.jsonl"))
    with ctx.gpu_lease(torch.device("cpu")):  # the CPU needs no lease
        assert dev.lease_holder("cuda:0") is None


def test_precision_label_follows_the_gpu():
    """What the sidebar says before any job runs; trainer/train/precision.py makes the same choice from torch."""
    assert dev.precision_for({"name": "Tesla T4", "compute_cap": "7.5"}) == "fp16 + loss scaling"
    assert dev.precision_for({"name": "Tesla V100-SXM2-16GB", "compute_cap": "7.0"}) == "fp16 + loss scaling"
    assert dev.precision_for({"name": "NVIDIA L4", "compute_cap": "8.9"}) == "bf16"
    assert dev.precision_for({"name": "NVIDIA A100-SXM4-80GB", "compute_cap": None}) == "bf16"
    assert dev.precision_for({"name": "Tesla T4", "compute_cap": None}) == "fp16 + loss scaling"
