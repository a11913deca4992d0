"""Formats users have that libsndfile cannot read (m4a AAC/ALAC, wma, webm/opus), decoded through PyAV
for probing, preprocessing and the Dataset page's player, with files made by PyAV's own FFmpeg encoders."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from state.dataset import decode, manifest
from state.dataset.probe import audio_extensions, probe
from trainer.dataset.audio import AudioDecodeError, load_audio

from audio_fixtures import encoded

SR = 44100


def _music(seconds=3.0, sr=SR) -> np.ndarray:
    """(2, n): two partials, different on each side, so channel order and pitch both show."""
    t = np.arange(int(seconds * sr)) / sr
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 1234 * t)
    return np.stack([left, 0.5 * left]).astype(np.float32)


def _snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - x) ** 2)))


@pytest.fixture
def sources(tmp_path):
    x = _music()
    wav = tmp_path / "song.wav"
    sf.write(str(wav), x.T, SR, subtype="FLOAT")
    return x, wav


def test_every_users_format_is_accepted():
    exts = audio_extensions()
    assert {".wav", ".flac", ".m4a", ".wma", ".webm", ".aac"} <= set(exts)


def test_m4a_decodes_to_its_wav_sources_samples(sources, tmp_path):
    x, wav = sources
    aac = encoded(tmp_path / "phone.m4a", x, SR, "aac")
    alac = encoded(tmp_path / "itunes.m4a", x, SR, "alac")
    ref = load_audio(wav)
    for path, min_snr in ((aac, 25.0), (alac, 90.0)):  # AAC within codec tolerance; ALAC is lossless
        got = load_audio(path)
        assert got.source_rate == SR and got.source_channels == 2 and got.sample_rate == 48000
        assert abs(got.seconds - ref.seconds) < 0.05  # the edit list dropped the encoder's priming samples
        n = min(got.samples.shape[1], ref.samples.shape[1])
        assert _snr_db(ref.samples[:, :n], got.samples[:, :n]) > min_snr, path.name
    cut = load_audio(aac, max_seconds=1.0)
    assert cut.samples.shape[1] == 48000 and "Only the first 1.0 s" in cut.notes[0]


def test_probe_reads_m4a_wma_and_webm(sources, tmp_path):
    x, _ = sources
    files = [encoded(tmp_path / "a.m4a", x, SR, "aac"), encoded(tmp_path / "b.wma", x, SR, "wmav2"),
             encoded(tmp_path / "c.webm", _music(sr=48000), 48000, "libopus")]
    for path in files:
        p = probe(path)
        assert p.ok, (path.name, p.problems)
        assert p.channels == 2 and abs(p.seconds - 3.0) < 0.1 and p.format.startswith("FFMPEG")
        assert 0.3 < p.peak < 0.8 and p.sha256  # lossy codecs overshoot at the sudden start
        # what training gets: 48 kHz stereo whose strongest partial is still 440 Hz
        got = load_audio(path).samples
        spectrum = np.abs(np.fft.rfft(got[0]))
        assert abs(np.argmax(spectrum) * 48000 / got.shape[1] - 440) < 2, path.name


def test_a_file_nothing_can_decode_is_named(tmp_path):
    bad = tmp_path / "voice memo.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A " + np.random.default_rng(0).bytes(4000))
    p = probe(bad)
    assert not p.ok
    text = p.problems[0]["text"]
    assert text.startswith("voice memo.m4a cannot be decoded as audio (") and "WAV or FLAC" in text
    with pytest.raises(AudioDecodeError, match="voice memo.m4a"):
        load_audio(bad)


def test_dataset_scan_and_player_take_an_m4a(sources, tmp_path, workspace):
    x, _ = sources
    music = tmp_path / "music"
    music.mkdir()
    encoded(music / "take1.m4a", x, SR, "aac")
    ds = manifest.create_dataset("phone", music)
    manifest.scan(ds)
    rows = manifest.read_manifest(ds)
    assert [r["id"] for r in rows] == ["take1.m4a"] and rows[0]["sample_rate"] == SR
    assert rows[0]["status"] != "error", rows[0]["problems"]  # (a warning: 3 s is short for training)
    mp3 = decode.preview_mp3(rows[0]["audio"])
    preview = tmp_path / "preview.mp3"
    preview.write_bytes(mp3)
    with decode.Reader(preview) as r:
        assert r.codec.startswith("mp3") and abs(len(r.read()) / r.sample_rate - 3.0) < 0.1
