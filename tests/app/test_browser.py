"""End to end in a real browser: `streamlit run` + headless Chromium (Debian's `chromium` package).

The workspace already holds a dataset pointing at a folder with two good songs and one file of
random bytes named .wav. The test opens the page, waits for the scan to render, checks that the
track names and the bad file's error are on screen, and saves a full-page screenshot to
tests/artifacts/dataset_page.png for a person to look at. Playwright drives the system Chromium
through `executable_path`; it never downloads a browser of its own.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf

from locations import REPO

ARTIFACTS = REPO / "tests" / "artifacts"
SR = 48000
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if exe := shutil.which(name):
            return exe
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout}s")


def make_music(folder: Path) -> Path:
    folder.mkdir(parents=True)
    t = np.arange(SR * 12) / SR
    sf.write(folder / "alpha.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), SR)
    sf.write(folder / "beta.flac", (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), SR)
    (folder / "broken.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    return folder


@pytest.fixture
def server(tmp_path, monkeypatch):
    """`streamlit run` on a free port, against a workspace that already has one dataset."""
    home = tmp_path / "home"
    monkeypatch.setenv("ACELORA_HOME", str(home))
    from state.dataset import manifest

    manifest.create_dataset("album", make_music(tmp_path / "music"))
    # a non-demo model: opening Train would otherwise start the demo-model build job (torch)
    yield from _serve(tmp_path, home, {"ACELORA_MODEL": "tests/not-the-demo-model"})


@pytest.fixture
def fresh_demo_server(tmp_path, monkeypatch):
    """A fresh workspace with one dataset: the demo model is the default and not built yet."""
    home = tmp_path / "home"
    monkeypatch.setenv("ACELORA_HOME", str(home))
    from state.dataset import manifest

    ds = manifest.create_dataset("album", make_music(tmp_path / "music"))
    manifest.scan(ds)
    try:
        for url in _serve(tmp_path, home, {"ACELORA_STEP_EVENT_INTERVAL": "1"}):
            yield url, home
    finally:  # a failed test must not leave its 400-step run (or a preview) training in the background
        from state import jobs

        for d in jobs.list_jobs():
            jobs.kill(d)


def _serve(tmp_path, home, extra_env):
    port = free_port()
    env = {**os.environ, "ACELORA_HOME": str(home), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **extra_env}
    env.pop("SPACE_ID", None)
    if "ACELORA_MODEL" not in extra_env:
        env.pop("ACELORA_MODEL", None)
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _browser(pw, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium binary: install Debian's `chromium` package (apt-get install -y chromium)")
    # a persistent context is how Playwright takes a fresh --user-data-dir
    return pw.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 1000})


def _full_page_shot(page, name: str, width: int = 1400) -> Path:
    # make the viewport as tall as the page: Streamlit scrolls inside stMain, not the window
    for _ in range(3):  # the layout reflows after a resize; repeat until it fits
        height = page.evaluate("() => Math.max(document.querySelector('[data-testid=stMain]')"
                               ".scrollHeight, document.body.scrollHeight)")
        if height <= page.viewport_size["height"]:
            break
        page.set_viewport_size({"width": width, "height": min(int(height) + 40, 6000)})
        page.wait_for_timeout(400)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    return ARTIFACTS / name


def _settled_metrics(page, count: int, timeout_s: float = 30) -> list[str]:
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        running = page.get_by_test_id("stStatusWidgetRunningIcon").count() > 0
        metrics = [m.inner_text() for m in page.get_by_test_id("stMetric").all()]
        # the same full set twice in a row with no script run in progress
        if (not running and len(metrics) >= count and metrics == last) or time.monotonic() > deadline:
            return metrics
        last = None if running else metrics
        page.wait_for_timeout(250)


def test_dataset_page_in_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt (playwright)")

    with sync_api.sync_playwright() as pw:
        browser = _browser(pw, tmp_path)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.goto(server, wait_until="domcontentloaded", timeout=30_000)
            # the scan has rendered once the metrics and the problem list are there
            page.get_by_test_id("stMetric").first.wait_for(timeout=30_000)
            page.get_by_text("broken.wav cannot be decoded as audio").wait_for(timeout=30_000)
            # Streamlit streams a script run's elements as they come: read the metrics once the run is over
            # (CI once read three of the five mid-run)
            metrics = _settled_metrics(page, 5)
            text = page.get_by_test_id("stMain").inner_text()

            _full_page_shot(page, "dataset_page.png")

            # the labels table is a canvas, so read the track names where a user picks them: the Track list
            page.get_by_test_id("stSelectbox").filter(has_text="Track").click()
            tracks = page.get_by_role("option").all_inner_texts()
            page.keyboard.press("Escape")

            # at 800 px no metric is cut short ("Usable audio 2.2…")
            page.set_viewport_size({"width": 800, "height": 1000})
            page.wait_for_timeout(800)
            cut = page.evaluate("() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                                ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
            _full_page_shot(page, "dataset_page_800.png", width=800)
        finally:
            browser.close()

    assert [" ".join(m.split()) for m in metrics] == ["Tracks 3", "OK 2", "Warnings 0", "Errors 1",
                                                      "Usable audio 0.4 min"]
    assert "Can train on 2 track(s)." in text
    assert "Problems (1 files, 0 stray sidecars)" in text
    assert "broken.wav cannot be decoded as audio" in text and "re-export it as WAV or FLAC" in text
    assert [t.strip() for t in tracks] == ["alpha.wav", "beta.flac", "broken.wav"]
    assert cut == []
    assert "❌ broken.wav" in text  # the problem list names the file
    assert "Traceback" not in text and "Error running app" not in text
    assert (ARTIFACTS / "dataset_page.png").stat().st_size > 10_000


LIVE_S = 120  # how long the live view is watched for console errors and WebGL warnings


class Console:
    """The page's console errors, uncaught exceptions and WebGL warnings, as the browser reports them."""

    def __init__(self, page):
        self.errors, self.webgl = [], []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _message(self, msg) -> None:
        if "webgl" in msg.text.lower():
            self.webgl.append(msg.text)
        elif msg.type == "error":
            self.errors.append(msg.text)


