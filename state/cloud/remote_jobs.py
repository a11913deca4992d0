"""Training on rented hardware through Hugging Face Jobs, the dashboard's side (torch-free).

A remote run is an ordinary run folder, lora_output/<run>/, whose job is `remote-train`: a local
watcher (trainer/cloud/remote.py) that pushes the dataset to a private Hub dataset repository,
starts a Job with huggingface_hub's Jobs API, mirrors the Job's events into the run's own
events.jsonl (so the live view, charts and Runs page read it like a local run), forwards Stop,
and at the end pulls checkpoints/ and final/ back. `remote.json` in the run folder records the
Job (id, flavour, image, repos, stage, times); it never holds a token: the token reaches the
watcher through its environment and the Job as a Jobs *secret*.

The Job runs the project's own Docker image (the Dockerfile, built as your AceLoRA Space), not a
`uv` script: the image already holds CUDA PyTorch and the exact pinned requirements and this
code at /app, so a Job starts training at once instead of installing several GB of wheels per
run, and the code that trains is the code the dashboard was tested with.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from state import jobs, paths
from state.cloud import space
from state.cloud.hub import missing_token
from state.fsutil import read_json_object, write_json

KIND = "remote-train"
WORKER_KIND = "remote-worker"
RECORD = "remote.json"
DATA_REPO = "acelora-jobs-data"  # private dataset repo: <run>/ holds config, manifest, audio, cache
RUNS_REPO = "acelora-jobs-runs"  # private model repo: <run>/ is the Hub sync of the remote run
APP_DIR = "/app"                 # where the Dockerfile puts the code (its WORKDIR)
TIMEOUT_S = 24 * 3600            # a Job that hangs is ended by the platform after this long
STOP_GRACE_S = 600               # after Stop, wait this long for the save before cancelling the Job

# Jobs hardware flavours (huggingface_hub's JobHardware names) we offer: the ones with a published
# price in the Space hardware table. Jobs are billed for the same hardware at the same rates, by
# the minute while running. CPU flavours are listed for the tiny demo model, not for real training.
FLAVORS = list(space.PRICES_USD_PER_HOUR)
SUGGESTED = space.SUGGESTED

# Jobs API stage -> our job status
STAGES = {"SCHEDULING": "queued", "RUNNING": "running", "COMPLETED": "completed",
          "CANCELED": "stopped", "ERROR": "failed", "DELETED": "failed"}
TERMINAL_STAGES = ("COMPLETED", "CANCELED", "ERROR", "DELETED")


def check_flavor(flavor: str) -> str:
    f = (flavor or "").strip().lower()
    if f not in FLAVORS:
        raise ValueError(f"Unknown HF Jobs hardware flavour {flavor!r}. Use one of: {', '.join(FLAVORS)} "
                         "(suggested for ACE-Step LoRA: " + ", ".join(SUGGESTED) + ").")
    return f


def price(flavor: str) -> float | None:
    """USD per hour of a flavour (the Space table; the Job's watcher prefers the Jobs API's own list)."""
    return space.PRICES_USD_PER_HOUR.get(flavor)


def flavor_label(flavor: str) -> str:
    p = price(flavor)
    mem = SUGGESTED.get(flavor)
    return f"{flavor}" + (f" ({mem} GB)" if mem else "") + (f" · ${p:.2f}/h" if p is not None else " · price unknown")


def default_image() -> str:
    """ACELORA_JOBS_IMAGE, else this Space's own image when the dashboard runs on a Space, else ''."""
    if os.environ.get("ACELORA_JOBS_IMAGE"):
        return os.environ["ACELORA_JOBS_IMAGE"].strip()
    sid = space.space_id()
    return f"hf.co/spaces/{sid}" if sid else ""


def check_image(image: str) -> str:
    image = (image or "").strip()
    if not image:
        raise ValueError("Name the Docker image the Job runs: your AceLoRA Space as 'hf.co/spaces/<you>/acelora' "
                         "(README, 'Run on a Hugging Face Space'), or an image built from this Dockerfile.")
    return image


# ---- the record -----------------------------------------------------------------------------------

def record(run_dir: Path) -> dict:
    return read_json_object(Path(run_dir) / RECORD)[0]


def is_remote(run_dir: Path) -> bool:
    return (Path(run_dir) / RECORD).is_file()


def update_record(run_dir: Path, **fields) -> dict:
    rec = {**record(run_dir), **fields}
    write_json(Path(run_dir) / RECORD, rec)
    return rec


def cost_so_far(rec: dict, now: float | None = None) -> float | None:
    """USD spent on the current Job: its running time (Jobs API) times the flavour's hourly price."""
    started = rec.get("started_at")
    if not started:
        return 0.0 if rec.get("price_per_hour") is not None else None
    end = rec.get("finished_at") or (now or time.time())
    return space.cost(end - started, rec.get("price_per_hour"))


