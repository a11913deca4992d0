"""Experiment trackers a run may also log to, beside its own events.jsonl: where each keeps its logs
and how to open them. Torch-free, so the Runs page and the config share it with the job
(trainer/train/trackers.py writes the logs).

Each tracker is an optional pip package, installed only by those who choose it: the job refuses to
start, naming the package, when `report_to` lists one that is missing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from state import paths

# name in `report_to` -> the pip requirement that provides it (the versions this code was tested with)
TRACKERS = {"tensorboard": "tensorboard==2.21.0", "trackio": "trackio==0.43.0"}
TENSORBOARD_DIR = "tensorboard"   # inside the run folder: one TensorBoard run per AceLoRA run
TRACKIO_PROJECT = "acelora"       # every run is one trackio run of this project, so they compare side by side


@dataclass(frozen=True)
class TrackerLog:
    name: str       # tensorboard | trackio
    folder: Path    # where its files are
    command: str    # the shell command that opens its dashboard on them


def tensorboard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TENSORBOARD_DIR


def trackio_dir() -> Path:
    """One trackio store for the workspace (trackio keeps a project's runs in one database), unless the
    environment names another (TRACKIO_DIR, trackio's own setting)."""
    return Path(os.environ.get("TRACKIO_DIR") or paths.root() / "trackio")


def installed(name: str) -> bool:
    """Whether the tracker's package is importable here (found, not imported: the dashboard stays light)."""
    import importlib.util

    return importlib.util.find_spec(name) is not None


def missing_message(name: str) -> str:
    return (f"report_to lists {name!r}, but its package is not installed in this environment. Install it "
            f"with `pip install {TRACKERS[name]}`, or remove {name!r} from report_to.")


def logs_for(run_dir: Path, report_to: list) -> list[TrackerLog]:
    """The tracker logs a run's config asked for, with the command that shows each."""
    out = []
    if "tensorboard" in report_to:
        d = tensorboard_dir(run_dir)
        out.append(TrackerLog("tensorboard", d, f"tensorboard --logdir {d.parent.parent}"))
    if "trackio" in report_to:
        d = trackio_dir()
        out.append(TrackerLog("trackio", d, f"TRACKIO_DIR={d} trackio show --project {TRACKIO_PROJECT}"))
    return out
