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
