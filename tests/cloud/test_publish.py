"""The publish job against a local Hub (tests/hub_server.py): what lands in the repository, the
model card, plain messages for a missing / read-only / rejected token, and no token on disk."""
from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import ModelCard

from state import jobs
from state.cloud import hub
from state.events import EVENTS_FILE, last_event

from hub_server import READ_TOKEN, WRITE_TOKEN, fake_hub, files_containing  # noqa: F401 - fixture
from locations import APP
from train_kit import end_of, wait_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def trained_run(kit, name: str = "run-a") -> Path:
    """A real 3-step run of the tiny model (in process), plus two A/B renders in samples/."""
    import numpy as np
    import soundfile as sf

    d = kit.run_dir(name, max_steps=3)
    assert kit.run(d) == 0, (d / "log.txt").read_text() if (d / "log.txt").exists() else ""
    (d / "samples").mkdir(exist_ok=True)
    tone = (0.2 * np.sin(np.linspace(0, 400 * np.pi, 48000))).astype("float32")
    for ab in ("a_base", "b_lora"):
        sf.write(d / "samples" / f"step-3_{ab}.wav", np.stack([tone, tone], 1), 48000)
    return d


def publish(run_id: str, repo: str, token: str | None) -> Path:
    job = hub.start_publish(run_id, repo, True, token)
    assert wait_for(lambda: not jobs.reconcile(job).active, 120), jobs.log_tail(job)
    return job


def test_publish_uploads_adapter_curve_samples_and_card(train_kit, fake_hub):
    run = trained_run(train_kit)
    job = publish(run.name, "my-lora", WRITE_TOKEN)
    assert end_of(job)["status"] == "completed", jobs.log_tail(job)
    done = last_event(job / EVENTS_FILE, ["published"])
    assert done["repo_id"] == "alice/my-lora" and done["url"].endswith("/alice/my-lora")

    repo = fake_hub.repos["alice/my-lora"]
    assert repo.private, "publish must default to a private repository"
    expected = {"pytorch_lora_weights.safetensors", "adapter_config.json", "adapter_model.safetensors",
                "training_meta.json", "loss_curve.png", "README.md",
                "samples/step-3_a_base.wav", "samples/step-3_b_lora.wav"}
    assert set(repo.files) == expected
    for name in ("pytorch_lora_weights.safetensors", "adapter_model.safetensors", "adapter_config.json",
                 "training_meta.json"):
        assert repo.files[name] == (run / "final" / name).read_bytes(), name
    assert repo.files["loss_curve.png"].startswith(PNG_MAGIC)
    assert repo.files["samples/step-3_b_lora.wav"] == (run / "samples" / "step-3_b_lora.wav").read_bytes()

    card = repo.files["README.md"].decode()
    data = ModelCard(card).data  # what the Hub reads from the front matter
    assert data.library_name == "diffusers" and data.pipeline_tag == "text-to-audio"
    assert {"ace-step", "lora", "text-to-audio"} <= set(data.tags)
    assert data.base_model is None  # trained on a local folder: no Hub id to name
    assert data.widget[0]["output"]["url"] == "samples/step-3_b_lora.wav"  # the newest sample plays on the page
    assert 'pipe.load_lora_weights("alice/my-lora"' in card
    assert "ACE-Step UI" in card and "adapter_config.json" in card and "hf download alice/my-lora" in card
    assert f"{fake_hub.url}/alice/my-lora/resolve/main/samples/step-3_b_lora.wav" in card
    assert "![loss curve](loss_curve.png)" in card and "| rank / alpha / dropout | 4 / 4.0 /" in card
    assert "Demo adapter" not in card  # trained on a local folder, not the demo id
    assert fake_hub.validated_yaml == [card], "the card's YAML goes through the Hub's validator"

    # the token went to the Hub on every call, and nowhere else
    assert {r["token"] for r in fake_hub.requests} == {WRITE_TOKEN}
    assert files_containing(train_kit.home, WRITE_TOKEN) == []


def test_missing_token_is_explained_before_any_hub_call(train_kit, fake_hub):
    run = trained_run(train_kit)
    job = publish(run.name, "my-lora", None)
    assert end_of(job)["status"] == "failed"
    err = last_event(job / EVENTS_FILE, ["error"])
    assert "No Hugging Face token" in err["message"] and "HF_TOKEN" in err["hint"]
    assert fake_hub.requests == []


def test_read_only_token_gets_a_403_message(train_kit, fake_hub):
    run = trained_run(train_kit)
    job = publish(run.name, "my-lora", READ_TOKEN)
    err = last_event(job / EVENTS_FILE, ["error"])
    assert end_of(job)["status"] == "failed"
    assert "may not write to my-lora (403)" in err["message"] and "read-only" in err["message"]
    assert "write access" in err["hint"]
    assert files_containing(train_kit.home, READ_TOKEN) == []


def test_rejected_token_gets_a_401_message(train_kit, fake_hub):
    run = trained_run(train_kit)
    job = publish(run.name, "my-lora", "hf_notAvalidTOKENatALL000000000")
    err = last_event(job / EVENTS_FILE, ["error"])
    assert "rejected (401)" in err["message"] and "write token" in err["hint"]


def test_run_without_final_adapter_is_refused(workspace, fake_hub):
    d = workspace / "lora_output" / "unfinished"
    d.mkdir(parents=True)
    job = publish("unfinished", "my-lora", WRITE_TOKEN)
    err = last_event(job / EVENTS_FILE, ["error"])
    assert "no finished adapter" in err["message"] and fake_hub.requests == []


def test_publish_page_passes_a_pasted_token_only_through_the_environment(train_kit, fake_hub, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    run = trained_run(train_kit, "run-page")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/publish.py").run()
    assert not at.exception
    at.text_input(key="publish_token").input(WRITE_TOKEN).run()
    assert at.selectbox(key="publish_run").value == run.name
    at.text_input(key="publish_repo").input("page-lora").run()
    at.button(key="publish_go").click().run()
    assert not at.exception
    job = hub.latest_job("publish")
    assert wait_for(lambda: not jobs.reconcile(job).active, 120), jobs.log_tail(job)
    assert end_of(job)["status"] == "completed", jobs.log_tail(job)
    assert "alice/page-lora" in fake_hub.repos
    at.run()
    assert any("alice/page-lora" in s.value for s in at.success)
    # neither the workspace (settings, params, events, logs, job.json) nor the run holds the token
    assert files_containing(train_kit.home, WRITE_TOKEN) == []
    assert "HF_TOKEN" not in os.environ
