"""Batch training without the dashboard: the exact command the README documents, on the tiny model."""
from __future__ import annotations

import json
import subprocess
import sys

from locations import REPO
from train_kit import end_of, read_events


def test_headless_train_command(train_kit, tmp_path):
    cfg_path = train_kit.config(tmp_path / "my_config.json", max_steps=9, checkpoint_every=2)
    cfg = json.loads(cfg_path.read_text())
    del cfg["manifest"]  # the manifest comes from --manifest, as documented
    cfg_path.write_text(json.dumps(cfg))
    job_dir = train_kit.home / "lora_output" / "my-run"
    out = subprocess.run([sys.executable, "trainer/run.py", "train", "--job-dir", str(job_dir),
                          "--config", str(cfg_path), "--manifest", str(train_kit.manifest),
                          "--set", "max_steps=4", "--set", "val_every=0"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert end_of(job_dir)["status"] == "completed"
    assert [e["step"] for e in read_events(job_dir, "step")][-1] == 4
    resolved = json.loads((job_dir / "config.json").read_text())
    assert resolved["manifest"] == str(train_kit.manifest) and resolved["max_steps"] == 4  # --set beat the file
    assert resolved["val_every"] == 0
    assert (job_dir / "checkpoints" / "step-000004").is_dir()
    for name in ("pytorch_lora_weights.safetensors", "adapter_model.safetensors", "adapter_config.json",
                 "training_meta.json"):
        assert (job_dir / "final" / name).is_file(), name


def test_bad_set_is_refused_naming_the_field(train_kit):
    job = train_kit.run_dir("bad-set")
    assert train_kit.run(job, "--set", "rnak=8") == 1
    err = read_events(job, "error")[0]
    assert "--set" in err["message"] and "'rnak'" in err["message"] and "'rank'" in err["message"]
    assert train_kit.run(job, "--set", "rank=0") == 1
    assert "rank" in read_events(job, "error")[-1]["message"]
    assert not read_events(job, "phase")  # refused before anything loaded
