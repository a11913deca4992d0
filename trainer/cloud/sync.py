"""Hub sync for Spaces without persistent storage: keep a run resumable after the disk is wiped.

`hub-sync` job (params `run_id`, `repo`, `every_min` = 10): while the run is active, every N
minutes push its config, dataset snapshot, events, log, checkpoints, final adapter and samples to
`<repo>/<run_id>/` in a private model repository (one repository holds many runs). Rotated-out
checkpoints are deleted remotely too, so the repository mirrors the folder. The audio the run
trains on is pushed once to `<run_id>/dataset/` with an index of its original paths, because a
wiped Space loses the dataset as well, and resume needs it. A last push follows the run's end.

`hub-restore` job (params `repo`, `run_id`): download `<run_id>/` into lora_output/<run_id>,
point the dataset snapshot at the restored audio, and mark the interrupted run as ended, so the
Runs page offers Resume. `state.cloud.hub.list_synced_runs` lists what a repository holds.

Torch-free. The token comes only from HF_TOKEN.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from state import events, jobs, paths
from state.cloud.hub import HubError, explain, hf_token, missing_token
from state.fsutil import atomic_write_text, read_json

# What a resume needs, relative to the run folder. Temp folders (".tmp-step-…", ".final-…") never match.
SYNC_PATTERNS = ["config.json", "dataset.jsonl", "events.jsonl", "job.json", "log.txt",
                 "checkpoints/step-*/*", "final/*", "samples/**"]
IGNORE_PATTERNS = [".*", "**/.*"]
DATASET_DIR = "dataset"          # <run_id>/dataset/ in the repository: the run's audio
DATASET_INDEX = "index.json"     # original absolute path -> file name under dataset/
POLL_S = 1.0


# ---- push ---------------------------------------------------------------------------------------

def ensure_repo(api, repo: str, token: str) -> str:
    """Create the private sync repository if needed; returns its full id ("owner/name")."""
    try:
        return api.create_repo(repo, private=True, exist_ok=True, token=token).repo_id
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
        raise explain(exc, repo, True, "upload") from exc


def push_dataset(api, repo_id: str, run_dir: Path, token: str) -> int:
    """Upload the audio named in the run's dataset.jsonl (once per job); returns the file count."""
    from huggingface_hub import CommitOperationAdd

    rows = read_rows(run_dir / "dataset.jsonl")
    index: dict[str, str] = {}
    ops = []
    for r in rows:
        src = Path(r.get("audio") or "")
        if not src.is_file() or str(src) in index:
            continue
        name = unique_name(src.name, set(index.values()))
        index[str(src)] = name
        ops.append(CommitOperationAdd(f"{run_dir.name}/{DATASET_DIR}/{name}", str(src)))
    if not ops:
        return 0
    ops.append(CommitOperationAdd(f"{run_dir.name}/{DATASET_DIR}/{DATASET_INDEX}",
                                  json.dumps(index, indent=2).encode()))
    try:
        api.create_commit(repo_id, operations=ops, token=token,
                          commit_message=f"AceLoRA hub-sync: dataset of {run_dir.name}")
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo_id, True, "upload") from exc
    return len(ops) - 1


def push_run(api, repo_id: str, run_dir: Path, token: str) -> None:
    """One upload_folder of the run's resumable files; remote checkpoints gone locally are deleted."""
    try:
        api.upload_folder(repo_id=repo_id, folder_path=str(run_dir), path_in_repo=run_dir.name, token=token,
                          allow_patterns=SYNC_PATTERNS, ignore_patterns=IGNORE_PATTERNS,
                          delete_patterns=["checkpoints/**"],
                          commit_message=f"AceLoRA hub-sync: {run_dir.name}")
    except FileNotFoundError:
        raise  # a checkpoint rotated away mid-listing: the caller retries on the next tick
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo_id, True, "upload") from exc


