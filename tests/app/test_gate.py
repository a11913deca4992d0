"""APP_PASSWORD: every page is blocked until the right password; without it the app is open."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from locations import APP

PAGES = ["app_pages/dataset.py", "app_pages/train.py", "app_pages/runs.py", "app_pages/publish.py"]


@pytest.fixture
def locked(workspace, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "correct horse")
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    return workspace


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_every_page_is_blocked_until_the_password(locked):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and titles(at) == ["AceLoRA"]
    assert not at.sidebar.markdown, "the sidebar (device, jobs, Space panel) stays hidden too"
    assert "password" in at.info[0].value
    for page in PAGES:  # no page is even registered while locked, so no link or URL can run one
        with pytest.raises(ValueError, match=r"Known pages: \['Sign in'\]"):
            at.switch_page(page)
    at.text_input(key="gate_password").input("wrong")  # a form: typed and submitted in one run
    at.button[0].click().run()
    assert titles(at) == ["AceLoRA"] and at.error[0].value == "Wrong password."
    assert not (locked / "jobs").exists() and not (locked / "datasets").exists()

    at.text_input(key="gate_password").input("correct horse")
    at.button[0].click().run()
    assert not at.exception and "Dataset" in " ".join(titles(at))
    at.switch_page("app_pages/publish.py").run()
    assert titles(at) == ["Publish"]


def test_no_password_means_no_gate(workspace, monkeypatch):
    monkeypatch.delenv("APP_PASSWORD", raising=False)
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "AceLoRA" not in titles(at)
