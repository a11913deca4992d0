"""The main flow through the dashboard: start a real tiny training run on the Train page, see it in
the sidebar, stop it, see `stopped`, resume it, see it complete, find it on the Runs page with its
adapter zip. The job is a real detached subprocess; only the browser is simulated (AppTest)."""
from __future__ import annotations

import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from state import jobs, paths
from state.dataset import manifest
from state.events import read_all
from state.train import runs
from tests.audio_fixtures import sine

from locations import APP

TIMEOUT = 60


@pytest.fixture
def ws(workspace, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("ACELORA_MODEL", raising=False)  # the demo model is the configured default
    shutil.copytree(tiny_model_dir, paths.demo_model_dir())
    music = workspace / "music"
    music.mkdir()
    for i, f in enumerate((220, 330, 440)):
        sine(music / f"t{i}.wav", seconds=10.5, sr=48000, freq=f)
    ds = manifest.create_dataset("demo", music)
    manifest.scan(ds)
    manifest.save_labels(ds, {"t0.wav": {"caption": "low sine drone"}})
    return workspace


def page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def wait(pred, timeout=180.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    raise AssertionError("timed out")


def steps(run_dir):
    return [e for e in read_all(run_dir / "events.jsonl") if e["type"] == "step"]


@pytest.mark.long
def test_train_stop_resume_complete_then_runs_page(ws):
    at = page("train")
    assert not at.exception
    assert any("Demo model: random weights" in m.value for m in at.markdown)
    at.selectbox(key="train_preset").select("Quick test (minutes, checks the pipeline)").run()
    at.number_input(key="train_max_steps").set_value(40).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    [run_dir] = runs.list_runs()
    # the run just started is the one on screen, in the Live run tab, with its Stop button
    assert at.session_state["train_tab"] == "Live run"
    assert at.selectbox(key="train_view").value == run_dir.name
    assert at.button(key="train_live_stop")
    assert (run_dir / "config.json").exists() and (run_dir / "dataset.jsonl").exists()

    # the sidebar of any page lists the running job
    wait(lambda: jobs.status(run_dir).status == "running")
    side = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert any(run_dir.name in m.value and "train" in m.value for m in side.sidebar.markdown)

    # stop from the live panel once training is under way
    wait(lambda: len(steps(run_dir)) >= 1 and jobs.is_ready(run_dir))
    at.run()
    at.button(key="train_live_stop").click().run()
    wait(lambda: jobs.status(run_dir).status == "stopped", timeout=120)
    at.run()
    assert at.metric[0].value == "⏸️ stopped"
    ckpts = runs.checkpoints(run_dir)
    assert ckpts, "stop must leave a resumable checkpoint"
    stopped_at = steps(run_dir)[-1]["step"]

    # resume from the newest checkpoint; it continues and completes
    at.selectbox(key="train_live_resume_pick").select(ckpts[-1].name).run()
    at.button(key="train_live_resume").click().run()
    wait(lambda: jobs.status(run_dir).status == "completed", timeout=400)
    evs = read_all(run_dir / "events.jsonl")
    resumed = [e for e in evs if e["type"] == "resumed"]
    assert resumed and resumed[-1]["step"] >= stopped_at - 1
    assert steps(run_dir)[-1]["step"] == 40
    at.run()
    assert at.metric[0].value == "✅ completed" and not at.exception

    # the Runs page lists it and offers the adapter as a zip
    rp = page("runs")
    assert not rp.exception
    table = rp.dataframe[0].value
    row = table[table["run"] == run_dir.name].iloc[0]
    assert row["status"] == "completed" and row["steps"] == 40 and row["tracks"] == 3
    rp.button(key="runs_zip").click().run()
    dl = rp.get("download_button")
    assert dl and dl[0].label == "Download adapter (.zip)"


def test_preflight_blocks_a_model_that_is_not_here(ws):
    at = page("train")
    at.selectbox(key="train_model").select("ACE-Step/acestep-v15-xl-base-diffusers").run()
    assert any("is not on this machine yet" in m.value for m in at.markdown)
    assert at.button(key="train_start").disabled
    assert any(b.label == "Download model" for b in at.button)


def test_bad_config_is_refused_with_the_field_named(ws):
    at = page("train")
    at.number_input(key="train_warmup_ratio").set_value(0.5).run()  # allowed edge
    assert not at.button(key="train_start").disabled
    at.number_input(key="train_clip_seconds").set_value(0.5).run()
    assert any("clip_seconds" in m.value for m in at.markdown)
    assert at.button(key="train_start").disabled


def test_no_dataset_says_where_to_go(workspace, monkeypatch):
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    at = page("train")
    assert "No dataset yet" in at.info[0].value


def test_gpu_count_is_a_choice_only_on_a_machine_with_several(ws, monkeypatch):
    from state import device

    at = page("train")
    assert not [s for s in at.selectbox if s.key == "train_gpus"]  # this machine: one GPU or none
    gpu = {"name": "NVIDIA L4", "mem_total_mb": 23034.0, "mem_used_mb": 0.0, "util_pct": 0.0, "compute_cap": "8.9",
           "precision": "bf16"}
    two = {**device.describe(), "kind": "cuda", "label": "NVIDIA L4 (+1 more)", "precision": "bf16",
           "gpu_mem_total_gb": 22.5, "gpus": [gpu, gpu]}
    monkeypatch.setattr(device, "describe", lambda: two)
    at = page("train")
    at.selectbox(key="train_gpus").select(2).run()
    assert any("gpus 2" in m.value and "grad_accum" in m.value for m in at.markdown)  # 1 cannot be split in 2
    assert at.button(key="train_start").disabled
    at.number_input(key="train_grad_accum").set_value(2).run()
    assert not any("gpus 2" in m.value for m in at.markdown) and not at.exception


def test_lokr_says_before_training_what_cannot_load_it(ws):
    at = page("train")
    assert not any("LoKr:" in m.value for m in at.markdown)
    at.selectbox(key="train_adapter_type").select("lokr").run()
    assert any("LoKr: diffusers' `pipe.load_lora_weights` cannot read it" in m.value for m in at.markdown)
    assert not at.button(key="train_start").disabled  # a warning, not a refusal
    at.number_input(key="train_merged_scale").set_value(0.8).run()
    assert any("fused at scale 0.8" in m.value for m in at.markdown)
