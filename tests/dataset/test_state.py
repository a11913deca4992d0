"""The bad-input list from the foundation issue: each case gets a clear message naming the file,
and nothing already saved is lost."""
import errno
import json
import os
import tempfile

import numpy as np
import pytest
import soundfile as sf

from state import fsutil, paths
from state.dataset import manifest
from state.dataset.csv_import import import_csv
from state.dataset.uploads import safe_filename, save_uploads
from tests.audio_fixtures import sine, wav_header_only


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path / "ws"))
    return tmp_path


@pytest.fixture
def folder(ws):
    d = ws / "music"
    d.mkdir()
    return d


def scan_one(folder, name):
    ds = manifest.create_dataset("d", folder)
    rows = {r["id"]: r for r in manifest.scan(ds).rows}
    return rows[name]


def test_good_file_with_sidecar_is_ok(folder):
    sine(folder / "song.wav")
    (folder / "song.json").write_text(json.dumps({"caption": "lofi piano", "bpm": 90, "keyscale": "Am",
                                                  "timesignature": "4/4", "vocal_language": "English"}))
    row = scan_one(folder, "song.wav")
    assert row["status"] == "ok", row["problems"]
    assert (row["caption"], row["bpm"], row["keyscale"], row["timesignature"], row["vocal_language"]) == \
        ("lofi piano", 90, "A minor", "4", "en")
    assert row["sample_rate"] == 44100 and row["channels"] == 1 and abs(row["seconds"] - 12) < 1e-6
    assert len(row["sha256"]) == 64


def test_bare_audio_folder_is_a_valid_dataset(folder):
    sine(folder / "a.wav")
    sine(folder / "sub" / "b.flac" if (folder / "sub").mkdir() is None else None, freq=220)
    ds = manifest.create_dataset("d", folder)
    rows = manifest.scan(ds).rows
    assert sorted(r["id"] for r in rows) == ["a.wav", "sub/b.flac"]  # recursive
    s = manifest.summary(rows)
    assert s["can_train"] and s["usable"] == 2 and "captions are strongly recommended" in s["verdict"]


@pytest.mark.parametrize("maker,fragment", [
    (lambda p: p.write_bytes(b""), "is an empty file"),
    (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "cannot be decoded"),
    (lambda p: p.write_bytes(os.urandom(4096)), "cannot be decoded"),
    (lambda p: wav_header_only(p, channels=2, frames=0), "contains no audio"),
    (lambda p: wav_header_only(p, channels=0, frames=0), "cannot be decoded"),
])
def test_undecodable_files_are_errors_naming_the_file(folder, maker, fragment):
    maker(folder / "bad.wav")
    row = scan_one(folder, "bad.wav")
    assert row["status"] == "error"
    assert any(fragment in p and "bad.wav" in p for p in row["problems"]), row["problems"]


