"""The Dataset page driven through Streamlit's AppTest against a temporary workspace.

Every test gets its own `$ACELORA_HOME` (tmp_path) and synthetic audio written with numpy +
soundfile, then clicks through the page the way a user would and asserts on what is shown and
on the files left on disk. streamlit 1.67's AppTest drives `st.file_uploader` (set_value with
(name, bytes, mime) tuples) and seeds `st.data_editor` edits through session_state, so uploads
and table edits go through the real widgets here.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from locations import APP

SR = 48000
TIMEOUT = 60


# ---- helpers ------------------------------------------------------------------------------

def tone(seconds: float = 12.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype("float32")


def wav_bytes(seconds: float = 12.0, freq: float = 440.0) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, freq), SR, format="WAV")
    return buf.getvalue()


def make_music(folder: Path) -> Path:
    """Two decodable songs and one file of random bytes that only pretends to be a WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "alpha.wav", tone(freq=440), SR)
    sf.write(folder / "beta.flac", tone(freq=220), SR)
    (folder / "broken.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    return folder


def text_of(at: AppTest) -> str:
    """Everything a user can read on the page, as one string."""
    parts = [e.value for kind in ("title", "subheader", "markdown", "caption", "success", "info",
                                  "warning", "error") for e in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def fresh() -> AppTest:
    """A new session, as after a browser reload."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert not (Path(os.environ["ACELORA_HOME"]) / "jobs").exists(), "the page started a job"
    return at


def create_from_folder(name: str, folder: Path) -> AppTest:
    at = fresh()
    at.text_input(key="data_new_name").input(name)
    at.text_input(key="data_new_folder").input(str(folder))
    at.run()
    at.button(key="data_create_folder").click().run()
    assert not at.exception
    return at


def editor_key(at: AppTest) -> str:
    (editor,) = at.data_editor
    return editor.key


def manifest_rows(workspace: Path, name: str) -> dict[str, dict]:
    path = workspace / "datasets" / name / "manifest.jsonl"
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty $ACELORA_HOME. A non-demo model id keeps the sidebar from launching the demo-model
    build job (a ~1 GB torch subprocess per fresh workspace) on every page load."""
    ws = tmp_path / "ws"
    monkeypatch.setenv("ACELORA_HOME", str(ws))
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    monkeypatch.delenv("SPACE_ID", raising=False)
    return ws


# ---- (a) create from a folder -------------------------------------------------------------

def test_empty_workspace_asks_for_a_dataset(workspace):
    at = fresh()
    assert "Create a dataset above" in text_of(at)
    assert not at.metric


def test_create_from_folder_shows_counts_verdict_and_problems(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    at = create_from_folder("album", music)

    assert metrics(at) == {"Tracks": "3", "OK": "2", "Warnings": "0", "Errors": "1", "Usable audio": "0.4 min"}
    assert at.selectbox(key="data_pick").value == "album"
    assert any(f"Audio folder: `{music.resolve()}`" in c.value for c in at.caption)
    # two usable tracks without captions: trainable, but the verdict says captions are missing
    assert [i.value for i in at.info] == [
        "Can train on 2 track(s). 2 have no caption or lyrics: captions are strongly recommended "
        "(label them here, or run Auto-label)."]
    assert not at.error
    # the bad file is listed, by name, with the reason and the fix
    problems = next(e for e in at.expander if e.label.startswith("Problems"))
    assert problems.label == "Problems (1 files, 0 stray sidecars)"
    md = "\n".join(m.value for m in problems.markdown)
    assert "❌ broken.wav" in md
    assert "broken.wav cannot be decoded as audio" in md and "re-export it as WAV or FLAC" in md
    assert "alpha.wav" not in md and "beta.flac" not in md
    # the labels table lists every track with its status
    table = at.data_editor[0].value
    assert list(table["id"]) == ["alpha.wav", "beta.flac", "broken.wav"]
    assert list(table["status"]) == ["✅", "✅", "❌"]
    # and the dataset is on disk
    assert json.loads((workspace / "datasets" / "album" / "dataset.json").read_text())["source"] == str(music.resolve())
    assert set(manifest_rows(workspace, "album")) == {"alpha.wav", "beta.flac", "broken.wav"}


def test_create_from_folder_rejects_a_bad_name(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    at = create_from_folder("../evil", music)
    assert any("'../evil' is not allowed" in e.value for e in at.error)
    assert not (workspace / "datasets").exists() or not any((workspace / "datasets").iterdir())


def test_create_from_missing_folder_says_so(workspace, tmp_path):
    at = create_from_folder("ghost", tmp_path / "nope")
    assert [e.value for e in at.error] == [
        f"Folder {tmp_path / 'nope'} does not exist. Check the path (it must be on this machine)."]
    assert not at.metric


def test_failed_create_leaves_no_phantom_dataset(workspace, tmp_path):
    create_from_folder("ghost", tmp_path / "nope")
    at = fresh()  # reload
    assert "Create a dataset above" in text_of(at)
    assert not (workspace / "datasets" / "ghost").exists()


def test_creating_an_existing_name_is_refused(workspace, tmp_path):
    first = make_music(tmp_path / "music")
    create_from_folder("album", first)
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "gamma.wav", tone(freq=330), SR)
    at = create_from_folder("album", other)
    assert at.error, "expected an error saying the name is taken"
    assert json.loads((workspace / "datasets" / "album" / "dataset.json").read_text())["source"] == str(first.resolve())


# ---- (b) upload ---------------------------------------------------------------------------

def test_create_from_uploads(workspace):
    at = fresh()
    at.text_input(key="data_new_name").input("uploaded")
    at.file_uploader(key="data_new_files").set_value([
        ("song.wav", wav_bytes(), "audio/wav"),
        ("song.json", json.dumps({"caption": "warm synth pop", "bpm": "120"}).encode(), "application/json"),
        ("junk.wav", os.urandom(2000), "audio/wav"),
    ])
    at.run()
    assert not at.button(key="data_create_upload").disabled
    at.button(key="data_create_upload").click().run()
    assert not at.exception

    successes = [s.value for s in at.success]
    assert {"song.wav saved", "song.json saved", "junk.wav saved"} <= set(successes)
    assert metrics(at)["Tracks"] == "2" and metrics(at)["Errors"] == "1" and metrics(at)["OK"] == "1"
    assert "Ready to train on 1 track(s)." in successes  # the one usable song has a caption
    assert any("junk.wav cannot be decoded as audio" in m.value for m in at.markdown)

    ds = workspace / "datasets" / "uploaded"
    assert (ds / "song.wav").read_bytes() == wav_bytes()
    row = manifest_rows(workspace, "uploaded")["song.wav"]
    assert row["caption"] == "warm synth pop" and row["bpm"] == 120
    table = at.data_editor[0].value.set_index("id")
    assert table.loc["song.wav", "caption"] == "warm synth pop"


def _upload_then_add_more(workspace) -> AppTest:
    at = fresh()
    at.text_input(key="data_new_name").input("uploaded")
    at.file_uploader(key="data_new_files").set_value([("song.wav", wav_bytes(), "audio/wav")])
    at.run()
    at.button(key="data_create_upload").click().run()
    assert metrics(at)["Tracks"] == "1"

    more = next(u for u in at.file_uploader if u.label == "Drop audio files and sidecars")
    more.set_value([("copy.wav", wav_bytes(), "audio/wav"),                  # same bytes, other name
                    ("song.wav", wav_bytes(freq=880), "audio/wav"),          # same name, other bytes
                    ("new.wav", wav_bytes(freq=660), "audio/wav")])
    at.run()
    at.button(key="data_add").click().run()
    assert not at.exception
    return at


def test_add_files_skips_duplicates_and_name_clashes(workspace):
    at = _upload_then_add_more(workspace)
    assert metrics(at)["Tracks"] == "2"
    assert list(at.data_editor[0].value["id"]) == ["new.wav", "song.wav"]
    folder = workspace / "datasets" / "uploaded"
    assert (folder / "song.wav").read_bytes() == wav_bytes()  # not overwritten
    assert not (folder / "copy.wav").exists()  # identical content is not stored twice
    assert not list(folder.glob("song.wav.replaced-*"))


def test_add_files_reports_what_happened_to_each_file(workspace):
    shown = text_of(_upload_then_add_more(workspace))
    assert "copy.wav is identical to song.wav already in the dataset; skipped." in shown
    assert "song.wav already exists with different content; nothing was overwritten." in shown
    assert "new.wav saved" in shown


# ---- (c) edit labels ----------------------------------------------------------------------

def test_edit_caption_in_track_form_persists(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    at = create_from_folder("album", music)
    at.selectbox(key="data_track").select("beta.flac").run()
    caption, lyrics = at.text_area
    assert caption.label == "Caption" and caption.value == ""
    caption.input("Dreamy lo-fi piano, vinyl crackle")
    lyrics.input("[Instrumental]")
    at.get("form_submit_button")[0].click()
    at.run()
    assert not at.exception
    assert "Saved beta.flac." in [s.value for s in at.success]

    # sidecar first, then manifest
    sidecar = json.loads((music / "beta.json").read_text())
    assert sidecar == {"caption": "Dreamy lo-fi piano, vinyl crackle", "lyrics": "[Instrumental]", "labeled_by": "user"}
    row = manifest_rows(workspace, "album")["beta.flac"]
    assert row["caption"] == "Dreamy lo-fi piano, vinyl crackle" and row["labeled_by"] == "user"
    assert row["sidecar"] == "beta.json"
    # the page already shows it, and beta.flac is now captioned
    assert "1 have no caption or lyrics" in at.info[0].value

    # a browser reload: a brand-new session reads it back from disk
    again = fresh()
    again.selectbox(key="data_track").select("beta.flac").run()
    assert again.text_area[0].value == "Dreamy lo-fi piano, vinyl crackle"
    table = again.data_editor[0].value.set_index("id")
    assert table.loc["beta.flac", "caption"] == "Dreamy lo-fi piano, vinyl crackle"
    assert table.loc["beta.flac", "labeled_by"] == "user"


def test_edit_labels_in_table_persists(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    at = create_from_folder("album", music)
    # AppTest cannot type into the grid; a keyed data_editor is seeded through its edit state
    at.session_state[editor_key(at)] = {
        "edited_rows": {"0": {"caption": "Bright sine test tone", "bpm": 96, "keyscale": "am"}},
        "added_rows": [], "deleted_rows": []}
    at.run()
    save = at.button(key="data_save")
    assert save.label == "Save 1 changed track(s)" and not save.disabled
    save.click().run()
    assert not at.exception
    assert "Saved labels for 1 track(s)." in [s.value for s in at.success]

    sidecar = json.loads((music / "alpha.json").read_text())
    assert sidecar["caption"] == "Bright sine test tone"
    assert sidecar["bpm"] == 96 and sidecar["keyscale"] == "A minor"  # normalised on save
    row = manifest_rows(workspace, "album")["alpha.wav"]
    assert (row["caption"], row["bpm"], row["keyscale"]) == ("Bright sine test tone", 96, "A minor")

    table = fresh().data_editor[0].value.set_index("id")
    assert table.loc["alpha.wav", "caption"] == "Bright sine test tone"
    assert table.loc["alpha.wav", "keyscale"] == "A minor"


# ---- (d) invalid edits --------------------------------------------------------------------

def test_invalid_table_edit_shows_error_and_writes_nothing(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    at = create_from_folder("album", music)
    manifest = workspace / "datasets" / "album" / "manifest.jsonl"
    before = manifest.read_bytes()
    at.session_state[editor_key(at)] = {
        "edited_rows": {"0": {"caption": "would be fine", "keyscale": "H minor"},
                        "1": {"bpm": 1000}},
        "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="data_save").click().run()
    assert not at.exception

    errors = [e.value for e in at.error]
    assert 'alpha.wav: keyscale \'H minor\' is not a key; write it like "C major", "F# minor" or "Bb major"' in errors
    assert any(e.startswith("beta.flac: bpm 1000 is outside 30–300") for e in errors)
    assert "Saved labels" not in text_of(at)
    # nothing was written: not even the valid caption on the same row
    assert not (music / "alpha.json").exists() and not (music / "beta.json").exists()
    assert manifest.read_bytes() == before


def test_edit_with_broken_sidecar_shows_error_and_leaves_it_untouched(workspace, tmp_path):
    music = make_music(tmp_path / "music")
    broken = b'{"caption": "half a sidecar",'
    (music / "alpha.json").write_bytes(broken)
    at = create_from_folder("album", music)
    assert metrics(at)["Warnings"] == "1"
    assert any("alpha.json is not valid JSON" in m.value for m in at.markdown)

    manifest = workspace / "datasets" / "album" / "manifest.jsonl"
    before = manifest.read_bytes()
    at.selectbox(key="data_track").select("alpha.wav").run()
    at.text_area[0].input("A new caption")
    at.get("form_submit_button")[0].click()
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("alpha.json is not valid JSON")
    assert "it was left untouched" in errors[0]
    assert (music / "alpha.json").read_bytes() == broken
    assert manifest.read_bytes() == before
    assert not list(music.glob("alpha.json.broken-*"))
