"""bench/gpu_check.py --smoke: the GPU check's own code path, at tiny sizes on the CPU."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from locations import REPO


@pytest.mark.long
def test_gpu_check_smoke_runs_every_configuration(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    env.pop("ACELORA_HOME", None)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--steps", "3",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    for name in ("2s_ckpt_on", "4s_ckpt_off", "2s_ckpt_on_fp16_scaler"):
        assert lines[f"{name}_status"] == "completed", (name, proc.stdout[-2000:])
        assert float(lines[f"{name}_step_s"]) > 0
    assert lines["2s_ckpt_on_fp16_scaler_precision"] == "fp16 + loss scaling"
    assert float(lines["2s_ckpt_on_predicted_peak_mb"]) > 0  # the estimate job's fake-tensor peak
    assert int(lines["2s_ckpt_on_previews"]) >= 2  # the smoke run renders its previews in the first run
    assert float(lines["flops_per_step_4s"]) > float(lines["flops_per_step_2s"]) > 0
    assert lines["ab_status"] == "completed" and lines["ab_a_differs_from_b"] == "True"
    assert (tmp_path / "out" / "gpu_check.json").is_file()
