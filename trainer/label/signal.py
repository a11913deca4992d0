"""Signal labels, measured with librosa on the CPU: duration, tempo, key (no model needed).

  duration       the file's own length (frames / sample rate), not the analysed excerpt
  bpm            librosa's dynamic-programming beat tracker; the tempo is read from the median
                 spacing of the tracked beats, which is finer than the tracker's tempo bins
  keyscale       mean CQT chroma of the harmonic part correlated with the Krumhansl-Kessler
                 major/minor key profiles in all 12 rotations; the best match wins
  timesignature  never set here: librosa has no meter estimator, and an accent-counting guess
                 would be wrong often enough to mislead training. The LM path fills it.

Values that are not clear enough (no beats, a flat chroma) are left unset with a note, never guessed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ANALYSIS_SR = 22050
HOP = 256               # 11.6 ms frames: beat positions fine enough for +-1 bpm at 120 bpm
MAX_ANALYSIS_S = 600.0  # ACE-Step's longest track; the duration still comes from the whole file
MIN_BEATS = 4
MIN_KEY_CORRELATION = 0.5  # below this the chroma matches no key profile well (noise, drums, speech)

# Krumhansl & Kessler (1982) probe-tone ratings, index 0 = the tonic.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Spelled the way key signatures are usually written (chroma index 0 = C).
MAJOR_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]


@dataclass
class SignalResult:
    labels: dict                                     # raw values; the job normalises them
    notes: list[str] = field(default_factory=list)   # what was left unset, and why
    key_correlation: float | None = None


def estimate_key(chroma_mean: np.ndarray) -> tuple[str | None, float]:
    """("A minor", r) for the key profile best correlated with a 12-bin mean chroma."""
    if not np.isfinite(chroma_mean).all() or np.ptp(chroma_mean) < 1e-6:
        return None, 0.0
    best, best_r = None, -1.0
    for tonic in range(12):
        for profile, names, mode in ((MAJOR_PROFILE, MAJOR_NAMES, "major"), (MINOR_PROFILE, MINOR_NAMES, "minor")):
            r = float(np.corrcoef(chroma_mean, np.roll(profile, tonic))[0, 1])
            if r > best_r:
                best, best_r = f"{names[tonic]} {mode}", r
    return best, best_r


def estimate_bpm(y: np.ndarray, sr: int) -> float | None:
    import librosa

    onset_env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=HOP)
    if not np.any(onset_env > 0):
        return None
    _tempo, beats = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr, hop_length=HOP)
    if len(beats) < MIN_BEATS:
        return None
    times = librosa.frames_to_time(beats, sr=sr, hop_length=HOP)
    return 60.0 / float(np.median(np.diff(times)))


def signal_labels(path: str | Path) -> SignalResult:
    """Measure one file. Raises trainer.dataset.audio.AudioDecodeError for a file that does not decode."""
    import librosa

    from trainer.dataset.audio import load_audio

    audio = load_audio(path, max_seconds=MAX_ANALYSIS_S, target_sr=ANALYSIS_SR)
    y = audio.samples.mean(axis=0)  # (n,) mono: both channels carry the same tempo and key
    out = SignalResult({"duration": round(audio.source_seconds, 3)})
    if audio.seconds < MAX_ANALYSIS_S <= audio.source_seconds:
        out.notes.append(f"Tempo and key were measured on the first {MAX_ANALYSIS_S:.0f} s.")

    bpm = estimate_bpm(y, ANALYSIS_SR)
    if bpm is None:
        out.notes.append("No steady beat was found, so bpm was left unset.")
    else:
        out.labels["bpm"] = round(bpm)

    harmonic = librosa.effects.harmonic(y)  # drums smear the chroma across all 12 bins
    with warnings.catch_warnings():
        # Tuning is estimated from the pitched peaks; a drums-only track has none, which the
        # key gate below reports in words, so librosa's own warning would only be noise in the log.
        warnings.filterwarnings("ignore", message="Trying to estimate tuning")
        chroma = librosa.feature.chroma_cqt(y=harmonic, sr=ANALYSIS_SR, hop_length=512)
    key, r = estimate_key(chroma.mean(axis=1))
    out.key_correlation = r
    if key is None or r < MIN_KEY_CORRELATION:
        out.notes.append(f"No clear key (best profile match r={r:.2f} < {MIN_KEY_CORRELATION}), so keyscale was left unset.")
    else:
        out.labels["keyscale"] = key
    return out
