"""Key and mode from the audio: essentia's KeyExtractor (HPCP chroma matched against key profiles).

Why essentia and not a chroma + Krumhansl correlation of our own: on the bench corpus
(bench/labels.py) our librosa version put a quarter of the major pieces on their dominant; essentia's
HPCP (spectral peaks, harmonic weighting, tuning correction) with its profiles does far better and
costs ~0.3 s a file. No model is downloaded: the profiles are tables inside the library.

The key is read from the whole mix. An opening-window rule is kept as an option (OPENING, off):
music that modulates moves to the dominant first, so a whole-track key a fifth above the opening's
(OPENING_S) may be the dominant passage outweighing the home key. It helped the former "bgate"
profile, which put many major pieces on their dominant; with "temperley2005" it cost more than it
fixed. Harmonic/percussive separation before the key was measured too and bought nothing for the
chosen profile (bench/labels.py --compare). The confidence is the profile correlation essentia
reports ("strength", 0..1), lowered when the two windows disagree in any other way;
KEY_STRENGTH_FLOOR is where a chroma stops looking like any key (drums, speech, noise).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Chosen on the even-numbered bench files (bench/labels.py --compare): of 11 essentia profiles, with
# and without the opening window and harmonic/percussive separation, "temperley2005" on the whole
# mix scored best (85 % exact there, 75 % on the odd files; the former "bgate" with the opening
# rule: 77.5 / 67.5 %, and 82.5 / 77.5 % on the HPSS harmonic part).
PROFILE = "temperley2005"
# Also measured (issue 18, 2026-12-02, throwaway scripts over the same 80 files; none kept): essentia
# HPCP frames rebuilt by hand (12/36 bins, 8 harmonics) fed to Key with each of its 13 profiles, with
# and without polyphonic and three-chord profiles; the mean correlation of 2, 6 or 9 profiles; a
# bass-register (25-262 Hz) tonic bonus over the whole file, its opening or its end; opening and
# ending windows. None beat this setting on the even files (best 80 / 80 % even / odd against
# 82.5 / 75 %: thpcp without polyphony), and every bass bonus lost points on the odd ones.
OPENING = False  # the opening-window rule below: it lost 3 points on the even files with this profile
KEY_STRENGTH_FLOOR = 0.3
OPENING_S = 10.0
DISAGREE = 0.6  # confidence factor when the opening and the whole track name unrelated keys
# A key needs a scale: a drone, a pitched click or a single repeated note fits some profile well
# enough (one pitch class matches a tonic), so fewer classes than this in use means no key.
MIN_PITCH_CLASSES = 3
# Spelled the way key signatures are usually written (index = pitch class, 0 = C).
MAJOR_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
MINOR_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"]
_PC = {n: i for i, n in enumerate(["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"])}
_PC.update({"Db": 1, "Eb": 3, "Gb": 6, "Ab": 8, "Bb": 10, "Cb": 11, "Fb": 4, "E#": 5, "B#": 0})


@dataclass
class KeyEstimate:
    key: str | None     # "A minor"; None when the chroma matches no key
    strength: float     # 0..1, essentia's profile correlation


def essentia_standard():
    """essentia.standard with its per-algorithm INFO and WARNING lines off (they would fill the job log)."""
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es


def pitch_class(name: str) -> int:
    return _PC[name]


def spell(pc: int, mode: str) -> str:
    return f"{(MINOR_NAMES if mode == 'minor' else MAJOR_NAMES)[pc % 12]} {mode}"


def pitch_classes_in_use(chroma: np.ndarray) -> int:
    """How many of the 12 classes hold at least 45 % of the strongest one's energy, over the track (a
    pitched click smears into its neighbours at ~40 %; the notes of a scale stand well above that)."""
    mean = np.asarray(chroma, dtype=float).mean(axis=1)
    return int(np.sum(mean >= 0.45 * mean.max())) if mean.max() > 0 else 0


def _extract(y: np.ndarray, sr: int, profile: str) -> tuple[int, str, float] | None:
    es = essentia_standard()
    tonic, scale, strength = es.KeyExtractor(profileType=profile, sampleRate=float(sr))(np.ascontiguousarray(y, dtype=np.float32))
    strength = float(strength)
    if scale not in ("major", "minor") or tonic not in _PC or not np.isfinite(strength):
        return None
    return _PC[tonic], scale, strength


def estimate_key(y: np.ndarray, sr: int, profile: str = PROFILE, opening: bool = OPENING) -> KeyEstimate:
    """y: mono float32 audio at sample rate sr. `opening` on: the opening window may overrule a
    whole-track key a fifth above it (see the module docstring)."""
    if not np.any(np.abs(y) > 1e-5):
        return KeyEstimate(None, 0.0)
    whole = _extract(y, sr, profile)
    if whole is None or whole[2] < KEY_STRENGTH_FLOOR:
        return KeyEstimate(None, max(0.0, whole[2]) if whole else 0.0)
    pc, mode, strength = whole
    n = int(OPENING_S * sr)
    first = _extract(y[:n], sr, profile) if opening and len(y) > 2 * n else None
    if first is not None and first[2] >= KEY_STRENGTH_FLOOR and first[:2] != whole[:2]:
        if first[1] == mode and (pc - first[0]) % 12 == 7:
            pc, strength = first[0], min(strength, first[2])
        else:
            strength *= DISAGREE
    return KeyEstimate(spell(pc, mode), strength)
