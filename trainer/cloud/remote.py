"""Training on Hugging Face Jobs: the two jobs on either side of the Hub.

`remote-train` runs here, in the run folder lora_output/<run>/ (started by
state.cloud.remote_jobs): it pushes the run's config, dataset snapshot and audio (and the
preprocessed cache entries built for the same model) to `<run>/` of a private dataset repo,
starts a Job (HfApi.run_job, the token as a Jobs secret), then watches: the stage from
inspect_job, the remote run's events.jsonl and checkpoints from the runs repo (the Hub sync of
trainer/cloud/sync.py), appended to this run's own events.jsonl, so the dashboard shows it like a
local run. Stop is `<run>/control/<attempt>/stop` in the runs repo, which the Job polls; if the Job
has not ended STOP_GRACE_S later (or Stop is pressed twice) it is cancelled. At the end the
checkpoints, final/ and samples/ come back and the Job's log is appended to log.txt.

`remote-worker` runs inside the Job (`python /app/trainer/run.py remote-worker --job-dir
/app/lora_output/<run>`): it downloads the input, trains with the ordinary `train` job in the
same process, and meanwhile pushes the run folder to the runs repo every ACELORA_SYNC_S seconds
and checks for the stop file every ACELORA_POLL_S.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import traceback
from argparse import Namespace
from pathlib import Path

from state import events, jobs, paths
from state.cloud import remote_jobs as rj
from state.cloud.hub import HubError, explain, hf_token, missing_token
from state.fsutil import atomic_write_text, write_json
from state.model.catalog import DEMO_MODEL_ID
from trainer.cloud.sync import ensure_repo, push_run, read_rows, unique_name
from trainer.job import StopNow

INPUT = "input"      # in the remote workspace: the downloaded dataset repo folder
SCRATCH = ".remote"  # in the local run folder: downloads on their way in (hidden: never synced)
MAX_HUB_ERRORS = 20  # failed polls in a row before the watcher gives up (the Job may run on: follow it again)


# ---- here: push, start, watch, pull ------------------------------------------------------------

def job_remote_train(ctx, args) -> str:
    from huggingface_hub import HfApi

    run_dir = Path(ctx.job_dir)
    rec = rj.record(run_dir)
    token = hf_token()
    try:
        if not token:
            raise missing_token("upload")
        rj.check_flavor(rec.get("flavor") or "")
        rj.check_image(rec.get("image") or "")
        how = "attach" if args.resume == "attach" else bool(args.resume)
        return _watch(ctx, HfApi(), run_dir, rec, token, how)
    except HubError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        rj.update_record(run_dir, message=str(exc))
        return "failed"
    finally:
        shutil.rmtree(run_dir / SCRATCH, ignore_errors=True)


def _namespace(api, token: str, rec: dict) -> str:
    try:
        me = api.whoami(token=token)
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
        raise explain(exc, "your account", True, "upload") from exc
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError("The Hugging Face token is read-only: starting a Job and uploading the dataset need write "
                       "access.", "Create a 'Write' token at huggingface.co/settings/tokens and use it instead.")
    return rec.get("namespace") or me["name"]


def _watch(ctx, api, run_dir: Path, rec: dict, token: str, resume: bool | str) -> str:
    if resume == "attach":  # this watcher died (the machine restarted) while its Job ran on: follow it again
        ctx.emit("remote_attach", job_id=rec["job_id"])
        return _follow(ctx, api, run_dir, rec, token, rec["job_id"], rec["namespace"], int(rec.get("mirrored") or 0))
    run = run_dir.name
    ns = _namespace(api, token, rec)
    ctx.phase("upload", 0, 1)
    data_repo = _ensure_dataset_repo(api, f"{ns}/{rec['data_repo'].split('/')[-1]}", token)
    runs_repo = ensure_repo(api, f"{ns}/{rec['runs_repo'].split('/')[-1]}", token)
    rec = rj.update_record(run_dir, namespace=ns, data_repo=data_repo, runs_repo=runs_repo)
    files = push_input(api, data_repo, run_dir, token)
    if resume:
        push_checkpoints(api, runs_repo, run_dir, token)
    ctx.phase("upload", 1, 1, files=files)
    if ctx.stop_requested():
        return "stopped"  # stopped while uploading: no Job was started, nothing is billed
    rec = rj.update_record(run_dir, **live_price(api, rec["flavor"], token))
    job = start_job(api, rec, run, token, resume)
    rec = rj.update_record(run_dir, job_id=job.id, url=job.url, stage=job.status.stage)
    ctx.emit("remote_job", job_id=job.id, url=job.url, flavor=rec["flavor"], image=rec["image"],
             price_per_hour=rec.get("price_per_hour"), attempt=rec["attempt"], data_repo=data_repo, runs_repo=runs_repo)
    return _follow(ctx, api, run_dir, rec, token, job.id, ns, 0)


def _follow(ctx, api, run_dir: Path, rec: dict, token: str, job_id: str, ns: str, mirrored: int) -> str:
    """Watch the Job to its end: stage, events, checkpoints, control flags; then pull back."""
    run, runs_repo = run_dir.name, rec["runs_repo"]
    stage, stop_sent, cancelled, outcome, errors = None, None, False, None, 0
    while True:
        try:
            info = _inspect(api, job_id, ns, token)
            if info.status.stage != stage:
                stage = info.status.stage
                ctx.emit("remote_status", stage=stage, status=rj.STAGES.get(stage, stage), message=info.status.message)
            mirrored, outcome = mirror_events(ctx, api, runs_repo, run_dir, rec["attempt"], token, mirrored, outcome)
            rj.update_record(run_dir, stage=stage, message=info.status.message, mirrored=mirrored,
                             started_at=_ts(info.started_at), finished_at=_ts(info.finished_at))
            if stage in rj.TERMINAL_STAGES:
                break
            for flag in ("save_now", "sample_now"):  # the live view's buttons, forwarded as they are clicked
                if ctx.take_flag(flag):
                    send_flag(api, runs_repo, run, rec["attempt"], token, f"{flag}-{time.time_ns()}")
            if ctx.stop_requested() and stop_sent is None and stage == "SCHEDULING":
                cancelled = _cancel(api, job_id, ns, token)  # nothing trained yet: nothing to save
                stop_sent = time.time()
            if ctx.stop_requested() and stop_sent is None:
                send_flag(api, runs_repo, run, rec["attempt"], token, "stop")
                stop_sent = time.time()
                ctx.emit("remote_stop", job_id=job_id, grace_s=rj.STOP_GRACE_S)
            if stop_sent is not None and not cancelled and time.time() - stop_sent > rj.STOP_GRACE_S:
                ctx.emit("warning", message=f"The Job did not stop within {rj.STOP_GRACE_S} s of Stop: cancelled it.")
                cancelled = _cancel(api, job_id, ns, token)
            errors = 0
            time.sleep(float(rec.get("poll_s") or 15.0))
        except HubError as exc:  # a network blip must not orphan a Job that trains on: retry, then give up
            errors += 1
            if errors >= MAX_HUB_ERRORS:
                raise HubError(f"{exc} (the Job {job_id} may still be running)",
                               exc.hint + " Then press 'Follow the Job again' on the Train page.") from exc
            if errors == 1:
                ctx.emit("warning", message=f"{exc} Retrying every {rec.get('poll_s') or 15} s.")
            time.sleep(float(rec.get("poll_s") or 15.0))
        except StopNow:  # Stop pressed twice: the last resort
            ctx.emit("warning", message="Stop pressed twice: cancelling the Job now; what it synced so far is kept.")
            cancelled = _cancel(api, job_id, ns, token)
    pull_back(ctx, api, runs_repo, run_dir, token)
    _append_log(api, job_id, ns, token, run_dir)
    return _end_status(ctx, run_dir, info, outcome, cancelled or stop_sent is not None)


def _end_status(ctx, run_dir: Path, info, outcome: str | None, we_stopped: bool) -> str:
    stage, msg = info.status.stage, info.status.message
    if outcome == "failed" or (stage == "COMPLETED" and outcome):  # a training failure's own error came through
        return outcome
    if stage == "COMPLETED":
        ctx.emit("error", message=f"The HF Job {info.id} ended without its last sync reaching the Hub.",
                 hint="The end of log.txt (the Job's log) says why; what arrived is kept, and Resume on HF Jobs "
                      "continues from the last checkpoint that did.")
        return "failed"
    if stage == "CANCELED":
        if not we_stopped:
            ctx.emit("warning", message="The Job was cancelled outside AceLoRA (Jobs page or CLI).")
        return "stopped"
    tail = jobs.log_tail(run_dir, 12)
    reason = msg or ("the Job was deleted" if stage == "DELETED" else "no reason given")
    ctx.emit("error", message=f"The HF Job {info.id} failed: {reason}.",
             hint="Its last log lines are at the end of log.txt (and on " + info.url + "). Fix the cause, then "
                  "Resume on HF Jobs continues from the last checkpoint it synced.",
             log_tail=tail)
    return "failed"


def _ensure_dataset_repo(api, repo: str, token: str) -> str:
    try:
        return api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True, token=token).repo_id
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo, True, "upload") from exc


def push_input(api, data_repo: str, run_dir: Path, token: str) -> int:
    """config.json, the dataset snapshot (audio paths made relative), the audio, and the cache entries
    built for this model, as one commit under `<run>/`; returns the file count."""
    from huggingface_hub import CommitOperationAdd

    run = run_dir.name
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    rows, taken, ops = [], set(), []
    for r in read_rows(run_dir / "dataset.jsonl"):
        src = Path(r.get("audio") or "")
        if not src.is_file():
            raise HubError(f"{src} (a track of {run}/dataset.jsonl) is missing on this machine.",
                           "Put the file back, or start a new run from the dataset as it is now.")
        name = unique_name(src.name, taken)
        taken.add(name)
        ops.append(CommitOperationAdd(f"{run}/audio/{name}", str(src)))
        rows.append({**r, "audio": f"audio/{name}"})
    for kind, f in cache_files(rows, str(cfg.get("model_id"))):
        ops.append(CommitOperationAdd(f"{run}/cache/{kind}/{f.name}", str(f)))
    demo = paths.demo_model_dir()
    if cfg.get("model_id") == DEMO_MODEL_ID and (demo / "model_index.json").is_file():
        # not on the Hub, and its random weights must be the ones the A/B page loads here (1-2 MB)
        ops += [CommitOperationAdd(f"{run}/model/{f.relative_to(demo)}", str(f))
                for f in sorted(demo.rglob("*")) if f.is_file()]
    ops.append(CommitOperationAdd(f"{run}/dataset.jsonl",
                                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
    ops.append(CommitOperationAdd(f"{run}/config.json", json.dumps(cfg, indent=2).encode()))
    try:
        api.create_commit(data_repo, repo_type="dataset", operations=ops, token=token,
                          commit_message=f"AceLoRA: input of {run}")
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, data_repo, True, "upload") from exc
    return len(ops)


def cache_files(rows: list[dict], model_id: str) -> list[tuple[str, Path]]:
    """Preprocessed entries made for `model_id` from these tracks (cache metadata names the model,
    and the audio file or track id), so the Job skips the VAE and text encoder for them."""
    from safetensors import safe_open

    names = {Path(r["audio"]).name for r in rows}
    ids = {str(r.get("id")) for r in rows}
    found = []
    for kind, key, wanted in (("latents", "audio", names), ("cond", "id", ids)):
        for f in sorted((paths.cache_dir() / kind).glob("*.safetensors")):
            try:
                with safe_open(str(f), framework="numpy") as h:
                    meta = h.metadata() or {}
            except Exception:  # noqa: BLE001 - an unreadable entry is rebuilt remotely, not fatal
                continue
            if meta.get("model") == model_id and meta.get(key) in wanted:
                found.append((kind, f))
    return found


def push_checkpoints(api, runs_repo: str, run_dir: Path, token: str) -> None:
    """The local checkpoints replace the remote ones, so a resume there starts from what is here."""
    try:
        api.upload_folder(repo_id=runs_repo, folder_path=str(run_dir / "checkpoints"),
                          path_in_repo=f"{run_dir.name}/checkpoints", token=token,
                          allow_patterns=["step-*/*"], ignore_patterns=[".*", "**/.*"], delete_patterns=["**"],
                          commit_message=f"AceLoRA: checkpoints of {run_dir.name} to resume from")
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, runs_repo, True, "upload") from exc


def live_price(api, flavor: str, token: str) -> dict:
    """The Jobs API's own price of the flavour, when it lists one; else the Space table's stays."""
    try:
        hw = next((h for h in api.list_jobs_hardware(token=token) if h.name == flavor), None)
    except Exception:  # noqa: BLE001 - the price list is a refinement; the table's price still holds
        return {}
    per = {"minute": 60.0, "hour": 1.0, "second": 3600.0}.get(getattr(hw, "unit_label", None))
    if hw is None or per is None:
        return {}
    return {"price_per_hour": round(hw.unit_cost_usd * per, 4), "price_source": "HF Jobs hardware list"}


def start_job(api, rec: dict, run: str, token: str, resume: bool):
    command = ["python", f"{rj.APP_DIR}/trainer/run.py", rj.WORKER_KIND, "--job-dir", f"{rj.APP_DIR}/lora_output/{run}"]
    # the workspace is the image's own /app (UID 1000 owns it), whatever the platform's working directory
    env = {"ACELORA_HOME": rj.APP_DIR, "ACELORA_DATA_REPO": rec["data_repo"], "ACELORA_RUNS_REPO": rec["runs_repo"],
           "ACELORA_ATTEMPT": rec["attempt"], "ACELORA_SYNC_S": str(rec.get("sync_s") or 60),
           "ACELORA_POLL_S": str(rec.get("poll_s") or 15), "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    if os.environ.get("ACELORA_STEP_EVENT_INTERVAL"):
        env["ACELORA_STEP_EVENT_INTERVAL"] = os.environ["ACELORA_STEP_EVENT_INTERVAL"]
    try:
        return api.run_job(image=rec["image"], command=command + (["--resume", "latest"] if resume else []),
                           env=env, secrets={"HF_TOKEN": token}, flavor=rec["flavor"], timeout=rj.TIMEOUT_S,
                           labels={"acelora-run": run}, namespace=rec["namespace"], token=token)
    except Exception as exc:  # noqa: BLE001
        raise _job_error(exc, "start a Job") from exc


def _job_error(exc: BaseException, what: str) -> HubError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 402:
        return HubError(f"The Hub refused to {what}: HF Jobs needs a payment method or credits (402).",
                        "Add one at huggingface.co/settings/billing (Jobs are for PRO users and paid organisations).")
    if status == 400:
        return HubError(f"The Hub refused to {what} (400): {exc}", "Check the flavour and the image name.")
    if status and status >= 500:
        return HubError(f"The Hub answered {status} when asked to {what}.",
                        "Usually brief; the Job itself is not affected.")
    return explain(exc, "HF Jobs", True, "upload")


def _inspect(api, job_id: str, ns: str, token: str):
    try:
        return api.inspect_job(job_id=job_id, namespace=ns, token=token)
    except Exception as exc:  # noqa: BLE001
        raise _job_error(exc, f"report on Job {job_id}") from exc


def _cancel(api, job_id: str, ns: str, token: str) -> bool:
    try:
        api.cancel_job(job_id=job_id, namespace=ns, token=token)
    except Exception as exc:  # noqa: BLE001
        raise _job_error(exc, f"cancel Job {job_id}") from exc
    return True


def send_flag(api, runs_repo: str, run: str, attempt: str, token: str, name: str) -> None:
    """A control flag for the Job: `stop`, or `save_now-<ns>` / `sample_now-<ns>` (one file per click)."""
    try:
        api.upload_file(path_or_fileobj=str(time.time()).encode(), path_in_repo=f"{run}/control/{attempt}/{name}",
                        repo_id=runs_repo, token=token, commit_message=f"AceLoRA: {name.split('-')[0]} {run}")
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, runs_repo, True, "upload") from exc


def mirror_events(ctx, api, runs_repo: str, run_dir: Path, attempt: str, token: str, done: int,
                  outcome: str | None) -> tuple[int, str | None]:
    """Append the Job's events after the first `done` to ours (their own times kept); fetch each
    checkpoint they announce. Its `end` stays out: this job writes the run's end. Returns the new
    count and the training outcome the Job reported (None until it did)."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        got = api.hf_hub_download(runs_repo, f"{run_dir.name}/events.jsonl", local_dir=run_dir / SCRATCH, token=token)
    except EntryNotFoundError:
        return done, outcome  # the Job has not pushed yet
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, runs_repo, True, "download") from exc
    evs = events.read_all(Path(got))
    if not evs or evs[0].get("attempt") != attempt:
        return 0, outcome  # still the file of an earlier attempt
    for e in evs[done:]:
        if e["type"] == "end":
            continue
        if e["type"] == "trained":
            outcome = e.get("status")
        ctx.emit(e["type"], **{k: v for k, v in e.items() if k != "type"}, remote=True)
        if e["type"] == "checkpoint" and e.get("path"):
            pull(api, runs_repo, run_dir, token, [f"checkpoints/{Path(e['path']).name}/*"])
    return len(evs), outcome


