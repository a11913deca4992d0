"""trainer.model.fetch with huggingface_hub mocked: error messages, progress events, no token on disk."""
from __future__ import annotations

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import errors

from state.events import EventWriter, read_all
from trainer.job import JobContext
from trainer.model import fetch

REPO = "ACE-Step/acestep-v15-xl-base-diffusers"
SECRET = "hf_SECRETtokenSECRETtoken"


def _resp(status):
    return httpx2.Response(status, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{REPO}"))


def _raise(exc):
    def snapshot_download(*a, **k):
        raise exc
    return snapshot_download


@pytest.mark.parametrize("exc, token, message, hint", [
    (errors.RepositoryNotFoundError("404", response=_resp(404)), None, "was not found", "spelling"),
    (errors.GatedRepoError("403", response=_resp(403)), None, "no Hugging Face token is set", "HF_TOKEN"),
    (errors.GatedRepoError("403", response=_resp(403)), SECRET, "has no access", "Accept the model's terms"),
    (errors.RevisionNotFoundError("404", response=_resp(404)), None, "no such revision", "main"),
    (errors.HfHubHTTPError("401", response=_resp(401)), SECRET, "was rejected", "new read token"),
    (errors.HfHubHTTPError("401", response=_resp(401)), None, "no token is set", "HF_TOKEN"),
    (errors.LocalEntryNotFoundError("offline and not cached"), None, "Could not reach", "resumes"),
    (httpx2.ConnectError("Name or service not known"), None, "Could not reach", "network"),
    (errors.HfHubHTTPError("503", response=_resp(503)), None, "answered 503", "Retry"),
])
def test_errors_are_explained(workspace, monkeypatch, exc, token, message, hint):
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    else:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _raise(exc))
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch(REPO)
    assert message in str(info.value) and hint in info.value.hint
    assert SECRET not in str(info.value) + info.value.hint


def test_job_reports_error_event_without_token(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        _raise(errors.GatedRepoError("403", response=_resp(403))))
    ctx = JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), {"repo_id": REPO})
    assert fetch.job_fetch(ctx, None) == "failed"
    text = ctx.events.path.read_text()
    assert "gated" in text and SECRET not in text


def test_download_progress_and_resume_marker(workspace, tmp_path, monkeypatch):
    from huggingface_hub.file_download import DryRunFileInfo

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(fetch, "POLL_S", 0.01)
    seen = {}

    def snapshot_download(repo_id, *, revision=None, local_dir=None, token=None, dry_run=False, **kw):
        seen.setdefault("tokens", []).append(token)
        files = {"model_index.json": b"{}", "transformer/diffusion_pytorch_model.safetensors": b"x" * 5000}
        if dry_run:
            return [DryRunFileInfo(commit_hash="c0ffee", file_size=len(v), filename=k, local_path=str(local_dir / k),
                                   is_cached=False, will_download=True) for k, v in files.items()]
        import time
        for name, data in files.items():
            (local_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (local_dir / name).write_bytes(data)
            time.sleep(0.05)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    ctx = JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), {"repo_id": REPO})
    assert fetch.job_fetch(ctx, None) == "completed"
    assert seen["tokens"] == [SECRET, SECRET]  # from the environment, handed straight to the Hub client
    events = read_all(ctx.events.path)
    phases = [e for e in events if e["type"] == "phase" and e["name"] == "download"]
    assert phases and phases[-1]["done"] == phases[-1]["total"] == 5002 and phases[-1]["files_total"] == 2
    dest = fetch.target_dir(REPO)
    assert dest.name == "ACE-Step--acestep-v15-xl-base-diffusers" and (dest / "acelora_fetch.json").is_file()
    on_disk = "".join(p.read_text(errors="ignore") for p in dest.parent.parent.rglob("*") if p.is_file())
    assert SECRET not in on_disk and SECRET not in ctx.events.path.read_text()


def test_missing_repo_id_is_refused(tmp_path):
    ctx = JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), {})
    with pytest.raises(ValueError, match="repo_id"):
        fetch.job_fetch(ctx, None)
