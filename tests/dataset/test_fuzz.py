"""Property-based fuzz of the scanner and the sidecar reader (hypothesis): random bytes, random
JSON and random names. Whatever the folder holds, the scan finishes, every audio-named entry gets
exactly one row, and the index it writes reads back whole."""
from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.dataset import manifest
from state.dataset.labels import LABEL_FIELDS, normalise_labels
from state.dataset.sidecar import read_sidecar

EXTS = [".wav", ".flac", ".ogg", ".mp3", ".aiff"]
_counter = itertools.count()


def _wav(seconds: float, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.2 * np.sin(np.arange(int(seconds * sr)) / 7)).astype("float32"), sr, format="WAV")
    return buf.getvalue()


GOOD = _wav(0.5, 48000)

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | st.integers()
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
label_dicts = st.dictionaries(st.sampled_from(LABEL_FIELDS + ("labeled_by", "other")), json_values, max_size=6)

name_bytes = st.binary(min_size=1, max_size=60).map(
    lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_").lstrip(b".") or b"x")

audio_bytes = st.one_of(
    st.just(GOOD),
    st.binary(max_size=2048),
    st.integers(min_value=0, max_value=len(GOOD)).map(lambda n: GOOD[:n]),  # truncated anywhere
    st.tuples(st.integers(min_value=0, max_value=60), st.binary(min_size=1, max_size=8)).map(  # a corrupted header
        lambda t: GOOD[:t[0]] + t[1] + GOOD[t[0] + len(t[1]):]),
)
sidecar_bytes = st.one_of(
    st.none(),
    st.binary(max_size=512),
    label_dicts.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"caption": ' + b"[" * n + b"]" * n + b"}"),
)
entries = st.lists(st.tuples(name_bytes, st.sampled_from(EXTS), audio_bytes, sidecar_bytes), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=entries)
def test_scan_finishes_and_every_file_gets_a_row(tmp_path, monkeypatch, files):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path / "ws"))
    src = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        written = set()
        for stem, ext, data, side in files:
            base = os.fsencode(src) + b"/" + stem[:200]
            path = base + ext.encode()
            with open(path, "wb") as f:
                f.write(data)
            written.add(path)
            if side is not None:
                with open(base + b".json", "wb") as f:
                    f.write(side)
        ds = manifest.create_dataset(f"fuzz{next(_counter)}", Path(os.fsdecode(os.fsencode(src))))
        result = manifest.scan(ds)
        assert len(result.rows) == len(written)  # one row per audio-named file, none lost, none twice
        assert len({r["id"] for r in result.rows}) == len(result.rows)
        assert not result.notes, result.notes  # the index was written
        assert len(manifest.read_manifest(ds)) == len(written)
        for r in result.rows:
            assert r["status"] in ("ok", "warning", "error")
            assert r["status"] == "ok" or r["problems"]
            json.dumps(r, allow_nan=False).encode("utf-8")  # what the page and the jobs get is plain text
        manifest.summary(result.rows)
    finally:
        shutil.rmtree(src, ignore_errors=True)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=4096), json_values.map(lambda v: json.dumps(v).encode()),
                     label_dicts.map(lambda d: json.dumps(d).encode())))
def test_sidecar_reader_never_raises_and_says_why(tmp_path, raw):
    path = tmp_path / "song.json"
    path.write_bytes(raw)
    sc = read_sidecar(path)
    assert (sc.data is None) == (sc.problem is not None)
    if sc.problem:
        assert "song.json" in sc.problem
    else:
        clean, problems = normalise_labels(sc.data)
        assert set(clean) <= set(LABEL_FIELDS)
        json.dumps(clean, allow_nan=False).encode("utf-8")
        assert all(len(p) < 1000 for p in problems)  # a message never carries a whole value
    assert path.read_bytes() == raw  # reading never changes the file
