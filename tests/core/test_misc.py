import os
import time
from pathlib import Path

import pytest

from state import paths
from state.fsutil import atomic_write_text, locked, read_json, write_json
from state.watch import FolderWatch

from locations import REPO


def test_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path / "home"))
    assert paths.root() == (tmp_path / "home").resolve()
    assert paths.run_dir("r1") == tmp_path / "home" / "lora_output" / "r1"
    assert paths.demo_model_dir() == tmp_path / "home" / "models" / "acelora-tiny-demo"
    monkeypatch.delenv("ACELORA_HOME")
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.root() == tmp_path.resolve() and paths.persistent()


def test_space_without_data_is_not_persistent(tmp_path, monkeypatch):
    monkeypatch.delenv("ACELORA_HOME", raising=False)
    monkeypatch.setenv("SPACE_ID", "me/acelora")
    monkeypatch.chdir(tmp_path)
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        pytest.skip("this machine has a writable /data")
    assert paths.root() == tmp_path.resolve()
    assert not paths.persistent()


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", "", " x", "x" * 101, ".git"])
def test_names_that_escape_are_refused(bad):
    with pytest.raises(ValueError, match="not allowed"):
        paths.check_name(bad)


def test_atomic_json_round_trip_and_no_temp_left(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1, "ü": "ß"})
    assert read_json(tmp_path / "a.json") == {"x": 1, "ü": "ß"}
    assert read_json(tmp_path / "missing.json", default=7) == 7
    atomic_write_text(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_lock_is_exclusive_across_threads(tmp_path):
    import threading
    order = []

    def worker(i):
        with locked(tmp_path / "m"):
            order.append(("in", i))
            time.sleep(0.05)
            order.append(("out", i))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(0, 6, 2):  # every "in" is followed by its own "out"
        assert order[k][0] == "in" and order[k + 1] == ("out", order[k][1])


def test_folder_watch_sees_new_audio_and_ignores_temp_files(tmp_path):
    w = FolderWatch(tmp_path, suffixes=(".wav", ".json"))
    try:
        g0 = w.generation
        (tmp_path / ".manifest.jsonl.abc.tmp").write_text("x")
        (tmp_path / "notes.txt").write_text("x")
        time.sleep(0.5)
        assert w.generation == g0
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "new.wav").write_bytes(b"RIFF")
        end = time.time() + 5
        while w.generation == g0 and time.time() < end:
            time.sleep(0.05)
        assert w.generation > g0
        assert any(p.endswith("new.wav") for p in w.take_changes())
        assert w.take_changes() == set()
    finally:
        w.stop()


HEAVY = ("torch", "diffusers", "transformers", "peft", "bitsandbytes")


def test_dashboard_side_never_imports_torch():
    """Every module of state/ and ui/, imported in a fresh interpreter, loads none of the heavy stack."""
    import subprocess
    import sys
    code = ("import importlib, pkgutil, sys\n"
            "for pkg in ('state', 'ui'):\n"
            "    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + '.'):\n"
            "        importlib.import_module(info.name)\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_pages_and_entry_import_neither_trainer_nor_torch():
    """app_pages/ and streamlit_app.py run as scripts (not importable alone): read their imports instead."""
    import ast
    files = [REPO / "streamlit_app.py", *sorted((REPO / "app_pages").glob("*.py"))]
    bad = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{f.name}: {n}" for n in names if n.split(".")[0] in HEAVY + ("trainer",)]
    assert len(files) > 3 and not bad, bad


def test_staged_dir_swaps_whole_or_leaves_the_old_folder(tmp_path):
    from state.fsutil import staged_dir
    dest = tmp_path / "final"
    with staged_dir(dest) as tmp:
        (tmp / "a.txt").write_text("v1")
    assert (dest / "a.txt").read_text() == "v1"
    with pytest.raises(RuntimeError):
        with staged_dir(dest) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (dest / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temp folder left


def test_no_heavy_import_anywhere_on_the_dashboard_side():
    import re
    repo = REPO
    heavy = re.compile(r"^\s*(import|from)\s+(torch|diffusers|transformers|peft|bitsandbytes|librosa)\b", re.M)
    files = [repo / "streamlit_app.py", *(repo / "app_pages").glob("*.py"), *(repo / "ui").glob("*.py"),
             *(repo / "state").glob("*.py")]
    assert len(files) > 20
    offenders = [str(f.relative_to(repo)) for f in files if heavy.search(f.read_text(encoding="utf-8"))]
    assert offenders == []
