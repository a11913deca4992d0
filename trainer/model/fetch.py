"""Download a diffusers-format model from the Hub into <workspace>/models/<org--name>/.

The token comes only from the HF_TOKEN environment variable and is handed straight to
huggingface_hub: it is never written to params, events, logs or the model folder.
Interrupted downloads resume: snapshot_download keeps partial files under the target's .cache/.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from state import paths
from state.cloud.hub import HubError, explain, hf_token  # noqa: F401 - re-exported for callers
from state.fsutil import write_json
from state.model.catalog import local_dir_name

POLL_S = 1.0


# The Hub error mapping and the token rule are shared with publish, hub-sync and the Space panel.
FetchError = HubError  # the name this module's callers and tests know


def target_dir(repo_id: str) -> Path:
    return paths.models_dir() / paths.check_name(local_dir_name(repo_id), "model folder")


def _dir_bytes(folder: Path) -> int:
    """Bytes on disk under `folder`, partial downloads included (they live under .cache/)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass  # a file renamed from .incomplete between listing and stat
    return total


def plan(repo_id: str, revision: str | None, dest: Path, token) -> tuple[int, int, int]:
    """(total bytes, total files, bytes already present) from a dry run: one metadata request."""
    import huggingface_hub

    infos = huggingface_hub.snapshot_download(repo_id, revision=revision, local_dir=dest, token=token, dry_run=True)
    total = sum(i.file_size or 0 for i in infos)
    cached = sum(i.file_size or 0 for i in infos if not i.will_download)
    return total, len(infos), cached


def fetch(repo_id: str, revision: str | None = None, ctx=None) -> Path:
    """Download (or resume) `repo_id` into target_dir(repo_id), emitting `phase` events named download."""
    import huggingface_hub

    token = hf_token()
    repo_id = repo_id.strip()
    try:
        dest = target_dir(repo_id)
        dest.mkdir(parents=True, exist_ok=True)
        total, n_files, present = plan(repo_id, revision, dest, token or False)
    except Exception as exc:  # noqa: BLE001 - every Hub failure is mapped to a plain sentence
        raise explain(exc, repo_id, bool(token)) from exc
    start_bytes = _dir_bytes(dest)
    result: dict = {}

    def run() -> None:
        try:
            result["path"] = huggingface_hub.snapshot_download(
                repo_id, revision=revision, local_dir=dest, token=token or False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, name="hf-download", daemon=True)
    t0 = time.time()
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
        if ctx is not None:
            _emit_progress(ctx, dest, total, n_files, present, start_bytes, t0)
    if "error" in result:
        exc = result["error"]
        raise explain(exc, repo_id, bool(token)) from exc
    write_json(dest / "acelora_fetch.json", {"repo_id": repo_id, "revision": revision or "main",
                                             "files": n_files, "bytes": total, "fetched_at": time.time()})
    if ctx is not None:
        ctx.phase("download", total, total, 0.0, files_done=n_files, files_total=n_files)
    return dest


def _emit_progress(ctx, dest: Path, total: int, n_files: int, present: int, start_bytes: int, t0: float) -> None:
    on_disk = _dir_bytes(dest)
    done = min(total, max(present, on_disk - max(0, start_bytes - present)))
    rate = (on_disk - start_bytes) / max(1e-6, time.time() - t0)
    eta = round((total - done) / rate, 1) if rate > 0 and total > done else None
    files_done = sum(1 for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts
                     and p.name != "acelora_fetch.json")
    ctx.phase("download", done, total, eta, files_done=min(files_done, n_files), files_total=n_files)


def job_fetch(ctx, args) -> str:
    """Job kind "fetch": params `repo_id`, optional `revision`. The token is read from HF_TOKEN only."""
    repo_id = str(ctx.params.get("repo_id") or "").strip()
    if not repo_id:
        raise ValueError("No repo_id given: choose or type a Hub model id on the Models page.")
    try:
        out = fetch(repo_id, ctx.params.get("revision") or None, ctx=ctx)
    except FetchError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"
    ctx.emit("model", model_dir=str(out), repo_id=repo_id)
    return "completed"
