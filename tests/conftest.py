"""Shared fixtures. Teammates append their own below; keep each fixture self-contained."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Under pytest-xdist (pytest.ini: one worker per core) each worker, and every job it starts, computes on
# one thread, so N workers fill N cores instead of each process starting a thread per core. The tiny
# models' ops are too small to gain from more. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
# numba (librosa's beat tracker) caches compiled code on disk. Two workers compiling the same function
# at once left a cache that segfaulted every later call in a fresh clone, so each worker of a run has its
# own folder. Without one, label jobs would compile into each test's own workspace (trainer/label/signal.py
# prepare()), 20-50 s a test; a serial (-n0) run has one folder, kept between runs.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), (
    f"acelora-numba-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')[:12]}-{os.environ['PYTEST_XDIST_WORKER']}"
    if os.environ.get("PYTEST_XDIST_WORKER") else "acelora-numba-serial")))


def pytest_collection_modifyitems(items):
    """The `long` tests first: handed out one at a time (pytest.ini), they then spread over the workers."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the rest keep their order


import numpy as np  # noqa: E402 - after the thread settings, which numpy's BLAS reads at import
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches():
    """st.cache_data lives as long as the process: a Hub answer cached by one test (say, "no such repo")
    must not reach the next one on the same xdist worker, which may be any test of the suite."""
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()  # not cache_resource: its folder watchers are keyed by path, never shared
    yield


# ---------------------------------------------------------------- model layer (trainer/tiny, models, preprocess)

@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A throwaway ACELORA_HOME, so nothing is written into the repository. At teardown every job still
    alive in it is killed: a failed test must not leave a detached run training for the rest of the session."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ACELORA_HOME", str(home))
    yield home
    kill_jobs_under(home)


def kill_jobs_under(home: Path) -> None:
    from job_kit import kill_job

    from state import jobs

    for job_json in Path(home).rglob(jobs.JOB_FILE):
        kill_job(job_json.parent)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random-weights pipeline, saved once per session with save_pretrained."""
    from trainer.model.tiny import write_demo_model

    return write_demo_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def tiny_pipe(tiny_model_dir):
    """A fresh load of the tiny pipeline (0.1 s), so a test may mutate it freely."""
    import torch

    from trainer.model.load import load_pipeline

    return load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)


def write_tone(path: Path, seconds: float = 4.0, sr: int = 48000, channels: int = 2, freq: float = 440.0,
               amp: float = 0.5) -> Path:
    """A sine wave WAV (float32), the same tone on every channel."""
    import soundfile as sf

    t = np.arange(int(round(seconds * sr))) / sr
    mono = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(str(path), np.repeat(mono[:, None], channels, axis=1), sr, subtype="FLOAT")
    return Path(path)


@pytest.fixture
def tone():
    """write_tone(path, seconds=4.0, sr=48000, channels=2, freq=440.0, amp=0.5) -> path."""
    return write_tone


# ---------------------------------------------------------------- trainer (tests/test_train_*.py)

@pytest.fixture(scope="session")
def _train_cache(tmp_path_factory, tiny_model_dir):
    """A tiny dataset preprocessed once per session; tests copy the cache instead of re-running the VAE."""
    import os

    import torch

    from trainer.dataset.preprocess import preprocess_rows, read_manifest
    from trainer.model.load import load_pipeline

    from train_kit import write_dataset

    home = tmp_path_factory.mktemp("train_home")
    manifest = write_dataset(home / "dataset")
    old = os.environ.get("ACELORA_HOME")
    os.environ["ACELORA_HOME"] = str(home)
    try:
        pipe = load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)
        # what train_kit runs use: TrainConfig's max_seconds, 2 s crops
        preprocess_rows(pipe, read_manifest(manifest), str(tiny_model_dir), max_seconds=240.0, clip_seconds=2.0)
    finally:
        if old is None:
            os.environ.pop("ACELORA_HOME", None)
        else:
            os.environ["ACELORA_HOME"] = old
    return home, manifest


@pytest.fixture
def train_kit(workspace, _train_cache, tiny_model_dir, monkeypatch):
    """A workspace holding the warm preprocess cache; step events on every step so tests see each loss."""
    import shutil

    from trainer.train import meter

    from train_kit import Kit

    home, manifest = _train_cache
    shutil.copytree(home / "cache", workspace / "cache")
    monkeypatch.setenv("ACELORA_STEP_EVENT_INTERVAL", "0")  # for subprocesses
    monkeypatch.setattr(meter, "EVENT_INTERVAL_S", 0.0)     # for in-process runs
    return Kit(workspace, tiny_model_dir, manifest)


# ---------------------------------------------------------------- A/B listening (tests/test_ab_*.py)

@pytest.fixture(scope="session")
def _ab_run(tmp_path_factory, tiny_model_dir):
    """A finished run with two checkpoints and final/ (real adapter files), built once per session."""
    from ab_kit import build_run

    return build_run(tmp_path_factory.mktemp("ab") / "run-ab", tiny_model_dir)


@pytest.fixture
def ab_run(workspace, _ab_run):
    """That run copied into this test's workspace (lora_output/run-ab)."""
    import shutil

    dest = workspace / "lora_output" / _ab_run.name
    shutil.copytree(_ab_run, dest)
    return dest


# ---------------------------------------------------------------- the Hub (tests/hub_server.py)

@pytest.fixture(autouse=True)
def _no_real_hub(monkeypatch, tmp_path_factory):
    """No test reaches huggingface.co or this machine's saved Hub login: Hub calls outside the fake
    Hub (the `fake_hub` fixture) are refused at once, in this process and in the jobs it starts."""
    from huggingface_hub import constants

    dead = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    home = tmp_path_factory.getbasetemp() / "hf_home_empty"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
