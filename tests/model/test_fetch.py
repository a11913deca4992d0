"""trainer.model.fetch: error messages and progress with huggingface_hub mocked, then the real code path
against the local fake Hub: the native 2B base fetch (only the needed folders, a loadable folder, the
record), tokens from the environment, a saved login or the dashboard, never written anywhere."""
from __future__ import annotations

import json
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import errors

from state.events import EventWriter, read_all
from trainer.job import JobContext
from trainer.model import fetch

import release_kit
from hub_server import READ_TOKEN, WRITE_TOKEN, fake_hub, files_containing  # noqa: F401 - fixture
from train_kit import end_of, read_events, wait_for

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
    with pytest.raises(ValueError, match="No model id"):
        fetch.job_fetch(ctx, None)


# ---- against the local fake Hub (tests/hub_server.py): the real huggingface_hub code path ---------------

RELEASE = "ACE-Step/Ace-Step1.5"
JUNK_DIT = {"README.md": b"# acestep-v15-base", "modeling_acestep_v15_base.py": b"# remote code, never run"}


@pytest.fixture(scope="module")
def _release_files(tmp_path_factory, tiny_model_dir):
    """The files of both repos, written once from the tiny pipeline in the release layout."""
    import torch

    from trainer.model.load import load_pipeline

    pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
    root = tmp_path_factory.mktemp("release")
    dit = release_kit.write_dit(pipe, root / "dit")
    shared = release_kit.write_shared(pipe, root / "release")
    junk = {"README.md": b"# ACE-Step 1.5", "acestep-v15-turbo/model.safetensors": b"\0" * 40_000,
            "acestep-5Hz-lm-1.7B/model.safetensors": b"\0" * 60_000, "acestep-v15-turbo/config.json": b"{}"}
    return {**release_kit.folder_files(dit), **JUNK_DIT}, {**release_kit.folder_files(shared), **junk}


@pytest.fixture
def release_on_hub(fake_hub, _release_files):
    """The 2B base as the Hub holds it: its DiT repo, and the release repo whose other folders
    (the turbo DiT, the 1.7B LM) must never be requested."""
    from state.model.catalog import DEFAULT_MODEL_ID

    fake_hub.add_repo(DEFAULT_MODEL_ID, _release_files[0])
    fake_hub.add_repo(RELEASE, _release_files[1])
    return fake_hub


def _job(tmp_path, params):
    return JobContext(tmp_path / "job", EventWriter(tmp_path / "job"), params)


