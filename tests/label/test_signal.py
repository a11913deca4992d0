"""Signal labels (trainer/label/signal.py, key.py, rhythm.py) on synthetic audio whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from state.dataset.labels import normalise_labels
from trainer.dataset.audio import AudioDecodeError
from trainer.label import key as keymod
from trainer.label import rhythm
from trainer.label.key import Reading, pitch_class, spell
from trainer.label.signal import signal_labels

from label_kit import A_MINOR, E_MINOR_TUNE, chord_loop, click_track, melody, metre_piece


def test_click_track_at_120_bpm_reads_120_and_has_no_key(tmp_path):
    res = signal_labels(click_track(tmp_path / "click.wav", bpm=120.0, seconds=12.0))
    assert abs(res.labels["bpm"] - 120) <= 2
    assert res.measured["bpm"].confidence > 0.5
    assert sorted(res.measured["bpm"].alternatives) == pytest.approx([60, 240], abs=2)  # the ½× / 2× offers
    assert "keyscale" not in res.labels  # clicks have no key: left unset, with a note saying so
    assert any("key" in n for n in res.notes)


def test_chord_loop_in_a_minor_reads_a_minor_with_a_confidence(tmp_path):
    res = signal_labels(chord_loop(tmp_path / "am.wav", A_MINOR))
    assert res.labels["keyscale"] == "A minor"
    assert 0.5 < res.measured["keyscale"].confidence <= 1.0
    assert normalise_labels(res.labels)[0]["keyscale"] == "A minor"  # already canonical



@pytest.mark.parametrize("cents", [0, 35])
def test_a_tune_on_one_instrument_is_read_from_its_notes_in_any_tuning(tmp_path, cents):
    y, sr = sf.read(melody(tmp_path / "tune.wav", E_MINOR_TUNE, cents=cents), dtype="float32")
    hist = keymod.melody_histogram(y, sr)
    used = set(np.flatnonzero(hist >= 0.03 * hist.sum()).tolist())
    assert used == {pitch_class(n) for n in ("E", "F#", "G", "A", "B", "D#")}  # its notes, a third of a semitone sharp or not
    est = keymod.estimate_key(y, sr)
    assert est.key == "E minor" and "melody" in est.source and est.melody_classes == 6


def test_the_melody_overrules_the_harmony_only_with_a_clear_margin(monkeypatch):
    y = np.ones(44100, dtype=np.float32)
    monkeypatch.setattr(keymod, "harmony_reading", lambda *a, **k: Reading(pitch_class("D"), "major", 0.8))
    for margin, key, other, source in [(0.10, "E minor", "D major", "melody"), (0.03, "D major", "E minor", "harmony")]:
        monkeypatch.setattr(keymod, "melody_reading", lambda *a, m=margin: Reading(4, "minor", 0.9, m, 7))
        est = keymod.estimate_key(y, 44100)
        assert (est.key, est.other, est.source) == (key, other, source)
        assert est.strength == pytest.approx((0.9 if source == "melody" else 0.8) * keymod.DISAGREE)
    # agreeing readings keep the stronger confidence; a line of two notes is no scale, so the harmony decides
    monkeypatch.setattr(keymod, "melody_reading", lambda *a: Reading(pitch_class("D"), "major", 0.9, 0.2, 7))
    assert keymod.estimate_key(y, 44100).strength == pytest.approx(0.9)
    monkeypatch.setattr(keymod, "melody_reading", lambda *a: Reading(4, "minor", 0.9, 0.5, 2))
    assert (keymod.estimate_key(y, 44100).key, keymod.estimate_key(y, 44100).other) == ("D major", None)
    # B minor is D major's relative (the same notes): there the melody needs RELATIVE_MARGIN, not MELODY_MARGIN
    for margin, key in [(0.08, "D major"), (0.12, "B minor")]:
        monkeypatch.setattr(keymod, "melody_reading", lambda *a, m=margin: Reading(pitch_class("B"), "minor", 0.9, m, 7))
        assert keymod.estimate_key(y, 44100).key == key
    monkeypatch.setattr(keymod, "harmony_reading", lambda *a, **k: Reading(pitch_class("B"), "minor", 0.8))
    monkeypatch.setattr(keymod, "melody_reading", lambda *a: Reading(pitch_class("D"), "major", 0.9, 0.08, 7))
    assert keymod.estimate_key(y, 44100).key == "B minor"

@pytest.mark.parametrize("bpm,beats,sub,expect", [(100, 3, 2, "3"), (112, 4, 2, "4"), (80, 2, 3, "6"), (76, 3, 3, None)])
def test_metre_and_tempo_of_a_counted_pulse(tmp_path, bpm, beats, sub, expect):
    res = signal_labels(metre_piece(tmp_path / f"m{beats}{sub}.wav", bpm, beats, sub))
    assert res.labels["bpm"] == pytest.approx(bpm, rel=0.04)
    assert res.labels.get("timesignature") == expect, res.detail
    assert res.labels["keyscale"] == "C major"


def test_slow_beat_with_passing_ticks_is_not_doubled(tmp_path):
    """Chords change every beat at 66 bpm with ticks between: the beat is 66, not the 132 of the ticks."""
    res = signal_labels(metre_piece(tmp_path / "slow.wav", 66, 4, 2, seconds=18.0))
    assert res.labels["bpm"] == pytest.approx(66, rel=0.04), res.detail


def test_duration_is_the_files_exact_length(tmp_path):
    sr = 44100
    frames = int(12.345 * sr)
    sf.write(tmp_path / "d.wav", np.zeros((frames, 2), dtype=np.float32), sr)
    res = signal_labels(tmp_path / "d.wav")
    assert res.labels["duration"] == pytest.approx(frames / sr, abs=1e-3)
    assert normalise_labels(res.labels)[0]["duration"] == 12.35  # stored to 10 ms, like every duration


def test_silence_leaves_tempo_key_and_metre_unset(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(44100 * 11, dtype=np.float32), 44100)
    res = signal_labels(tmp_path / "s.wav")
    assert set(res.labels) == {"duration"}
    assert len(res.notes) == 2 and any("No steady beat" in n for n in res.notes)


def test_key_names_and_tempo_candidates():
    assert [spell(pitch_class(n), "major") for n in ("C#", "Gb", "A#")] == ["Db major", "F# major", "Bb major"]
    assert spell(pitch_class("Ab"), "minor") == "G# minor"
    # a tracker at 120 offers every metrical level; the prior alone (flat salience) prefers the one nearest PRIOR_BPM
    flat = np.ones(4000)
    bpms = [round(b) for b, _ in rhythm.score_candidates([120.0], flat, flat)]
    assert sorted(bpms) == [40, 60, 80, 90, 120, 160, 180, 240] and bpms[0] in (80, 90, 120)


def test_a_phrase_repeat_rules_out_a_beat_that_does_not_divide_it():
    """A passage repeating every 8 s: at 60 bpm that is 8 beats (a phrase), at 80 bpm 10.7 beats (none)."""
    assert rhythm.phrase_misfit(60.0, [(8.0, 0.6)]) == 0.0
    assert rhythm.phrase_misfit(90.0, [(8.0, 0.6)]) == 0.0       # 12 beats: 4 bars of 3
    assert rhythm.phrase_misfit(80.0, [(8.0, 0.6)]) == 0.6
    assert rhythm.phrase_misfit(80.0, []) == 0.0                 # no repeat heard: nothing judged
    flat = np.ones(4000)
    best = rhythm.score_candidates([80.0], flat, flat, [(8.0, 0.6)])[0][0]
    assert round(best) in (60, 120)  # 80 (and its octaves 40, 160) lose to the levels that fit the repeat


def test_repetitions_finds_the_period_of_a_repeated_progression():
    """Four chords of 1 s each, looped: the harmony comes back every 4 s (and 8, 12 ...)."""
    frames = int(4 * rhythm.FPS)
    chroma = np.zeros((12, 5 * frames))
    for i, pcs in enumerate([(0, 4, 7), (5, 9, 0), (7, 11, 2), (9, 0, 4)] * 5):
        a = int(i * rhythm.FPS)
        chroma[list(pcs), a:a + int(rhythm.FPS)] = 1.0
    lags = [round(lag, 1) for lag, _ in rhythm.repetitions(chroma)]
    assert lags and lags[0] == pytest.approx(4.0, abs=0.1)
    assert all(abs(lag / 4.0 - round(lag / 4.0)) < 0.05 for lag in lags)


def test_undecodable_file_raises_a_named_error(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF nonsense" * 50)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        signal_labels(bad)


def _tatum_envelope(tatum_bpm: float, accent_every: int, seconds: float = 20.0) -> np.ndarray:
    """An onset envelope with a note on every tatum, the first of each `accent_every` louder."""
    env = np.zeros(int(seconds * rhythm.FPS))
    step = 60.0 / tatum_bpm * rhythm.FPS
    for i in range(int(len(env) / step)):
        env[int(round(i * step))] = 1.0 if i % accent_every == 0 else 0.4
    return env


def test_a_beat_tracked_at_a_third_of_its_tatums_too_many_is_regrouped():
    """Eighths at 240 a minute accented in threes (a jig) and a tracker at 120 (its quarters): the beat
    is three eighths, 80; accented in twos the same eighths make 120 of a beat tracked at 80."""
    jig = _tatum_envelope(240.0, 3)
    assert rhythm.accent_contrast(np.array([1.0, 0.4, 0.4] * 10), 3) > rhythm.accent_contrast(np.array([1.0, 0.4, 0.4] * 10), 2)
    bpm, moved = rhythm.regroup(jig, 120.0)
    assert moved and bpm == pytest.approx(80.0, rel=0.02)
    bpm, moved = rhythm.regroup(_tatum_envelope(240.0, 2), 80.0)
    assert moved and bpm == pytest.approx(120.0, rel=0.02)
    assert rhythm.regroup(jig, 80.0) == (80.0, False)  # already the beat: left alone


def test_a_beat_whose_tatums_group_both_ways_is_left_alone():
    """Eighths accented only on each bar's first (every 6: 3/4 in eighths and 6/8 alike) say neither 2 nor
    3 clearly; the trackers' pulse stands rather than moving by 3:2 on a few points' lead."""
    bars = _tatum_envelope(240.0, 6)
    assert rhythm.regroup(bars, 120.0) == (120.0, False)
    assert rhythm.regroup(bars, 80.0) == (80.0, False)