def status_line(run_dir: Path, now: float | None = None) -> str:
    rec = record(run_dir)
    if not rec:
        return ""
    parts = [f"HF Jobs · {rec.get('flavor')}"]
    if rec.get("job_id"):
        parts.append(f"job {rec['job_id']} · {rec.get('stage') or 'starting'}")
    else:
        parts.append("uploading the dataset")
    c = cost_so_far(rec, now)
    before = float(rec.get("spent_before") or 0)
    parts.append("cost unknown" if c is None else f"${c:.2f} so far"
                 + (f" (${c + before:.2f} with earlier Jobs of this run)" if before else ""))
    if rec.get("message"):
        parts.append(str(rec["message"]))
    return " · ".join(parts)


# ---- starting ----------------------------------------------------------------------------------

def start_remote(config: dict, manifest_rows: list[dict], flavor: str, image: str, token: str | None,
                 run_id: str | None = None, namespace: str | None = None, poll_s: float = 15.0,
                 sync_s: float = 60.0) -> Path:
    """A new run trained on HF Jobs: config + dataset snapshot written, then the watcher launched."""
    from state.train import runs

    flavor, image = check_flavor(flavor), check_image(image)
    if not token:
        raise missing_token("upload")
    _check_model(config.get("model_id"))
    run_dir = paths.run_dir(run_id or runs.new_run_id("hfjob"))
    run_dir.mkdir(parents=True)
    snapshot = run_dir / runs.DATASET_SNAPSHOT
    snapshot.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in manifest_rows), encoding="utf-8")
    write_json(run_dir / runs.CONFIG, {**config, "manifest": str(snapshot)})
    return _launch(run_dir, flavor, image, token, namespace, poll_s, sync_s, resume=False)


def resume_remote(run_dir: Path, token: str | None, flavor: str | None = None, changes: dict | None = None,
                  poll_s: float | None = None, sync_s: float | None = None) -> Path:
    """Continue a stopped, failed or died run (remote or local) on HF Jobs from its latest checkpoint:
    the local checkpoints go to the Hub first, so one trained here resumes there too."""
    from state.train import runs

    run_dir = Path(run_dir)
    if jobs.status(run_dir).active:
        raise RuntimeError(f"{run_dir.name} is still running: stop it first.")
    if not token:
        raise missing_token("upload")
    if can_attach(run_dir):
        jobs.launch(run_dir, KIND, ["--resume", "attach"], env={"HF_TOKEN": token})
        return run_dir
    if not runs.checkpoints(run_dir):
        raise RuntimeError(f"{run_dir.name} has no checkpoint to resume from.")
    if not token:
        raise missing_token("upload")
    rec = record(run_dir)
    flavor = check_flavor(flavor or rec.get("flavor") or "")
    image = check_image(rec.get("image") or default_image())
    cfg, problem = runs.read_config(run_dir)
    if problem:
        raise RuntimeError(problem)
    _check_model(cfg.get("model_id"))
    if changes:
        write_json(run_dir / runs.CONFIG, {**cfg, **changes})
    return _launch(run_dir, flavor, image, token, rec.get("namespace"), poll_s or rec.get("poll_s", 15.0),
                   sync_s or rec.get("sync_s", 60.0), resume=True)


def can_attach(run_dir: Path) -> bool:
    """The watcher is gone (this machine restarted) but its Job never reported an end: follow it again
    rather than start a second one beside it."""
    rec = record(run_dir)
    return bool(rec.get("job_id")) and rec.get("stage") not in TERMINAL_STAGES and not jobs.status(run_dir).active


def _check_model(model_id) -> None:
    from state.model.catalog import DEMO_MODEL_ID

    m = str(model_id or "")
    if m != DEMO_MODEL_ID and (m.startswith(("/", ".", "~")) or Path(m).expanduser().is_dir()):
        raise ValueError(f"The model {m!r} is a folder on this machine, which an HF Job cannot see. "
                         "Pick the Hub id it came from (the Job downloads it).")


def _launch(run_dir: Path, flavor: str, image: str, token: str, namespace: str | None, poll_s: float,
            sync_s: float, resume: bool) -> Path:
    rec = record(run_dir)
    write_json(run_dir / RECORD, {
        "flavor": flavor, "image": image, "namespace": namespace,
        "data_repo": rec.get("data_repo") or DATA_REPO, "runs_repo": rec.get("runs_repo") or RUNS_REPO,
        "attempt": uuid.uuid4().hex[:12], "attempts": int(rec.get("attempts", 0)) + 1, "resume": resume,
        "price_per_hour": price(flavor), "poll_s": float(poll_s), "sync_s": float(sync_s),
        "job_id": None, "stage": None, "started_at": None, "finished_at": None, "message": None,
        "spent_before": float(rec.get("spent_before") or 0) + (cost_so_far(rec) or 0.0) if rec else 0.0,
    })
    jobs.launch(run_dir, KIND, ["--resume", "latest"] if resume else [], env={"HF_TOKEN": token})
    return run_dir
