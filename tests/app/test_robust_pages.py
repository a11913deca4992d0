"""Issue 14 at page level: damaged run files and a full disk leave every page rendering, say what
is wrong, and keep Delete working so space can be freed."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from disk_kit import fill, small_tmpfs
from streamlit.testing.v1 import AppTest

from state import events, fsutil
from state.dataset import manifest
from state.fsutil import write_json

from locations import APP

PAGES = ["app_pages/dataset.py", "app_pages/train.py", "app_pages/runs.py", "app_pages/ab.py",
         "app_pages/publish.py"]


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    fsutil._write_failures.clear()
    yield
    fsutil._write_failures.clear()


def make_workspace(ws: Path) -> None:
    music = ws / "music"
    music.mkdir(parents=True)
    t = np.arange(48000 * 11) / 48000
    sf.write(music / "song.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 48000, subtype="PCM_16")
    manifest.scan(manifest.create_dataset("album", music))
    now = time.time()
    for run, status in (("run-done", "completed"), ("run-dead", None)):
        d = ws / "lora_output" / run
        d.mkdir(parents=True)
        write_json(d / "job.json", {"kind": "train", "pid": 999_999_999 if status is None else None,
                                    "create_time": 1.0, "started_at": now - 100})
        write_json(d / "config.json", {"model_id": "tests/not-the-demo-model", "rank": 8})
        with events.EventWriter(d) as w:
            w.emit("start", total_steps=10, device="cpu")
            for step in range(1, 4):
                w.emit("step", step=step, loss=1.0 / step)
            if status:
                w.emit("end", status=status)


def render_every_page(at: AppTest, disk_full: bool = False) -> str:
    seen = []
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        seen += [e.value for kind in ("error", "warning", "info", "markdown") for e in getattr(at, kind)]
        if disk_full:  # said once in the sidebar, however many jobs and files hit it
            assert [e.value for e in at.sidebar.error if "disk full at" in e.value] == [
                f"disk full at {Path(os.environ['ACELORA_HOME']) / 'lora_output' / 'run-dead' / 'events.jsonl'}: "
                "free space (Runs → delete)"], page
    return "\n".join(map(str, seen))


def test_damaged_run_files_are_listed_and_every_page_still_renders(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("ACELORA_HOME", str(ws))
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    make_workspace(ws)
    runs_dir = ws / "lora_output"
    (runs_dir / "run-dead" / "job.json").write_text('{"kind": "train", "pid": ')  # cut mid-write
    (runs_dir / "run-done" / "config.json").write_bytes(b"\xff\x00 not json")
    (runs_dir / "run-done" / "events.jsonl").open("ab").write(b'{"t": "soon", "type": "step", "step": "x"}\n')
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    text = render_every_page(at)
    assert "job.json is damaged (not valid JSON" in text
    assert "config.json is damaged (not UTF-8" in text

    at.switch_page("app_pages/runs.py").run()
    statuses = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"]))
    assert statuses == {"run-dead": "damaged", "run-done": "damaged"}
    for run in ("run-dead", "run-done"):
        at.selectbox(key="runs_pick").select(run).run()
        assert not at.exception
    assert any("config.json is damaged" in e.value for e in at.error)


def test_a_full_disk_leaves_every_page_rendering_and_delete_frees_it(tmp_path, monkeypatch):
    with small_tmpfs(tmp_path / "ws", "8m") as ws:
        monkeypatch.setenv("ACELORA_HOME", str(ws))
        monkeypatch.delenv("ACELORA_MODEL", raising=False)  # the demo model: Train wants to build it
        make_workspace(ws)
        (ws / "lora_output" / "run-dead" / "events.jsonl").open("ab").write(b"\n" * (4096 - (
            (ws / "lora_output" / "run-dead" / "events.jsonl").stat().st_size % 4096)))  # a whole page
        (ws / "lora_output" / "run-dead" / "ballast.bin").write_bytes(b"\0" * (1 << 20))
        fill(ws)
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        render_every_page(at, disk_full=True)

        at.switch_page("app_pages/runs.py").run()
        at.selectbox(key="runs_pick").select("run-dead").run()
        at.button(key="runs_delete").click().run()
        assert not at.exception
        assert not (ws / "lora_output" / "run-dead").exists()
        (ws / "filler.bin").unlink()
        at.run()
        assert not at.exception and not any("disk full" in e.value for e in at.sidebar.error)
        assert json.loads((ws / "datasets" / "album" / "dataset.json").read_text())["name"] == "album"
