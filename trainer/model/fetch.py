"""Fetch a model from the Hub into <workspace>/models/<org--name>/, ready for from_pretrained.

What is downloaded comes from the catalog (state.model.catalog.parts_for): a diffusers-format repo
(only the folders the pipeline reads), or, for the release-layout 2B base/sft, the DiT repo plus only
`vae/` and `Qwen3-Embedding-0.6B/` of ACE-Step/Ace-Step1.5, then imported by trainer/model/convert.py.
One job, one progress bar: `phase` events `download` (the bytes of every repo together), then
`import`; each carries `overall_done` / `overall_total`, the bar the dashboard draws.

Files land in models/.incoming/<name>/ (resumable: snapshot_download keeps partial files there), and
the model folder appears only once complete: renamed into place (diffusers), or written by the import,
after which the download is deleted. The import hard-links the VAE and text encoder, so when the job
ends the disk holds one copy of everything (two of the DiT only while it converts).

acelora_fetch.json beside the weights records the repos, the commits they resolved to (the download
is pinned to them), every file and its size. The token comes only from state.cloud.hub.hf_token
(HF_TOKEN, else a `hf auth login`) and goes straight to huggingface_hub: never into params, events,
logs or the model folder.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from state.cloud.hub import HubError, explain, hf_token
from state.fsutil import write_json
from state.model.catalog import Part, info_for, parts_for
from state.model.download import FETCH_RECORD, incoming_dir, target_dir  # noqa: F401 - target_dir re-exported

POLL_S = 1.0

# The Hub error mapping and the token rule are shared with publish, hub-sync and the Space panel.
FetchError = HubError  # the name this module's callers and tests know


class _Stopped(Exception):
    """Stop was requested mid-download; the partial files stay for the next fetch to resume."""


@dataclass
class Planned:
    """One part of a fetch after its dry run: the commit it resolved to and exactly what it downloads."""

    part: Part
    requested: str           # the revision asked for (branch, tag or commit)
    commit: str              # what it resolved to; the download is pinned to it
    files: dict[str, int]    # repo path -> bytes
    present: int             # bytes already on disk from an earlier, interrupted fetch
    local_dir: Path

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    def record(self) -> dict:
        return {"repo_id": self.part.repo_id, "revision": self.requested, "commit": self.commit,
                "allow_patterns": list(self.part.allow_patterns) if self.part.allow_patterns else None,
                "bytes": self.bytes, "files": [{"path": p, "size": n} for p, n in sorted(self.files.items())]}


def plan_part(part: Part, revision: str | None, local_dir: Path, token) -> Planned:
    """A dry run: one listing of the repo and a HEAD per matching file, no file bytes."""
    import huggingface_hub

    patterns = list(part.allow_patterns) if part.allow_patterns else None
    infos = huggingface_hub.snapshot_download(part.repo_id, revision=revision, local_dir=local_dir, token=token,
                                              allow_patterns=patterns, dry_run=True)
    if not infos:
        raise FetchError(f"{part.repo_id} has no files matching {', '.join(patterns or ['*'])}.",
                         "The repository's layout may have changed: check it on huggingface.co, or download "
                         "the folders yourself and import them (import-original).")
    return Planned(part, revision or "main", infos[0].commit_hash, {i.filename: i.file_size or 0 for i in infos},
                   sum(i.file_size or 0 for i in infos if not i.will_download), local_dir)


def fetch(model_id: str, revision: str | None = None, ctx=None) -> Path:
    """Download (or resume) `model_id` and make it a diffusers folder at target_dir(model_id)."""
    token = hf_token()
    model_id = model_id.strip()
    info = info_for(model_id)
    dest, work = target_dir(model_id), incoming_dir(model_id)
    planned: list[Planned] = []
    for part in parts_for(model_id):
        local = work / part.subdir
        try:
            local.mkdir(parents=True, exist_ok=True)
            planned.append(plan_part(part, revision if part.repo_id == model_id else None, local, token or False))
        except HubError:
            raise
        except Exception as exc:  # noqa: BLE001 - every Hub failure is mapped to a plain sentence
            raise explain(exc, part.repo_id, bool(token)) from exc

    original = info.source == "original"
    download_total = sum(p.bytes for p in planned)
    import_total = 2 * _dit_bytes(planned) if original else 0  # read, then written
    bar = _Bar(ctx, download_total, import_total, sum(len(p.files) for p in planned))
    meter = _DiskMeter(work, sum(p.present for p in planned))
    for p in planned:
        _download(p, token, meter, bar, ctx)
    bar.download(download_total, files=bar.files_total)

    record = {"model_id": model_id, "source": info.source, "fetched_at": time.time(), "bytes": download_total,
              "files": bar.files_total, "parts": [p.record() for p in planned]}
    if original:
        from trainer.model.convert import import_original

        dit = next(p for p in planned if p.part.subdir)
        record["kept"] = ("the converted folder only: the download was deleted once the import had checked every "
                          "tensor's name and shape; vae/ and text_encoder/ are hard links of the downloaded files")
        import_original(work, dest, variant=dit.part.subdir, link=True, progress=bar.importing,
                        before_swap=lambda tmp: write_json(tmp / FETCH_RECORD, record))
        shutil.rmtree(work, ignore_errors=True)
    else:
        write_json(work / FETCH_RECORD, {**record, "kept": "the downloaded files, as they are"})
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    _drop_empty(work.parent)
    return dest


def _dit_bytes(planned: list[Planned]) -> int:
    return sum(n for p in planned if p.part.subdir for f, n in p.files.items() if f.endswith(".safetensors"))


def _download(p: Planned, token, meter: "_DiskMeter", bar: "_Bar", ctx) -> None:
    """snapshot_download in a thread (it blocks), while this thread reports bytes on disk."""
    import huggingface_hub

    result: dict = {}

    def run() -> None:
        try:
            huggingface_hub.snapshot_download(
                p.part.repo_id, revision=p.commit, local_dir=p.local_dir, token=token or False,
                allow_patterns=list(p.part.allow_patterns) if p.part.allow_patterns else None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, name="hf-download", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
        if ctx is not None and ctx.stop_requested():
            raise _Stopped()  # the daemon thread dies with the process; partial files resume next time
        bar.download(meter.done(bar.download_total), files=bar.files_done_in(meter.root), eta=meter.eta)
    if "error" in result:
        exc = result["error"]
        raise explain(exc, p.part.repo_id, bool(token)) from exc


class _DiskMeter:
    """Bytes fetched so far = bytes present before + growth on disk (partial files included)."""

    def __init__(self, root: Path, present: int):
        self.root, self.present = root, present
        self.start, self.t0, self.eta = _dir_bytes(root), time.time(), None

    def done(self, total: int) -> int:
        grown = max(0, _dir_bytes(self.root) - self.start)
        rate = grown / max(1e-6, time.time() - self.t0)
        done = min(total, self.present + grown)
        self.eta = round((total - done) / rate, 1) if rate > 0 and total > done else None
        return done


class _Bar:
    """The one progress bar of a fetch: download bytes, then import bytes, as `phase` events."""

    def __init__(self, ctx, download_total: int, import_total: int, files_total: int):
        self.ctx, self.download_total, self.import_total = ctx, download_total, import_total
        self.files_total = files_total

    @property
    def overall_total(self) -> int:
        return self.download_total + self.import_total

    def files_done_in(self, root: Path) -> int:
        return sum(1 for dirpath, _dirs, files in os.walk(root) if ".cache" not in Path(dirpath).parts
                   for _f in files)

    def download(self, done: int, files: int, eta: float | None = None) -> None:
        if self.ctx is not None:
            self.ctx.phase("download", done, self.download_total, eta, files_done=min(files, self.files_total),
                           files_total=self.files_total, overall_done=done, overall_total=self.overall_total)

    def importing(self, done: int, total: int) -> None:
        if self.ctx is not None:
            self.ctx.phase("import", done, total, None, overall_done=self.download_total + done,
                           overall_total=self.overall_total)


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


def _drop_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # models/.incoming/ once nothing is in flight
    except OSError:
        pass


def job_fetch(ctx, args) -> str:
    """Job kind "fetch": params `model_id` (or `repo_id`), optional `revision` (of the model's own repo; the
    shared VAE/text-encoder repo of a release-layout model stays at main). Token: hf_token() only."""
    from huggingface_hub.utils import disable_progress_bars

    model_id = str(ctx.params.get("model_id") or ctx.params.get("repo_id") or "").strip()
    if not model_id:
        raise ValueError("No model id given: choose a known model or type a Hub id (organisation/name).")
    disable_progress_bars()  # the phase events are the progress; keep log.txt readable
    try:
        out = fetch(model_id, ctx.params.get("revision") or None, ctx=ctx)
    except _Stopped:
        ctx.emit("warning", message="Download stopped; the files fetched so far are kept and the next "
                 "download resumes from them.")
        return "stopped"
    except FetchError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"
    ctx.emit("model", model_dir=str(out), model_id=model_id, repo_id=model_id)
    return "completed"