def test_native_base_fetch_downloads_only_what_it_needs_and_loads(workspace, release_on_hub, tiny_pipe, tmp_path):
    import torch

    from state.model import download
    from state.model.catalog import DEFAULT_MODEL_ID
    from trainer.model.load import load_pipeline

    hub = release_on_hub
    size = download.hub_size(DEFAULT_MODEL_ID)  # what the dashboard shows before the button
    ctx = _job(tmp_path, {"model_id": DEFAULT_MODEL_ID})
    assert fetch.job_fetch(ctx, None) == "completed"

    # only the DiT's weights/config/silence latent, and only vae/ + Qwen3-Embedding-0.6B/ of the release
    dit_files = set(hub.downloaded(DEFAULT_MODEL_ID))
    assert dit_files == {"config.json", "model.safetensors", "silence_latent.pt"}
    shared_files = hub.downloaded(RELEASE)
    assert shared_files and all(f.startswith(("vae/", "Qwen3-Embedding-0.6B/")) for f in shared_files)
    assert set(shared_files) == {f for f in hub.repos[RELEASE].files if f.startswith(("vae/", "Qwen3-"))}
    assert not [r for r in hub.requests if "acestep-v15-turbo" in r["path"] or "5Hz" in r["path"]]

    # a loadable diffusers folder, exactly the weights that were published; the download is gone
    dest = workspace / "models" / "ACE-Step--acestep-v15-base"
    assert (dest / "model_index.json").is_file() and not (workspace / "models" / ".incoming").exists()
    pipe = load_pipeline(DEFAULT_MODEL_ID, device="cpu", dtype=torch.float32)
    for name in ("transformer", "condition_encoder", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    # the record beside the weights: repos, resolved commits, files, bytes; the same as the size shown
    rec = json.loads((dest / "acelora_fetch.json").read_text())
    assert [p["repo_id"] for p in rec["parts"]] == [DEFAULT_MODEL_ID, RELEASE]
    for part in rec["parts"]:
        repo = hub.repos[part["repo_id"]]
        assert part["commit"] == repo.sha and part["revision"] == "main"
        assert {f["path"]: f["size"] for f in part["files"]} == {f: len(repo.files[f]) for f in
                                                                 hub.downloaded(part["repo_id"])}
        assert part["bytes"] == sum(f["size"] for f in part["files"])
    assert rec["bytes"] == size.bytes and rec["files"] == size.files and rec["source"] == size.source == "original"
    assert [p.commit for p in size.parts] == [p["commit"] for p in rec["parts"]]

    # one bar: download bytes of both repos, then the import; it never goes back and ends full
    phases = [e for e in read_all(ctx.events.path) if e["type"] == "phase"]
    assert {e["name"] for e in phases} == {"download", "import"}
    assert phases[-1]["name"] == "import" and [e["name"] for e in phases].index("import") > 0
    bar = [e["overall_done"] for e in phases]
    assert bar == sorted(bar) and bar[-1] == phases[-1]["overall_total"]
    dit_bytes = len(hub.repos[DEFAULT_MODEL_ID].files["model.safetensors"])
    assert phases[-1]["overall_total"] == rec["bytes"] + 2 * dit_bytes
    assert [e for e in read_all(ctx.events.path) if e["type"] == "model"][0]["model_dir"] == str(dest)


def test_an_unfetched_release_id_says_to_download_it(workspace):
    from state.model.catalog import DEFAULT_MODEL_ID
    from trainer.model.load import resolve_model_dir

    with pytest.raises(FileNotFoundError, match="original ACE-Step layout.*Download it first"):
        resolve_model_dir(DEFAULT_MODEL_ID)


@pytest.mark.parametrize("gated, token, message, hint", [
    (True, None, "is gated and no Hugging Face token is set", "hf auth login"),
    (True, READ_TOKEN, "has no access", "Accept the model's terms"),
    (False, "hf_notAvalidTOKENnotAvalidTOKEN0", "was rejected (401)", "new read token"),
])
def test_token_problems_are_explained(workspace, release_on_hub, tmp_path, monkeypatch, gated, token, message, hint):
    from state.model.catalog import DEFAULT_MODEL_ID

    release_on_hub.repos[RELEASE].gated = gated
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    ctx = _job(tmp_path, {"model_id": DEFAULT_MODEL_ID})
    assert fetch.job_fetch(ctx, None) == "failed"
    [err] = [e for e in read_all(ctx.events.path) if e["type"] == "error"]
    assert message in err["message"] and hint in err["hint"], err
    assert not (workspace / "models" / "ACE-Step--acestep-v15-base").exists()
    if token:
        assert files_containing(workspace, token) == [] and files_containing(tmp_path / "job", token) == []


def test_a_saved_login_token_is_used_and_never_written(workspace, release_on_hub, tmp_path):
    from huggingface_hub import constants

    from state.model.catalog import DEFAULT_MODEL_ID

    release_on_hub.repos[RELEASE].gated = True  # only WRITE_TOKEN's account accepted the terms
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text(WRITE_TOKEN)  # what `hf auth login` leaves behind
    ctx = _job(tmp_path, {"model_id": DEFAULT_MODEL_ID})
    assert fetch.job_fetch(ctx, None) == "completed"
    assert {r["token"] for r in release_on_hub.requests if RELEASE in r["path"]} == {WRITE_TOKEN}
    assert files_containing(workspace, WRITE_TOKEN) == [] and files_containing(tmp_path / "job", WRITE_TOKEN) == []


def test_missing_repo_and_revision_are_explained(workspace, fake_hub, tmp_path):
    from state.model import download

    with pytest.raises(fetch.FetchError, match="was not found") as info:
        download.hub_size("Runware/acestep-v15-base-diffusers")  # the unconfirmed id: absent from this Hub
    assert "spelling" in info.value.hint
    fake_hub.add_repo("someone/acestep-v15-sft-diffusers", {"model_index.json": b"{}"})
    ctx = _job(tmp_path, {"model_id": "someone/acestep-v15-sft-diffusers", "revision": "no-such-branch"})
    assert fetch.job_fetch(ctx, None) == "failed"
    assert "no such revision" in [e for e in read_all(ctx.events.path) if e["type"] == "error"][0]["message"]


def test_dashboard_fetch_of_a_gated_diffusers_repo(workspace, fake_hub, tiny_model_dir, tmp_path):
    """The dashboard's path: hub_size, then start_fetch with a password-field token that reaches the
    job only through its environment; only the pipeline's folders arrive; the folder loads."""
    import torch

    from state import jobs
    from state.model import download
    from trainer.model.load import load_pipeline

    repo = "ACE-Step/acestep-v15-xl-base-diffusers"
    extra = {"README.md": b"# card", "silence_latent.pt": b"\0" * 999, "samples/demo.wav": b"\0" * 5000}
    fake_hub.add_repo(repo, {**release_kit.folder_files(tiny_model_dir), **extra}, gated=True)
    size = download.hub_size(repo, WRITE_TOKEN)
    assert size.source == "diffusers" and not set(extra) & set(size.parts[0].files)
    job = download.start_fetch(repo, WRITE_TOKEN)
    assert wait_for(lambda: not jobs.reconcile(job).active, 120), jobs.log_tail(job)
    assert end_of(job)["status"] == "completed", read_events(job)[-3:]
    assert download.fetch_jobs(repo) == [job]
    assert set(fake_hub.downloaded(repo)) == set(size.parts[0].files) and size.files == len(size.parts[0].files)
    dest = download.target_dir(repo)
    assert json.loads((dest / "acelora_fetch.json").read_text())["bytes"] == size.bytes
    assert load_pipeline(repo, device="cpu", dtype=torch.float32).transformer is not None
    assert files_containing(workspace, WRITE_TOKEN) == []  # not in params, events, log or the model


def test_train_page_shows_size_flags_unconfirmed_ids_and_starts_the_fetch(workspace, release_on_hub, monkeypatch):
    """The Train page with the default model not yet here: the size from the Hub, one Download
    button, then the fetch job's bar; an unconfirmed id says so."""
    from streamlit.testing.v1 import AppTest

    from state import jobs
    from state.dataset import manifest
    from state.model import download
    from state.model.catalog import DEFAULT_MODEL_ID
    from tests.audio_fixtures import sine

    from locations import APP

    monkeypatch.setenv("ACELORA_MODEL", DEFAULT_MODEL_ID)
    (workspace / "music").mkdir()
    sine(workspace / "music" / "a.wav", seconds=3.0, sr=48000, freq=220)
    manifest.scan(manifest.create_dataset("demo", workspace / "music"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception
    size = download.hub_size(DEFAULT_MODEL_ID)
    shown = " ".join(i.value for i in at.info)
    assert f"in {size.files} files from ACE-Step/acestep-v15-base, ACE-Step/Ace-Step1.5, then converted" in shown

    box = at.selectbox(key="train_model")
    unconfirmed = "Runware/acestep-v15-base-diffusers"
    assert "(unconfirmed id)" in box.format_func(unconfirmed)
    box.select(unconfirmed).run()
    warnings = " ".join(w.value for w in at.warning)
    assert "is not a confirmed Hub id" in warnings and "Download size unknown" in warnings

    box.select(DEFAULT_MODEL_ID).run()
    at.button(key="train_fetch").click().run()
    [job] = download.fetch_jobs(DEFAULT_MODEL_ID)
    try:  # the in-process test above follows a fetch to the end; here: the page shows its one bar
        assert wait_for(lambda: any(e.get("name") == "download" and e["done"] == e["total"]
                                    for e in read_events(job, "phase")), 60), jobs.log_tail(job)
        at.run()
        assert not at.exception and not [b for b in at.button if b.label == "Download model"]
        bar = [e for e in at.get("progress")][0].proto.text
        assert bar.startswith("Downloading: ") and f"{size.files} of {size.files} files" in bar, bar
    finally:
        jobs.kill(job)
    assert json.loads((job / "params.json").read_text()) == {"model_id": DEFAULT_MODEL_ID}


def test_download_panel_works_inside_an_expander(workspace, fake_hub):
    """The Dataset page shows the panel (for the 5 Hz LM) inside an expander; nothing in it may nest one."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from ui import model_fetch

        with st.expander("Download the LM", expanded=True):
            model_fetch.download_panel("ACE-Step/acestep-5Hz-lm-0.6B")

    fake_hub.add_repo("ACE-Step/acestep-5Hz-lm-0.6B", {"config.json": b"{}", "model.safetensors": b"\0" * 4000})
    at = AppTest.from_function(page, default_timeout=30).run()
    assert not at.exception
    assert "Download: **4.0 kB** in 2 files from ACE-Step/acestep-5Hz-lm-0.6B." in at.info[0].value


def test_a_failed_import_keeps_the_download_and_the_retry_fetches_nothing_again(workspace, release_on_hub, tmp_path,
                                                                                 monkeypatch):
    from state.model.catalog import DEFAULT_MODEL_ID
    from trainer.model import convert

    real = convert.import_original
    monkeypatch.setattr(convert, "import_original", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        fetch.job_fetch(_job(tmp_path / "a", {"model_id": DEFAULT_MODEL_ID}), None)
    assert (workspace / "models" / ".incoming" / "ACE-Step--acestep-v15-base" / "vae").is_dir()
    first = len(release_on_hub.downloaded(RELEASE)) + len(release_on_hub.downloaded(DEFAULT_MODEL_ID))
    monkeypatch.setattr(convert, "import_original", real)
    ctx = _job(tmp_path / "b", {"model_id": DEFAULT_MODEL_ID})
    assert fetch.job_fetch(ctx, None) == "completed"
    again = len(release_on_hub.downloaded(RELEASE)) + len(release_on_hub.downloaded(DEFAULT_MODEL_ID))
    assert first > 0 and again == first, "the retry downloaded files it already had"
    assert not (workspace / "models" / ".incoming").exists()
    first_bar = [e for e in read_all(ctx.events.path) if e["type"] == "phase"][0]
    assert first_bar["done"] == first_bar["total"]  # the bar starts full: everything was already there


def test_a_rejected_token_from_the_token_field_is_named_as_such(workspace, release_on_hub):
    from state.model import download
    from state.model.catalog import DEFAULT_MODEL_ID

    with pytest.raises(fetch.FetchError) as info:
        download.hub_size(DEFAULT_MODEL_ID, "hf_pastedBUTwrongPASTEDbutWRONG00")
    assert "(in the token field) was rejected (401)" in str(info.value) and "token field" in info.value.hint
