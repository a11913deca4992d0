"""Signal labels (trainer/label/signal.py): librosa on synthetic audio whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from state.dataset.labels import normalise_labels
from trainer.dataset.audio import AudioDecodeError
from trainer.label.signal import MINOR_PROFILE, estimate_key, signal_labels

from label_kit import A_MINOR, chord_loop, click_track


def test_click_track_at_120_bpm_reads_120(tmp_path):
    res = signal_labels(click_track(tmp_path / "click.wav", bpm=120.0, seconds=12.0))
    assert abs(res.labels["bpm"] - 120) <= 2
    assert "keyscale" not in res.labels  # clicks have no key: left unset, with a note saying so
    assert any("key" in n for n in res.notes)


def test_click_track_at_96_bpm(tmp_path):
    res = signal_labels(click_track(tmp_path / "click96.wav", bpm=96.0, seconds=12.0))
    assert abs(res.labels["bpm"] - 96) <= 2


def test_chord_loop_in_a_minor_reads_a_minor(tmp_path):
    res = signal_labels(chord_loop(tmp_path / "am.wav", A_MINOR))
    assert res.labels["keyscale"] == "A minor"
    assert normalise_labels(res.labels)[0]["keyscale"] == "A minor"  # already canonical


def test_duration_is_the_files_exact_length(tmp_path):
    sr = 44100
    frames = int(12.345 * sr)
    sf.write(tmp_path / "d.wav", np.zeros((frames, 2), dtype=np.float32), sr)
    res = signal_labels(tmp_path / "d.wav")
    assert res.labels["duration"] == pytest.approx(frames / sr, abs=1e-3)
    assert normalise_labels(res.labels)[0]["duration"] == 12.35  # stored to 10 ms, like every duration


def test_silence_leaves_tempo_and_key_unset(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(44100 * 11, dtype=np.float32), 44100)
    res = signal_labels(tmp_path / "s.wav")
    assert set(res.labels) == {"duration"}
    assert len(res.notes) == 2


def test_estimate_key_on_the_profiles_themselves():
    assert estimate_key(np.roll(MINOR_PROFILE, 9)) == ("A minor", pytest.approx(1.0))
    assert estimate_key(np.ones(12))[0] is None


def test_undecodable_file_raises_a_named_error(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF nonsense" * 50)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        signal_labels(bad)
