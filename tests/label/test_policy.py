"""What an auto-label run writes and what it only proposes (state/label/policy.py), and the
suggestions the Dataset page offers (state/label/suggestions.py)."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from state.dataset import manifest
from state.label import suggestions
from state.label.policy import WRITE_CONFIDENCE, Measured, merge, plan_edits


def test_confident_measured_values_are_written_unconfident_ones_proposed():
    m = merge({"bpm": Measured(120, 0.9, [60, 240]), "keyscale": Measured("A minor", 0.2),
               "duration": Measured(12.5)}, {})
    assert m.proposed == {"bpm": 120, "duration": 12.5} and m.sources == {"bpm": "dsp", "duration": "dsp"}
    (s,) = m.suggestions
    assert (s.field, s.value, s.source, s.confidence) == ("keyscale", "A minor", "dsp", 0.2)
    assert f"{WRITE_CONFIDENCE['keyscale']:.2f}" in s.reason


def test_signal_and_lm_agreeing_write_even_an_unconfident_value():
    m = merge({"keyscale": Measured("A minor", 0.2)}, {"keyscale": "A minor", "caption": "calm piano"})
    assert m.proposed == {"keyscale": "A minor", "caption": "calm piano"} and not m.suggestions
    assert m.sources == {"keyscale": "dsp", "caption": "lm"}


def test_disagreement_keeps_the_preferred_source_and_proposes_the_other():
    m = merge({"keyscale": Measured("A minor", 0.9)}, {"keyscale": "C major"})
    assert m.proposed == {"keyscale": "A minor"}
    assert [(s.value, s.source) for s in m.suggestions] == [("C major", "lm")]
    # an unconfident measurement loses to the LM, and is itself proposed
    m = merge({"timesignature": Measured("3", 0.3)}, {"timesignature": "4"})
    assert m.proposed == {"timesignature": "4"} and m.sources == {"timesignature": "lm"}
    assert [(s.value, s.source) for s in m.suggestions] == [("3", "dsp")]


def test_lm_tempo_octave_picks_the_octave_of_the_measured_value():
    m = merge({"bpm": Measured(131.6, 0.8, [65.8, 263.2])}, {"bpm": 66})
    assert m.proposed == {"bpm": 66}  # round(131.6 / 2): the measured value, in the LM's octave
    assert [(s.value, s.source) for s in m.suggestions] == [(131.6, "dsp")]
    m = merge({"bpm": Measured(120, 0.8)}, {"bpm": 122})  # within 4 %: the same tempo
    assert m.proposed == {"bpm": 120} and not m.suggestions


def test_user_values_are_never_overwritten_by_the_merge_result():
    merged = merge({"bpm": Measured(128, 0.9), "keyscale": Measured("D major", 0.9)}, {})
    edits, by = plan_edits({"bpm": 64, "labeled_by": "user"}, merged.proposed, merged.sources, True)
    assert edits == {"keyscale": "D major"} and by is None  # bpm 64 is the user's; the track stays theirs


def _dataset(workspace, tmp_path):
    src = tmp_path / "music"
    src.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(src / name, np.zeros(44100 * 11, dtype=np.float32), 44100)
    ds = manifest.create_dataset("songs", src)
    manifest.scan(ds)
    return ds


def test_suggestions_accept_dismiss_and_replace(workspace, tmp_path):
    ds = _dataset(workspace, tmp_path)
    suggestions.replace_track(ds.dir, "a.wav", [suggestions.Suggestion("bpm", 70, "dsp", "low confidence", 0.4, [35, 140]),
                                                suggestions.Suggestion("keyscale", "E minor", "lm", "the LM heard it")],
                              job="label-1")
    rows = manifest.read_manifest(ds)
    assert [(r["id"], s.field) for r, s in suggestions.pending(ds.dir, rows)] == [("a.wav", "bpm"), ("a.wav", "keyscale")]

    row = suggestions.accept(ds, "a.wav", "bpm", 140)  # one of its alternatives: the other octave
    assert row["bpm"] == 140 and row["labeled_by"] == "user"  # the user's own edit from now on
    assert json.loads((ds.source / "a.json").read_text())["bpm"] == 140
    suggestions.dismiss(ds.dir, "a.wav", "keyscale")
    assert suggestions.pending(ds.dir, manifest.read_manifest(ds)) == []

    suggestions.replace_track(ds.dir, "b.wav", [suggestions.Suggestion("bpm", 90, "dsp", "x", 0.3)])
    suggestions.replace_track(ds.dir, "b.wav", [])  # a new run that wrote everything clears them
    assert suggestions.load(ds.dir) == {}


def test_a_suggestion_equal_to_the_current_value_is_not_pending(workspace, tmp_path):
    ds = _dataset(workspace, tmp_path)
    manifest.save_labels(ds, {"a.wav": {"bpm": 70}})
    suggestions.replace_track(ds.dir, "a.wav", [suggestions.Suggestion("bpm", 70, "dsp", "x", 0.4)])
    assert suggestions.pending(ds.dir, manifest.read_manifest(ds)) == []
    (ds.dir / suggestions.FILE).write_text("{ half written")
    assert suggestions.load(ds.dir) == {}  # advice only: a broken file never breaks the page
