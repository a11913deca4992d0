"""Tempo (in the notated beat) and metre from the audio.

Tempo
  Two beat trackers give the pulse: librosa's dynamic-programming tracker and essentia's
  RhythmExtractor2013 (Degara). Trackers agree on the pulse far more often than on its octave: a slow
  chorale in quarters with passing eighths is tracked at the eighth, a jig at two eighths. So every
  tracker tempo is taken with its octaves (x 1/3, 1/2, 2/3, 1, 3/2, 2, 3) and each candidate is scored by
    * how strongly the onsets repeat at its period (autocorrelation of the onset envelope),
    * how strongly the harmony repeats at its period (autocorrelation of the chroma flux): chords
      change on beats, passing notes between them, which is what tells a musician where the beat is,
    * a log-normal prior on the notated beat (PRIOR_BPM, PRIOR_OCTAVES): the band a musician, and
      ACE-Step's labels, count in; the LM's own bpm, when the LM runs, picks the octave instead
      (state/label/policy.py),
    * whether the strongest repeats of the harmony (a phrase coming back, 2-30 s later) span a whole
      number of phrases at that beat: 2^k or 3 * 2^k beats (phrases of 2, 4, 8 bars of 2, 3 or 4
      beats). A reel tracked on its 3+3+2 figure (4/3 of the beat) puts 42.7 beats in a 32-beat
      repeat; the candidate is penalised by the repeat's strength (REPEAT_PENALTY),
  and the best one wins. Then regroup() asks whether that beat is 2 or 3 tatums (notes) long and
  moves it by 3:2 when the tatum accents clearly say so (REGROUP_MARGIN): a 6/8 jig whose trackers
  all lock on the quarter.
  The value is refined from the median spacing of beats tracked at that tempo.
  Confidence: how far the winner is ahead of the runner-up (0.5 means a coin toss), times whether
  the trackers agree on the pulse at all.

Metre (ACE-Step's numerators 2, 3, 4, 6)
  On the beats of the chosen tempo: is the beat divided in three (onsets at 1/3 and 2/3 of it) or in
  two (at 1/2)? And do downbeats recur every 2, 3 or 4 beats: accents (onset strength) and harmonic
  changes at one phase of the cycle against the others, plus how much more alike beats a bar apart
  are than beats at other distances (bars repeat their harmony and rhythm). Only triple against duple is
  decided: 2 and 4 beats a bar do not sound different, so a duple metre is "4" at confidence <= 0.5
  (proposed, never written alone). Duple beats divided in three is 6/8 ("6", also for 12/8); three
  beats divided in three (9/8) has no ACE-Step label and is left unset.
  Confidence: the subdivision's clarity times the lead of triple over duple (or the reverse);
  state/label/policy.py's write threshold for it was set on the bench (bench/labels.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SR = 22050
HOP = 256                     # 11.6 ms frames
FPS = SR / HOP
MIN_BPM, MAX_BPM = 40.0, 240.0
PRIOR_BPM = 100.0             # centre of the notated-beat prior
PRIOR_OCTAVES = 0.9           # its spread (standard deviation, in octaves)
# The metrical levels a tracker's pulse may sit on relative to the beat: octaves, thirds (a compound
# beat tracked at its eighths), 3:2 (6/8 tracked in quarters) and 4:3 (a reel tracked on a 3+3+2 figure).
RATIOS = (1 / 4, 1 / 3, 1 / 2, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 2.0, 3.0, 4.0)
MIN_BEATS = 8
TATUM_WINDOW_S = 0.02         # an onset within 20 ms of a tatum tick counts for it
REGROUPED_CONFIDENCE = 0.75   # the trackers' pulse was overruled by 3:2; less sure than when they agree
# regroup() moves the beat only when one accent period's contrast clears the other's by this share of
# their sum. Measured on the three bench corpora (bench/labels.py --seed 0, 1, 2; 240 files): moving
# on any lead fixed 11 tempi and broke 14 (a hornpipe's dotted rhythm or a polonaise's accents lead by
# a few points); at 0.5 it fixes 6 of those 11 and breaks none. Tempo acc1 / acc2 pooled: 78.3 / 91.7 %
# moving on any lead (the former rule), 79.6 / 92.5 % never moving, 80.8 / 94.6 % at 0.3, 82.1 / 95.0 %
# at 0.5, 81.7 / 94.6 % at 0.6; per corpus at 0.5: 78.8 / 93.8, 83.8 / 95.0, 83.8 / 96.2 %. Seed 0
# alone (where the rest was fitted) had favoured moving on any lead: fitting this on it would have
# overfitted.
REGROUP_MARGIN = 0.5
# Phrase repetition (see repetitions()): a passage repeats after a whole number of bars, and phrases are
# 2, 4, 8 ... bars of 2, 3 or 4 beats, so the repeat spans 2^k or 3 * 2^k beats of the true beat.
PHRASE_BEATS = np.array(sorted({2 ** k for k in range(1, 8)} | {3 * 2 ** k for k in range(0, 7)}), dtype=float)
PHRASE_TOLERANCE = 0.025
REPEAT_PENALTY = 2.0    # fitted on the even-numbered bench files (bench/labels.py), 0.5..5 tried
REPEAT_MIN_S = 2.0
REPEAT_MAX_S = 30.0
REPEAT_SHARE = 0.7      # repeats at least this strong against the strongest one count


@dataclass
class TempoEstimate:
    bpm: float | None
    confidence: float
    alternatives: list[float] = field(default_factory=list)   # half and double, in range
    beats: np.ndarray | None = None                           # seconds
    candidates: list[tuple[float, float]] = field(default_factory=list)  # (bpm, score), best first


@dataclass
class MetreEstimate:
    timesignature: str | None
    confidence: float
    beats_per_bar: int | None = None
    ternary: bool | None = None
    detail: dict = field(default_factory=dict)


# ---- features ------------------------------------------------------------------------------------

def onset_envelope(y: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP)


def chroma_flux(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chroma (12, frames), positive chroma flux (frames,)) on the onset envelope's frames."""
    import librosa

    chroma = librosa.feature.chroma_stft(y=y, sr=SR, hop_length=HOP, tuning=0.0)
    norm = chroma / (np.linalg.norm(chroma, axis=0, keepdims=True) + 1e-9)
    flux = np.concatenate([[0.0], np.maximum(0.0, np.diff(norm, axis=1)).sum(axis=0)])
    return chroma, flux


