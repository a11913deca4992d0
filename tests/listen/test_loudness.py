"""Loudness matching (trainer/listen/loudness.py): BS.1770 via pyloudnorm, RMS fallback, peak-safe common gain."""
from __future__ import annotations

import numpy as np
import pyloudnorm

from trainer.listen.loudness import CEILING_DBTP, match, true_peak_db

SR = 48000


def tone(freq, amp, seconds=2.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.8 * x]).astype(np.float32)  # (2, n)


def lufs(c):
    return pyloudnorm.Meter(SR).integrated_loudness(c.T.astype(np.float64))


def test_clips_of_different_level_and_spectrum_end_within_half_a_db():
    clips = [tone(100, 0.9), tone(3000, 0.05), np.random.default_rng(0).normal(0, 0.2, (2, 2 * SR)).astype(np.float32)]
    before = [lufs(c) for c in clips]
    out, rep = match(clips, SR)
    after = [lufs(c) for c in out]
    assert max(before) - min(before) > 15  # they really started apart
    assert rep.method == "lufs" and max(after) - min(after) < 0.5 and rep.spread_db < 0.5
    assert all(p <= CEILING_DBTP + 1e-6 for p in rep.true_peak_after_dbtp)
    assert all(o.dtype == np.float32 and o.shape == c.shape for o, c in zip(out, clips))


def test_a_peaky_clip_lowers_every_clip_by_the_same_amount():
    spiky = np.zeros((2, 2 * SR), np.float32)
    spiky[:, ::4800] = 0.99  # clicks: low loudness, full-scale peaks; bringing it to -16 LUFS would clip
    clips = [tone(440, 0.3), spiky]
    out, rep = match(clips, SR)
    assert rep.peak_limited_by_db > 0 and rep.target < -16.0
    assert max(true_peak_db(c, SR) for c in out) <= CEILING_DBTP + 1e-3
    after = [lufs(c) for c in out]
    assert abs(after[0] - after[1]) < 0.5, after


def test_short_clips_fall_back_to_rms_and_silence_is_left_alone():
    short = [tone(440, 0.5, seconds=0.2), tone(440, 0.05, seconds=0.2)]  # shorter than a 400 ms gating block
    out, rep = match(short, SR)
    assert rep.method == "rms"
    rms = [20 * np.log10(np.sqrt(np.mean(c.astype(np.float64) ** 2))) for c in out]
    assert abs(rms[0] - rms[1]) < 0.5
    silent = np.zeros((2, SR), np.float32)
    out, rep = match([tone(440, 0.5, 1.0), silent], SR)
    assert rep.loudness_before[1] is None and rep.gain_db[1] == 0.0 and not out[1].any()
