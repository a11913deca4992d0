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
from state.fsutil import write_json
from state.models_catalog import local_dir_name

POLL_S = 1.0


class FetchError(RuntimeError):
    """A download failure explained for the user; `hint` says what to do next."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def hf_token() -> str | None:
    return os.environ.get("HF_TOKEN") or None


def target_dir(repo_id: str) -> Path:
    return paths.models_dir() / paths.check_name(local_dir_name(repo_id), "model folder")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_network_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        mod = type(e).__module__ or ""
        if isinstance(e, (ConnectionError, TimeoutError)) or (mod.startswith(("httpx", "httpcore", "requests", "urllib3")) \
                and any(w in type(e).__name__ for w in ("Connect", "Timeout", "Network", "Transport", "Proxy"))):
            return True
    return False


def explain(exc: BaseException, repo_id: str, has_token: bool) -> FetchError:
    """Map huggingface_hub's exceptions to one sentence and one next step. Never echoes a token."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HFValidationError):
        return FetchError(f"{repo_id!r} is not a valid Hub repository id.",
                          "Use the form 'organisation/name', e.g. 'ACE-Step/acestep-v15-xl-base-diffusers'.")
    if isinstance(exc, GatedRepoError):  # a subclass of RepositoryNotFoundError: test it first
        if not has_token:
            return FetchError(f"{repo_id} is gated and no Hugging Face token is set.",
                              "Accept the model's terms on huggingface.co, then set HF_TOKEN to a read token "
                              "from that account and start the download again.")
        return FetchError(f"{repo_id} is gated and the token in HF_TOKEN has no access to it.",
                          "Accept the model's terms on huggingface.co with the account that owns the token, "
                          "wait for approval if it is manual, then retry.")
    if isinstance(exc, RevisionNotFoundError):
        return FetchError(f"{repo_id} has no such revision (branch, tag or commit).",
                          "Leave the revision empty to use 'main', or check the name on the repository page.")
    if isinstance(exc, RepositoryNotFoundError):
        extra = "" if has_token else " If it is private, set HF_TOKEN to a token that can read it."
        return FetchError(f"Repository {repo_id} was not found on the Hub.",
                          "Check the spelling (it is case-sensitive), or pick a known model." + extra)
    if isinstance(exc, HfHubHTTPError) and status == 401:
        if not has_token:
            return FetchError(f"{repo_id} needs authentication and no token is set.",
                              "Set HF_TOKEN to a Hugging Face read token and retry.")
        return FetchError("The Hugging Face token in HF_TOKEN was rejected (401).",
                          "Create a new read token on huggingface.co/settings/tokens and update HF_TOKEN.")
    if isinstance(exc, LocalEntryNotFoundError) or _is_network_error(exc):
        return FetchError(f"Could not reach the Hugging Face Hub to download {repo_id}.",
                          "Check the network connection (or HF_HUB_OFFLINE / proxy settings) and retry; "
                          "the files already downloaded are kept and the download resumes.")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return FetchError(f"The disk filled up while downloading {repo_id}.",
                          "Free space (delete old runs or models) and retry; the download resumes.")
    if isinstance(exc, HfHubHTTPError):
        return FetchError(f"The Hub answered {status or 'an error'} while downloading {repo_id}.",
                          "Retry in a few minutes; the download resumes where it stopped.")
    return FetchError(f"Downloading {repo_id} failed: {type(exc).__name__}: {exc}",
                      "Retry; if it keeps failing, download the folder yourself and select it as a local model.")


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
