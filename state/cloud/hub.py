"""The Hugging Face Hub in plain words: one error mapping, the token rule, and the two quick calls
the dashboard makes itself (list synced runs, set a Space's sleep time).

It lives in state/ (not trainer/) because both sides need it: jobs (fetch, publish, hub-sync,
space-watch) and the dashboard's Space panel. huggingface_hub is imported inside the functions
that use it, so `import state` stays instant.

The token rule: a token comes from the HF_TOKEN environment variable (a Space secret, or the
dashboard handing a password-field token to a job through its environment), else from a
`hf auth login` / `huggingface-cli login` on this machine (huggingface_hub's stored token). It is
passed straight to huggingface_hub and never written to params, events, logs, settings or any folder.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

# what each action is called in a sentence: (infinitive, gerund)
_ACTIONS = {
    "download": ("download", "downloading"),
    "upload": ("upload to", "uploading to"),
    "list": ("list the files of", "listing the files of"),
    "space": ("manage the Space", "managing the Space"),
}


class HubError(RuntimeError):
    """A Hub failure explained for the user; `hint` says what to do next."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def hf_token() -> str | None:
    """HF_TOKEN, else the token a `hf auth login` stored (huggingface_hub's own lookup), else None."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token() or None


def token_name(token: str | None = None) -> str:
    """Which token a message is about (`token`: the one used, when known), so the user knows which to replace."""
    env = os.environ.get("HF_TOKEN")
    if token and token != env:
        return "the token in the token field"
    return "the token in HF_TOKEN" if env else "the token saved by `hf auth login`"


def _token_fix(who: str) -> str:
    if "HF_TOKEN" in who:
        return "update HF_TOKEN (a job gets a pasted token that way too: paste the new one)"
    return "paste the new one into the token field" if "field" in who else "run `hf auth login` with it"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]  # str.capitalize() would lower-case HF_TOKEN


_SET_TOKEN = "set HF_TOKEN, paste a token into the token field, or run `hf auth login`"


def missing_token(action: str = "upload") -> HubError:
    verb = _ACTIONS.get(action, (action, action))[0]
    return HubError(f"No Hugging Face token: one is needed to {verb} the Hub.",
                    "Set the HF_TOKEN secret (Space settings → Variables and secrets), run `hf auth login` on "
                    "this machine, or paste a token with write access from huggingface.co/settings/tokens "
                    "into the token field.")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_network_error(exc: BaseException) -> bool:
    for e in _chain(exc):
        mod = type(e).__module__ or ""
        if isinstance(e, (ConnectionError, TimeoutError)) or (
                mod.startswith(("httpx", "httpcore", "requests", "urllib3"))
                and any(w in type(e).__name__ for w in ("Connect", "Timeout", "Network", "Transport", "Proxy"))):
            return True
    return False


def explain(exc: BaseException, repo_id: str, has_token: bool, action: str = "download",
            who: str | None = None) -> HubError:
    """Map huggingface_hub's exceptions to one sentence and one next step. Never echoes a token.

    `action` is "download" (reads), "upload" (model repos), "list" or "space" (pause, sleep time):
    a 401/403 means something different when we read than when we write. `who` names the token
    used where it is not the process's own (the dashboard's token field: see token_name).
    """
    from huggingface_hub.errors import (
        DryRunError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, DryRunError) and exc.__cause__ is not None:
        return explain(exc.__cause__, repo_id, has_token, action, who)  # a dry run wraps the Hub's answer
    verb, verbing = _ACTIONS.get(action, (action, action))
    writes = action in ("upload", "space")
    who = who or token_name()
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HFValidationError):
        return HubError(f"{repo_id!r} is not a valid Hub repository id.",
                        "Use the form 'organisation/name', e.g. 'ACE-Step/acestep-v15-xl-base-diffusers'.")
    if isinstance(exc, GatedRepoError):  # a subclass of RepositoryNotFoundError: test it first
        if not has_token:
            return HubError(f"{repo_id} is gated and no Hugging Face token is set.",
                            "Accept the model's terms on huggingface.co, then " + _SET_TOKEN + " (a read token "
                            "of that account), and start the download again.")
        return HubError(f"{repo_id} is gated and {who} has no access to it.",
                        "Accept the model's terms on huggingface.co with the account that owns the token, "
                        "wait for approval if it is manual, then retry.")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{repo_id} has no such revision (branch, tag or commit).",
                        "Leave the revision empty to use 'main', or check the name on the repository page.")
    if isinstance(exc, RepositoryNotFoundError):
        if writes or action == "list":
            return HubError(f"Repository {repo_id} was not found on the Hub, or the token cannot see it.",
                            "Check the name (it is case-sensitive) and that HF_TOKEN belongs to an account "
                            "that can see this repository.")
        extra = "" if has_token else " If it is private, set HF_TOKEN to a token that can read it."
        return HubError(f"Repository {repo_id} was not found on the Hub.",
                        "Check the spelling (it is case-sensitive), or pick a known model." + extra)
    if isinstance(exc, HfHubHTTPError) and status == 401:
        if not has_token:
            return HubError(f"{repo_id} needs authentication and no token is set.",
                            _cap(_SET_TOKEN) + " (a Hugging Face " + ("write" if writes else "read")
                            + " token) and retry.")
        return HubError(f"The Hugging Face token ({who.removeprefix('the token ')}) was rejected (401).",
                        "Create a new " + ("write" if writes else "read") + " token on "
                        "huggingface.co/settings/tokens and " + _token_fix(who) + ".")
    if isinstance(exc, HfHubHTTPError) and status == 403:
        if writes:
            what = "pause or configure this Space" if action == "space" else f"write to {repo_id}"
            return HubError(f"{_cap(who)} may not {what} (403): it is read-only, or its account "
                            "does not own that namespace.",
                            "Create a token with write access (a 'Write' token, or a fine-grained token with write "
                            "permission on this namespace) at huggingface.co/settings/tokens and use it instead."
                            + (" Only the Space's owner can pause it or change its sleep time."
                               if action == "space" else ""))
        return HubError(f"{_cap(who)} may not read {repo_id} (403).",
                        "Use a token from an account with access to this repository.")
    if isinstance(exc, LocalEntryNotFoundError) or _is_network_error(exc):
        return HubError(f"Could not reach the Hugging Face Hub to {verb} {repo_id}.",
                        "Check the network connection (or HF_HUB_OFFLINE / proxy settings) and retry; "
                        + ("the files already downloaded are kept and the download resumes."
                           if action == "download" else "nothing is lost locally."))
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == errno.ENOSPC:
        return HubError(f"The disk filled up while {verbing} {repo_id}.",
                        "Free space (delete old runs or models) and retry"
                        + ("; the download resumes." if action == "download" else "."))
    if isinstance(exc, HfHubHTTPError):
        return HubError(f"The Hub answered {status or 'an error'} while {verbing} {repo_id}.",
                        "Retry in a few minutes; " + ("the download resumes where it stopped."
                                                      if action == "download" else "files already committed stay."))
    if action == "download":
        return HubError(f"Downloading {repo_id} failed: {type(exc).__name__}: {exc}",
                        "Retry; if it keeps failing, download the folder yourself and select it as a local model.")
    return HubError(f"{verbing.capitalize()} {repo_id} failed: {type(exc).__name__}: {exc}",
                    "Retry; if it keeps failing, check the job's log for the full error.")


# ---- the dashboard's own quick calls -------------------------------------------------------------

def set_sleep_time(space_id: str, seconds: int, token: str | None) -> str:
    """Ask the Hub to put this Space to sleep after `seconds` without visitors (-1: never)."""
    from huggingface_hub import HfApi

    if not token:
        raise missing_token("space")
    try:
        HfApi().set_space_sleep_time(space_id, sleep_time=int(seconds), token=token)
    except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
        raise explain(exc, space_id, True, "space") from exc
    return "never sleeps" if int(seconds) < 0 else f"sleeps after {int(seconds) // 60} min without visitors"


def list_synced_runs(repo_id: str, token: str | None) -> list[str]:
    """Run ids found in a hub-sync repository: top-level folders holding a config.json."""
    from huggingface_hub import HfApi

    if not token:
        raise missing_token("list")
    try:
        files = HfApi().list_repo_files(repo_id, token=token)
    except Exception as exc:  # noqa: BLE001
        raise explain(exc, repo_id, True, "list") from exc
    return sorted({f.split("/", 1)[0] for f in files if f.count("/") == 1 and f.endswith("/config.json")})


# ---- starting the Hub jobs (publish, hub-sync, hub-restore) --------------------------------------
# The token travels to the child in its environment only; params.json holds names, never a token.

def _launch(kind: str, params: dict, token: str | None) -> Path:
    from state import jobs, settings
    from state.fsutil import write_json

    d = settings.new_job_dir(kind)
    write_json(d / "params.json", params)
    jobs.launch(d, kind, env={"HF_TOKEN": token} if token else None)
    return d


def start_publish(run_id: str, repo: str, private: bool, token: str | None) -> Path:
    from state import paths

    paths.check_name(run_id, "run id")
    if not repo.strip():
        raise ValueError("Type a repository name, e.g. 'my-lofi-lora' or 'my-org/my-lofi-lora'.")
    return _launch("publish", {"run_id": run_id, "repo": repo.strip(), "private": bool(private)}, token)


def start_sync(run_id: str, repo: str, token: str | None, every_min: float = 10) -> Path:
    from state import paths

    paths.check_name(run_id, "run id")
    if not repo.strip():
        raise ValueError("Type the private repository to sync into, e.g. 'my-acelora-sync'.")
    existing = sync_job_for(run_id)
    if existing is not None:
        return existing
    return _launch("hub-sync", {"run_id": run_id, "repo": repo.strip(), "every_min": every_min}, token)


def start_restore(repo: str, run_id: str, token: str | None) -> Path:
    from state import paths

    paths.check_name(run_id, "run id")
    return _launch("hub-restore", {"repo": repo.strip(), "run_id": run_id}, token)


def sync_job_for(run_id: str) -> Path | None:
    """The active hub-sync job of a run, if one is running."""
    from state import jobs, paths
    from state.fsutil import read_json_object

    for d in jobs.list_jobs(paths.jobs_dir()):
        if jobs.job_info(d).get("kind") == "hub-sync" and \
                read_json_object(d / "params.json")[0].get("run_id") == run_id and jobs.reconcile(d).active:
            return d
    return None


def latest_job(kind: str) -> Path | None:
    from state import jobs, paths

    return next((d for d in jobs.list_jobs(paths.jobs_dir()) if jobs.job_info(d).get("kind") == kind), None)


def publishable_runs() -> list[str]:
    """Run folders holding a finished adapter, newest first: dashboard and headless runs alike
    (a headless `trainer/run.py train` run has no job.json, so runs.list_runs() does not list it)."""
    from state import paths

    root = paths.runs_dir()
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if (d / "final" / "pytorch_lora_weights.safetensors").is_file()]
    return [d.name for d in sorted(found, key=lambda d: (d / "final").stat().st_mtime, reverse=True)]
