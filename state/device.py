"""What hardware jobs will run on, found without importing torch (the dashboard must stay light)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess

import psutil


def gpus() -> list[dict]:
    """NVIDIA GPUs via nvidia-smi: name, total and used memory (MiB), utilisation (%)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used,utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            try:
                found.append({"name": parts[0], "mem_total_mb": float(parts[1]), "mem_used_mb": float(parts[2]),
                              "util_pct": float(parts[3])})
            except ValueError:
                continue
    return found


def describe() -> dict:
    """A summary for the sidebar: kind (cuda|mps|cpu), a label, and memory figures."""
    vm = psutil.virtual_memory()
    base = {"ram_total_gb": round(vm.total / 2**30, 1), "ram_available_gb": round(vm.available / 2**30, 1),
            "cpu_cores": os.cpu_count() or 1}
    g = gpus()
    if g:
        first = g[0]
        extra = f" (+{len(g) - 1} more)" if len(g) > 1 else ""
        return {**base, "kind": "cuda", "label": f"{first['name']}{extra}",
                "gpu_mem_total_gb": round(first["mem_total_mb"] / 1024, 1), "gpus": g}
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return {**base, "kind": "mps", "label": "Apple Silicon GPU (MPS)"}
    return {**base, "kind": "cpu", "label": f"CPU only ({base['cpu_cores']} cores): training will be very slow"}


def free_disk_gb(path: str) -> float:
    try:
        return round(shutil.disk_usage(path).free / 2**30, 1)
    except OSError:
        return 0.0
