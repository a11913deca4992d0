"""The `space-watch` job: pause this Hugging Face Space once the queue of work has ended.

Billing runs per minute while the Space is up, busy or not. This job is what makes "pause when
done" happen with no browser open: it polls the workspace's jobs, and once no work (anything but
another watcher) has been active for `quiet_s` seconds in a row, it calls
`HfApi().pause_space(SPACE_ID)` with the token from HF_TOKEN. The quiet period covers the moment
between one queued run ending and the next one starting, and gives a user who just armed it while
nothing runs time to start a run. A paused Space stays paused (and unbilled) until its owner
restarts it from the Space page. Torch-free.

params.json: `space_id` ("owner/name"), `quiet_s` (seconds of no work before pausing, default 120).
"""
from __future__ import annotations

import time

from state.cloud import space
from state.cloud.hub import HubError, explain, hf_token, missing_token

POLL_S = 5.0


def wait_until_quiet(ctx, quiet_s: float, poll_s: float = POLL_S) -> bool:
    """True once no work has been active for `quiet_s` seconds; False if the watcher was stopped."""
    quiet_from = None
    reported = None
    while not ctx.stop_requested():
        busy = [j.job_id for j in space.work_jobs() if j.job_dir != ctx.job_dir]
        now = time.time()
        if busy:
            quiet_from = None
        elif quiet_from is None:
            quiet_from = now
        if busy != reported:  # one event per change, not one per poll
            ctx.emit("watch", active=busy, quiet_s=quiet_s)
            reported = busy
        if quiet_from is not None and now - quiet_from >= quiet_s:
            return True
        time.sleep(poll_s)
    return False


def pause(space_id: str, token: str) -> None:
    from huggingface_hub import HfApi

    try:
        HfApi().pause_space(space_id, token=token)
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
        raise explain(exc, space_id, True, "space") from exc


def job_space_watch(ctx, args) -> str:
    space_id = str(ctx.params.get("space_id") or space.space_id() or "")
    if not space_id:
        raise ValueError("No Space to pause: SPACE_ID is not set and params.json names none.")
    token = hf_token()
    if not token:
        err = missing_token("space")
        ctx.emit("error", message=str(err), hint=err.hint)
        return "failed"
    quiet_s = float(ctx.params.get("quiet_s", 120))
    if not wait_until_quiet(ctx, quiet_s, float(ctx.params.get("poll_s", POLL_S))):
        return "stopped"
    ctx.emit("phase", name="pause", done=0, total=1, eta_s=None, space_id=space_id)
    try:
        pause(space_id, token)
    except HubError as exc:
        ctx.emit("error", message=str(exc), hint=exc.hint)
        return "failed"
    ctx.emit("paused", space_id=space_id)  # usually the last line written: the container stops next
    return "completed"
