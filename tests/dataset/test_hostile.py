"""Hostile datasets (issue 14, classes 1 and 2): one bad file never aborts a scan, and every bad
value is reported in words that name the file, while the rest of the dataset stays usable."""
from __future__ import annotations

import errno
import json
import os
import threading

import numpy as np
import pytest
import soundfile as sf

from state import fsutil, paths
from state.dataset import manifest, sidecar
from state.dataset.labels import MAX_CHARS
from tests.audio_fixtures import sine


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path / "ws"))
    d = tmp_path / "music"
    d.mkdir()
    sine(d / "good.wav", seconds=11)
    return d


def scan(folder):
    ds = manifest.open_dataset("d") if (paths.dataset_dir("d") / "dataset.json").exists() else \
        manifest.create_dataset("d", folder)
    result = manifest.scan(ds)
    return ds, {r["id"]: r for r in result.rows}, result


def only_problem(row) -> str:
    assert row["problems"], row
    return " ".join(row["problems"])


def assert_rest_usable(rows):
    assert rows["good.wav"]["status"] == "ok", rows["good.wav"]["problems"]


# ---- 1. one bad file never aborts a scan --------------------------------------------------------

def test_dangling_symlink_is_named_as_a_broken_link(folder):
    (folder / "gone.wav").symlink_to(folder / "nowhere.wav")
    _, rows, _ = scan(folder)
    assert rows["gone.wav"]["status"] == "error"
    assert "symbolic link" in only_problem(rows["gone.wav"]) and "does not exist" in only_problem(rows["gone.wav"])
    assert_rest_usable(rows)


def test_deeply_nested_sidecar_is_reported_not_a_recursion_error(folder):
    sine(folder / "deep.wav", seconds=11, freq=350)
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    sine(folder / "deep2.wav", seconds=11, freq=300)
    (folder / "deep2.json").write_text('{"caption": ' + "[" * 80 + "]" * 80 + "}")
    _, rows, _ = scan(folder)
    assert "nested more than" in only_problem(rows["deep.wav"])
    assert "nested more than" in only_problem(rows["deep2.wav"])
    assert rows["deep.wav"]["status"] == "warning"  # the audio itself is fine
    assert_rest_usable(rows)


