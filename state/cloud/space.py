"""Running on a Hugging Face Space: what hardware this is, what it costs, whether the GPU sits idle,
and the cost-control settings (pause when the queue ends, sleep time). Torch-free, like all of state/.

The platform tells a container about itself through environment variables: SPACE_ID
("owner/name"), SPACE_HOST, SPACE_AUTHOR_NAME, CPU_CORES, MEMORY and ACCELERATOR. Billing is per
minute for as long as the Space runs, busy or not, so the panel shows the price, what the current
run has cost so far, and warns when the GPU has had nothing to do for a while.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from state import jobs, paths, settings

# Hourly prices in USD of Space hardware flavours (the names `HfApi.request_space_hardware` takes),
# from https://huggingface.co/docs/hub/spaces-gpus, read on 2026-11-25. Prices may change: the
# Space's Settings page is the authority, and ACELORA_PRICE_PER_HOUR overrides this table.
# Flavours with no published price there are left out and shown as "price unknown".
PRICES_USD_PER_HOUR = {
    "cpu-basic": 0.0,
    "cpu-upgrade": 0.03,
    "t4-small": 0.40,
    "t4-medium": 0.60,
    "l4x1": 0.80,
    "l4x4": 3.80,
    "l40sx1": 1.80,
    "l40sx4": 8.30,
    "l40sx8": 23.50,
    "a10g-small": 1.00,
    "a10g-large": 1.50,
    "a10g-largex2": 3.00,
    "a10g-largex4": 5.00,
    "a100-large": 4.00,
}
PRICE_SOURCE = "huggingface.co/docs/hub/spaces-gpus, read 2026-11-25 (prices may change)"

# Suggested flavours for ACE-Step 1.5 LoRA training (GPU memory in GB); shown on the panel and README.
SUGGESTED = {"l4x1": 24, "a10g-large": 24, "l40sx1": 48, "a100-large": 80}

WATCH_KIND = "space-watch"  # the job that pauses the Space; it never counts as work itself
IDLE_WARN_MIN = 15          # default minutes without a job before the panel warns about an idle GPU
SLEEP_CHOICES_S = {"never": -1, "15 min": 900, "30 min": 1800, "1 hour": 3600, "2 hours": 7200,
                   "10 hours": 36000}


def on_space() -> bool:
    return paths.on_space()


def space_id() -> str | None:
    return os.environ.get("SPACE_ID") or None


def hardware() -> str | None:
    """The hardware flavour name (e.g. "l4x1"), or what the platform says when it is not a flavour name.

    ACELORA_SPACE_HARDWARE wins (set it as a Space variable if the platform's value is unclear);
    then ACCELERATOR; on a Space without an accelerator that is CPU ("cpu-basic" unless CPU_CORES says 8).
    """
    explicit = os.environ.get("ACELORA_SPACE_HARDWARE") or os.environ.get("ACCELERATOR")
    if explicit:
        return explicit.strip().lower()
    if not on_space():
        return None
    return "cpu-upgrade" if os.environ.get("CPU_CORES", "").strip() == "8" else "cpu-basic"


def price_per_hour(flavour: str | None = None) -> float | None:
    override = os.environ.get("ACELORA_PRICE_PER_HOUR")
    if override:
        try:
            return float(override)
        except ValueError:
            pass  # a typo in the variable must not break the sidebar; fall back to the table
    flavour = flavour if flavour is not None else hardware()
    return PRICES_USD_PER_HOUR.get(flavour or "")


def is_gpu(flavour: str | None) -> bool:
    return bool(flavour) and not flavour.startswith("cpu")


def cost(seconds: float, price: float | None) -> float | None:
    return None if price is None else max(0.0, seconds) / 3600.0 * price


def container_started_at() -> float | None:
    """When this container started (its PID 1), i.e. when billing for this Space session began."""
    import psutil

    try:
        return psutil.Process(1).create_time()
    except psutil.Error:
        return None


@dataclass
class SpaceStatus:
    space_id: str | None          # "owner/name", None when not on a Space
    host: str | None              # the Space's own URL host
    hardware: str | None          # flavour name, e.g. "l4x1"
    price: float | None           # USD per hour, None when unknown
    cpu_cores: str | None
    memory: str | None
    persistent: bool              # False: the workspace is the container disk, wiped on restart
    workspace: Path


def status() -> SpaceStatus:
    hw = hardware()
    return SpaceStatus(space_id(), os.environ.get("SPACE_HOST"), hw, price_per_hour(hw),
                       os.environ.get("CPU_CORES"), os.environ.get("MEMORY"), paths.persistent(), paths.root())


# ---- work, cost, idleness ------------------------------------------------------------------------

def work_jobs() -> list[jobs.JobStatus]:
    """Active jobs that are work (training, labelling, uploads...), i.e. anything but the pause watcher."""
    return [j for j in jobs.active_jobs() if j.kind != WATCH_KIND]


def watchers() -> list[jobs.JobStatus]:
    return [j for j in jobs.active_jobs() if j.kind == WATCH_KIND]


def current_run() -> jobs.JobStatus | None:
    """The training run that is running now (queued runs cost nothing extra yet)."""
    return next((j for j in work_jobs() if j.kind == "train" and j.status == "running"), None)


def run_cost(job: jobs.JobStatus, price: float | None, now: float | None = None) -> float | None:
    if not job.started_at:
        return None
    end = job.ended_at or (now or time.time())
    return cost(end - job.started_at, price)


def idle_since(now: float | None = None) -> float | None:
    """Since when no work has run (None while some does): the last job's end, or the container's start."""
    if work_jobs():
        return None
    ends = [jobs.status(d).ended_at for d in jobs.list_jobs()]
    candidates = [t for t in ends if t] + [t for t in (container_started_at(),) if t]
    return max(candidates) if candidates else (now or time.time())


def idle_minutes(now: float | None = None) -> float | None:
    now = now or time.time()
    since = idle_since(now)
    return None if since is None else max(0.0, (now - since) / 60.0)


# ---- cost-control settings (settings.json; never a token) ----------------------------------------

def prefs() -> dict:
    s = settings.load()
    return {"pause_when_done": bool(s.get("space_pause_when_done", False)),
            "sleep_time_s": s.get("space_sleep_time_s"),
            "idle_warn_min": int(s.get("space_idle_warn_min") or IDLE_WARN_MIN),
            "hub_sync_repo": s.get("hub_sync_repo") or ""}


def save_prefs(pause_when_done: bool | None = None, sleep_time_s: int | None = None,
               idle_warn_min: int | None = None, hub_sync_repo: str | None = None) -> dict:
    changes = {}
    if pause_when_done is not None:
        changes["space_pause_when_done"] = bool(pause_when_done)
    if sleep_time_s is not None:
        if int(sleep_time_s) != -1 and int(sleep_time_s) < 300:
            raise ValueError("sleep time: use -1 (never) or at least 300 seconds")
        changes["space_sleep_time_s"] = int(sleep_time_s)
    if idle_warn_min is not None:
        changes["space_idle_warn_min"] = max(1, int(idle_warn_min))
    if hub_sync_repo is not None:
        changes["hub_sync_repo"] = hub_sync_repo.strip()
    return settings.save(**changes) if changes else settings.load()


def arm_pause(token: str, quiet_s: int = 120, poll_s: float = 5.0) -> Path:
    """Start the detached watcher that pauses this Space once no work has run for `quiet_s` seconds.

    The token goes to the child through its environment only (never params.json), so pausing still
    happens with no browser open and nothing on disk can leak it.
    """
    from state.fsutil import write_json

    sid = space_id()
    if not sid:
        raise RuntimeError("Not running on a Hugging Face Space (SPACE_ID is not set): nothing to pause.")
    if not token:
        raise ValueError("A Hugging Face token with write access is needed to pause the Space.")
    for w in watchers():
        return w.job_dir  # one watcher is enough
    d = settings.new_job_dir(WATCH_KIND)
    write_json(d / "params.json", {"space_id": sid, "quiet_s": quiet_s, "poll_s": poll_s})
    jobs.launch(d, WATCH_KIND, env={"HF_TOKEN": token})
    return d


def disarm_pause() -> int:
    """Stop every pause watcher; returns how many were asked to stop."""
    found = watchers()
    for w in found:
        jobs.stop(w.job_dir)
    return len(found)
