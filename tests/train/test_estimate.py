"""Real sizes without a GPU: parameter counts on the meta device, a fake-tensor training step of the
release 2B DiT, and the estimate cache the dashboard reads (job writes, preflight reads)."""
from __future__ import annotations

import inspect
import shutil

import pytest

from state import device as device_mod
from state import paths
from state.model.catalog import DEMO_MODEL_ID
from state.train import estimates, preflight, shapes
from state.train.config import TrainConfig

L4 = {"kind": "cuda", "label": "NVIDIA L4", "gpu_mem_total_gb": 22.5, "ram_total_gb": 64.0, "ram_available_gb": 60.0,
      "cpu_cores": 8, "gpus": [{"name": "NVIDIA L4", "mem_total_mb": 23034.0, "mem_used_mb": 0.0, "util_pct": 0.0}]}
CPU = {"kind": "cpu", "label": "CPU only", "ram_total_gb": 8.0, "ram_available_gb": 6.0, "cpu_cores": 2}


def test_release_param_counts_on_the_meta_device():
    from diffusers import AceStepTransformer1DModel

    from trainer.train.shapes import release_param_counts

    # the 2B shape is diffusers' defaults (the brief's premise), so a config.json without keys means 2B
    defaults = {k: p.default for k, p in inspect.signature(AceStepTransformer1DModel.__init__).parameters.items()
                if k in shapes.DIT_2B}
    assert defaults == shapes.DIT_2B
    two = release_param_counts("2B")
    assert two["dit"] == pytest.approx(1.575e9, rel=0.01) and two["dit"] == 1_575_458_880
    assert two["condition_encoder"] == pytest.approx(0.608e9, rel=0.01)
    assert two["text_encoder"] == pytest.approx(0.596e9, rel=0.01)  # Qwen3-Embedding-0.6B: 595.8 M
    assert two["vae"] == pytest.approx(0.1687e9, rel=0.01)          # 337 MB in bf16: the release's 322 MiB file
    xl = release_param_counts("XL")
    # the XL checkpoints are ~4.7 B with the (shared) condition encoder: 4.169 B + 0.608 B
    assert xl["dit"] + xl["condition_encoder"] == pytest.approx(4.78e9, rel=0.01)


def test_fake_training_step_at_the_real_2b_size_for_a_60s_clip():
    from trainer.train.fake_step import measure

    # the training defaults (rank 64, q/k/v/out of both attentions, checkpointing, 8-bit AdamW), bf16
    request = {"version": estimates.VERSION, "transformer": shapes.DIT_2B,
               "settings": estimates.settings_for({"clip_seconds": 60.0}, dtype="bf16")}
    r = measure(request)
    weights_mb = 1_575_458_880 * 2 / 2**20
    assert r["dit_params"] == 1_575_458_880 and r["tokens"] == 750
    assert r["peak_breakdown_mb"]["weights"] == pytest.approx(weights_mb, rel=0.001)
    assert r["peak_allocated_mb"] > weights_mb + 500          # activations of 750 tokens are real memory
    # forward + backward of the frozen base is at least 2 x 2 x params x tokens; checkpointing adds a forward
    assert r["flops_per_micro_batch"] > 3 * 2 * 1_575_458_880 * 750


def test_meter_counts_the_flops_flop_counter_mode_counts(tiny_model_dir):
    """Counting in the fake mode (one dispatch layer) must give FlopCounterMode's number."""
    import json

    from torch.utils.flop_counter import FlopCounterMode

    from trainer.train.fake_step import StepRig

    dit = {k: v for k, v in json.loads((tiny_model_dir / "transformer" / "config.json").read_text()).items()
           if k in shapes.DIT_2B}
    rig = StepRig(dit, estimates.settings_for({}, dtype="bf16", seconds=4.0))
    counter = FlopCounterMode(display=False)
    r = rig.measure(100, 2, True, 40, extra_modes=(counter,))
    assert r["flops_per_micro_batch"] > 0
    assert r["flops_per_micro_batch"] == counter.get_total_flops()


def test_estimate_job_writes_the_cache_and_preflight_reads_it(workspace, tiny_model_dir, monkeypatch):
    from state.fsutil import write_json
    from trainer import run

    shutil.copytree(tiny_model_dir, paths.demo_model_dir())
    monkeypatch.setattr(device_mod, "describe", lambda: L4)
    cfg = TrainConfig(model_id=DEMO_MODEL_ID, clip_seconds=4.0).to_dict()
    rows = [{"id": "a", "seconds": 10.0, "status": "ok", "caption": "x"}]
    before = preflight.run_preflight(DEMO_MODEL_ID, cfg, rows, 100)
    assert before.estimate == "missing" and before.request is not None and before.mem_gb is None

    job = paths.jobs_dir() / "estimate-test"
    job.mkdir(parents=True)
    write_json(job / "params.json", {"key": estimates.key(before.request), "request": before.request})
    assert run.main(["estimate", "--job-dir", str(job)]) == 0

    cached = estimates.read(before.request)
    assert cached and cached["peak_allocated_mb"] > 0 and cached["flops_per_micro_batch"] > 0
    after = preflight.run_preflight(DEMO_MODEL_ID, cfg, rows, 100)
    assert after.estimate == "ready"
    assert after.mem_gb == preflight.gpu_total_gb(cached["peak_allocated_mb"])
    assert after.minutes is not None and "Measured peak" in after.estimate_text
    assert any(c.level == "ok" and "GPU memory (measured)" in c.text for c in after.checks)
    # the training run's predicted-vs-measured hook reads the same number
    assert preflight.predicted_peak_mb(DEMO_MODEL_ID, cfg, dtype="bf16", rows=rows) == cached["peak_allocated_mb"]
    assert preflight.predicted_peak_mb(DEMO_MODEL_ID, {**cfg, "rank": 8}, dtype="bf16", rows=rows) is None
    # ... and the run's start event carries it on CUDA (the memory chart draws it beside the measured peak)
    import types

    import torch

    from trainer.train.loop import predicted_peak

    bf16, run_cfg = types.SimpleNamespace(base=torch.bfloat16), TrainConfig.from_dict(cfg)
    assert predicted_peak(run_cfg, torch.device("cuda"), bf16, [{"frames": 250}], 100) == cached["peak_allocated_mb"]
    assert predicted_peak(run_cfg, torch.device("cpu"), bf16, [{"frames": 250}], 100) is None


