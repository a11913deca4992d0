"""Where things live in the workspace (see DESIGN.md, "Workspace").

Root = $ACELORA_HOME; else /data on a Hugging Face Space when it is writable (a mounted
storage bucket); else the current directory.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

RUNS = "lora_output"
DATASETS = "datasets"
JOBS = "jobs"
CACHE = "cache"
MODELS = "models"
DEMO_MODEL = "acelora-tiny-demo"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def _writable_dir(p: Path) -> bool:
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def root() -> Path:
    env = os.environ.get("ACELORA_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if on_space() and _writable_dir(Path("/data")):
        return Path("/data")
    return Path.cwd().resolve()


def persistent() -> bool:
    """False on a Space whose workspace is the container disk (wiped on restart)."""
    return not on_space() or root() == Path("/data") or bool(os.environ.get("ACELORA_HOME"))


def check_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape their folder or confuse a shell; say what is allowed."""
    # fullmatch: `$` in match() also accepts a trailing newline ("run-1\n")
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(
            f"{what} {str(name)[:120]!r} is not allowed: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def runs_dir() -> Path:
    return root() / RUNS


def run_dir(run_id: str) -> Path:
    return runs_dir() / check_name(run_id, "run id")


def datasets_dir() -> Path:
    return root() / DATASETS


def dataset_dir(name: str) -> Path:
    return datasets_dir() / check_name(name, "dataset name")


def jobs_dir() -> Path:
    return root() / JOBS


def job_dir(job_id: str) -> Path:
    return jobs_dir() / check_name(job_id, "job id")


def cache_dir() -> Path:
    return root() / CACHE


def models_dir() -> Path:
    return root() / MODELS


def demo_model_dir() -> Path:
    return models_dir() / DEMO_MODEL


def unique_dir(parent: Path, prefix: str) -> Path:
    """`parent/<prefix><YYYYmmdd-HHMMSS>`, with `-2`, `-3`... added if that name is taken (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d, n = Path(parent) / f"{prefix}{stamp}", 1
    while d.exists():
        n += 1
        d = Path(parent) / f"{prefix}{stamp}-{n}"
    return d


def ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
