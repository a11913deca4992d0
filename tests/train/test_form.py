"""The Train page's settings as data: defaults and presets, saved per dataset, a past run's settings,
and time/memory estimates that mean something on the machine at hand."""
import json
import socket

from state import paths
from state.dataset import manifest
from state.fsutil import write_json
from state.model.catalog import DEMO_MODEL_ID
from state.train import form, preflight, speed


def test_presets_defaults_and_turbo_sampling():
    quick = form.defaults(DEMO_MODEL_ID, "Quick test (minutes, checks the pipeline)")
    assert (quick["max_steps"], quick["rank"], quick["model_id"]) == (30, 8, DEMO_MODEL_ID)
    assert form.defaults("ACE-Step/acestep-v15-xl-turbo-diffusers")["timestep_sampling"] == "turbo_discrete"
    assert set(form.FORM_FIELDS) <= set(quick)


def test_saved_settings_round_trip_and_a_damaged_file_loses_only_bad_values(workspace):
    manifest.create_dataset("album")
    values = {**form.defaults(DEMO_MODEL_ID), "rank": 4, "learning_rate": 3e-4}
    form.save("album", values, "Defaults")
    assert form.load_saved("album", DEMO_MODEL_ID) == (values, "Defaults")
    # hidden from scans: a dotfile, not a stray sidecar
    assert (paths.dataset_dir("album") / form.SAVED_FILE).is_file()
    assert manifest.scan(manifest.open_dataset("album")).orphans == []

    write_json(paths.dataset_dir("album") / form.SAVED_FILE,
               {"preset": "no such preset", "values": {"rank": "lots", "epochs": 7, "bogus": 1}})
    got, preset = form.load_saved("album", DEMO_MODEL_ID)
    assert (got["rank"], got["epochs"], preset) == (64, 7, "Defaults") and "bogus" not in got
    (paths.dataset_dir("album") / form.SAVED_FILE).write_text("{not json")
    assert form.load_saved("album", DEMO_MODEL_ID) is None


def test_a_past_runs_config_becomes_form_values():
    cfg = {**form.defaults("Runware/acestep-v15-base-diffusers"), "rank": 16, "manifest": "/x/dataset.jsonl",
           "sample_prompt": {"caption": "lofi", "bpm": 84}}
    got = form.from_run_config(cfg)
    assert got["rank"] == 16 and got["model_id"] == "Runware/acestep-v15-base-diffusers"
    assert got["sample_prompt"] == {"caption": "lofi", "bpm": 84} and "manifest" not in got


def fake_run(name, device="cpu", steps=30, s_per_step=3.0, setup_s=40.0, model=DEMO_MODEL_ID, clip=10.0):
    d = paths.run_dir(name)
    d.mkdir(parents=True)
    write_json(d / "job.json", {"kind": "train", "pid": None, "started_at": 1000.0, "host": socket.gethostname()})
    t0 = 1000.0
    evs = [{"t": t0, "type": "phase", "name": "load"},
           {"t": t0 + setup_s, "type": "start", "device": device, "start_step": 0, "total_steps": steps,
            "config": {"model_id": model, "batch_size": 1, "grad_accum": 1, "clip_seconds": clip}}]
    evs += [{"t": t0 + setup_s + i * s_per_step, "type": "step", "step": i, "elapsed_s": i * s_per_step}
            for i in range(1, steps + 1)]
    evs.append({"t": evs[-1]["t"] + 20.0, "type": "end", "status": "completed"})
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    return d


CPU = {"kind": "cpu", "label": "CPU only", "ram_total_gb": 16.0, "ram_available_gb": 12.0, "cpu_cores": 2}


def test_time_estimate_comes_from_a_run_measured_here(workspace):
    fake_run("run-a", s_per_step=3.0, setup_s=40.0)
    [m] = speed.measured_runs([paths.run_dir("run-a")])
    assert (m.s_per_step, m.setup_s, m.finish_s, m.device_kind) == (3.0, 40.0, 20.0, "cpu")
    cfg = {"batch_size": 1, "grad_accum": 1, "clip_seconds": 10.0}
    secs, used = speed.estimate_s([m], DEMO_MODEL_ID, "cpu", cfg, 100)
    assert secs == 40.0 + 100 * 3.0 + 20.0 and used.run_id == "run-a"
    assert speed.estimate_s([m], DEMO_MODEL_ID, "cuda", cfg, 100) is None  # another device: not comparable

    pf = preflight.Preflight()
    preflight._estimate_time(pf, DEMO_MODEL_ID, cfg, 100, CPU)
    assert pf.minutes == 6.0 and "measured on this machine from run-a" in pf.time_text


def test_no_estimate_on_a_cpu_with_nothing_measured_and_no_gpu_memory_figure(workspace, monkeypatch):
    monkeypatch.setattr(preflight.device_mod, "describe", lambda: CPU)
    pf = preflight.run_preflight(DEMO_MODEL_ID, form.defaults(DEMO_MODEL_ID), [], 30)
    assert pf.minutes is None and "no estimate yet" in pf.time_text
    assert pf.mem_gb is None and "no GPU memory to estimate" in pf.mem_text and "12.0 of 16.0 GB" in pf.mem_text