def pull(api, runs_repo: str, run_dir: Path, token: str, patterns: list[str]) -> Path:
    """Download `<run>/<pattern>` files of the runs repo into the scratch folder; returns its `<run>/`."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(runs_repo, allow_patterns=[f"{run_dir.name}/{p}" for p in patterns],
                          local_dir=run_dir / SCRATCH, token=token)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, runs_repo, True, "download") from exc
    got = run_dir / SCRATCH / run_dir.name
    for d in sorted((got / "checkpoints").glob("step-*")):
        if not (run_dir / "checkpoints" / d.name).exists():
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            d.rename(run_dir / "checkpoints" / d.name)  # same file system: whole or not at all
    return got


def pull_back(ctx, api, runs_repo: str, run_dir: Path, token: str) -> None:
    """The end: every checkpoint the Job kept (rotated-out ones go here too), final/ and samples/."""
    ctx.phase("download", 0, 1)
    remote = {f.split("/")[2] for f in _remote_files(api, runs_repo, token, f"{run_dir.name}/checkpoints/")}
    missing = [f"checkpoints/{s}/*" for s in sorted(remote) if not (run_dir / "checkpoints" / s).exists()]
    got = pull(api, runs_repo, run_dir, token, missing + ["final/**", "samples/**"])
    for d in (run_dir / "checkpoints").glob("step-*"):
        if remote and d.name not in remote:  # rotated out there (keep-last-K): the folder mirrors the Job's
            shutil.rmtree(d, ignore_errors=True)
    for sub in ("final", "samples"):
        if (got / sub).is_dir():
            if sub == "final":
                shutil.rmtree(run_dir / sub, ignore_errors=True)
                (got / sub).rename(run_dir / sub)
            else:
                shutil.copytree(got / sub, run_dir / sub, dirs_exist_ok=True)
    ctx.phase("download", 1, 1, checkpoints=len(list((run_dir / "checkpoints").glob("step-*"))))


def _remote_files(api, repo: str, token: str, prefix: str) -> list[str]:
    try:
        return [f for f in api.list_repo_files(repo, token=token) if f.startswith(prefix) and f.count("/") >= 3]
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo, True, "list") from exc


def _append_log(api, job_id: str, ns: str, token: str, run_dir: Path) -> None:
    """The Job's own log, once, at the end of log.txt (this process's stdout)."""
    try:
        lines = list(api.fetch_job_logs(job_id=job_id, namespace=ns, token=token))
    except Exception as exc:  # noqa: BLE001 - the log is a courtesy; the run's result stands without it
        print(f"could not fetch the Job's log: {type(exc).__name__}: {exc}", flush=True)
        return
    print(f"---- log of HF Job {job_id} ----", flush=True)
    for line in lines:
        print(line, flush=True)


def _ts(dt) -> float | None:
    return dt.timestamp() if dt is not None else None


# ---- there: inside the Job -------------------------------------------------------------------

def job_remote_worker(ctx, args) -> str:
    from huggingface_hub import HfApi

    run_dir = Path(ctx.job_dir)
    attempt = os.environ.get("ACELORA_ATTEMPT", "")
    ctx.emit("remote_attempt", attempt=attempt, host=socket.gethostname())  # first line: whose file this is
    token = hf_token()
    if not token:
        err = missing_token("download")
        ctx.emit("error", message=str(err), hint="Start the Job with the token as the HF_TOKEN secret.")
        return "failed"
    api = HfApi()
    runs_repo = os.environ["ACELORA_RUNS_REPO"]
    fetch_input(ctx, os.environ["ACELORA_DATA_REPO"], run_dir, token)
    if args.resume:
        ctx.emit("phase", name="download", done=0, total=1, eta_s=None, what="checkpoints")
        pull_checkpoints_here(runs_repo, run_dir, token)
    syncer = Syncer(api, runs_repo, run_dir, attempt, token,
                    float(os.environ.get("ACELORA_SYNC_S", 60)), float(os.environ.get("ACELORA_POLL_S", 15)))
    syncer.start()
    try:
        from trainer.train.loop import job_train

        status = job_train(ctx, Namespace(config=None, manifest=None, after=None,
                                          resume="latest" if args.resume else None))
    except StopNow:
        status = "stopped"
    except Exception as exc:  # noqa: BLE001 - recorded before the last push, so the dashboard gets it
        from trainer.hints import hint_for

        traceback.print_exc()
        ctx.emit("error", message=f"{type(exc).__name__}: {exc}", hint=hint_for(exc),
                 traceback=traceback.format_exc(limit=20))
        status = "failed"
    finally:
        syncer.halt()
    ctx.emit("trained", status=status)
    for _ in range(3):  # a checkpoint rotated away mid-listing: list again
        try:
            push_run(api, runs_repo, run_dir, token)
            break
        except FileNotFoundError:
            continue
    return status


def fetch_input(ctx, data_repo: str, run_dir: Path, token: str) -> None:
    """The input of this run into the Job's workspace: audio, a manifest pointing at it, config.json,
    and the cache entries (copied into the cache, where preprocessing looks first)."""
    from huggingface_hub import snapshot_download

    from trainer.model.load import resolve_model_dir

    run = run_dir.name
    ctx.phase("download", 0, 1, what="dataset")
    try:
        snapshot_download(data_repo, repo_type="dataset", allow_patterns=[f"{run}/**"],
                          local_dir=paths.root() / INPUT, token=token)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, data_repo, True, "download") from exc
    src = paths.root() / INPUT / run
    for kind in ("latents", "cond"):
        for f in (src / "cache" / kind).glob("*.safetensors"):
            paths.ensure(paths.cache_dir() / kind)
            shutil.copy2(f, paths.cache_dir() / kind / f.name)
    rows = [{**r, "audio": str(src / r["audio"])} for r in read_rows(src / "dataset.jsonl")]
    manifest = src / "manifest.jsonl"
    atomic_write_text(manifest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    write_json(run_dir / "config.json", {**cfg, "manifest": str(manifest)})
    if (src / "model" / "model_index.json").is_file() and not paths.demo_model_dir().exists():
        shutil.copytree(src / "model", paths.demo_model_dir())
    ctx.phase("download", 1, 1, what="dataset", tracks=len(rows))
    try:
        resolve_model_dir(cfg["model_id"])
    except FileNotFoundError:  # a release-layout model: download and convert it here, as the fetch job does
        from trainer.model.fetch import fetch

        fetch(cfg["model_id"], ctx=ctx)


def pull_checkpoints_here(runs_repo: str, run_dir: Path, token: str) -> None:
    from huggingface_hub import snapshot_download

    tmp = run_dir.parent / f".pull-{run_dir.name}"
    try:
        snapshot_download(runs_repo, allow_patterns=[f"{run_dir.name}/checkpoints/**"], local_dir=tmp, token=token)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, runs_repo, True, "download") from exc
    got = tmp / run_dir.name / "checkpoints"
    if not any(got.glob("step-*")):
        raise HubError(f"{runs_repo} holds no checkpoint of {run_dir.name} to resume from.",
                       "Start a new run instead, or resume it where its checkpoints are.")
    shutil.move(str(got), str(run_dir / "checkpoints"))
    shutil.rmtree(tmp, ignore_errors=True)


class Syncer(threading.Thread):
    """Beside the training loop: push the run folder every `sync_s`; every `poll_s`, turn each new control
    file the dashboard put in the runs repo into the local flag the training loop polls."""

    def __init__(self, api, repo: str, run_dir: Path, attempt: str, token: str, sync_s: float, poll_s: float):
        super().__init__(daemon=True, name="hub-sync")
        self.api, self.repo, self.run_dir, self.attempt, self.token = api, repo, run_dir, attempt, token
        self.sync_s, self.poll_s = sync_s, poll_s
        self._halt = threading.Event()

    def run(self) -> None:
        next_push, seen = time.time(), set()
        while not self._halt.wait(self.poll_s):
            try:
                for name in self._control_files():
                    if name not in seen and (flag := name.split("-")[0]) in jobs.FLAGS:
                        print(f"{flag} requested through the Hub.", flush=True)
                        jobs.request(self.run_dir, flag)  # the training loop polls it, as for a local click
                    seen.add(name)
                if time.time() >= next_push:
                    push_run(self.api, self.repo, self.run_dir, self.token)
                    next_push = time.time() + self.sync_s
            except (FileNotFoundError, HubError) as exc:  # retried next tick; the last push follows the end
                print(f"hub sync: {exc}", flush=True)

    def _control_files(self) -> list[str]:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            tree = self.api.list_repo_tree(self.repo, path_in_repo=f"{self.run_dir.name}/control/{self.attempt}",
                                           token=self.token)
            return [e.path.rsplit("/", 1)[-1] for e in tree]
        except HfHubHTTPError as exc:  # no folder yet is a 404; anything else is retried next tick
            if getattr(exc.response, "status_code", None) != 404:
                print(f"hub control poll: {exc}", flush=True)
            return []

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=120)

