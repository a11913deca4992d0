"""The training job as the dashboard runs it: a real detached subprocess via state.jobs.launch."""
from __future__ import annotations

import signal

import pytest
from job_kit import kill_job

from state import jobs

from train_kit import end_of, read_events, wait_for

LONG = 100_000  # steps: these runs end only when told to


@pytest.fixture
def launch():
    """jobs.launch, with every launched job killed at teardown: a failed assertion must never leave a
    100,000-step run training in the background for the rest of the session."""
    launched = []

    def _launch(job_dir, kind, extra=()):
        launched.append(job_dir)
        return jobs.launch(job_dir, kind, extra)

    yield _launch
    for job_dir in launched:
        kill_job(job_dir)  # the last step of a test may have run the job in-process: never kill pytest


def _has(job_dir, type_, **match):
    return any(all(e.get(k) == v for k, v in match.items()) for e in read_events(job_dir, type_))


@pytest.mark.long
def test_sigterm_saves_then_kill9_dies_then_resume_continues(train_kit, tmp_path, launch):
    job = train_kit.run_dir("crash", max_steps=LONG, checkpoint_every=5)
    launch(job, "train")
    assert wait_for(lambda: _has(job, "step"), 90), jobs.log_tail(job)

    # SIGTERM (what Stop sends once the job is ready): finish the step, save, end "stopped"
    assert jobs.stop(job, wait_s=60) == "stopped"
    assert end_of(job)["status"] == "stopped"
    stop_ck = [c for c in read_events(job, "checkpoint") if c["reason"] == "stop"]
    assert len(stop_ck) == 1 and (job / "checkpoints" / f"step-{stop_ck[0]['step']:06d}").is_dir()

    # resume detached, then kill -9 once a periodic checkpoint exists: reconcile says "died"
    first_stop = stop_ck[0]["step"]
    launch(job, "train", ["--resume", "latest"])
    assert wait_for(lambda: any(c["reason"] == "periodic" and c["step"] > first_stop
                                for c in read_events(job, "checkpoint")), 90), jobs.log_tail(job)
    resumed = read_events(job, "resumed")[-1]
    assert resumed["step"] == first_stop and resumed["adapter_tensors"] == 32
    proc = jobs.process_of(job)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    st = jobs.reconcile(job)
    assert st.status == "died" and end_of(job)["status"] == "died"

    # resume from the last checkpoint on disk, with a config that ends a few steps later
    last = max(int(p.name.split("-")[1]) for p in (job / "checkpoints").iterdir() if p.name.startswith("step-"))
    cfg = train_kit.config(tmp_path / "finish.json", max_steps=last + 3, checkpoint_every=5)
    assert train_kit.run(job, "--resume", "latest", "--config", str(cfg)) == 0
    assert read_events(job, "resumed")[-1]["step"] == last
    assert end_of(job)["status"] == "completed" and (job / "final" / "adapter_model.safetensors").is_file()
    steps_after = [e["step"] for e in read_events(job, "step") if e["t"] > read_events(job, "resumed")[-1]["t"]]
    assert steps_after[0] == last + 1 and steps_after[-1] == last + 3


@pytest.mark.long
def test_queued_run_starts_only_after_the_first_ends(train_kit, launch):
    first = train_kit.run_dir("first", max_steps=LONG)
    second = train_kit.run_dir("second", max_steps=3)
    third = train_kit.run_dir("third", max_steps=3)
    launch(first, "train")
    launch(second, "train", ["--after", "first"])
    launch(third, "train", ["--after", "first"])
    assert wait_for(lambda: _has(second, "queued", after="first") and _has(third, "queued"), 90)
    assert wait_for(lambda: _has(first, "step"), 90), jobs.log_tail(first)
    assert jobs.status(second).status == "queued" and not read_events(second, "start")

    jobs.request(third, "stop")  # a stop while queued ends it without training
    assert wait_for(lambda: jobs.status(third).status == "stopped", 30)
    assert not read_events(third, "start") and not (third / "checkpoints").exists()

    assert jobs.stop(first, wait_s=60) == "stopped"
    first_end = end_of(first)
    assert wait_for(lambda: jobs.status(second).status == "completed", 90), jobs.log_tail(second)
    assert read_events(second, "start")[0]["t"] >= first_end["t"]
    assert (second / "final" / "pytorch_lora_weights.safetensors").is_file()
