"""The Auto-label panel on the Dataset page, driven through AppTest (no job is really started)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from state.dataset import manifest
from state.events import EventWriter
from state.fsutil import write_json

from locations import APP


@pytest.fixture
def page_ws(workspace, tmp_path, monkeypatch):
    """A workspace with one folder dataset; a non-demo model id so no demo-model build job starts."""
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    monkeypatch.delenv("SPACE_ID", raising=False)
    src = tmp_path / "music"
    src.mkdir()
    sf.write(src / "song.wav", (0.2 * np.sin(np.arange(48000 * 11) / 48000 * 2 * np.pi * 220)).astype("float32"), 48000)
    manifest.scan(manifest.create_dataset("songs", src))
    return workspace


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("subheader", "warning", "info", "caption", "success", "error")
                     for e in getattr(at, kind))


def test_panel_explains_lm_and_starts_a_label_job(page_ws, monkeypatch):
    from state import jobs

    launched = []
    monkeypatch.setattr(jobs, "launch", lambda job_dir, kind, *a, **k: launched.append((Path(job_dir), kind)))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "Auto-label" in texts(at)
    assert at.radio(key="data_al_mode").value == "signal"  # no LM here: the default is what can run
    assert "not available on this machine" in texts(at)

    at.radio(key="data_al_mode").set_value("both").run()
    shown = texts(at)
    assert "acestep-5Hz-lm-0.6B" in shown and "is not on this machine" in shown  # why the LM part cannot run
    assert "has no 5 Hz audio tokenizer" in shown and "signal labels still run" in shown
    assert not at.button(key="data_al_start").disabled  # signal labels still work

    at.radio(key="data_al_mode").set_value("lm").run()
    assert at.button(key="data_al_start").disabled  # LM only, and no LM: nothing to start

    at.radio(key="data_al_mode").set_value("signal").run()
    at.checkbox(key="data_al_only_new").check().run()
    at.button(key="data_al_start").click().run()
    assert not at.exception
    (job_dir, kind), = launched
    assert kind == "label" and job_dir.parent == page_ws / "jobs"
    params = json.loads((job_dir / "params.json").read_text())
    assert params["dataset"] == "songs" and params["mode"] == "signal" and params["only_unlabelled"] is True
    assert params["protect_user"] is True


def test_panel_shows_live_progress_and_cancels(page_ws):
    job_dir = page_ws / "jobs" / "label-live"
    (job_dir / "control").mkdir(parents=True)
    write_json(job_dir / "params.json", {"dataset": "songs", "mode": "signal"})
    me = psutil.Process(os.getpid())  # a live pid stands in for the job's process
    write_json(job_dir / "job.json", {"kind": "label", "pid": me.pid, "create_time": me.create_time(),
                                      "started_at": time.time()})
    with EventWriter(job_dir) as ev:
        ev.emit("phase", name="label", done=1, total=3, eta_s=20.0)
        ev.emit("warning", message="broken.wav: not labelled: could not decode")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("Labelling track 2 of 3" in p.proto.text for p in at.get("progress"))
    assert "broken.wav: not labelled" in texts(at)
    at.button(key="data_al_cancel").click().run()
    assert (job_dir / "control" / "stop").exists()  # the job's own flag; it stops between tracks


def test_panel_imports_no_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys; import ui.autolabel, state.label.options, state.label.policy; "
            "heavy = [m for m in ('torch', 'librosa', 'transformers', 'diffusers') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(APP).parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_suggestions_accept_with_one_click_and_tempo_halves(page_ws):
    from state.label import suggestions

    ds = manifest.open_dataset("songs")
    manifest.save_labels(ds, {"song.wav": {"bpm": 132, "caption": "a drone"}}, labeled_by="dsp")
    suggestions.replace_track(ds.dir, "song.wav", [
        suggestions.Suggestion("keyscale", "A minor", "dsp", "measured with confidence 0.41, below the 0.50 needed "
                               "to write it", 0.41)])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    shown = "\n".join(str(m.value) for m in at.markdown)
    assert "keyscale **A minor**" in shown and "confidence 0.41" in shown
    at.button(key="data_sug_ok_0").click().run()
    assert not at.exception
    side = json.loads((ds.source / "song.json").read_text())
    assert side["keyscale"] == "A minor" and side["labeled_by"] == "user"  # accepted = the user's own edit
    assert suggestions.load(ds.dir) == {}

    at.button(key="data_bpm_half_song.wav").click().run()
    assert not at.exception
    assert json.loads((ds.source / "song.json").read_text())["bpm"] == 66


def test_last_run_shows_notes_per_track_and_no_eta_from_a_failed_file(page_ws):
    job_dir = page_ws / "jobs" / "label-done"
    job_dir.mkdir(parents=True)
    write_json(job_dir / "params.json", {"dataset": "songs", "mode": "signal"})
    write_json(job_dir / "job.json", {"kind": "label", "pid": 999999, "create_time": 1.0, "started_at": time.time()})
    with EventWriter(job_dir) as ev:
        ev.emit("labeled", track="song.wav", fields={"duration": 11.0}, notes=["No steady beat was found, so bpm and "
                                                                               "the time signature were left unset."])
        ev.emit("summary", message="0 of 1 track(s) got new labels, 1 only their duration, 0 unchanged.")
        ev.emit("end", status="completed")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    shown = texts(at) + "\n".join(str(m.value) for m in at.markdown)
    assert "1 only their duration" in shown
    assert "**song.wav**: No steady beat" in shown
