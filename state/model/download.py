"""Model downloads as the dashboard sees them: where a fetch puts things, how big it will be
(from Hub metadata, before anything is downloaded), and starting the fetch job.

Stdlib at import time; huggingface_hub is imported inside the one function that asks the Hub.
The job itself is trainer/model/fetch.py; both sides take their folder names and the list of
files to download from here and from state.model.catalog, so the size shown is the size fetched.

Tokens follow state.cloud.hub's rule: a password-field token reaches the job only through its
environment, and nothing here writes one anywhere.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from state import paths
from state.model.catalog import Part, info_for, local_dir_name, parts_for

FETCH_RECORD = "acelora_fetch.json"  # beside the weights: repos, resolved commits, files, bytes
INCOMING = ".incoming"               # models/.incoming/<name>/: downloads in progress (resumable)


def target_dir(model_id: str) -> Path:
    """The diffusers folder a model id is loaded from once fetched: models/<org--name>."""
    return paths.models_dir() / paths.check_name(local_dir_name(model_id), "model folder")


def incoming_dir(model_id: str) -> Path:
    """Where the files land while downloading; the model folder appears only once complete."""
    return paths.models_dir() / INCOMING / paths.check_name(local_dir_name(model_id), "model folder")


@dataclass
class PartSize:
    repo_id: str
    commit: str | None     # the commit `main` resolved to when asked
    files: list[str]       # repo paths that the fetch downloads
    bytes: int


@dataclass
class DownloadSize:
    model_id: str
    source: str                       # catalog source: diffusers | original (imported after download)
    parts: list[PartSize] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)

    @property
    def files(self) -> int:
        return sum(len(p.files) for p in self.parts)

    def to_dict(self) -> dict:
        return {**asdict(self), "bytes": self.bytes, "files": self.files}


def matching(files: list[str], part: Part) -> list[str]:
    """The repo paths `part` downloads: huggingface_hub's own filter, as snapshot_download applies it."""
    from huggingface_hub.utils import filter_repo_objects

    return list(filter_repo_objects(files, allow_patterns=list(part.allow_patterns) if part.allow_patterns else None))


def hub_size(model_id: str, token: str | None = None, revision: str | None = None) -> DownloadSize:
    """What fetching `model_id` will download, from one metadata request per repo (no file bytes).

    `token` None lets huggingface_hub find one itself (HF_TOKEN, then a `hf auth login`); a Hub
    failure raises state.cloud.hub.HubError with one sentence and what to do.
    """
    from huggingface_hub import HfApi

    from state.cloud.hub import explain, token_name

    model_id = model_id.strip()
    out = DownloadSize(model_id, info_for(model_id).source)
    for part in parts_for(model_id):
        try:
            info = HfApi().model_info(part.repo_id, revision=revision if part.repo_id == model_id else None,
                                      files_metadata=True, token=token or None)
        except Exception as exc:  # noqa: BLE001 - every Hub failure becomes a sentence
            raise explain(exc, part.repo_id, bool(token) or _logged_in(), who=token_name(token)) from exc
        sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
        files = matching(sorted(sizes), part)
        out.parts.append(PartSize(part.repo_id, info.sha, files, sum(sizes[f] for f in files)))
    return out


def _logged_in() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


def fetch_jobs(model_id: str) -> list[Path]:
    """Fetch jobs of this model id, newest first (old jobs wrote `repo_id`, new ones `model_id`)."""
    from state import jobs
    from state.fsutil import read_json_object

    out = []
    for d in jobs.list_jobs(paths.jobs_dir()):
        if jobs.job_info(d).get("kind") != "fetch":
            continue
        params = read_json_object(d / "params.json")[0]  # a damaged job is listed on the Jobs page, not here
        if (params.get("model_id") or params.get("repo_id")) == model_id:
            out.append(d)
    return out


def start_fetch(model_id: str, token: str | None = None) -> Path:
    """Launch a fetch job; `token` (a password-field token) travels only in the job's environment."""
    from state import jobs, settings
    from state.fsutil import write_json

    model_id = model_id.strip()
    if not model_id:
        raise ValueError("Type a Hub model id (organisation/name) or pick a known model.")
    d = settings.new_job_dir("fetch")
    write_json(d / "params.json", {"model_id": model_id})
    jobs.launch(d, "fetch", env={"HF_TOKEN": token} if token else None)
    return d
