"""Space awareness: hardware and price from the platform's variables, running cost, idle GPU,
the sidebar panel with its loud non-persistent warning, and cost settings that never hold a token."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from state import jobs, settings
from state.cloud import space

from locations import APP

SPACE_ENV = {"SPACE_ID": "alice/acelora", "SPACE_HOST": "alice-acelora.hf.space", "SPACE_AUTHOR_NAME": "alice",
             "ACCELERATOR": "l4x1", "CPU_CORES": "8", "MEMORY": "30Gi",
             "ACELORA_MODEL": "tests/not-the-demo-model"}


@pytest.fixture
def on_space(tmp_path, monkeypatch):
    """A Space without a bucket at /data: the workspace is the container's working directory."""
    if Path("/data").exists():
        pytest.skip("this machine has a /data folder, so it cannot play a Space without one")
    monkeypatch.delenv("ACELORA_HOME", raising=False)
    monkeypatch.delenv("ACELORA_SPACE_HARDWARE", raising=False)
    monkeypatch.delenv("ACELORA_PRICE_PER_HOUR", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    for k, v in SPACE_ENV.items():
        monkeypatch.setenv(k, v)
    return tmp_path


def sidebar_text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "error", "warning", "success")
                     for e in getattr(at.sidebar, kind))


def test_hardware_price_and_cost(on_space, monkeypatch):
    assert space.hardware() == "l4x1" and space.price_per_hour() == 0.80
    assert space.cost(90 * 60, 0.80) == pytest.approx(1.20)
    monkeypatch.setenv("ACCELERATOR", "some-new-gpu")
    assert space.price_per_hour() is None, "an unknown flavour has no made-up price"
    monkeypatch.setenv("ACELORA_PRICE_PER_HOUR", "2.5")
    assert space.price_per_hour() == 2.5
    monkeypatch.delenv("ACCELERATOR")
    assert space.hardware() == "cpu-upgrade"  # CPU_CORES=8 on a Space without an accelerator
    started = time.time() - 1800
    run = jobs.JobStatus(on_space, "train", "running", 1, started, None, None)
    assert space.run_cost(run, 4.0, now=started + 1800) == pytest.approx(2.0)


def test_panel_shows_space_price_and_loud_storage_warning(on_space):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    text = sidebar_text(at)
    assert "**alice/acelora** · `l4x1` · $0.80/h" in text
    assert "spaces-gpus, read 2026-11-25" in text
    assert any("No persistent storage" in e.value and "deleted when the Space restarts" in e.value
               for e in at.sidebar.error)
    assert not (on_space / "jobs").exists(), "rendering the panel must not start jobs"


def test_panel_is_absent_off_space(workspace, monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "Hugging Face Space" not in sidebar_text(at)


def test_idle_gpu_warning(on_space, monkeypatch):
    monkeypatch.setattr(space, "container_started_at", lambda: time.time() - 40.5 * 60)
    assert space.idle_minutes() == pytest.approx(40.5, abs=0.2)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert any("GPU idle for 40 min" in w.value for w in at.sidebar.warning)
    # a CPU Space is not warned about (nothing expensive idles)
    monkeypatch.setenv("ACCELERATOR", "cpu-basic")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not any("GPU idle" in w.value for w in at.sidebar.warning)


def test_cost_settings_are_saved_without_tokens(workspace):
    space.save_prefs(pause_when_done=True, sleep_time_s=1800, idle_warn_min=5, hub_sync_repo=" alice/sync ")
    assert space.prefs() == {"pause_when_done": True, "sleep_time_s": 1800, "idle_warn_min": 5,
                             "hub_sync_repo": "alice/sync"}
    with pytest.raises(ValueError, match="unknown setting"):
        settings.save(hf_token="hf_x")
    with pytest.raises(ValueError, match="at least 300"):
        space.save_prefs(sleep_time_s=60)
