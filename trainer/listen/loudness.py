"""Loudness matching for A/B listening: louder reads as "better", so every clip of a comparison is
brought to the same integrated loudness before anyone hears it.

Measure: ITU-R BS.1770-4 integrated loudness (LUFS) with pyloudnorm. It needs at least one 400 ms
gating block and a signal above its -70 LUFS absolute gate; when any clip of a comparison fails
that (very short or near-silent), the whole comparison is measured as RMS in dBFS instead, so all
clips share one scale. The method is recorded with the result.

Match: every clip gets gain `target - loudness`. Then the highest true peak (4x oversampled with
soxr, which catches the inter-sample peaks a DAC would produce) must stay under the ceiling; if it
would not, all gains drop by the same amount, so the clips stay matched and nothing clips.
numpy, pyloudnorm and soxr only: no torch.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

TARGET_LUFS = -16.0      # a common level for previews; quiet enough to leave headroom for most music
CEILING_DBTP = -1.0      # true-peak ceiling after gain
MIN_BLOCK_S = 0.4        # BS.1770's gating block: shorter clips cannot be measured in LUFS
SILENT_DB = -90.0        # below this (RMS) a clip is treated as silence and left alone


@dataclass
class Matched:
    method: str                  # lufs | rms
    target: float                # the common level the clips were brought to (after any peak limit)
    loudness_before: list        # per clip, in the method's unit (LUFS or dBFS RMS); None for silence
    loudness_after: list
    gain_db: list
    true_peak_after_dbtp: list
    peak_limited_by_db: float    # how much every gain was lowered to keep under the ceiling
    spread_db: float             # max - min loudness after matching (the test bound is 0.5 dB)

    def to_dict(self) -> dict:
        return asdict(self)


def measure(clips: list[np.ndarray], sr: int) -> tuple[str, list[float | None]]:
    """(method, loudness per clip). clips are (channels, n) float arrays."""
    import pyloudnorm

    rms = [_rms_db(c) for c in clips]
    if all(c.shape[-1] >= MIN_BLOCK_S * sr for c in clips):
        meter = pyloudnorm.Meter(sr)
        lufs = []
        for c, r in zip(clips, rms):
            if r is None:
                lufs.append(None)
                continue
            val = meter.integrated_loudness(np.ascontiguousarray(c.T, dtype=np.float64))
            lufs.append(float(val) if math.isfinite(val) else math.nan)
        if not any(v is not None and math.isnan(v) for v in lufs):
            return "lufs", lufs
    return "rms", rms


def _rms_db(c: np.ndarray) -> float | None:
    r = float(np.sqrt(np.mean(np.square(c, dtype=np.float64)))) if c.size else 0.0
    db = 20 * math.log10(r) if r > 0 else -math.inf
    return db if db > SILENT_DB else None


def true_peak_db(c: np.ndarray, sr: int) -> float:
    """Peak of the 4x oversampled signal in dBTP (BS.1770 Annex 2's method, with soxr's filter)."""
    import soxr

    if c.size == 0:
        return -math.inf
    up = soxr.resample(np.ascontiguousarray(c.T, dtype=np.float64), sr, 4 * sr, quality="HQ")
    peak = max(float(np.max(np.abs(up))), float(np.max(np.abs(c))))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def match(clips: list[np.ndarray], sr: int, target: float = TARGET_LUFS,
          ceiling_dbtp: float = CEILING_DBTP) -> tuple[list[np.ndarray], Matched]:
    """Gain-match `clips` to `target` (peak-safe); returns new float32 arrays and what was done."""
    method, before = measure(clips, sr)
    gains = [0.0 if L is None else target - L for L in before]
    peaks = [true_peak_db(c, sr) + g for c, g in zip(clips, gains)]
    over = max((p for p in peaks if math.isfinite(p)), default=-math.inf) - ceiling_dbtp
    limit = max(0.0, over)
    gains = [g - limit if L is not None else 0.0 for g, L in zip(gains, before)]
    out = [(c.astype(np.float64) * 10 ** (g / 20)).astype(np.float32) for c, g in zip(clips, gains)]
    _, after = measure(out, sr) if method == "lufs" else ("rms", [_rms_db(c) for c in out])
    levels = [a for a in after if a is not None]
    return out, Matched(
        method=method, target=target - limit, loudness_before=before, loudness_after=after, gain_db=gains,
        true_peak_after_dbtp=[true_peak_db(c, sr) for c in out], peak_limited_by_db=limit,
        spread_db=(max(levels) - min(levels)) if levels else 0.0)
