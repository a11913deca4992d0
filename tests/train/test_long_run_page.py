"""A run with 200,000 step events: the Train page renders its charts without sending 200,000 points."""
import base64
import json
import time

import numpy as np
from streamlit.testing.v1 import AppTest

from state import paths
from state.dataset import manifest
from state.fsutil import write_json
from tests.audio_fixtures import sine

from locations import APP

N = 200_000


def test_train_page_charts_are_downsampled(workspace, monkeypatch):
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    music = workspace / "music"
    music.mkdir()
    sine(music / "a.wav", seconds=10.5)
    manifest.scan(manifest.create_dataset("d", music))
    run = paths.run_dir("long")
    run.mkdir(parents=True)
    write_json(run / "job.json", {"kind": "train", "pid": None, "started_at": time.time() - 3600})
    with open(run / "events.jsonl", "w") as f:
        f.write(json.dumps({"t": 1.0, "type": "start", "total_steps": N, "device": "cuda"}) + "\n")
        for i in range(1, N + 1):
            loss = 30.0 if i == 123_457 else 1.0 / (1 + i * 1e-4)
            f.write(f'{{"t": {i}, "type": "step", "step": {i}, "loss": {loss}, "lr": 0.0001, '
                    f'"gpu_mem_alloc_mb": 9000.0, "rss_mb": 2000.0}}\n')
        f.write(json.dumps({"t": N + 1.0, "type": "end", "status": "completed"}) + "\n")

    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("app_pages/train.py")
    at.session_state["train_tab"] = "Live run"
    at.run()
    assert not at.exception
    charts = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert len(charts) == 3
    points = sum(len(values(trace.get("x"))) for c in charts for trace in c["data"])
    assert 1000 < points < 20_000, points
    assert values(charts[0]["data"][0]["y"]).max() == 30.0  # the one spike survives


def values(v) -> np.ndarray:
    """A trace's array as sent to the browser: a list, or plotly's typed-array {"dtype", "bdata"}."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray([x for x in (v or []) if x is not None], dtype=float)
