"""The Train page offers HF Jobs only with a token, shows flavours with prices, and starts a remote
run through state.cloud.remote_jobs (patched here: the round trip itself is test_remote_jobs.py)."""
from __future__ import annotations

import shutil
import time

from streamlit.testing.v1 import AppTest

from state import paths
from state.cloud import remote_jobs as rj
from state.dataset import manifest
from state.events import append_event
from state.fsutil import write_json
from tests.audio_fixtures import sine

from hub_server import WRITE_TOKEN, fake_hub  # noqa: F401 - fixture
from locations import APP


def _dataset(workspace):
    music = workspace / "music"
    music.mkdir()
    sine(music / "t0.wav", seconds=3.0, sr=48000, freq=220)
    manifest.scan(manifest.create_dataset("demo", music))


def test_hf_jobs_choice_needs_a_token_then_starts_a_remote_run(workspace, tiny_model_dir, fake_hub, monkeypatch):
    monkeypatch.delenv("ACELORA_MODEL", raising=False)
    shutil.copytree(tiny_model_dir, paths.demo_model_dir())
    _dataset(workspace)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert not [r for r in at.radio if r.key == "train_hfjobs_where"], "offered without a token"
    assert any("needs a Hugging Face token" in e.label for e in at.expander)

    started = []

    def fake_start(cfg, rows, flavor, image, token):  # a remote run that has ended, as the watcher leaves it
        started.append((cfg["model_id"], len(rows), flavor, image, token))
        run = paths.ensure(paths.run_dir("hfjob-x"))
        write_json(run / "job.json", {"kind": rj.KIND, "pid": None, "started_at": time.time() - 60})
        append_event(run, "end", status="stopped")
        (run / "checkpoints" / "step-000004").mkdir(parents=True)
        write_json(run / rj.RECORD, {"flavor": flavor, "job_id": "abc123", "stage": "COMPLETED", "price_per_hour": 0.8,
                                     "started_at": time.time() - 3600, "finished_at": time.time(),
                                     "url": "https://huggingface.co/jobs/alice/abc123"})
        return run

    monkeypatch.setattr(rj, "start_remote", fake_start)
    at.text_input(key="train_hfjobs_token").input(WRITE_TOKEN).run()
    at.radio(key="train_hfjobs_where").set_value("HF Jobs (rented hardware)").run()
    assert not at.exception
    assert "l4x1 (24 GB) · $0.80/h" in at.selectbox(key="train_hfjobs_flavor").options
    assert not [b for b in at.button if b.key == "train_start"], "the local Start is hidden while HF Jobs is chosen"
    at.text_input(key="train_hfjobs_image").input("hf.co/spaces/alice/acelora").run()
    at.button(key="train_hfjobs_start").click().run()
    assert not at.exception
    assert started == [("acelora/tiny-demo", 1, "l4x1", "hf.co/spaces/alice/acelora", WRITE_TOKEN)]
    shown = " ".join(i.value for i in at.info)
    assert "HF Jobs · l4x1 · job abc123 · COMPLETED · $0.80 so far" in shown, shown
    assert [b for b in at.button if b.key == "train_hfjobs_run_resume"]
