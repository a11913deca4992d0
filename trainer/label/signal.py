"""Signal labels, measured on the CPU without any model: duration, tempo, key, time signature.

  duration       the file's own length (frames / sample rate), not the analysed excerpt; exact
  keyscale       the melody's notes or the harmony's chroma, whichever is clearer (trainer/label/key.py)
  bpm            beat trackers + an octave choice in the notated beat (trainer/label/rhythm.py)
  timesignature  beat subdivision and downbeat grouping on the tracked beats (rhythm.py)

Every value comes with a confidence in 0..1 (state.label.policy.Measured); the write policy decides
which are written and which are only proposed. A value that cannot be measured at all (no beat in
a drone, no key in a drum loop, a metre outside ACE-Step's vocabulary) is left out with a note.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from state.label.policy import Measured

KEY_SR = 44100          # essentia's KeyExtractor and RhythmExtractor2013 are tuned for 44.1 kHz
MAX_ANALYSIS_S = 600.0  # ACE-Step's longest track; the duration still comes from the whole file


@dataclass
class SignalResult:
    measured: dict = field(default_factory=dict)    # field -> Measured (raw values; the job normalises)
    notes: list[str] = field(default_factory=list)  # what was left unset or only proposed, and why
    detail: dict = field(default_factory=dict)      # the numbers behind each decision (bench, logs)

    @property
    def labels(self) -> dict:
        return {k: m.value for k, m in self.measured.items()}


def analyse(y44: np.ndarray) -> SignalResult:
    """Measure mono float32 audio at 44.1 kHz. The key is read from the whole mix: harmonic/percussive
    separation first cost 1.3-4 s a file and bought nothing on the bench (bench/labels.py --compare)."""
    from trainer.dataset.audio import resample
    from trainer.label import key as keymod
    from trainer.label import rhythm

    out = SignalResult()
    y22 = resample(y44[None, :], KEY_SR, rhythm.SR)[0]
    onset = rhythm.onset_envelope(y22)
    chroma, flux = rhythm.chroma_flux(y22)
    classes = keymod.pitch_classes_in_use(chroma)
    k = keymod.estimate_key(y44, KEY_SR)
    out.detail.update(key_strength=round(k.strength, 3), key_source=k.source, key_other=k.other)
    # a tune on one instrument can pile its chroma onto one or two classes (a whistle's strong
    # fundamental) while its tracked notes still spell a scale: either count is evidence of one
    classes = max(classes, k.melody_classes)
    if k.key is None or classes < keymod.MIN_PITCH_CLASSES:
        why = (f"only {classes} pitch class(es) sound" if k.key is not None else f"profile match {k.strength:.2f}")
        out.notes.append(f"No clear key ({why}), so keyscale was left unset.")
    else:
        out.measured["keyscale"] = Measured(k.key, k.strength)
        if k.other:
            other = "harmony" if k.source == "melody" else "melody"
            out.notes.append(f"The {k.source} reads {k.key} and the {other} {k.other}; {k.key} was kept, "
                             f"with its confidence lowered to {k.strength:.2f}.")
    tempo = rhythm.estimate_tempo(y22, y44, onset, flux, chroma)
    out.detail["tempo_candidates"] = [(round(b, 1), round(s, 2)) for b, s in tempo.candidates]
    if tempo.bpm is None:
        out.notes.append("No steady beat was found, so bpm and the time signature were left unset.")
        return out
    out.measured["bpm"] = Measured(round(tempo.bpm, 1), round(tempo.confidence, 3),
                                   [round(a, 1) for a in tempo.alternatives])
    metre = rhythm.estimate_metre(onset, chroma, tempo.beats)
    out.detail["metre"] = metre.detail
    if metre.timesignature is None:
        if metre.ternary and metre.beats_per_bar == 3:
            out.notes.append("The beat is divided in three with 3 beats a bar (9/8), which ACE-Step has no "
                             "time signature for.")
        else:
            out.notes.append("No clear metre was found, so timesignature was left unset.")
    else:
        out.measured["timesignature"] = Measured(metre.timesignature, round(metre.confidence, 3))
    return out


_prepared = False


def prepare() -> None:
    """Compile librosa's numba functions once per process, under a lock, before measuring anything.

    numba caches compiled code on disk. Two label jobs compiling the same function at once on a
    fresh install (seen with two test workers) left a cache that segfaulted every later call. The
    cache lives in AceLoRA's own cache folder (not beside librosa in site-packages, which may be
    read-only), and the first analysis in each job, on a few seconds of generated audio, runs while
    holding a lock there: the first job compiles and writes, the others then load what it wrote."""
    import os

    from filelock import FileLock

    from state import paths

    cache = Path(os.environ.setdefault("NUMBA_CACHE_DIR", str(paths.cache_dir() / "numba")))
    cache.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(4.0 * KEY_SR)) / KEY_SR
    beats = (np.mod(t, 0.5) < 0.05).astype(np.float64)
    y = (0.2 * np.sin(2 * np.pi * 220.0 * t) * (0.3 + beats)).astype(np.float32)
    with FileLock(str(cache / "compile.lock"), timeout=900):
        analyse(y)
    global _prepared
    _prepared = True


def signal_labels(path: str | Path) -> SignalResult:
    """Measure one file. Raises trainer.dataset.audio.AudioDecodeError for a file that does not decode."""
    from trainer.dataset.audio import load_audio

    if not _prepared:
        prepare()
    audio = load_audio(path, max_seconds=MAX_ANALYSIS_S, target_sr=KEY_SR)
    y = audio.samples.mean(axis=0)  # (n,) mono: both channels carry the same tempo and key
    out = analyse(y)
    out.measured["duration"] = Measured(round(audio.source_seconds, 3))
    if audio.seconds < MAX_ANALYSIS_S <= audio.source_seconds:
        out.notes.append(f"Tempo, key and metre were measured on the first {MAX_ANALYSIS_S:.0f} s.")
    return out
