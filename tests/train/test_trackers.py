"""Experiment trackers: TensorBoard gets the very numbers of the step and validation events (read back
with TensorBoard's own reader); a tracker whose package is missing stops the run before anything
loads, naming the package; trackio, where installed, gets them too."""
from __future__ import annotations

import sys

import pytest

from train_kit import end_of, read_events


def _tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_tensorboard_gets_the_step_and_validation_events(train_kit):
    job = train_kit.run_dir("tb", max_steps=4, val_every=2, val_timesteps=2, report_to=["tensorboard"])
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    got = _tensorboard_scalars(job / "tensorboard")
    steps = {e["step"]: e["loss"] for e in read_events(job, "step")}
    vals = {e["step"]: e["loss"] for e in read_events(job, "validation")}
    assert sorted(got["train/loss"]) == sorted(steps) == [1, 2, 3, 4]
    assert got["train/loss"] == pytest.approx(steps, rel=1e-6)  # float32 in the event file
    assert sorted(got["validation/loss"]) == sorted(vals) == [0, 2, 4]
    assert got["validation/loss"] == pytest.approx(vals, rel=1e-6)
    assert {"train/lr", "train/grad_norm", "speed/samples_per_s"} <= set(got)
    assert len([t for t in got if t.startswith("validation_per_timestep/")]) == 2


def test_a_missing_tracker_package_is_named_before_anything_loads(train_kit, monkeypatch):
    monkeypatch.setitem(sys.modules, "trackio", None)  # what `import trackio` meets where it is not installed
    job = train_kit.run_dir("no-trackio", max_steps=2, report_to=["trackio"])
    assert train_kit.run(job) == 1
    err = read_events(job, "error")[0]
    assert "pip install trackio==" in err["message"] and "report_to" in err["hint"]
    assert not read_events(job, "phase") and end_of(job)["status"] == "failed"  # nothing was loaded


def test_trackio_gets_the_same_numbers(train_kit, tmp_path, monkeypatch):
    pytest.importorskip("trackio", reason="trackio is optional (pip install trackio); CI does not install it")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    job = train_kit.run_dir("tio", max_steps=3, val_every=3, val_timesteps=2, report_to=["trackio"])
    assert train_kit.run(job) == 0, read_events(job)[-3:]
    import trackio.sqlite_storage as store

    logs = store.SQLiteStorage.get_logs("acelora", "tio")
    losses = {r["step"]: r["train/loss"] for r in logs if "train/loss" in r}
    assert losses == pytest.approx({e["step"]: e["loss"] for e in read_events(job, "step")})
    assert any("validation/loss" in r for r in logs)


def test_train_form_offers_trackers_and_runs_page_shows_the_log_folder(workspace, monkeypatch):
    """The Train form's "Also log to" reaches the config; the Runs page names the folder and the command."""
    from streamlit.testing.v1 import AppTest

    from state import events
    from state.dataset import manifest
    from state.fsutil import write_json
    from state.train import trackers
    from tests.audio_fixtures import sine

    from locations import APP

    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    music = workspace / "music"
    music.mkdir()
    sine(music / "t0.wav", seconds=2.0, sr=48000, freq=220)
    manifest.scan(manifest.create_dataset("demo", music))
    run = workspace / "lora_output" / "run-tb"
    run.mkdir(parents=True)
    write_json(run / "job.json", {"kind": "train", "pid": None, "create_time": 1.0, "started_at": 1.0})
    write_json(run / "config.json", {"model_id": "tests/not-the-demo-model", "report_to": ["tensorboard"]})
    (run / "tensorboard").mkdir()
    with events.EventWriter(run) as w:
        w.emit("end", status="completed")

    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/train.py").run()
    at.multiselect(key="train_report_to").select("tensorboard").run()
    assert not at.exception
    assert at.session_state["train_form"]["demo"]["values"]["report_to"] == ["tensorboard"]
    if not trackers.installed("trackio"):
        at.multiselect(key="train_report_to").select("trackio").run()
        assert any("pip install trackio==" in w.value for w in at.warning)

    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    assert any(str(run / "tensorboard") in m.value for m in at.markdown)
    assert any(c.value == f"tensorboard --logdir {workspace / 'lora_output'}" for c in at.code)
