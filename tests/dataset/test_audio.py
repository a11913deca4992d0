"""trainer.dataset.audio: decode, channels, resampling with soxr, repair, limits."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import write_tone
from trainer.dataset.audio import AudioDecodeError, load_audio


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def test_44k1_sine_stays_440hz_at_48k(tmp_path):
    a = load_audio(write_tone(tmp_path / "s.wav", seconds=2.0, sr=44100, channels=2))
    assert a.sample_rate == 48000 and a.source_rate == 44100
    assert a.samples.dtype == np.float32 and a.samples.shape[0] == 2
    assert abs(a.samples.shape[1] - 96000) <= 1
    assert abs(_peak_hz(a.samples[0], 48000) - 440.0) < 1.0
    assert a.notes == []


def test_mono_becomes_identical_stereo(tmp_path):
    a = load_audio(write_tone(tmp_path / "m.wav", seconds=1.0, sr=48000, channels=1))
    assert a.samples.shape == (2, 48000) and a.source_channels == 1
    assert np.array_equal(a.samples[0], a.samples[1])


def test_six_channels_are_downmixed_with_a_note(tmp_path):
    a = load_audio(write_tone(tmp_path / "c.wav", seconds=0.5, sr=48000, channels=6))
    assert a.samples.shape == (2, 24000)
    assert any("6 channels" in n for n in a.notes)


def test_nan_and_inf_become_silence_with_a_note(tmp_path):
    x = np.full((4800, 2), 0.25, dtype=np.float32)
    x[10, 0], x[20, 1] = np.nan, np.inf
    sf.write(str(tmp_path / "n.wav"), x, 48000, subtype="FLOAT")
    a = load_audio(tmp_path / "n.wav")
    assert np.isfinite(a.samples).all() and a.samples[0, 10] == 0.0 and a.samples[1, 20] == 0.0
    assert any("NaN/Inf" in n for n in a.notes)


def test_full_scale_square_is_clipped_only_after_resampling(tmp_path):
    sr = 44100
    sq = np.sign(np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)).astype(np.float32)
    sf.write(str(tmp_path / "q.wav"), sq, sr, subtype="FLOAT")
    a = load_audio(tmp_path / "q.wav")
    assert np.max(np.abs(a.samples)) <= 1.0
    assert any("clipped" in n for n in a.notes)  # Gibbs overshoot of the resampler
    b = load_audio(write_tone(tmp_path / "ok.wav", seconds=0.5, sr=48000, amp=0.9))
    assert b.notes == [] and np.max(np.abs(b.samples)) == pytest.approx(0.9, abs=1e-3)


def test_max_seconds_cuts_and_says_so(tmp_path):
    a = load_audio(write_tone(tmp_path / "l.wav", seconds=3.0, sr=48000), max_seconds=1.0)
    assert a.samples.shape == (2, 48000) and a.seconds == 1.0 and a.source_seconds == 3.0
    assert any("first 1.0 s of 3.0 s" in n for n in a.notes)


def test_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioDecodeError, match="broken.wav"):
        load_audio(bad)
    with pytest.raises(AudioDecodeError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
