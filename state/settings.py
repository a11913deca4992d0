"""Workspace settings (settings.json at the workspace root). Never holds a token.

The model the dashboard trains on is, in order: $ACELORA_MODEL, the saved setting, else the tiny
demo model (so a fresh install works end to end without downloading anything).
"""
from __future__ import annotations

import os
from pathlib import Path

from state import jobs, paths
from state.fsutil import note_write_failure, read_json_object, write_json
from state.model.catalog import DEMO_MODEL_ID, KNOWN_MODELS, local_dir_name

SETTINGS_FILE = "settings.json"
DEMO_MARKER = "acelora_demo.json"
# space_* and hub_sync_repo: cost control and Hub sync on a Space (state/cloud/space.py)
ALLOWED = {"model_id", "space_pause_when_done", "space_sleep_time_s", "space_idle_warn_min", "hub_sync_repo"}


def load() -> dict:
    data, _damaged = read_json_object(paths.root() / SETTINGS_FILE)  # damaged: defaults, never a crash
    return {k: v for k, v in data.items() if k in ALLOWED}


def save(**changes) -> dict:
    unknown = set(changes) - ALLOWED
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    data = {**load(), **changes}
    paths.ensure(paths.root())
    write_json(paths.root() / SETTINGS_FILE, data)
    return data


def model_id() -> str:
    return os.environ.get("ACELORA_MODEL") or load().get("model_id") or DEMO_MODEL_ID


def is_demo(model: str) -> bool:
    return model == DEMO_MODEL_ID or (Path(model) / DEMO_MARKER).is_file()


def resolve_model_dir(model: str) -> Path | None:
    """The local folder for a model id, if it is on disk (demo, downloaded, or a folder path)."""
    if model == DEMO_MODEL_ID:
        d = paths.demo_model_dir()
    elif Path(model).expanduser().is_dir():
        d = Path(model).expanduser()
    else:
        d = paths.models_dir() / local_dir_name(model)
    return d if (d / "model_index.json").is_file() else None


def local_models() -> list[str]:
    """Model folders under models/ (downloads, imports, the demo), as ids the Train page offers."""
    root = paths.models_dir()
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "model_index.json").is_file():
                if d == paths.demo_model_dir():
                    out.append(DEMO_MODEL_ID)
                else:
                    known = next((k for k in KNOWN_MODELS if local_dir_name(k) == d.name), None)
                    out.append(known or str(d))
    return out


def new_job_dir(kind: str) -> Path:
    d = paths.unique_dir(paths.jobs_dir(), f"{kind}-")
    d.mkdir(parents=True)
    return d


def ensure_demo_model_job() -> str | None:
    """Start building the demo model in the background if it is configured and missing.

    Returns the job id that is building it, or None when it is already there (or not needed).
    """
    if not is_demo(model_id()) or resolve_model_dir(DEMO_MODEL_ID) is not None:
        return None
    for d in jobs.list_jobs(paths.jobs_dir()):
        st = jobs.status(d)
        if st.kind == "demo-model" and st.active:
            return st.job_id
    try:
        d = new_job_dir("demo-model")
        jobs.launch(d, "demo-model")
    except OSError as exc:  # opening a page must not fail on a full disk; the sidebar says why
        note_write_failure(paths.jobs_dir(), exc)
        return None
    return d.name
