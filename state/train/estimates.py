"""Measured memory/FLOP estimates of a training step, cached per (model shape, settings).

A *request* names everything that changes a step's memory: the DiT config (state.train.shapes) and
the settings below. The `estimate` job (trainer/train/estimate.py) runs one fake-tensor step for it
and writes the result to <workspace>/cache/estimates/<key>.json; the dashboard only reads that file,
or starts the job when it is missing. Stdlib only.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from state import jobs, paths, settings
from state.fsutil import read_json_object, write_json
from state.train import shapes
from state.train.config import TrainConfig

VERSION = 1          # bump when the measurement changes, so old cache files stop matching
KIND = "estimate"    # the job kind in trainer/run.py
# GPUs without bf16 train in fp16 (ACESTEP.md §3: bf16 exists on Ampere and newer; T4 and V100 have none)
NO_BF16_GPUS = ("T4", "V100", "P100", "P40", "P4", "K80", "M60", "TITAN V", "RTX 20", "GTX")


def dtype_for(device: str = "auto", gpu_name: str = "") -> str:
    """bf16 | fp16 | fp32: the config's explicit dtype (device "cuda:fp16"), else what the GPU supports."""
    for part in (device or "").lower().split(":"):
        if part in ("fp32", "float32"):
            return "fp32"
        if part in ("fp16", "float16"):
            return "fp16"
        if part in ("bf16", "bfloat16"):
            return "bf16"
    return "fp16" if any(n in (gpu_name or "") for n in NO_BF16_GPUS) else "bf16"


def train_seconds(cfg: dict, rows: list[dict] | None = None) -> float:
    """The longest stretch of audio one sample feeds the DiT: the crop, or the longest track when
    training on whole tracks, never more than the track cap (max_seconds)."""
    longest = max((float(r.get("seconds") or 0) for r in rows or [] if r.get("status") != "error"), default=0.0)
    cap = float(cfg["max_seconds"])
    if cfg["clip_seconds"] > 0:
        want = cfg["clip_seconds"] if longest <= 0 else min(cfg["clip_seconds"], longest)
    else:
        want = longest if longest > 0 else cap
    return min(want, cap)


def settings_for(cfg: dict, rows: list[dict] | None = None, *, dtype: str | None = None, gpu_name: str = "",
                 seconds: float | None = None) -> dict:
    """What in a (possibly partial) training config changes a step's memory or FLOPs."""
    c = {**TrainConfig().to_dict(), **(cfg or {})}
    secs = train_seconds(c, rows) if seconds is None else float(seconds)
    return {
        "frames": max(1, round(secs * shapes.LATENTS_PER_SECOND)),
        "batch_size": int(c["batch_size"]),
        "rank": int(c["rank"]),
        "target_modules": sorted(c["target_modules"]),
        "target_blocks": sorted(c["target_blocks"]),
        "gradient_checkpointing": bool(c["gradient_checkpointing"]),
        "dtype": dtype or dtype_for(c["device"], gpu_name),
        "optimizer": c["optimizer"],
        "lora_dropout": float(c["dropout"]) > 0,  # dropout 0 makes peft skip the dropped copies
        "cond_tokens": shapes.COND_TOKENS,
        "base_quant": c["base_quant"],  # int8 halves the frozen blocks' weights (trainer/train/quant.py)
    }


def request_for(model_id: str, cfg: dict, rows: list[dict] | None = None, *, dtype: str | None = None,
                gpu_name: str = "", seconds: float | None = None) -> dict | None:
    """The estimate request for a model and a training config; None for a model of unknown shape."""
    dit = shapes.dit_config(model_id)
    if dit is None:
        return None
    return {"version": VERSION, "transformer": dit,
            "settings": settings_for(cfg, rows, dtype=dtype, gpu_name=gpu_name, seconds=seconds)}


def key(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:24]


def cache_path(request: dict) -> Path:
    return paths.cache_dir() / "estimates" / f"{key(request)}.json"


def read(request: dict) -> dict | None:
    """The cached result for this request (it may hold an `error`), or None when never measured."""
    data = read_json_object(cache_path(request))[0]  # damaged: measured again
    return data if isinstance(data, dict) and data.get("request") == request else None


def write(request: dict, result: dict) -> Path:
    path = cache_path(request)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"request": request, **result})
    return path


def _estimate_jobs() -> list[jobs.JobStatus]:
    found = []
    for d in jobs.list_jobs(paths.jobs_dir()):
        if jobs.job_info(d).get("kind") == KIND:
            found.append(jobs.reconcile(d))
    return found


def job_for(request: dict) -> jobs.JobStatus | None:
    """The newest estimate job started for this request, if any."""
    k = key(request)
    mine = [s for s in _estimate_jobs() if read_json_object(s.job_dir / "params.json")[0].get("key") == k]
    return max(mine, key=lambda s: s.started_at or 0) if mine else None


def start(request: dict) -> Path | None:
    """Start measuring `request` unless it is cached or being measured. One estimate job at a time:
    while another runs this returns None, and the caller asks again later."""
    if read(request) is not None:
        return None
    running = [s for s in _estimate_jobs() if s.active]
    k = key(request)
    for s in running:
        if read_json_object(s.job_dir / "params.json")[0].get("key") == k:
            return s.job_dir
    if running:
        return None
    d = settings.new_job_dir(KIND)
    write_json(d / "params.json", {"key": k, "request": request})
    jobs.launch(d, KIND)
    return d
