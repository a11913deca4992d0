"""The Train page follows the user (issue 15), without starting real training: settings outlive a
page switch and a new session, the active run opens first with its controls, each click on Save now /
Sample now is acknowledged until the run answers, and a past run's settings are one click away.
Runs are folders written here; an "active" run's job.json names a live `sleep` process."""
from __future__ import annotations

import json
import subprocess
import time

import psutil
import pytest
from streamlit.testing.v1 import AppTest

from state import events, jobs, paths
from state.dataset import manifest
from state.fsutil import write_json
from state.listen import ab
from tests.audio_fixtures import sine

from locations import APP

QUICK = "Quick test (minutes, checks the pipeline)"


@pytest.fixture
def ws(workspace, monkeypatch):
    # a model that is not here: the page draws its settings but starts no job of its own
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    for name in ("album", "other"):
        music = workspace / f"music-{name}"
        music.mkdir()
        sine(music / "a.wav", seconds=10.5)
        manifest.scan(manifest.create_dataset(name, music))
    return workspace


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "600"])
    yield p
    p.kill()
    p.wait()


def page(name: str, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=60)
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def fake_run(name: str, started_at: float, pid: int | None = None, config: dict | None = None,
             evs: list[dict] = ()) -> object:
    d = paths.run_dir(name)
    d.mkdir(parents=True)
    ctime = psutil.Process(pid).create_time() if pid else None
    write_json(d / "job.json", {"kind": "train", "pid": pid, "create_time": ctime, "started_at": started_at,
                                "argv": ["run.py", "train"]})
    write_json(d / "config.json", {"model_id": "tests/not-the-demo-model", **(config or {})})
    for e in evs:
        events.append_event(d, e.pop("type"), **e)
    return d


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "info", "warning", "error")
                     for e in getattr(at, kind))


def rerun_until(at: AppTest, pred, timeout: float = 10.0) -> AppTest:
    # the live view re-reads events.jsonl when watchdog reports a change; give it a moment
    end = time.time() + timeout
    while True:
        at.run()
        if pred(at) or time.time() > end:
            return at
        time.sleep(0.3)


def test_settings_survive_a_page_switch_a_new_session_and_stay_per_dataset(ws):
    at = page("train")
    assert at.session_state["train_tab"] == "New run" and not at.exception
    at.selectbox(key="train_preset").select(QUICK).run()
    assert at.number_input(key="train_rank").value == 8
    at.number_input(key="train_max_steps").set_value(123).run()
    at.number_input(key="train_learning_rate").set_value(3e-4).run()

    page("dataset", at)
    page("train", at)
    assert at.number_input(key="train_max_steps").value == 123
    assert at.number_input(key="train_learning_rate").value == pytest.approx(3e-4)
    assert at.selectbox(key="train_preset").value == QUICK
    assert any("123 optimizer steps" in c.value for c in at.caption)

    again = page("train")  # a new browser session: the dataset's settings come back from disk
    assert again.number_input(key="train_max_steps").value == 123 and again.number_input(key="train_rank").value == 8
    again.selectbox(key="train_ds").select("other").run()  # another dataset keeps its own (defaults here)
    assert again.number_input(key="train_max_steps").value == 0 and again.number_input(key="train_rank").value == 64
    again.selectbox(key="train_ds").select("album").run()
    assert again.number_input(key="train_max_steps").value == 123


