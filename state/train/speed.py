"""How fast past runs went on this machine: the basis of a time estimate that means something here.

A run's `start` event names its device and settings; its last `step` event says how long the steps
took; the gap before `start` is loading and preprocessing, the gap after the last step is export and
the final preview. Arithmetic on a model's size says little about a CPU or about a tiny model whose
time is all overhead, so a measured run of the same model on the same kind of device wins.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from state import jobs
from state.events import EVENTS_FILE, last_event, parse_lines

HEAD_BYTES = 256 * 1024  # `start` comes after the load and per-track preprocess phases


@dataclass(frozen=True)
class Measured:
    run_id: str
    device_kind: str        # cpu | cuda | mps
    model_id: str
    s_per_step: float       # wall seconds per optimizer step, as trained
    work_per_step: float    # samples per step x seconds per sample (what a step costs, roughly)
    setup_s: float          # first event to `start`: loading and preprocessing
    finish_s: float         # last step to `end`: export and the final preview
    t: float                # when the run started (newest wins)


def device_kind(device: str | None) -> str:
    d = (device or "").split(":")[0].lower()
    return d if d in ("cpu", "cuda", "mps") else "cpu"


def work_per_step(cfg: dict) -> float:
    seconds = cfg.get("clip_seconds") or cfg.get("max_seconds") or 30.0  # 0 = whole tracks, capped at max_seconds
    return float(cfg.get("batch_size", 1) * cfg.get("grad_accum", 1) * seconds)


def _head_events(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as f:
            data = f.read(HEAD_BYTES)
    except OSError:
        return []
    return parse_lines(data.split(b"\n")[:-1])  # the last piece may be cut


@lru_cache(maxsize=256)
def _measure(run_dir: str, size: int, mtime: float) -> Measured | None:
    # keyed by the events file's size and mtime: each finished run is read once per process
    path = Path(run_dir) / EVENTS_FILE
    head = _head_events(path)
    first_start = next((e for e in head if e.get("type") == "start"), None)
    if first_start is None:
        return None
    # a resumed run's steps were timed by its latest launch: measure from the latest start
    start = last_event(path, ["start"]) or first_start
    first = next((e for e in head if e.get("type") != "queued"), first_start)
    last = last_event(path, ["step"])
    end = last_event(path, ["end"])
    done = (last or {}).get("step", 0) - start.get("start_step", 0)
    if not last or done < 3 or not last.get("elapsed_s") or last.get("t", 0) < start.get("t", 0):
        return None  # too few steps to time, or the last step belongs to another launch
    cfg = start.get("config") or {}
    finish = max(0.0, end["t"] - last["t"]) if end and end.get("t", 0) >= last["t"] else 0.0
    return Measured(Path(run_dir).name, device_kind(start.get("device")), cfg.get("model_id", ""),
                    last["elapsed_s"] / done, work_per_step(cfg),
                    max(0.0, first_start.get("t", 0.0) - first.get("t", first_start.get("t", 0.0))),
                    finish, start.get("t", 0.0))


def measured_runs(run_dirs: list[Path]) -> list[Measured]:
    """Runs started on this host whose speed can be read, newest first."""
    host = socket.gethostname()
    out = []
    for d in run_dirs:
        if jobs.job_info(d).get("host", host) != host:
            continue  # a run restored from Hub sync or copied in trained elsewhere
        try:
            s = os.stat(Path(d) / EVENTS_FILE)
        except OSError:
            continue
        m = _measure(str(d), s.st_size, s.st_mtime)
        if m is not None:
            out.append(m)
    return sorted(out, key=lambda m: m.t, reverse=True)


def estimate_s(past: list[Measured], model_id: str, kind: str, cfg: dict, total_steps: int) -> tuple[float, Measured] | None:
    """Seconds a run of `cfg` would take here, scaled from the newest comparable run, and that run."""
    same = next((m for m in past if m.model_id == model_id and m.device_kind == kind), None)
    if same is None:
        return None
    ratio = work_per_step(cfg) / same.work_per_step if same.work_per_step else 1.0
    return same.setup_s + total_steps * same.s_per_step * ratio + same.finish_s, same