def _autocorr(env: np.ndarray) -> np.ndarray:
    x = env - env.mean()
    n = len(x)
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:n]
    return ac / (ac[0] + 1e-12)


def _salience(ac: np.ndarray, bpm: float) -> float:
    """Autocorrelation at the period of `bpm`, the best within +-3 % (trackers are not exact)."""
    lag = 60.0 * FPS / bpm
    lo, hi = int(np.floor(lag * 0.97)), int(np.ceil(lag * 1.03))
    if hi >= len(ac) or lo < 1:
        return 0.0
    return float(max(0.0, ac[lo:hi + 1].max()))


def repetitions(chroma: np.ndarray, hop: int = 4) -> list[tuple[float, float]]:
    """(lag in seconds, similarity) of the strongest repeats of the harmony and melody, 2-30 s apart.

    The similarity of the chroma with itself shifted by each lag (cosine, every `hop` frames); its clear
    peaks are where a phrase comes back. Music without repeats gives none, and then nothing is judged."""
    from scipy.signal import find_peaks

    f = np.asarray(chroma, dtype=float)[:, ::hop]
    f = f - f.mean(axis=1, keepdims=True)
    f /= np.linalg.norm(f, axis=0, keepdims=True) + 1e-9
    fps = FPS / hop
    n = f.shape[1]
    lo, hi = int(REPEAT_MIN_S * fps), min(int(REPEAT_MAX_S * fps), n // 2)
    if hi <= lo + 2:
        return []
    sim = np.array([np.mean(np.sum(f[:, lag:] * f[:, :n - lag], axis=0)) for lag in range(hi + 1)])
    peaks, _ = find_peaks(sim[lo:hi], prominence=0.05)
    if not len(peaks):
        return []
    peaks = peaks + lo
    top = sim[peaks].max()
    out = []
    for p in peaks:
        if sim[p] >= REPEAT_SHARE * top:
            a, b, c = sim[p - 1], sim[p], sim[p + 1]
            off = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0  # parabolic: sub-frame lag
            out.append(((p + off) / fps, float(sim[p])))
    return out


def phrase_misfit(bpm: float, repeats: list[tuple[float, float]]) -> float:
    """The strongest repeat that does not span 2^k or 3 * 2^k beats at `bpm` (0: all fit, or none)."""
    worst = 0.0
    for lag, strength in repeats:
        n = lag * bpm / 60.0
        if np.min(np.abs(PHRASE_BEATS / n - 1.0)) > PHRASE_TOLERANCE:
            worst = max(worst, strength)
    return worst


# ---- tempo ---------------------------------------------------------------------------------------

def score_candidates(tracker_bpms: list[float], onset_ac: np.ndarray, flux_ac: np.ndarray,
                     repeats: list[tuple[float, float]] = ()) -> list[tuple[float, float]]:
    """(bpm, score) for every metrical level of every tracker tempo, best first; duplicates within 4 % merged."""
    cands: list[float] = []
    for t in tracker_bpms:
        for r in RATIOS:
            c = t * r
            if MIN_BPM <= c <= MAX_BPM and all(abs(c / x - 1) > 0.04 for x in cands):
                cands.append(c)
    scored = []
    for c in cands:
        # the beat's own period, supported by the pulse twice as slow (the half bar) where the music has it
        s_on = _salience(onset_ac, c) + 0.5 * _salience(onset_ac, c / 2)
        s_h = _salience(flux_ac, c) + 0.5 * _salience(flux_ac, c / 2)
        prior = -0.5 * (np.log2(c / PRIOR_BPM) / PRIOR_OCTAVES) ** 2
        misfit = REPEAT_PENALTY * phrase_misfit(c, list(repeats))
        scored.append((c, float(np.log(s_on + 1e-3) + np.log(s_h + 1e-3) + prior - misfit)))
    return sorted(scored, key=lambda x: -x[1])


def _track(onset_env: np.ndarray, bpm: float | None = None) -> tuple[float, np.ndarray]:
    import librosa

    kw = {"bpm": bpm, "tightness": 400} if bpm else {}
    tempo, frames = librosa.beat.beat_track(onset_envelope=onset_env, sr=SR, hop_length=HOP, **kw)
    return float(np.atleast_1d(tempo)[0]), librosa.frames_to_time(frames, sr=SR, hop_length=HOP)


def accent_contrast(strengths: np.ndarray, period: int) -> float:
    """How much louder one position in every `period` ticks is than the others, over the mean."""
    x = np.asarray(strengths, dtype=float)
    idx = np.arange(len(x)) % period
    best = max(x[idx == p].mean() - x[idx != p].mean() for p in range(period))
    return float(best / (x.mean() + 1e-9))


def regroup(onset_env: np.ndarray, bpm: float) -> tuple[float, bool]:
    """The beat as 2 or 3 tatums: (bpm, whether it moved by 3:2 or 2:3).

    Whether a beat splits in two or three is read at the tatum (the fastest pulse of notes), not at
    the beat: the tatum grid is the one of bpm x 2 and bpm x 3 whose ticks land on louder onsets (the
    other has empty ticks between the notes), and on it the accents recur every 2 tatums (simple metre)
    or every 3 (compound). A 6/8 jig tracked in quarters (1.5x its beat) has tatums accented in threes,
    so its beat is 3 tatums; a 3/4 minuet tracked in dotted quarters has them accented in twos."""
    grids = {}
    for sub in (2, 3):
        _, ticks = _track(onset_env, bpm * sub)
        if len(ticks) < 3 * MIN_BEATS:
            return bpm, False
        grids[sub] = np.array([_peak(onset_env, t, TATUM_WINDOW_S) for t in ticks])
    sub = max(grids, key=lambda k: grids[k].mean())
    c3, c2 = accent_contrast(grids[sub], 3), accent_contrast(grids[sub], 2)
    if abs(c3 - c2) < REGROUP_MARGIN * (abs(c3) + abs(c2) + 1e-9):
        return bpm, False  # no clear grouping: the trackers' pulse stands
    group = 3 if c3 > c2 else 2
    new = bpm * sub / group
    return (new, True) if abs(new / bpm - 1) > 0.04 and MIN_BPM <= new <= MAX_BPM else (bpm, False)


def _degara(y44: np.ndarray) -> float | None:
    from trainer.label.key import essentia_standard

    bpm, ticks, _conf, _est, _intervals = essentia_standard().RhythmExtractor2013(method="degara")(np.ascontiguousarray(y44, dtype=np.float32))
    return float(bpm) if len(ticks) >= MIN_BEATS and bpm > 0 else None


def estimate_tempo(y22: np.ndarray, y44: np.ndarray | None, onset_env: np.ndarray, flux: np.ndarray,
                   chroma: np.ndarray | None = None) -> TempoEstimate:
    if not np.any(onset_env > 0):
        return TempoEstimate(None, 0.0)
    lb_bpm, lb_beats = _track(onset_env)
    trackers = [lb_bpm] if len(lb_beats) >= MIN_BEATS and lb_bpm > 0 else []
    deg = _degara(y44) if y44 is not None else None
    if deg:
        trackers.append(deg)
    if not trackers:
        return TempoEstimate(None, 0.0)
    repeats = repetitions(chroma) if chroma is not None else []
    scored = score_candidates(trackers, _autocorr(onset_env), _autocorr(flux), repeats)
    best, best_s = scored[0]
    best, regrouped = regroup(onset_env, best)
    _, beats = _track(onset_env, best)
    if len(beats) >= MIN_BEATS:
        spacing = 60.0 / float(np.median(np.diff(beats)))
        if abs(spacing / best - 1) <= 0.04:  # the tracked beats refine the value; they never move its octave
            best = spacing
    runner = scored[1][1] if len(scored) > 1 else best_s - 5.0
    lead = 1.0 / (1.0 + np.exp(-(best_s - runner) * 2.0))  # 0.5 at a tie
    agree = len(trackers) < 2 or any(abs(trackers[0] * r / trackers[1] - 1) <= 0.04 for r in RATIOS)
    confidence = float(lead if agree else lead * 0.6) * (REGROUPED_CONFIDENCE if regrouped else 1.0)
    alts = [b for b in (best / 2, best * 2) if 30 <= b <= 300]
    return TempoEstimate(best, confidence, alts, beats, scored[:6])


# ---- metre ---------------------------------------------------------------------------------------

def _peak(env: np.ndarray, t: float, half_width: float) -> float:
    c = int(round(t * FPS))
    w = max(1, int(round(half_width * FPS)))
    lo, hi = max(0, c - w), min(len(env), c + w + 1)
    return float(env[lo:hi].max()) if hi > lo else 0.0


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


DUPLE_CONFIDENCE = 0.5  # "4" for a duple metre that may be 2/4: a suggestion at most
REPEAT_WEIGHT = 10.0  # bar repetition (similarities ~0.01-0.05) against accents (z-scores ~0.1-1)


def _bar_repetition(onset_env: np.ndarray, chroma: np.ndarray, beats: np.ndarray, max_lag: int = 16) -> dict:
    """How much more alike beats are m, 2m, 3m ... apart than at other distances, for m = 2, 3, 4:
    bars repeat their harmony and rhythm, so the bar length stands out in the beat-to-beat similarity."""
    frames = np.clip(np.round(beats * FPS).astype(int), 0, chroma.shape[1] - 1)
    rows = []
    for a, b in zip(frames[:-1], frames[1:]):
        c = chroma[:, a:b].mean(axis=1) if b > a else chroma[:, a]
        pattern = onset_env[np.clip(np.linspace(a, b, 7)[:-1].astype(int), 0, len(onset_env) - 1)]
        rows.append(np.concatenate([c / (np.linalg.norm(c) + 1e-9), 0.7 * pattern / (np.linalg.norm(pattern) + 1e-9)]))
    f = np.array(rows)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-9
    lags = range(1, min(max_lag, len(f) - 1) + 1)
    sim = {L: float(np.mean(np.sum(f[L:] * f[:-L], axis=1))) for L in lags}
    out = {}
    for m in (2, 3, 4):
        on = [sim[L] for L in lags if L % m == 0]
        off = [sim[L] for L in lags if L % m]
        out[m] = (np.mean(on) - np.mean(off)) if on and off else 0.0
    return out


def estimate_metre(onset_env: np.ndarray, chroma: np.ndarray, beats: np.ndarray) -> MetreEstimate:
    if beats is None or len(beats) < 12:  # three bars of 4 at least
        return MetreEstimate(None, 0.0)
    ibi = np.diff(beats)
    # subdivision: onsets at a third and two thirds of the beat, against the half
    thirds, halves = [], []
    for b, d in zip(beats[:-1], ibi):
        w = 0.06 * d
        thirds.append(0.5 * (_peak(onset_env, b + d / 3, w) + _peak(onset_env, b + 2 * d / 3, w)))
        halves.append(_peak(onset_env, b + d / 2, w))
    ref = np.mean([_peak(onset_env, b, 0.06 * d) for b, d in zip(beats[:-1], ibi)]) + 1e-9
    sub = (np.mean(thirds) - np.mean(halves)) / ref   # > 0: divided in three
    # accents and harmonic changes per beat
    accent = np.array([_peak(onset_env, b, 0.04 * d) for b, d in zip(beats[:-1], ibi)])
    frames = np.clip(np.round(beats * FPS).astype(int), 0, chroma.shape[1] - 1)
    seg = [chroma[:, a:b].mean(axis=1) if b > a else chroma[:, a] for a, b in zip(frames[:-1], frames[1:])]
    seg = np.array([s / (np.linalg.norm(s) + 1e-9) for s in seg])
    change = np.concatenate([[0.0], 1.0 - np.sum(seg[1:] * seg[:-1], axis=1)])
    feats = [_z(accent), _z(change)]
    n = len(accent)
    repeat = _bar_repetition(onset_env, chroma, beats)
    group = {}
    for m in (2, 3, 4):
        best = -np.inf
        for phase in range(m):
            on = np.arange(n) % m == phase
            best = max(best, float(np.mean([f[on].mean() - f[~on].mean() for f in feats])))
        group[m] = best + REPEAT_WEIGHT * repeat[m]
    # Triple or not is what the accents and bar repeats tell apart; 2 and 4 beats a bar they do not
    # (a 2/4 tune sounds like a 4/4 one at the same beat; on the bench group4 beat group2 in most 2/4
    # and 2/2 pieces), so a duple metre is one class, named "4" (the usual label) and never sure.
    duple = max(group[2], group[4])
    triple = group[3] > duple
    m = 3 if triple else (2 if group[2] > group[4] else 4)
    margin = abs(group[3] - duple)
    ternary = sub > 0.0
    detail = {"subdivision": round(float(sub), 3), **{f"group{k}": round(v, 3) for k, v in group.items()},
              **{f"repeat{k}": round(float(v), 4) for k, v in repeat.items()}}
    sure_group = 1.0 / (1.0 + np.exp(-margin * 8.0))
    sure_sub = 1.0 / (1.0 + np.exp(-abs(sub) * 8.0))
    conf = float(sure_group * sure_sub)
    if ternary:
        # two or four beats divided in three: 6/8 (12/8 has no ACE-Step label; "6" is its closest);
        # three (9/8) has none at all
        ts = None if triple else "6"
    elif triple:
        ts = "3"
    else:
        ts, conf = "4", min(conf, DUPLE_CONFIDENCE)
    return MetreEstimate(ts, conf, m, ternary, detail)
