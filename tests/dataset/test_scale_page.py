"""The Dataset page past one screenful (issue 14, class 5): the table and the problem list are sent a
page at a time, and a large CSV import renders a summary instead of one warning per line. The
20,000-file numbers come from bench/dataset_scale.py; this keeps the behaviour under test cheaply."""
from __future__ import annotations

import numpy as np
import soundfile as sf
from streamlit.testing.v1 import AppTest

from state.dataset import manifest

from locations import APP

N = 205  # just over one table page (200)


def test_big_dataset_pages_the_table_and_summarises_a_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("ACELORA_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("ACELORA_MODEL", "tests/not-the-demo-model")
    monkeypatch.delenv("SPACE_ID", raising=False)
    music = tmp_path / "music"
    music.mkdir()
    t = np.arange(2000) / 8000
    for i in range(N):  # short 8 kHz tones: each has warnings, so the problem list is long too
        sf.write(music / f"t{i:03d}.wav", (0.1 + i / 1000) * np.sin(2 * np.pi * 200 * t), 8000, subtype="PCM_16")
    manifest.scan(manifest.create_dataset("big", music))

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dataset_name"] = "big"
    at.run()
    assert not at.exception
    assert len(at.data_editor[0].value) == 200
    problems = next(e for e in at.expander if e.label.startswith("Problems"))
    assert problems.label == f"Problems ({N} files, 0 stray sidecars)"
    assert sum(m.value.startswith("**") for m in problems.markdown) == 50  # a page of files, not all of them
    at.number_input(key="data_table_page").set_value(2).run()
    assert not at.exception and list(at.data_editor[0].value["id"])[0] == "t200.wav"
    assert len(at.data_editor[0].value) == N - 200

    rows = ["file,caption,bpm"] + [f"t{i:03d}.wav,tone {i},{'fast' if i % 2 else 90}" for i in range(1000)]
    at.file_uploader(key="data_csv").set_value([("labels.csv", "\n".join(rows).encode(), "text/csv")]).run()
    at.button(key="data_csv_go").click().run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "labels.csv" in w.value]
    assert len(warnings) == 1, warnings  # one summary, not 898 warnings
    assert "795 rows naming no track" in warnings[0] and "102 values skipped" in warnings[0]
    assert any(f"Updated {N} track(s)" in s.value for s in at.success)
