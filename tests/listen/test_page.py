"""The A/B page through AppTest: generate (a real detached `ab` job), listen blind, vote, reload, reveal."""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from state import jobs
from state.listen import ab, votes

from ab_kit import CAPTION
from locations import APP


@pytest.fixture(autouse=True)
def _not_demo(monkeypatch):
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/ab.py")
    return at.run()


def texts(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


@pytest.mark.long
def test_generate_listen_blind_vote_and_the_vote_survives_a_reload(ab_run):
    at = page()
    assert not at.exception
    assert at.selectbox(key="ab_run").value == ab_run.name
    assert at.text_area(key="ab_caption_tone0.wav").value == CAPTION  # prefilled from the run's dataset track
    assert at.number_input(key="ab_guidance").value == 7.0  # the base variant's default
    at.number_input(key="ab_steps").set_value(4)
    at.number_input(key="ab_dur_tone0.wav").set_value(2.0)
    at.button(key="ab_generate").click().run()
    assert not at.exception
    [comp] = ab.list_comparisons(ab_run)
    end = time.time() + 120
    while jobs.status(comp).active and time.time() < end:
        time.sleep(0.2)
    assert jobs.status(comp).status == "completed", jobs.log_tail(comp)
    at.run()
    assert not at.exception
    # blind: letters only, two players, no hint of which is the base
    shown = texts(at)
    assert "**A**" in shown and "**B**" in shown and "Base model" not in shown
    assert len(at.get("audio")) == 2
    meta = ab.read_meta(comp)
    at.button(key="ab_vote_A").click().run()
    assert not at.exception
    revealed = at.success[0].value
    assert "Your vote: A" in revealed and f"A = {ab.reveal(meta)['A']}" in revealed
    preferred = "adapter" if meta["blind"]["A"] != "base" else "base"

    # a fresh browser session (reload): the vote is read back from samples/votes.jsonl
    again = page()
    assert not again.exception
    assert f"A = {ab.reveal(meta)['A']}" in again.success[0].value
    assert f"adapter preferred {1 if preferred == 'adapter' else 0} of 1" in texts(again)
    assert votes.latest_votes(ab_run)[comp.name]["preferred"] == preferred


def test_no_run_says_where_to_go(workspace):
    at = page()
    assert not at.exception and "No runs yet" in at.info[0].value


def test_bad_scales_block_generate(ab_run):
    at = page()
    at.text_input(key="ab_scales").set_value("0, loud").run()
    assert any("'loud'" in w.value for w in at.warning)
    assert at.button(key="ab_generate").disabled


def test_runs_page_lists_training_previews_by_step(ab_run, tone):
    ab.samples_dir(ab_run).mkdir()
    for step in (0, 20):
        tone(ab.samples_dir(ab_run) / f"step-{step:06d}.wav", seconds=1.0)
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("app_pages/runs.py")
    at.run()
    assert not at.exception
    assert "**step 0**" in texts(at) and "**step 20**" in texts(at)
    assert len(at.get("audio")) == 2
