"""The Dataset page follows the user (issue 15): a disabled button says why, a new dataset opens
with its own upload report, the first playable track opens, where labels go is said before any is
written (with a copy-into-the-workspace alternative), and a CSV import's report stays on screen."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from state.dataset import manifest
from tests.audio_fixtures import sine

from locations import APP


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    monkeypatch.setenv("ACELORA_HOME", str(ws))
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    monkeypatch.delenv("SPACE_ID", raising=False)
    return ws


def music(folder):
    folder.mkdir(parents=True)
    (folder / "a-broken.wav").write_bytes(np.random.default_rng(0).bytes(4096))  # sorts first
    sine(folder / "b-song.wav", seconds=10.5)
    sine(folder / "c-song.flac", seconds=10.5, freq=220)
    return folder


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(48000 * 11, dtype="float32"), 48000, format="WAV")
    return buf.getvalue()


def shown(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "success", "info", "warning", "error")
                     for e in getattr(at, kind)) + "\n" + "\n".join(e.label for e in at.expander)


def test_create_buttons_say_what_they_wait_for(workspace):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.button(key="data_create_folder").disabled
    assert "Type a name for the dataset above to enable this." in shown(at)
    at.text_input(key="data_new_name").input("album").run()
    assert "Enter the folder's path." in shown(at) and "Pick some audio files to upload." in shown(at)


def test_new_upload_dataset_opens_with_its_own_report(workspace, tmp_path):
    manifest.scan(manifest.create_dataset("first", music(tmp_path / "m")))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.selectbox(key="data_pick").value == "first"
    at.text_input(key="data_new_name").input("second")
    at.file_uploader(key="data_new_files").set_value([("song.wav", wav_bytes(), "audio/wav")])
    at.run()
    at.button(key="data_create_upload").click().run()
    assert not at.exception
    assert at.selectbox(key="data_pick").value == "second"
    assert "Upload: 1 of 1 file(s) saved to second" in shown(at)
    at.selectbox(key="data_pick").select("first").run()
    assert "Upload:" not in shown(at) and "song.wav saved" not in shown(at)


def test_folder_in_place_says_labels_go_into_it_and_opens_a_playable_track(workspace, tmp_path):
    folder = music(tmp_path / "m")
    manifest.scan(manifest.create_dataset("album", folder))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert f"written **into your folder** `{folder.resolve()}`" in shown(at)
    assert at.selectbox(key="data_track").value == "b-song.wav"  # not the broken file listed first
    assert len(at.get("audio")) == 1


def test_copying_a_folder_in_leaves_the_original_untouched(workspace, tmp_path):
    folder = music(tmp_path / "m")
    (folder / "b-song.json").write_text(json.dumps({"caption": "from the folder"}))
    before = sorted(p.name for p in folder.iterdir())
    manifest.scan(manifest.create_dataset("album", folder))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.button(key="data_copy_in").click().run()
    assert not at.exception and at.selectbox(key="data_pick").value == "album-copy"
    copy = manifest.open_dataset("album-copy")
    assert not copy.external and (copy.dir / "b-song.wav").is_file()
    assert "Labels are saved as `.json` sidecars next to the audio in the workspace" in shown(at)
    rows = {r["id"]: r for r in manifest.read_manifest(copy)}
    assert rows["b-song.wav"]["caption"] == "from the folder"
    manifest.save_labels(copy, {"c-song.flac": {"caption": "edited in the copy"}})
    assert sorted(p.name for p in folder.iterdir()) == before  # no sidecar written into the user's folder


def test_create_from_folder_can_copy_it_in(workspace, tmp_path):
    folder = music(tmp_path / "m")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="data_new_name").input("copied")
    at.text_input(key="data_new_folder").input(str(folder))
    at.toggle(key="data_new_copy").set_value(True).run()
    assert "labels you save go beside the copies" in shown(at)
    at.button(key="data_create_folder").click().run()
    assert at.selectbox(key="data_pick").value == "copied"
    assert not manifest.open_dataset("copied").external
    assert {m.label: m.value for m in at.metric}["Tracks"] == "3"


def test_csv_import_report_stays_on_screen(workspace, tmp_path):
    manifest.scan(manifest.create_dataset("album", music(tmp_path / "m")))
    at = AppTest.from_file(APP, default_timeout=60).run()
    csv = b"file,caption,bpm,keyscale\nb-song.wav,warm pads,abc,H major\nc-song.flac,dusty drums,90,Am\nnope.wav,x,,\n"
    at.file_uploader(key="data_csv").set_value([("labels.csv", csv, "text/csv")]).run()
    at.button(key="data_csv_go").click().run()
    assert not at.exception
    text = shown(at)
    assert "Updated 2 track(s) from labels.csv." in text
    assert "labels.csv: 3 problem(s)" in text
    assert "no track named 'nope.wav'" in text and "bpm 'abc'" in text and "H major" in text
    at.run()  # the sidecars it wrote wake the folder watcher: the report is still there
    assert "Updated 2 track(s) from labels.csv." in shown(at)