def test_unreadable_audio_is_reported_even_by_the_hash(folder, monkeypatch):
    # root reads any file, so the permission error is made where every read of the file starts
    sine(folder / "locked.wav", seconds=11)
    real_open = os.open

    def deny(path, flags, *a, **kw):
        if os.fspath(path).endswith("locked.wav"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", deny)
    _, rows, _ = scan(folder)
    assert "permission denied" in only_problem(rows["locked.wav"])
    assert rows["locked.wav"]["status"] == "error"
    assert_rest_usable(rows)


def test_names_that_are_not_utf8_get_a_row_and_the_manifest_still_saves(folder):
    raw = os.fsencode(folder) + b"/caf\xe9.wav"
    sine(folder / "tmp.wav", seconds=11, freq=330)
    os.rename(os.fsencode(folder / "tmp.wav"), raw)
    with open(os.fsencode(folder) + b"/caf\xe9.json", "wb") as f:
        f.write(b'{"caption": "x"}')
    ds, rows, result = scan(folder)
    bad = rows["caf\\xe9.wav"]
    assert bad["status"] == "error" and "not valid UTF-8" in only_problem(bad)
    assert not result.notes, result.notes  # the manifest was written
    assert {r["id"] for r in manifest.read_manifest(ds)} == set(rows)
    assert_rest_usable(rows)


def test_a_fifo_named_like_audio_or_a_sidecar_never_blocks_the_scan(folder):
    os.mkfifo(folder / "pipe.wav")
    sine(folder / "song.wav", seconds=11, freq=500)
    os.mkfifo(folder / "song.json")
    out = {}
    t = threading.Thread(target=lambda: out.update(rows=scan(folder)[1]), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "the scan blocked on a FIFO"
    rows = out["rows"]
    assert "named pipe (FIFO)" in only_problem(rows["pipe.wav"]) and "empty" not in only_problem(rows["pipe.wav"])
    assert "named pipe (FIFO)" in only_problem(rows["song.wav"]) and rows["song.wav"]["status"] == "warning"
    assert_rest_usable(rows)


def test_folders_and_devices_named_like_audio_or_sidecars_get_accurate_words(folder):
    (folder / "album.wav").mkdir()
    sine(folder / "album.wav" / "inside.wav", seconds=11, freq=600)
    (folder / "null.wav").symlink_to("/dev/null")
    sine(folder / "dir.wav", seconds=11, freq=700)
    (folder / "dir.json").mkdir()
    _, rows, _ = scan(folder)
    assert "is a folder, not a file" in only_problem(rows["album.wav"])
    assert rows["album.wav/inside.wav"]["status"] == "ok"  # its contents are still found
    assert "a device file" in only_problem(rows["null.wav"])
    text = only_problem(rows["dir.wav"])
    assert "dir.json is a folder" in text and "permissions" not in text
    for r in rows.values():
        assert "empty file" not in " ".join(r["problems"]) and "permissions" not in " ".join(r["problems"])
    assert_rest_usable(rows)


def test_unreadable_subfolder_is_said_not_skipped_silently(folder, monkeypatch):
    (folder / "private").mkdir()
    real_scandir = os.scandir

    def deny(path="."):
        if os.fspath(path).endswith("private"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    _, rows, result = scan(folder)
    assert any("private cannot be read" in n for n in result.notes), result.notes
    assert_rest_usable(rows)


# ---- 2. every bad value is reported, none accepted silently ---------------------------------------

def test_identical_audio_under_two_names_is_reported_on_both(folder):
    (folder / "copy.wav").write_bytes((folder / "good.wav").read_bytes())
    _, rows, _ = scan(folder)
    assert "same audio, byte for byte, as copy.wav" in only_problem(rows["good.wav"])
    assert "as good.wav" in only_problem(rows["copy.wav"])


def test_duplicate_keys_are_reported_and_not_silently_resolved(folder):
    (folder / "good.json").write_text('{"caption": "first", "bpm": 90, "caption": "second"}')
    ds, rows, _ = scan(folder)
    row = rows["good.wav"]
    assert "'caption' more than once" in only_problem(row) and row["caption"] is None and row["bpm"] == 90
    before = (folder / "good.json").read_bytes()
    with pytest.raises(sidecar.SidecarError, match="more than once"):  # a save would drop one copy
        manifest.save_labels(ds, {"good.wav": {"bpm": 91}})
    assert (folder / "good.json").read_bytes() == before
    manifest.save_labels(ds, {"good.wav": {"caption": "chosen"}})  # choosing a value resolves it
    assert json.loads((folder / "good.json").read_text())["caption"] == "chosen"


@pytest.mark.parametrize("text,fragment", [
    ('{"bpm": NaN}', "bpm nan is not a number"),
    ('{"bpm": Infinity}', "bpm inf is outside"),
    ('{"caption": "a\\u0000b"}', "control character U+0000"),
    ('{"caption": "bell\\u0007"}', "control character U+0007"),
    ('{"lyrics": "\\ud800"}', "lone surrogate"),
])
def test_bad_values_in_a_sidecar_are_reported(folder, text, fragment):
    (folder / "good.json").write_text(text)
    ds, rows, result = scan(folder)
    assert fragment in only_problem(rows["good.wav"]) and rows["good.wav"]["status"] == "warning"
    assert not result.notes  # and the manifest was still written
    assert (folder / "good.json").read_text() == text  # the original is untouched


def test_huge_text_is_refused_with_the_model_limit_and_the_file_kept(folder):
    caption = "lofi " * (MAX_CHARS["caption"] // 5 + 10)
    (folder / "good.json").write_text(json.dumps({"caption": caption, "bpm": 80}))
    sine(folder / "big.wav", seconds=11, freq=250)
    (folder / "big.json").write_text(json.dumps({"caption": "x" * 3_000_000}))
    ds, rows, _ = scan(folder)
    text = only_problem(rows["good.wav"])
    assert "256 tokens" in text and f"{MAX_CHARS['caption']:,}" in text and rows["good.wav"]["caption"] is None
    assert rows["good.wav"]["bpm"] == 80
    assert "MB" in only_problem(rows["big.wav"]) and "not read" in only_problem(rows["big.wav"])
    assert len(ds.manifest_path.read_bytes()) < 200_000  # nothing huge reaches the index or the page
    with pytest.raises(manifest.LabelError, match="2,048 tokens"):
        manifest.validate_labels({"lyrics": "la " * 6000})


def test_one_hertz_audio_is_an_error_not_a_dull_warning(folder):
    sf.write(folder / "slow.wav", np.zeros(100, dtype="float32") + 0.1, 1)
    _, rows, _ = scan(folder)
    assert rows["slow.wav"]["status"] == "error" and "1 Hz" in only_problem(rows["slow.wav"])


def test_header_claiming_ten_hours_over_one_second(folder):
    sine(folder / "claim.flac", seconds=1, sr=48000)
    b = bytearray((folder / "claim.flac").read_bytes())
    bits = int.from_bytes(b[18:26], "big")  # STREAMINFO: the low 36 bits of these 8 bytes = total samples
    b[18:26] = ((bits & ~((1 << 36) - 1)) | 10 * 3600 * 48000).to_bytes(8, "big")
    (folder / "claim.flac").write_bytes(bytes(b))
    _, rows, _ = scan(folder)
    text = only_problem(rows["claim.flac"])
    assert rows["claim.flac"]["status"] == "error" and "10:00:00" in text and "truncated" in text
    assert "only the first" not in text  # not the 'long file' warning


def test_id3_only_mp3_does_not_talk_about_pipes(folder):
    if ".mp3" not in manifest.find_audio.__globals__["audio_extensions"]():
        pytest.skip("this libsndfile has no MP3 decoder")
    (folder / "tag.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x20" + b"\x00" * 32)
    _, rows, _ = scan(folder)
    text = only_problem(rows["tag.mp3"])
    assert rows["tag.mp3"]["status"] == "error" and "pipe" not in text and "tag.mp3" in text


# ---- 4. names and races ---------------------------------------------------------------------

def test_long_names_can_still_be_labelled(folder):
    name = "a" * 250 + ".wav"  # legal, but a temp sibling `.<name>.XXXX.tmp` would not be
    sine(folder / name, seconds=11, freq=800)
    ds, rows, _ = scan(folder)
    manifest.save_labels(ds, {name: {"caption": "long"}})
    assert json.loads((folder / ("a" * 250 + ".json")).read_text())["caption"] == "long"
    assert all(len(os.fsencode(p.name)) <= 255 for p in folder.iterdir())
    longest = "b" * 251 + ".wav"  # its sidecar b…b.json would be 256 bytes: say so instead of failing later
    sine(folder / longest, seconds=11, freq=900)
    _, rows, _ = scan(folder)
    assert "255-byte name limit" in only_problem(rows[longest])
    fsutil.atomic_write_text(folder / ("c" * 255), "fits")  # the temp name is cut, the target is not
    assert (folder / ("c" * 255)).read_text() == "fits"


def test_check_name_refuses_a_trailing_newline():
    assert paths.check_name("run-1") == "run-1"
    for bad in ("run-1\n", "run-1\r\n", "\nrun", "run 1"):
        with pytest.raises(ValueError):
            paths.check_name(bad)


def test_a_scan_racing_a_label_save_never_rolls_the_saved_row_back(folder):
    for i in range(3):
        sine(folder / f"t{i}.wav", seconds=11, freq=200 + 50 * i)
    ds, _, _ = scan(folder)
    saved = {}

    def save_midway(i, n, name):
        if i == n and not saved:  # every row is built, the manifest not yet written
            saved.update(manifest.save_labels(ds, {"t1.wav": {"caption": "just saved"}})[0])

    manifest.scan(ds, progress=save_midway)
    assert saved
    rows = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert rows["t1.wav"]["caption"] == "just saved"


def test_a_damaged_manifest_line_or_cached_probe_is_rebuilt(folder):
    ds, rows, _ = scan(folder)
    lines = ds.manifest_path.read_text().splitlines()
    row = json.loads(lines[0])
    row["_probe"] = {"ok": True, "bogus": 1, "problems": "not a list"}
    ds.manifest_path.write_text(json.dumps(row) + "\n" + '{"id": 5}\n' + "[" * 5000 + "\n")
    _, rows, _ = scan(folder)
    assert rows["good.wav"]["status"] == "ok"


# ---- 5. scale: a rescan reads only what changed -----------------------------------------------

def test_an_unchanged_rescan_reads_no_file_and_drops_stale_flags(folder, monkeypatch):
    (folder / "copy.wav").write_bytes((folder / "good.wav").read_bytes())
    (folder / "good.json").write_text('{"caption": "kept"}')
    ds, rows, _ = scan(folder)
    assert "same audio" in only_problem(rows["good.wav"])
    (folder / "copy.wav").unlink()
    before = ds.manifest_path.stat().st_mtime_ns

    def untouchable(*a, **kw):
        raise AssertionError("an unchanged file was read again")

    monkeypatch.setattr(manifest, "probe", untouchable)
    monkeypatch.setattr(manifest, "read_sidecar", untouchable)
    _, rows, _ = scan(folder)
    assert rows["good.wav"]["status"] == "ok" and rows["good.wav"]["caption"] == "kept"
    assert ds.manifest_path.stat().st_mtime_ns != before  # a file went away: the index changed
    again = ds.manifest_path.stat().st_mtime_ns
    scan(folder)
    assert ds.manifest_path.stat().st_mtime_ns == again  # nothing changed: nothing written
