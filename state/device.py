"""What hardware jobs will run on, found without importing torch (the dashboard must stay light),
and who holds each GPU right now (the lease, DESIGN.md "One GPU, many jobs").

The lease: every job that puts a model on a GPU first takes that GPU's lease, a JSON file under the
workspace naming the holder (job folder, kind, pid, create_time). Taking and releasing happen under an
exclusive file lock, so two jobs never both believe they hold it. A lease whose holder process is
gone (killed, crashed; pid + create_time no longer match) is free: the next job takes it over.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from state import jobs, paths
from state.fsutil import atomic_write_text, locked


def gpus() -> list[dict]:
    """NVIDIA GPUs via nvidia-smi: name, total and used memory (MiB), utilisation (%), compute capability."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used,utilization.gpu,compute_cap",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4:
            try:
                g = {"name": parts[0], "mem_total_mb": float(parts[1]), "mem_used_mb": float(parts[2]),
                     "util_pct": float(parts[3])}
            except ValueError:
                continue
            g["compute_cap"] = parts[4] if len(parts) > 4 and parts[4][:1].isdigit() else None
            g["precision"] = precision_for(g)
            found.append(g)
    return found


def precision_for(gpu: dict) -> str:
    """How training runs on this GPU (trainer/train/precision.py decides the same from torch):
    bf16 from compute capability 8.0 (Ampere) on, fp16 with loss scaling before (T4 7.5, V100 7.0)."""
    cap = gpu.get("compute_cap")
    try:
        major = int(str(cap).split(".")[0]) if cap else None
    except ValueError:
        major = None
    if major is None:  # an older driver without compute_cap: the names Spaces rent without bf16
        return "fp16 + loss scaling" if any(n in gpu.get("name", "") for n in ("T4", "V100", "P100")) else "bf16"
    return "bf16" if major >= 8 else "fp16 + loss scaling"


def describe() -> dict:
    """A summary for the sidebar: kind (cuda|mps|cpu), a label, and memory figures."""
    vm = psutil.virtual_memory()
    base = {"ram_total_gb": round(vm.total / 2**30, 1), "ram_available_gb": round(vm.available / 2**30, 1),
            "cpu_cores": os.cpu_count() or 1}
    g = gpus()
    if g:
        first = g[0]
        extra = f" (+{len(g) - 1} more)" if len(g) > 1 else ""
        return {**base, "kind": "cuda", "label": f"{first['name']}{extra}", "precision": first["precision"],
                "gpu_mem_total_gb": round(first["mem_total_mb"] / 1024, 1), "gpus": g}
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return {**base, "kind": "mps", "label": "Apple Silicon GPU (MPS)", "precision": "fp32"}
    return {**base, "kind": "cpu", "label": f"CPU only ({base['cpu_cores']} cores): training will be very slow",
            "precision": "fp32"}


def free_disk_gb(path: str) -> float:
    try:
        return round(shutil.disk_usage(path).free / 2**30, 1)
    except OSError:
        return 0.0


# ---- the GPU lease ------------------------------------------------------------------------------

LEASE_DIR = ".acelora/gpu-leases"


@dataclass(frozen=True)
class Lease:
    gpu: str            # "cuda:0"
    job_dir: str
    kind: str           # the job kind (train, ab, label, ...)
    pid: int
    create_time: float
    since: float        # unix seconds when it was taken

    @property
    def holder(self) -> str:
        """What a waiting job shows: "<job folder> (<kind>)"."""
        return f"{Path(self.job_dir).name} ({self.kind})"

    @property
    def alive(self) -> bool:
        return jobs.live_process(self.pid, self.create_time) is not None


def lease_path(gpu: str) -> Path:
    return paths.root() / LEASE_DIR / f"{gpu.replace(':', '-')}.json"


def read_lease(gpu: str) -> Lease | None:
    """The recorded lease (alive or not), or None; a damaged file counts as no lease."""
    try:
        return Lease(**json.loads(lease_path(gpu).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def lease_holder(gpu: str) -> Lease | None:
    """The live holder of `gpu`, or None when it is free."""
    lease = read_lease(gpu)
    return lease if lease is not None and lease.alive else None


def try_acquire(gpu: str, job_dir: Path, kind: str) -> tuple[Lease | None, Lease | None]:
    """Take `gpu` for this process if it is free: (None, taken_over) on success, where `taken_over` is
    a dead holder's lease that was replaced (or None); (holder, None) when another live job holds it."""
    path = lease_path(gpu)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = psutil.Process()
    with locked(path):
        cur = read_lease(gpu)
        if cur is not None and cur.alive and cur.pid != me.pid:
            return cur, None
        mine = Lease(gpu, str(Path(job_dir).resolve()), kind, me.pid, me.create_time(), time.time())
        atomic_write_text(path, json.dumps(asdict(mine)))
        return None, (cur if cur is not None and cur.pid != me.pid else None)


def release(gpu: str) -> None:
    """Give `gpu` back if this process holds it (a no-op otherwise)."""
    path = lease_path(gpu)
    if not path.parent.is_dir():
        return
    with locked(path):
        cur = read_lease(gpu)
        if cur is not None and cur.pid == os.getpid():
            path.unlink(missing_ok=True)