def _nav(page, title: str) -> None:
    # through the sidebar, as a user does: the browser session (and its settings) stays the same
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()


def _number(page, label: str):
    return page.get_by_label(label, exact=True)


@pytest.mark.long
def test_train_flow_follows_the_user_in_chromium(fresh_demo_server, tmp_path):
    """A fresh workspace in a real browser: Start unlocks by itself once the demo model is built;
    settings survive a page switch; the run just started is on screen at once with its Stop button;
    Save now and Sample now are acknowledged; two minutes
    of live view log no console error and (almost) no WebGL warning; Stop leaves it stopped."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt (playwright)")
    url, home = fresh_demo_server
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw, tmp_path)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            console = Console(page)
            # the README's address, then the sidebar (a deep link's first load makes Streamlit probe
            # /train/_stcore/health and log two 404s of its own)
            page.goto(url, wait_until="domcontentloaded", timeout=30_000)
            page.get_by_test_id("stMetric").first.wait_for(timeout=90_000)
            _nav(page, "Train")
            page.get_by_text("Building the demo model").wait_for(timeout=30_000)
            start = page.get_by_role("button", name="Start training")
            # nothing is clicked while the demo model builds: the page must notice the job ending itself
            t0 = time.monotonic()
            while start.is_disabled() and time.monotonic() - t0 < 180:
                page.wait_for_timeout(500)
            built_after_s = time.monotonic() - t0
            assert start.is_enabled(), page.get_by_test_id("stMain").inner_text()

            page.get_by_test_id("stSelectbox").filter(has_text="Start from preset").click()
            page.get_by_role("option", name="Quick test (minutes, checks the pipeline)").click()
            page.get_by_text("30 optimizer steps (").wait_for(timeout=30_000)
            steps = _number(page, "Max steps (0 = use epochs)")
            steps.fill("20000")
            steps.press("Enter")
            page.get_by_text("20000 optimizer steps (").wait_for(timeout=30_000)

            # ---- settings survive a page switch
            _nav(page, "Dataset")
            page.get_by_test_id("stMetric").first.wait_for(timeout=90_000)
            _nav(page, "Train")
            page.get_by_text("20000 optimizer steps (").wait_for(timeout=30_000)
            kept_steps = _number(page, "Max steps (0 = use epochs)").input_value()
            kept_rank = _number(page, "LoRA rank").input_value()
            _full_page_shot(page, "train_new_run.png")

            # ---- start: the live view shows this run and its Stop button within seconds
            page.get_by_role("button", name="Start training").click()
            t_start = time.monotonic()
            stop = page.get_by_role("button", name="⏹ Stop & save")
            stop.wait_for(timeout=15_000)
            shown_after_s = time.monotonic() - t_start
            [run_dir] = list((home / "lora_output").iterdir())
            picked = page.get_by_role("combobox", name="Run", exact=True).input_value()

            # the first step events arrived: the charts replace "Waiting for the first training step"
            page.get_by_test_id("stPlotlyChart").first.wait_for(timeout=420_000)
            page.get_by_role("button", name="💾 Save now").click()
            page.get_by_text("Saved checkpoint step-").wait_for(timeout=120_000)
            page.get_by_role("button", name="🎧 Sample now").click()
            # acknowledged at once; the preview itself renders in the background (50 denoising steps), and
            # its arrival in the live view is checked without a browser (tests/train/test_page_follows.py)
            page.get_by_text("Preview requested").or_(page.get_by_text("Rendering a preview")).first.wait_for(
                timeout=60_000)

            # ---- watch the live view until it has been on screen for LIVE_S (the preview renders meanwhile)
            while time.monotonic() - t_start < LIVE_S:
                page.wait_for_timeout(2000)
            live_s = time.monotonic() - t_start
            live_text = page.get_by_test_id("stMain").inner_text()
            _full_page_shot(page, "train_live.png")
            page.get_by_role("button", name="⏹ Stop & save").click()
            page.get_by_text("⏹ Stop requested at").wait_for(timeout=60_000)
            page.get_by_text("⏸️ stopped").first.wait_for(timeout=120_000)
            page.get_by_role("button", name="▶ Resume").wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let plotly finish drawing before the picture
            stopped_text = page.get_by_test_id("stMain").inner_text()
            _full_page_shot(page, "train_stopped.png")

            _nav(page, "Runs")
            page.get_by_text("Run details").wait_for(timeout=30_000)
            page.get_by_text("⏸️ stopped").first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)
            runs_text = page.get_by_test_id("stMain").inner_text()
            _full_page_shot(page, "runs_page.png")
            errors, webgl = list(console.errors), list(console.webgl)
        except Exception:
            _full_page_shot(page, "train_flow_failure.png")  # what the page showed when it gave up
            raise
        finally:
            browser.close()

    print(f"demo model built, Start enabled after {built_after_s:.1f} s; live view after {shown_after_s:.1f} s; "
          f"{len(webgl)} WebGL warning(s), {len(errors)} console error(s) in {live_s:.0f} s of live view")
    assert (kept_steps, kept_rank) == ("20000", "8")  # the Quick test preset's rank, and the edited steps
    assert shown_after_s < 15 and run_dir.name in picked
    assert "Traceback" not in live_text and "Run time" in live_text and "-" + "1m" not in live_text
    assert "Demo model: random weights" not in live_text  # the preflight is in the other tab
    assert "Tiny demo model" in live_text
    assert not errors, errors
    assert len(webgl) <= 3, webgl[:5]
    assert "▶ Resume" in stopped_text and "New run from these settings" in stopped_text
    # the dashboard process itself never loaded torch (only the job subprocesses did)
    port = url.rsplit(":", 1)[1]
    [server] = [p for p in psutil.process_iter(["cmdline"]) if port in " ".join(p.info["cmdline"] or [])
                and "streamlit" in " ".join(p.info["cmdline"] or [])]
    mapped = {m.path for m in server.memory_maps()}
    assert not [m for m in mapped if "libtorch" in m or "/torch/" in m]
    assert "Traceback" not in runs_text and "Error running app" not in runs_text
    assert "tiny demo model" in runs_text


@pytest.fixture
def gated_server(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ACELORA_HOME", str(home))
    yield from _serve(tmp_path, home, {"ACELORA_MODEL": "tests/not-the-demo-model", "APP_PASSWORD": "s3cret-pw"})


def test_first_visit_straight_to_a_page_still_goes_through_the_app(gated_server, tmp_path):
    """A fresh server's very first request is a bookmarked /train: the entry script (navigation,
    sidebar, password gate) must still run. Streamlit runs a file from a folder literally named
    `pages/` next to the entry script on its own in that case, skipping all three."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt (playwright)")
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw, tmp_path)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.goto(f"{gated_server}/train", wait_until="domcontentloaded", timeout=30_000)
            page.get_by_text("password protected").wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            text = page.get_by_test_id("stMain").inner_text()
        finally:
            browser.close()
    assert "Preflight" not in text and "Start training" not in text