def test_the_active_run_opens_first_and_every_click_is_acknowledged(ws, sleeper, tone):
    now = time.time()
    fake_run("run-old", now - 100, evs=[{"type": "end", "status": "completed"}])
    live = fake_run("run-live", now - 200, pid=sleeper.pid,
                    evs=[{"type": "start", "device": "cpu", "dtype": "float32", "total_steps": 100},
                         {"type": "phase", "name": "train", "done": 0, "total": 100},
                         {"type": "step", "step": 5, "loss": 1.0, "lr": 1e-4, "rss_mb": 900.0, "eta_s": 60}])
    fake_run("run-newest", now, evs=[{"type": "end", "status": "completed"}])
    at = page("train")
    assert at.session_state["train_tab"] == "Live run"
    assert at.selectbox(key="train_view").value == "run-live"
    assert at.metric[0].value == "🟢 running" and at.metric[4].value == "cpu · float32"
    assert at.button(key="train_live_stop")

    at.button(key="train_live_save_now").click().run()
    assert jobs.flag_set(live, "save_now")
    assert "Checkpoint requested at" in texts(at)
    jobs.clear_flag(live, "save_now")  # what the trainer does when it takes the request ...
    events.append_event(live, "checkpoint", step=5, path=str(live / "checkpoints" / "step-000005"), reason="save_now")
    rerun_until(at, lambda a: "Saved checkpoint step-000005" in texts(a))
    assert "Saved checkpoint step-000005 at" in texts(at)

    at.button(key="train_live_sample_now").click().run()
    assert jobs.flag_set(live, "sample_now") and "Preview requested at" in texts(at)
    jobs.clear_flag(live, "sample_now")
    at.run()
    assert "Rendering a preview of the current adapter" in texts(at)
    ab.samples_dir(live).mkdir()
    wav = tone(ab.samples_dir(live) / "step-000005.wav", seconds=1.0)
    events.append_event(live, "sample", step=5, path=str(wav))
    rerun_until(at, lambda a: "Preview of step 5 is ready" in texts(a))
    assert "Preview of step 5 is ready" in texts(at)
    assert len(at.get("audio")) == 1 and "**Previews** (1;" in texts(at)

    at.button(key="train_live_stop").click().run()
    assert jobs.flag_set(live, "stop") and "Stop requested at" in texts(at)


def test_a_queued_run_shows_its_wait_apart_from_its_run_time(ws, sleeper):
    now = time.time()
    fake_run("run-first", now - 400)
    d = fake_run("run-queued", now - 300, pid=sleeper.pid, evs=[{"type": "queued", "after": "run-first"}])
    info = json.loads((d / "job.json").read_text())
    write_json(d / "job.json", {**info, "argv": [*info["argv"], "--after", "run-first"]})
    at = page("train")
    assert at.selectbox(key="train_view").value == "run-queued"
    got = {m.label: m.value for m in at.metric}
    assert got["Status"] == "⏳ queued" and got["Run time"] == "0m 00s" and got["Queued"].startswith("5m")
    assert "starts by itself when `run-first` ends" in texts(at)
    assert at.button(key="train_live_save_now").disabled


def test_new_run_from_a_past_runs_settings_is_one_click(ws):
    fake_run("run-a", time.time(), config={"rank": 16, "max_steps": 77, "learning_rate": 5e-5},
             evs=[{"type": "end", "status": "completed"}])
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/train.py")
    at.session_state["train_tab"] = "Live run"
    at.run()
    at.button(key="train_live_clone").click().run()
    assert at.session_state["train_tab"] == "New run" and not at.exception
    assert "Settings loaded from run-a" in texts(at)
    assert at.number_input(key="train_rank").value == 16 and at.number_input(key="train_max_steps").value == 77
    assert at.number_input(key="train_learning_rate").value == pytest.approx(5e-5)


def test_runs_page_warns_about_demo_runs_and_diffs_settings_as_text(ws):
    now = time.time()
    fake_run("run-demo", now, config={"model_id": "acelora/tiny-demo", "rank": 8, "manifest": "/a/dataset.jsonl",
                                      "target_modules": ["to_q"]}, evs=[{"type": "end", "status": "completed"}])
    fake_run("run-real", now - 10, config={"rank": 16, "manifest": "/b/dataset.jsonl", "target_modules": ["to_q"]},
             evs=[{"type": "end", "status": "completed"}])
    at = page("runs")
    assert at.selectbox(key="runs_pick").value == "run-demo"
    assert any("tiny demo model" in w.value for w in at.warning)
    at.multiselect(key="runs_compare").set_value(["run-demo", "run-real"]).run()
    assert not at.exception
    diff = at.dataframe[-1].value
    assert list(diff["setting"]) == ["model_id", "rank"]  # the manifest path always differs: left out
    assert list(diff["run-demo"]) == ["acelora/tiny-demo", "8"]  # one type per column: text

    at.button(key="runs_clone").click().run()
    assert not at.exception
    assert at.session_state["train_tab"] == "New run" and at.number_input(key="train_rank").value == 8