def test_truncated_data_chunk_is_reported(folder):
    sine(folder / "cut.wav", seconds=12)
    data = (folder / "cut.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 3])  # header still claims 12 s
    row = scan_one(folder, "cut.wav")
    # libsndfile either refuses the file or reads fewer frames than claimed: both are errors
    assert row["status"] in ("error", "warning")
    if row["status"] == "warning":
        assert row["seconds"] < 12


def test_six_channels_is_a_warning_about_downmix(folder):
    sine(folder / "surround.wav", channels=6)
    row = scan_one(folder, "surround.wav")
    assert row["status"] == "warning" and row["channels"] == 6
    assert any("6 channels" in p and "stereo" in p for p in row["problems"])


def test_nan_samples_are_counted_and_explained(folder):
    x = (0.3 * np.sin(np.arange(48000 * 11) / 10)).astype(np.float32)
    x[1000:1010] = np.nan
    sf.write(str(folder / "nan.wav"), x, 48000, subtype="FLOAT")
    row = scan_one(folder, "nan.wav")
    assert row["status"] == "warning"
    assert any("10 invalid (NaN/Inf) samples" in p for p in row["problems"])


@pytest.mark.parametrize("sr,level", [(8000, "warning"), (192000, "ok")])
def test_unusual_sample_rates(folder, sr, level):
    sine(folder / "r.wav", seconds=11, sr=sr, freq=300)
    row = scan_one(folder, "r.wav")
    assert row["sample_rate"] == sr and row["status"] == level, row["problems"]
    if level == "warning":
        assert any("8000 Hz" in p for p in row["problems"])


def test_two_hour_file_uses_first_ten_minutes(folder):
    with sf.SoundFile(str(folder / "long.wav"), "w", 8000, 1, "PCM_16") as f:
        block = (0.2 * np.sin(np.arange(8000 * 60) / 5)).astype(np.float32)
        for _ in range(120):
            f.write(block)
    row = scan_one(folder, "long.wav")
    assert abs(row["seconds"] - 7200) < 1
    assert any("2:00:00 long; only the first 10:00 will be used" in p for p in row["problems"])


def test_silent_and_clipped(folder):
    sf.write(str(folder / "silent.wav"), np.zeros(48000 * 11, np.float32), 48000)
    sine(folder / "loud.wav", amp=3.0)
    ds = manifest.create_dataset("d", folder)
    rows = {r["id"]: r for r in manifest.scan(ds).rows}
    assert rows["silent.wav"]["status"] == "error" and "silent" in rows["silent.wav"]["problems"][0]
    assert any("clipped" in p for p in rows["loud.wav"]["problems"])


def test_unicode_and_spaces_in_names_scan_fine(folder):
    sine(folder / "Ünïcödé song 01.wav")
    (folder / "Ünïcödé song 01.json").write_text(json.dumps({"caption": "façade"}), encoding="utf-8")
    row = scan_one(folder, "Ünïcödé song 01.wav")
    assert row["status"] == "ok" and row["caption"] == "façade"


def test_same_basename_different_extensions_warns_both(folder):
    sine(folder / "song.wav")
    sine(folder / "song.flac", freq=220)
    ds = manifest.create_dataset("d", folder)
    rows = manifest.scan(ds).rows
    assert len(rows) == 2
    for r in rows:
        assert any("share the name 'song'" in p for p in r["problems"])
    # saving one of them does not duplicate the warning
    manifest.save_labels(ds, {"song.wav": {"caption": "x"}})
    again = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert sum("share the name" in p for p in again["song.flac"]["problems"]) == 1


@pytest.mark.parametrize("content,fragment", [
    (b"{not json", "is not valid JSON (line 1"),
    (b"\xff\xfe\x00c\x00a", "is not UTF-8 text"),
    (b"[1, 2]", "holds a JSON list"),
    (b"   ", "is empty"),
])
def test_broken_sidecar_reported_and_kept_byte_for_byte(folder, content, fragment):
    sine(folder / "song.wav")
    (folder / "song.json").write_bytes(content)
    ds = manifest.create_dataset("d", folder)
    row = manifest.scan(ds).rows[0]
    assert row["status"] == "warning"
    assert any(fragment in p and "song.json" in p for p in row["problems"]), row["problems"]
    with pytest.raises(manifest.SidecarError, match="left untouched"):
        manifest.save_labels(ds, {"song.wav": {"caption": "new"}})
    assert (folder / "song.json").read_bytes() == content  # never silently overwritten
    manifest.save_labels(ds, {"song.wav": {"caption": "new"}}, replace_broken=True)
    backups = list(folder.glob("song.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert json.loads((folder / "song.json").read_text())["caption"] == "new"


@pytest.mark.parametrize("sidecar,fragment", [
    ({"bpm": "fast"}, "bpm 'fast' is not a number"),
    ({"bpm": 900}, "bpm 900 is outside 30–300"),
    ({"caption": ["rock", "guitar"]}, "caption should be text, but it is a list"),
    ({"keyscale": 7}, "keyscale should be text"),
])
def test_wrong_sidecar_values_warn_and_are_ignored(folder, sidecar, fragment):
    sine(folder / "song.wav")
    (folder / "song.json").write_text(json.dumps({**sidecar, "genre": "keep me"}))
    ds = manifest.create_dataset("d", folder)
    row = manifest.scan(ds).rows[0]
    assert row["status"] == "warning"
    assert any(fragment in p and p.startswith("song.json") for p in row["problems"]), row["problems"]
    # a save of another field keeps the user's unknown keys and does not touch the bad value
    manifest.save_labels(ds, {"song.wav": {"lyrics": "[Instrumental]"}})
    on_disk = json.loads((folder / "song.json").read_text())
    assert on_disk["genre"] == "keep me" and on_disk["lyrics"] == "[Instrumental]"
    assert on_disk.get(next(iter(sidecar))) == next(iter(sidecar.values()))


def test_orphan_sidecar_reported(folder):
    sine(folder / "a.wav")
    (folder / "ghost.json").write_text("{}")
    ds = manifest.create_dataset("d", folder)
    res = manifest.scan(ds)
    assert len(res.orphans) == 1 and "ghost.json has no audio file" in res.orphans[0]


def test_invalid_edit_refused_and_nothing_written(folder):
    sine(folder / "song.wav")
    (folder / "song.json").write_text('{"caption": "old"}')
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    before = ds.manifest_path.read_bytes()
    with pytest.raises(manifest.LabelError) as err:
        manifest.save_labels(ds, {"song.wav": {"caption": "new", "bpm": "fast"}})
    assert "song.wav: bpm 'fast'" in err.value.problems[0]
    assert json.loads((folder / "song.json").read_text()) == {"caption": "old"}
    assert ds.manifest_path.read_bytes() == before


def test_edit_normalises_and_records_user(folder):
    sine(folder / "song.wav")
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    [row] = manifest.save_labels(ds, {"song.wav": {"keyscale": "f#m", "timesignature": "6/8", "bpm": 140.0}})
    assert (row["keyscale"], row["timesignature"], row["bpm"], row["labeled_by"]) == ("F# minor", "6", 140, "user")
    assert json.loads((folder / "song.json").read_text())["keyscale"] == "F# minor"
    [row] = manifest.save_labels(ds, {"song.wav": {"bpm": None}})  # clearing a field removes it
    assert row["bpm"] is None and "bpm" not in json.loads((folder / "song.json").read_text())


def test_two_writers_on_different_tracks_lose_nothing(folder):
    import threading
    for i in range(6):
        sine(folder / f"t{i}.wav", seconds=10.5, freq=200 + 50 * i)
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    errors = []

    def writer(i):
        try:
            for k in range(3):
                manifest.save_labels(ds, {f"t{i}.wav": {"caption": f"writer {i} edit {k}"}})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert all(rows[f"t{i}.wav"]["caption"] == f"writer {i} edit 2" for i in range(6))


def test_two_processes_on_different_tracks_lose_nothing(folder):
    import subprocess
    import sys
    for i in range(2):
        sine(folder / f"p{i}.wav", seconds=10.5, freq=300 + 100 * i)
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    code = ("import sys; from state.dataset import manifest; ds = manifest.open_dataset('d'); i = sys.argv[1]\n"
            "for k in range(5): manifest.save_labels(ds, {f'p{i}.wav': {'caption': f'proc {i} {k}'}})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env={**os.environ}) for i in range(2)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    rows = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert rows["p0.wav"]["caption"] == "proc 0 4" and rows["p1.wav"]["caption"] == "proc 1 4"


def test_disk_full_during_save_keeps_old_manifest(folder, monkeypatch):
    sine(folder / "song.wav")
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    manifest.save_labels(ds, {"song.wav": {"caption": "first"}})
    before_manifest = ds.manifest_path.read_bytes()
    real_fsync = os.fsync

    def full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".manifest.jsonl."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(fsutil.SaveError) as err:
        manifest.save_labels(ds, {"song.wav": {"caption": "second"}})
    assert "disk is full" in str(err.value) and "manifest.jsonl" in str(err.value)
    assert ds.manifest_path.read_bytes() == before_manifest
    assert not list(ds.dir.glob(".manifest.jsonl.*.tmp"))  # no temp litter


def test_read_only_dataset_folder(folder, monkeypatch):
    sine(folder / "song.wav")
    ds = manifest.create_dataset("d", folder)
    # Tests run as root, where chmod cannot make a folder read-only: simulate what the OS reports.
    real_access, real_mkstemp = os.access, tempfile.mkstemp
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(folder) else real_access(p, m))

    def ro_mkstemp(*a, dir=None, **kw):
        if dir is not None and str(dir) == str(folder):
            raise PermissionError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", ro_mkstemp)
    res = manifest.scan(ds)
    assert any("is read-only" in n and str(folder) in n for n in res.notes)
    before = ds.manifest_path.read_bytes()
    with pytest.raises(fsutil.SaveError, match="read-only"):
        manifest.save_labels(ds, {"song.wav": {"caption": "x"}})
    assert ds.manifest_path.read_bytes() == before and not (folder / "song.json").exists()


def test_probe_results_reused_for_unchanged_files(folder, monkeypatch):
    sine(folder / "a.wav")
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    calls = []
    import state.dataset.manifest as m
    monkeypatch.setattr(m, "probe", lambda p: calls.append(p) or pytest.fail("re-probed an unchanged file"))
    manifest.scan(ds)
    assert calls == []


# ---- uploads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,want", [
    ("../../etc/passwd.wav", "passwd.wav"), ("..\\..\\x.wav", "x.wav"), ("/abs/path/a b.wav", "a b.wav"),
    ("Ünïcödé song.FLAC", "Ünïcödé song.flac"), ("..wav", "wav"), ("/", "upload"), ("a\x00b<>:|?.wav", "a_b_____.wav"),
    (".hidden.wav", "hidden.wav"),
])
def test_safe_filename(raw, want):
    assert safe_filename(raw) == want


def test_uploads_safe_names_no_overwrite_and_duplicates(ws):
    folder = ws / "up"
    a = (sine(ws / "a.wav")).read_bytes()
    b = (sine(ws / "b.wav", freq=220)).read_bytes()
    res = save_uploads(folder, [("../../evil.wav", a), ("notes.txt", b"hi"), ("evil.wav", b),
                                ("copy of evil.wav", a), ("song.json", b'{"caption": "x"}')])
    by = {r.original: r for r in res}
    assert by["../../evil.wav"].status == "saved" and by["../../evil.wav"].saved_as == "evil.wav"
    assert by["notes.txt"].status == "rejected" and "notes.txt" in by["notes.txt"].message
    assert by["evil.wav"].status == "exists" and "nothing was overwritten" in by["evil.wav"].message
    assert by["copy of evil.wav"].status == "duplicate" and "identical to evil.wav" in by["copy of evil.wav"].message
    assert (folder / "evil.wav").read_bytes() == a
    assert sorted(p.name for p in folder.iterdir()) == ["evil.wav", "song.json"]
    assert not (ws.parent / "evil.wav").exists()
    res = save_uploads(folder, [("evil.wav", b)], on_conflict="replace")
    assert res[0].status == "replaced"
    assert (folder / "evil.wav").read_bytes() == b and (folder / "evil.wav.replaced-1").read_bytes() == a


def test_uploaded_dataset_scans(ws):
    ds = manifest.create_dataset("up")
    save_uploads(ds.dir, [("x.wav", sine(ws / "x.wav").read_bytes()), ("x.json", b'{"caption": "hi"}')])
    rows = manifest.scan(ds).rows
    assert [r["id"] for r in rows] == ["x.wav"] and rows[0]["caption"] == "hi"
    assert not manifest.scan(ds).orphans  # manifest.jsonl / dataset.json are not stray sidecars


def test_dataset_names_checked(ws):
    for bad in ["../x", "a/b", "", ".hidden", "x" * 200]:
        with pytest.raises(ValueError, match="not allowed"):
            manifest.create_dataset(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        manifest.create_dataset("ok", paths.root() / "missing")


# ---- CSV import ------------------------------------------------------------------------------

def test_csv_import_matches_basenames_and_reports_problems(folder):
    sine(folder / "one.wav")
    sine(folder / "two.flac", freq=220)
    (folder / "two.json").write_text('{"caption": "keep", "lyrics": "[Verse] la"}')
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    csv = ("file,caption,bpm,keyscale\n"
           "one.wav,dreamy synth pop,120,Am\n"
           "two,,fast,C\n"
           "three.wav,nope,100,\n").encode()
    rep = import_csv(ds, csv)
    rows = {r["id"]: r for r in manifest.read_manifest(ds)}
    assert rows["one.wav"]["caption"] == "dreamy synth pop" and rows["one.wav"]["keyscale"] == "A minor"
    assert rows["two.flac"]["caption"] == "keep" and rows["two.flac"]["keyscale"] == "C major"
    assert rows["two.flac"]["bpm"] is None
    assert any("line 3" in p and "bpm 'fast'" in p for p in rep.problems)
    assert any("line 4" in p and "no track named 'three.wav'" in p for p in rep.problems)
    assert sorted(rep.updated) == ["one.wav", "two.flac"]


def test_csv_without_file_column(folder):
    sine(folder / "one.wav")
    ds = manifest.create_dataset("d", folder)
    manifest.scan(ds)
    rep = import_csv(ds, b"name,caption\none.wav,x\n", "l.csv")
    assert rep.problems and "no 'file' column" in rep.problems[0]
