"""Space jobs against the local Hub: the pause watcher waits for the queue and pauses with no browser,
sleep time, and Hub sync + restore of a run that then resumes after the 'disk' was wiped."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from state import jobs
from state.cloud import hub, space
from state.events import EVENTS_FILE, last_event
from state.fsutil import write_json

from hub_server import READ_TOKEN, WRITE_TOKEN, fake_hub, files_containing  # noqa: F401 - fixture
from train_kit import end_of, read_events, wait_for


def fake_work(job_dir, seconds: float) -> subprocess.Popen:
    """A 'train' job record backed by a real process that lives `seconds`: busy, then gone."""
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    job_dir.mkdir(parents=True)
    write_json(job_dir / jobs.JOB_FILE, {"kind": "train", "pid": proc.pid, "started_at": time.time(),
                                         "create_time": psutil.Process(proc.pid).create_time()})
    return proc


def test_space_watch_pauses_only_after_the_queue_ends(workspace, fake_hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "alice/acelora")
    work = fake_work(workspace / "lora_output" / "busy-run", 4.0)
    watcher = space.arm_pause(WRITE_TOKEN, quiet_s=1, poll_s=0.2)
    assert space.arm_pause(WRITE_TOKEN) == watcher, "one watcher at a time"
    assert [w.job_dir for w in space.watchers()] == [watcher]
    assert wait_for(lambda: read_events(watcher, "watch"), 30), jobs.log_tail(watcher)
    assert read_events(watcher, "watch")[0]["active"] == ["busy-run"]
    time.sleep(1.5)
    assert fake_hub.paused == [], "paused while a job was still running"
    work.wait()
    assert wait_for(lambda: not jobs.reconcile(watcher).active, 30), jobs.log_tail(watcher)
    assert end_of(watcher)["status"] == "completed" and fake_hub.paused == ["alice/acelora"]
    assert read_events(watcher, "paused")[0]["space_id"] == "alice/acelora"
    assert files_containing(workspace, WRITE_TOKEN) == []


def test_space_watch_can_be_disarmed(workspace, fake_hub, monkeypatch):
    monkeypatch.setenv("SPACE_ID", "alice/acelora")
    work = fake_work(workspace / "lora_output" / "long-run", 60.0)
    try:
        watcher = space.arm_pause(WRITE_TOKEN, quiet_s=1, poll_s=0.2)
        assert wait_for(lambda: jobs.is_ready(watcher), 30)
        assert space.disarm_pause() == 1
        assert wait_for(lambda: not jobs.reconcile(watcher).active, 30)
        assert end_of(watcher)["status"] == "stopped" and fake_hub.paused == []
    finally:
        work.kill()
        work.wait()


def test_sleep_time_needs_the_owners_write_token(workspace, fake_hub):
    assert hub.set_sleep_time("alice/acelora", 1800, WRITE_TOKEN) == "sleeps after 30 min without visitors"
    assert fake_hub.sleep == {"alice/acelora": 1800}
    with pytest.raises(hub.HubError) as info:
        hub.set_sleep_time("alice/acelora", 3600, READ_TOKEN)
    assert "(403)" in str(info.value) and "Only the Space's owner" in info.value.hint
    with pytest.raises(hub.HubError, match="No Hugging Face token"):
        hub.set_sleep_time("alice/acelora", 3600, None)


def test_hub_sync_then_restore_after_a_wipe_and_resume(train_kit, fake_hub, tmp_path):
    from train_kit import write_dataset

    manifest = write_dataset(train_kit.home / "datasets" / "tones")  # this test's own copy: it gets wiped
    run = train_kit.run_dir("synced", max_steps=4, checkpoint_every=2, manifest=str(manifest))
    assert train_kit.run(run) == 0
    audio = [json.loads(line)["audio"] for line in (run / "dataset.jsonl").read_text().splitlines()]

    job = hub.start_sync("synced", "sync-repo", WRITE_TOKEN, every_min=1)
    assert wait_for(lambda: not jobs.reconcile(job).active, 120), jobs.log_tail(job)
    assert end_of(job)["status"] == "completed", jobs.log_tail(job)
    repo = fake_hub.repos["alice/sync-repo"]
    assert repo.private
    files = set(repo.files)
    assert {"synced/config.json", "synced/events.jsonl", "synced/dataset.jsonl", "synced/final/adapter_model.safetensors",
            "synced/checkpoints/step-000004/meta.json", "synced/dataset/index.json"} <= files
    assert {f"synced/dataset/{p.rsplit('/', 1)[1]}" for p in audio} <= files
    assert not any("/control/" in f or "/." in f for f in files)
    assert hub.list_synced_runs("alice/sync-repo", WRITE_TOKEN) == ["synced"]

    # the Space restarts without /data: the run and its audio are gone
    shutil.rmtree(run)
    shutil.rmtree(manifest.parent)
    job = hub.start_restore("alice/sync-repo", "synced", WRITE_TOKEN)
    assert wait_for(lambda: not jobs.reconcile(job).active, 120), jobs.log_tail(job)
    assert end_of(job)["status"] == "completed", last_event(job / EVENTS_FILE, ["error"])
    rows = [json.loads(line) for line in (run / "dataset.jsonl").read_text().splitlines()]
    assert all(r["audio"].startswith(str(run / "dataset")) and (run / "dataset").joinpath(r["audio"].rsplit("/", 1)[1]).is_file()
               for r in rows)
    assert jobs.status(run).status == "completed"  # its own end event came back with it

    # and it resumes from the restored checkpoint
    cfg = train_kit.config(tmp_path / "more.json", max_steps=6, checkpoint_every=2)
    assert train_kit.run(run, "--resume", "latest", "--config", str(cfg)) == 0
    assert read_events(run, "resumed")[-1]["step"] == 4 and end_of(run)["status"] == "completed"
    assert files_containing(train_kit.home, WRITE_TOKEN) == []


def test_restore_refuses_to_overwrite_a_local_run(workspace, fake_hub):
    (workspace / "lora_output" / "exists").mkdir(parents=True)
    job = hub.start_restore("alice/sync-repo", "exists", WRITE_TOKEN)
    assert wait_for(lambda: not jobs.reconcile(job).active, 60)
    assert "already exists" in last_event(job / EVENTS_FILE, ["error"])["message"]