def job_hub_sync(ctx, args) -> str:
    from huggingface_hub import HfApi

    run_dir = paths.run_dir(str(ctx.params.get("run_id") or ""))
    repo = str(ctx.params.get("repo") or "").strip()
    every_s = max(60.0, float(ctx.params.get("every_min", 10)) * 60.0)
    if not repo:
        raise ValueError("No sync repository given: set one in the Space panel or on the Publish page.")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"No run folder {run_dir}.")
    token = hf_token()
    if not token:
        err = missing_token("upload")
        ctx.emit("error", message=str(err), hint=err.hint)
        return "failed"
    api = HfApi()
    try:
        repo_id = ensure_repo(api, repo, token)
        ctx.emit("sync", what="dataset", repo_id=repo_id, files=push_dataset(api, repo_id, run_dir, token))
        while True:
            run_over = not jobs.status(run_dir).active  # read before the push, so the last push is complete
            try:
                push_run(api, repo_id, run_dir, token)
                ctx.emit("sync", what="run", repo_id=repo_id, run_status=jobs.status(run_dir).status)
            except FileNotFoundError as exc:
                ctx.emit("warning", message=f"A file vanished during the push ({exc.filename}); retrying next time.")
                run_over = False
            if run_over:
                return "completed"
            if not _wait(ctx, run_dir, every_s):
                push_run(api, repo_id, run_dir, token)  # stopped: one last push of what is there
                return "stopped"
    except HubError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"


def _wait(ctx, run_dir: Path, seconds: float) -> bool:
    """Sleep until the next push; returns early when the run ends. False if this job was stopped."""
    end = time.time() + seconds
    while time.time() < end:
        if ctx.stop_requested():
            return False
        if not jobs.status(run_dir).active:
            return True
        time.sleep(POLL_S)
    return True


# ---- restore ------------------------------------------------------------------------------------

def restore(repo_id: str, run_id: str, token: str | None, ctx=None) -> Path:
    """Download `<run_id>/` from the sync repository into lora_output/<run_id> (which must not exist)."""
    import huggingface_hub

    run_id = paths.check_name(run_id, "run id")
    dest = paths.run_dir(run_id)
    if dest.exists():
        raise HubError(f"lora_output/{run_id} already exists here.",
                       "Delete or rename the local run first (Runs page), then restore again.")
    if not token:
        raise missing_token("download")
    root = paths.ensure(paths.runs_dir())
    tmp = Path(tempfile.mkdtemp(prefix=f".restore-{run_id}-", dir=root))
    try:
        if ctx is not None:
            ctx.phase("download", 0, 1)
        try:
            huggingface_hub.snapshot_download(repo_id, allow_patterns=[f"{run_id}/**"], local_dir=tmp, token=token)
        except Exception as exc:  # noqa: BLE001
            raise explain(exc, repo_id, True, "download") from exc
        got = tmp / run_id
        if not (got / "config.json").is_file():
            raise HubError(f"{repo_id} holds no run named {run_id}.",
                           "Pick one of the runs the restore list shows (it reads the repository's folders).")
        _relink_dataset(got, dest)
        _mark_interrupted(got, repo_id)
        got.rename(dest)
        if ctx is not None:
            ctx.phase("download", 1, 1)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _relink_dataset(got: Path, dest: Path) -> None:
    """Rows whose audio is gone from this machine point at the restored copy under <run>/dataset/."""
    index = read_json(got / DATASET_DIR / DATASET_INDEX, default={}) or {}
    snapshot = got / "dataset.jsonl"
    rows = read_rows(snapshot)
    if not rows or not index:
        return
    for r in rows:
        name = index.get(r.get("audio", ""))
        if name and not Path(r["audio"]).is_file():
            r["audio"] = str(dest / DATASET_DIR / name)
    atomic_write_text(snapshot, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _mark_interrupted(got: Path, repo_id: str) -> None:
    """A run synced mid-training has no `end` event; its process died with the old container. Say so,
    so no reader mistakes an unrelated process with the same pid for it."""
    last = events.last_event(got / events.EVENTS_FILE)
    if last is None or last.get("type") != "end":
        events.append_event(got, "end", status="died",
                            message=f"Restored from {repo_id}: the machine that ran it restarted. Resume it from "
                                    "its latest checkpoint.")


def job_hub_restore(ctx, args) -> str:
    try:
        dest = restore(str(ctx.params.get("repo") or ""), str(ctx.params.get("run_id") or ""), hf_token(), ctx=ctx)
    except HubError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"
    ctx.emit("restored", run_dir=str(dest), checkpoints=len(list((dest / "checkpoints").glob("step-*"))))
    return "completed"


def read_rows(path: Path) -> list[dict]:
    """A run's dataset.jsonl snapshot as rows ([] when there is none)."""
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `stem-2.ext`, `stem-3.ext`...: the first not in `taken` (flattened audio names stay apart)."""
    stem, suffix, n = Path(name).stem, Path(name).suffix, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    return name
