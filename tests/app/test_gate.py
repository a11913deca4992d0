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


def test_wrong_passwords_make_every_session_wait(locked, monkeypatch):
    from ui import gate

    clock = [1000.0]
    monkeypatch.setattr(gate, "_now", lambda: clock[0])
    monkeypatch.setitem(gate._fails, "count", 0)
    monkeypatch.setitem(gate._fails, "until", 0.0)

    def attempt(at: AppTest, password: str) -> str:
        at.text_input(key="gate_password").input(password)
        at.button[0].click().run()
        return at.error[0].value if at.error else ""

    at = AppTest.from_file(APP, default_timeout=60).run()
    for i in range(gate.FREE_TRIES):
        assert attempt(at, f"guess {i}") == "Wrong password."
    assert attempt(at, "correct horse").startswith("Too many wrong passwords: try again in")
    fresh = AppTest.from_file(APP, default_timeout=60).run()  # a new tab does not start over
    assert attempt(fresh, "correct horse").startswith("Too many wrong passwords")
    clock[0] += 2.0  # the wait after the sixth wrong try is 1 s
    assert attempt(fresh, "correct horse") == "" and "Dataset" in " ".join(titles(fresh))
    assert gate._fails["count"] == 0  # the right password resets it


def test_a_request_through_the_authenticating_proxy_is_not_asked_again(locked, monkeypatch):
    from ui import gate

    monkeypatch.setenv(gate.NONCE_ENV, "n0nce")
    monkeypatch.setattr(gate, "_through_proxy", lambda: True)  # AppTest has no request headers to carry it
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception and "AceLoRA" not in titles(at)
    monkeypatch.setattr(gate, "_through_proxy", lambda: False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert titles(at) == ["AceLoRA"]


def test_only_the_proxy_s_secret_header_counts(monkeypatch):
    from types import SimpleNamespace

    from ui import gate

    fake = SimpleNamespace(context=SimpleNamespace(headers={gate.PROXY_HEADER: "n0nce"}))
    monkeypatch.setattr(gate, "st", fake)
    monkeypatch.delenv(gate.NONCE_ENV, raising=False)
    assert not gate._through_proxy()  # no proxy started this process: a client's header means nothing
    monkeypatch.setenv(gate.NONCE_ENV, "n0nce")
    assert gate._through_proxy()
    fake.context.headers = {gate.PROXY_HEADER: "guess"}
    assert not gate._through_proxy()
    fake.context.headers = {}
    assert not gate._through_proxy()
