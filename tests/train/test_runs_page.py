"""The Runs page's details for one run."""
from __future__ import annotations


def test_a_demo_run_is_flagged_once(workspace, monkeypatch):
    """The warning above the tabs says it; the Progress tab does not repeat it (it did, seen on screen)."""
    from streamlit.testing.v1 import AppTest

    from state import events
    from state.fsutil import write_json
    from state.model.catalog import DEMO_MODEL_ID

    from locations import APP

    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")  # opening a page never builds the demo model
    run = workspace / "lora_output" / "run-demo"
    run.mkdir(parents=True)
    write_json(run / "job.json", {"kind": "train", "pid": None, "create_time": 1.0, "started_at": 1.0})
    write_json(run / "config.json", {"model_id": DEMO_MODEL_ID})
    with events.EventWriter(run) as w:
        w.emit("start", total_steps=4)
        w.emit("end", status="completed")

    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    shown = [e.value for e in [*at.warning, *at.caption, *at.info] if "demo model" in e.value.lower()]
    assert len(shown) == 1 and "noise, not music" in shown[0], shown