def test_preflight_on_cpu_says_there_is_no_gpu_estimate(workspace, monkeypatch):
    monkeypatch.setattr(device_mod, "describe", lambda: CPU)
    pf = preflight.run_preflight("ACE-Step/acestep-v15-xl-base-diffusers", TrainConfig().to_dict(), [], 100)
    assert pf.estimate == "cpu" and pf.mem_gb is None and pf.minutes is None
    assert any(c.text.startswith("No GPU estimate:") for c in pf.checks)
    assert not (paths.jobs_dir()).exists()  # nothing was started to measure


def test_request_settings_follow_the_config_and_the_gpu():
    req = estimates.request_for("ACE-Step/acestep-v15-xl-base-diffusers", {"clip_seconds": 0.0, "max_seconds": 120.0},
                                [{"seconds": 300.0, "status": "ok"}, {"seconds": 999.0, "status": "error"}],
                                gpu_name="Tesla T4")
    assert req["settings"]["frames"] == 120 * 25       # whole tracks, capped by max_seconds
    assert req["settings"]["dtype"] == "fp16"          # T4 has no bf16
    assert estimates.dtype_for("cuda:fp32", "NVIDIA A100") == "fp32"
    assert estimates.dtype_for("auto", "NVIDIA L4") == "bf16"
    assert estimates.request_for("not/a-known-shape-tiny", {}) is None
    # a downloaded model's config.json (as the importer writes it) keys the same estimate as its release shape
    written = {**shapes.DIT_XL, "layer_types": ["sliding_attention", "full_attention"] * 16, "rope_theta": 1000000,
               "is_turbo": False, "_class_name": "AceStepTransformer1DModel"}
    assert shapes.normalized(written) == shapes.DIT_XL


def test_each_preset_fits_its_card_with_its_measured_peak():
    budgets = {"8 GB GPU": 8, "12 GB GPU": 12, "16 GB GPU": 16, "24+ GB GPU": 24, "XL model, 16+ GB GPU": 16}
    for name, budget in budgets.items():
        peak_gb = preflight.PRESET_PEAK_GB[name]
        assert preflight.gpu_total_gb(peak_gb * 1024) <= budget - preflight.PRESET_HEADROOM_GB, name
        assert f"{peak_gb:.1f} GB" in preflight.preset_label(name)
        TrainConfig.from_dict({**TrainConfig().to_dict(), **preflight.PRESETS[name]})  # a valid config


def test_train_page_measures_a_missing_estimate_then_shows_it(workspace, tiny_model_dir, monkeypatch):
    """On a GPU machine the page starts the estimate job, says "measuring…", then shows the result."""
    import time

    from streamlit.testing.v1 import AppTest

    from state import jobs
    from state.dataset import manifest
    from state.fsutil import read_json
    from tests.audio_fixtures import sine

    from locations import APP

    monkeypatch.delenv("ACELORA_MODEL", raising=False)  # the demo model is the configured default
    shutil.copytree(tiny_model_dir, paths.demo_model_dir())
    monkeypatch.setattr(device_mod, "describe", lambda: L4)
    music = workspace / "music"
    music.mkdir()
    sine(music / "t0.wav", seconds=3.0, sr=48000, freq=220)
    manifest.scan(manifest.create_dataset("demo", music))

    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception
    assert any("measuring…" in c.value for c in at.caption)
    [job] = estimates._estimate_jobs()
    request = read_json(job.job_dir / "params.json")["request"]
    assert request["settings"]["dtype"] == "bf16" and request["transformer"]["hidden_size"] == 32
    end = time.time() + 240
    while estimates.read(request) is None:
        alive = jobs.status(job.job_dir).active
        assert alive or estimates.read(request), f"the estimate job ended: {jobs.log_tail(job.job_dir)}"
        assert time.time() < end, "the estimate job did not finish in time"
        time.sleep(0.5)
    at.run()
    assert not at.exception
    assert any("Measured peak" in c.value for c in at.caption)


def test_time_divides_over_the_gpus_and_more_gpus_than_the_machine_has_is_refused(workspace, monkeypatch):
    one = preflight.estimate_minutes(1e15, {"grad_accum": 4, "gpus": 1}, 1000, "NVIDIA L4", "bf16")
    four = preflight.estimate_minutes(1e15, {"grad_accum": 4, "gpus": 4}, 1000, "NVIDIA L4", "bf16")
    assert one == pytest.approx(4 * four, rel=0.01)
    monkeypatch.setattr(device_mod, "describe", lambda: L4)
    cfg = {**TrainConfig().to_dict(), "gpus": 2, "grad_accum": 2}
    pf = preflight.run_preflight("ACE-Step/acestep-v15-xl-base-diffusers", cfg, [], 100)
    assert any(c.level == "error" and c.text.startswith("gpus 2: this machine has 1 NVIDIA GPU") for c in pf.checks)
    pf = preflight.run_preflight("ACE-Step/acestep-v15-xl-base-diffusers", {**cfg, "gpus": 1}, [], 100)
    assert not any(c.text.startswith("gpus ") for c in pf.checks)
