"""Training on HF Jobs against the local Hub, whose Jobs are local subprocesses running the same
command and environment: push, start, watch, stop with a checkpoint, pull back, resume there; and
the clear messages for a missing or read-only token, an unknown flavour and a Job that dies."""
from __future__ import annotations

import json
import shutil

import pytest

from state import jobs, paths
from state.cloud import remote_jobs as rj
from state.cloud.hub import HubError
from state.model.catalog import DEMO_MODEL_ID

from hub_server import READ_TOKEN, WRITE_TOKEN, fake_hub, files_containing  # noqa: F401 - fixture
from train_kit import end_of, read_events, wait_for

IMAGE = "hf.co/spaces/alice/acelora"
FAST = {"poll_s": 0.3, "sync_s": 0.5}


def config(**over) -> dict:
    return {"model_id": DEMO_MODEL_ID, "rank": 4, "alpha": 4.0, "max_steps": 100000, "clip_seconds": 2.0,
            "checkpoint_every": 0, "gradient_checkpointing": False, "learning_rate": 1e-3, "device": "cpu",
            "sample_every": 0, "val_every": 0, **over}


def rows(kit) -> list[dict]:
    return [json.loads(line) for line in kit.manifest.read_text().splitlines()]


def done(run, timeout=240.0) -> dict:
    assert wait_for(lambda: not jobs.reconcile(run).active, timeout, 0.2), jobs.log_tail(run, 40)
    return end_of(run)


@pytest.mark.long
def test_run_on_hf_jobs_stops_with_a_checkpoint_then_resumes_there(train_kit, fake_hub):
    shutil.copytree(train_kit.model_dir, paths.demo_model_dir())  # goes with the input: the Job trains on it
    run = rj.start_remote(config(), rows(train_kit), "cpu-basic", IMAGE, WRITE_TOKEN, **FAST)
    assert wait_for(lambda: read_events(run, "step"), 240, 0.2), jobs.log_tail(run, 40)
    rec = rj.record(run)
    job = fake_hub.job(rec["job_id"])
    assert job.spec["secrets"] == {"HF_TOKEN": WRITE_TOKEN} and job.spec["flavor"] == "cpu-basic"
    assert WRITE_TOKEN not in json.dumps({k: v for k, v in job.spec.items() if k != "secrets"})
    assert job.spec["spaceId"] == "alice/acelora"  # the project's image, from the user's Space
    data = fake_hub.repos["datasets/alice/acelora-jobs-data"]
    assert data.private and {f"{run.name}/audio/tone0.wav", f"{run.name}/dataset.jsonl",
                             f"{run.name}/model/model_index.json"} <= set(data.files)
    assert "$" in rj.status_line(run) and "cpu-basic" in rj.status_line(run)

    jobs.request(run, "save_now")  # the live view's buttons reach the Job through the Hub too
    assert wait_for(lambda: [c for c in read_events(run, "checkpoint") if c.get("reason") == "save_now"], 120, 0.2)
    jobs.kill(run)  # this machine loses its watcher (a restart): the Job trains on, and is followed again
    assert jobs.reconcile(run).status == "died" and rj.can_attach(run)
    rj.resume_remote(run, WRITE_TOKEN)
    assert wait_for(lambda: read_events(run, "remote_attach") and jobs.is_ready(run), 60, 0.1)
    assert len(fake_hub.jobs) == 1
    assert "stop requested" in jobs.stop(run)
    end = done(run)
    assert end["status"] == "stopped", read_events(run, "error")
    assert job.stage()[0] == "COMPLETED", "stopped through the control file, not cancelled"
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert ckpts and (run / "final" / "pytorch_lora_weights.safetensors").is_file()
    stopped_at = int(ckpts[-1].removeprefix("step-"))
    assert read_events(run, "remote_stop") and read_events(run, "start")[0]["remote"] is True
    rec = rj.record(run)
    assert rec["stage"] == "COMPLETED" and rec["price_per_hour"] == pytest.approx(0.01) \
        and rec["price_source"] == "HF Jobs hardware list"  # the API's own price wins over the Space table
    assert 0 < rj.cost_so_far(rec) < 0.01

    rj.resume_remote(run, WRITE_TOKEN, changes={"max_steps": stopped_at + 2})
    end = done(run)
    assert end["status"] == "completed", read_events(run, "error")
    assert read_events(run, "resumed")[-1]["step"] == stopped_at
    meta = json.loads((run / "final" / "training_meta.json").read_text())
    assert meta["steps"] == stopped_at + 2 and len(fake_hub.jobs) == 2
    assert "---- log of HF Job" in (run / "log.txt").read_text()
    assert files_containing(train_kit.home, WRITE_TOKEN) == [] and files_containing(job.disk, WRITE_TOKEN) == []


def test_a_job_that_dies_says_why(train_kit, fake_hub):
    run = rj.start_remote(config(), rows(train_kit), "cpu-basic", IMAGE, WRITE_TOKEN, **FAST)
    assert wait_for(lambda: fake_hub.jobs, 120, 0.1), jobs.log_tail(run, 40)
    fake_hub.jobs_down = 3  # the watcher rides out a Hub blip
    assert wait_for(lambda: fake_hub.jobs_down == 0, 30, 0.1)
    fake_hub.job().kill()
    end = done(run, 120)
    assert end["status"] == "failed"
    err = read_events(run, "error")[-1]
    assert "failed: Job failed with exit code: 137" in err["message"] and "Resume on HF Jobs" in err["hint"]
    assert any("answered 503" in w["message"] for w in read_events(run, "warning"))


def test_clear_messages_before_anything_is_billed(train_kit, fake_hub):
    with pytest.raises(HubError, match="No Hugging Face token"):
        rj.start_remote(config(), rows(train_kit), "cpu-basic", IMAGE, None)
    with pytest.raises(ValueError, match="Unknown HF Jobs hardware flavour 'h100-huge'.*l4x1"):
        rj.start_remote(config(), rows(train_kit), "h100-huge", IMAGE, WRITE_TOKEN)
    with pytest.raises(ValueError, match="a folder on this machine"):
        rj.start_remote(config(model_id=str(train_kit.model_dir)), rows(train_kit), "l4x1", IMAGE, WRITE_TOKEN)
    run = rj.start_remote(config(), rows(train_kit), "l4x1", IMAGE, READ_TOKEN, **FAST)
    assert done(run, 60)["status"] == "failed"
    assert "read-only" in read_events(run, "error")[-1]["message"] and fake_hub.jobs == {}
    assert rj.flavor_label("l4x1") == "l4x1 (24 GB) · $0.80/h"
    assert rj.cost_so_far({"price_per_hour": 3.6, "started_at": 100.0, "finished_at": 1100.0}) == pytest.approx(1.0)
