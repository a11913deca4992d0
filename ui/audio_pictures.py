"""Pictures of audio for the dashboard: a log-frequency spectrogram and a min/max waveform, as numpy
arrays small enough to send to a browser (ui/ab.py draws them with plotly).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def read_audio(path: Path) -> tuple[Any, int]:
    """(samples (n, channels) float32, sample rate)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, sr


def spectrogram(path: Path, n_fft: int = 2048, max_cols: int = 300, n_bands: int = 128) -> dict:
    """A log-frequency magnitude spectrogram in dB of the mono mix, small enough to send to a browser.

    STFT with a Hann window; columns are frames averaged down to at most `max_cols`; rows are
    `n_bands` log-spaced bands from 30 Hz to Nyquist (how pitch is heard), each the mean power of its bins.
    """
    data, sr = read_audio(path)
    mono = data.mean(axis=1)
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    hop = max(n_fft // 4, math.ceil((len(mono) - n_fft) / max(1, max_cols - 1)))  # at most max_cols frames
    n_frames = 1 + (len(mono) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(mono[idx] * np.hanning(n_fft)[None, :], axis=1)) ** 2  # (frames, bins)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = np.geomspace(30.0, sr / 2, n_bands + 1)
    band = np.clip(np.searchsorted(edges, freqs) - 1, 0, n_bands - 1)
    keep = freqs >= edges[0]
    sums = np.zeros((n_frames, n_bands))
    np.add.at(sums.T, band[keep], power[:, keep].T)
    counts = np.bincount(band[keep], minlength=n_bands).clip(min=1)
    db = 10 * np.log10(sums / counts + 1e-12)
    return {"times": (np.arange(n_frames) * hop + n_fft / 2) / sr, "freqs": np.sqrt(edges[:-1] * edges[1:]),
            "db": db.T.astype(np.float32)}


def waveform(path: Path, points: int = 1200) -> dict:
    """Per-bucket min and max of the mono mix (what an audio editor draws), at most `points` buckets."""
    data, sr = read_audio(path)
    mono = data.mean(axis=1)
    n = max(1, min(points, len(mono)))
    edges = np.linspace(0, len(mono), n + 1).astype(int)
    lo = np.minimum.reduceat(mono, edges[:-1]) if len(mono) else np.zeros(0)
    hi = np.maximum.reduceat(mono, edges[:-1]) if len(mono) else np.zeros(0)
    return {"times": edges[:-1] / sr, "min": lo, "max": hi}
