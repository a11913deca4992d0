"""Signal-label accuracy on real compositions: key, tempo and time signature against the score.

    apt-get install -y fluidsynth fluid-soundfont-gm          # the synthesiser and a GM soundfont
    .venv/bin/pip install -r bench/requirements-labels.txt    # music21 (its corpus) and pretty_midi
    .venv/bin/python bench/labels.py [--quick] [--files 80] [--seed 0] [--cache DIR] [--compare]

The corpus (bench/label_corpus.py) is built once at run time and cached in --cache (default
~/.cache/acelora/label-bench); nothing is committed. Scores, each over every file (a value left
unset counts as wrong):
  key exact       estimated tonic and mode equal the score's
  key mirex       MIREX key score: 1 exact, 0.5 a fifth away, 0.3 relative, 0.2 parallel, else 0
  tempo acc1      within 4 % of the notated beat
  tempo acc2      the same, also allowing x2, x1/2, x3, x1/3 (the metrical level may differ)
  timesig exact   ACE-Step's numerator (2, 3, 4, 6) equals the score's; over the files that have one
Targets (issue 18): key exact >= 85 %, tempo acc1 >= 76 %, acc2 >= 90 %. --compare also measures
the key from the melody alone and the harmony alone, the harmony with and without the harmonic part
(HPSS), the opening window and the former profile, the tempo from the HPSS percussive part's onsets
and without the phrase-repeat term, and each beat tracker alone, on the same files. Each score line
is also given over the even- and odd-numbered files ("even / odd"): the constants fitted on the
bench (key profile, MELODY_MARGIN, REPEAT_PENALTY) were chosen on the even ones of seed 0, so the
odd ones are held out; --seed 1 and --seed 2 build 80 other files each, held out from those (they
share about a quarter of their pieces with seed 0, in other keys, ensembles and tempi). Two
constants were chosen over all three corpora (240 files): rhythm.REGROUP_MARGIN (seed 0 alone
favoured a rule that lost tempi on the other two) and key.RELATIVE_MARGIN (checked with each corpus
held out in turn).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from state.label.policy import WRITE_CONFIDENCE  # noqa: E402


def key_score(est: str | None, truth: str) -> float:
    from trainer.label.key import pitch_class

    if not est:
        return 0.0
    (et, em), (tt, tm) = est.split(), truth.split()
    d = (pitch_class(et) - pitch_class(tt)) % 12
    if em == tm:
        return 1.0 if d == 0 else 0.5 if d in (5, 7) else 0.0
    if d == 0:
        return 0.2
    return 0.3 if (tm == "major" and d == 9) or (tm == "minor" and d == 3) else 0.0


def tempo_ok(est: float | None, truth: float, octaves: bool) -> bool:
    if not est:
        return False
    factors = (1.0, 2.0, 0.5, 3.0, 1 / 3) if octaves else (1.0,)
    return any(abs(est / (truth * k) - 1.0) <= 0.04 for k in factors)


def pct(xs) -> str:
    xs = list(xs)
    return f"{100.0 * sum(xs) / len(xs):.1f} %" if xs else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=80)
    ap.add_argument("--quick", action="store_true", help="20 files instead of 80")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "acelora" / "label-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=0,
                    help="label only N files spread evenly over the corpus (a slower machine's quick look)")
    ap.add_argument("--compare", action="store_true", help="also HPSS on/off and each tracker alone")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per file")
    args = ap.parse_args()
    files = 20 if args.quick else args.files

    import label_corpus

    try:
        label_corpus.check_tools()
    except label_corpus.MissingTool as exc:
        print(exc, file=sys.stderr)
        return 2
    import essentia

    essentia.log.infoActive = False  # essentia prints an INFO line per algorithm otherwise
    essentia.log.warningActive = False

    t0 = time.perf_counter()
    cache = args.cache / f"v{label_corpus.CORPUS_VERSION}-n{files}-s{args.seed}"
    truths = label_corpus.build(cache, files=files, seed=args.seed, log=print if args.verbose else (lambda *_: None))
    t_build = time.perf_counter() - t0
    if 0 < args.sample < len(truths):
        step = len(truths) / args.sample
        truths = [truths[int(i * step)] for i in range(args.sample)]

    from trainer.label.signal import signal_labels

    rows, spent = [], []
    for t in truths:
        t1 = time.perf_counter()
        res = signal_labels(cache / t.file)
        spent.append(time.perf_counter() - t1)
        rows.append((t, res))
        if args.verbose:
            m = res.measured
            print(f"  {t.file} {t.source}: key {t.key} -> {m['keyscale'].value if 'keyscale' in m else None} | "
                  f"bpm {t.bpm:g} -> {m['bpm'].value if 'bpm' in m else None} | "
                  f"{t.metre} -> {m['timesignature'].value if 'timesignature' in m else None}")

    def value(res, name):
        m = res.measured.get(name)
        return m.value if m else None

    def sure(res, name):
        m = res.measured.get(name)
        return m is not None and m.confidence >= WRITE_CONFIDENCE[name]

    keys = [key_score(value(r, "keyscale"), t.key) for t, r in rows]
    print(f"files: {len(rows)} ({sum(t.drums for t, _ in rows)} with drums; "
          f"{sum(t.key.endswith('major') for t, _ in rows)} major, {sum(t.key.endswith('minor') for t, _ in rows)} minor "
          f"in {len({t.key for t, _ in rows})} keys; metres {', '.join(sorted({t.metre for t, _ in rows}))})")
    print(f"key exact: {pct(k == 1.0 for k in keys)}")
    print(f"key mirex: {sum(keys) / len(keys):.3f}")
    print(f"tempo acc1: {pct(tempo_ok(value(r, 'bpm'), t.bpm, False) for t, r in rows)}")
    print(f"tempo acc2: {pct(tempo_ok(value(r, 'bpm'), t.bpm, True) for t, r in rows)}")
    scored_ts = [(t, r) for t, r in rows if t.timesignature]
    print(f"timesig exact: {pct(value(r, 'timesignature') == t.timesignature for t, r in scored_ts)}")

    for half, parity in (("even files (fitted on)", 0), ("odd files (held out)", 1)):
        part = [(t, r) for t, r in rows if _index(t) % 2 == parity]
        ks = [key_score(value(r, "keyscale"), t.key) for t, r in part]
        print(f"{half}: {len(part)} files, key exact {pct(k == 1.0 for k in ks)}, "
              f"tempo acc1 {pct(tempo_ok(value(r, 'bpm'), t.bpm, False) for t, r in part)}, "
              f"tempo acc2 {pct(tempo_ok(value(r, 'bpm'), t.bpm, True) for t, r in part)}, "
              f"timesig exact {pct(value(r, 'timesignature') == t.timesignature for t, r in part if t.timesignature)}")

    # ---- extra lines: where the errors are, and what the confidence gate buys ----
    print(f"key errors: {sum(k == 0.5 for k in keys)} a fifth off, {sum(k == 0.3 for k in keys)} relative, "
          f"{sum(k == 0.2 for k in keys)} parallel, {sum(k == 0.0 for k in keys)} other or unset")
    for lo, hi in ((60, 90), (90, 130), (130, 181)):
        band = [(t, r) for t, r in rows if lo <= t.bpm < hi]
        print(f"tempo acc1 {lo}-{hi - 1} bpm: {pct(tempo_ok(value(r, 'bpm'), t.bpm, False) for t, r in band)} "
              f"({len(band)} files)")
    for name, ok in (("keyscale", lambda t, r: key_score(value(r, "keyscale"), t.key) == 1.0),
                     ("bpm", lambda t, r: tempo_ok(value(r, "bpm"), t.bpm, False)),
                     ("timesignature", lambda t, r: value(r, "timesignature") == t.timesignature)):
        pool = scored_ts if name == "timesignature" else rows
        written = [(t, r) for t, r in pool if sure(r, name)]
        print(f"{name} written (confidence >= {WRITE_CONFIDENCE[name]}): {pct([True] * len(written) + [False] * (len(pool) - len(written)))} "
              f"of files, correct when written: {pct(ok(t, r) for t, r in written)}")
    for metre in sorted({t.metre for t, _ in rows}):
        sub = [(t, r) for t, r in rows if t.metre == metre]
        got = ", ".join(f"{v}: {n}" for v, n in sorted(_count(value(r, "timesignature") for _, r in sub).items(), key=str))
        print(f"timesig {metre} ({len(sub)} files) -> {got}")
    print(f"seconds per file: {sum(spent) / len(spent):.2f} (audio {sum(t.seconds for t in truths) / len(truths):.0f} s each)")
    print(f"corpus build: {t_build:.0f} s (cached in {cache})")

    if args.compare:
        compare(cache, rows)
    return 0


def _index(t) -> int:
    """The file's place in the corpus (000.flac is 0), which fixes the even / odd halves."""
    return int(Path(t.file).stem)


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def halves(xs, truths, ok=bool) -> str:
    """'even X % / odd Y %': the same score over the even- and the odd-numbered files."""
    return " / ".join(f"{name} {pct(ok(x) for x, t in zip(xs, truths) if _index(t) % 2 == p)}"
                      for name, p in (("even", 0), ("odd", 1)))


def _melody_key(keymod, y, sr) -> str | None:
    r = keymod.melody_reading(y, sr)
    return keymod.spell(r.pc, r.mode) if r else None


def compare(cache: Path, rows) -> None:
    """The key with and without harmonic/percussive separation and the opening window, each tracker alone."""
    import numpy as np

    from trainer.dataset.audio import load_audio
    from trainer.label import key as keymod
    from trainer.label import rhythm
    from trainer.label.signal import KEY_SR

    results: dict[str, list] = {}
    cost: dict[str, list] = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        v = fn()
        cost.setdefault(name, []).append(time.perf_counter() - t0)
        results.setdefault(name, []).append(v)

    import librosa

    for t, _ in rows:
        y = load_audio(cache / t.file, target_sr=KEY_SR).samples.mean(axis=0)
        y22 = load_audio(cache / t.file, target_sr=rhythm.SR).samples.mean(axis=0)
        timed("key labeller (melody or harmony), 44.1 kHz", lambda: keymod.estimate_key(y, KEY_SR).key)
        timed("key melody alone (PitchMelodia, Temperley-Kostka-Payne)", lambda: _melody_key(keymod, y, KEY_SR))
        timed(f"key harmony alone ({keymod.PROFILE}), 44.1 kHz",
              lambda: keymod.estimate_key(y, KEY_SR, opening=False, melody=False).key)
        timed(f"key harmony {keymod.PROFILE} whole + opening, 44.1 kHz",
              lambda: keymod.estimate_key(y, KEY_SR, opening=True, melody=False).key)
        timed("key harmony bgate whole + opening, 44.1 kHz",
              lambda: keymod.estimate_key(y, KEY_SR, "bgate", opening=True, melody=False).key)
        timed(f"key harmony {keymod.PROFILE} whole track only, 22.05 kHz",
              lambda: keymod.estimate_key(y22, rhythm.SR, opening=False, melody=False).key)
        parts = []
        timed("hpss", lambda: parts.append(librosa.effects.hpss(y22)))
        harmonic, percussive = parts[0]
        timed(f"key harmony {keymod.PROFILE} whole track only, 22.05 kHz HPSS harmonic part",
              lambda: keymod.estimate_key(harmonic, rhythm.SR, opening=False, melody=False).key)
        timed("key harmony bgate whole + opening, 22.05 kHz HPSS harmonic part",
              lambda: keymod.estimate_key(harmonic, rhythm.SR, "bgate", opening=True, melody=False).key)
        onset = rhythm.onset_envelope(y22)
        chroma, flux = rhythm.chroma_flux(y22)
        timed("tempo librosa beat_track alone", lambda: rhythm._track(onset)[0])
        timed("tempo essentia RhythmExtractor2013 degara alone", lambda: rhythm._degara(y))
        timed("tempo labeller, onsets of the whole mix", lambda: rhythm.estimate_tempo(y22, y, onset, flux, chroma).bpm)
        timed("tempo labeller, onsets of the HPSS percussive part",
              lambda: rhythm.estimate_tempo(y22, y, rhythm.onset_envelope(percussive), flux, chroma).bpm)
        timed("tempo labeller, no phrase-repeat term", lambda: rhythm.estimate_tempo(y22, y, onset, flux, None).bpm)
    truths = [t for t, _ in rows]
    for name, vals in results.items():
        if name.startswith("key"):
            ks = [key_score(v, t.key) for v, t in zip(vals, truths)]
            print(f"{name}: key exact {pct(k == 1.0 for k in ks)} ({halves(ks, truths, lambda k: k == 1.0)}), "
                  f"mirex {np.mean(ks):.3f}, {np.mean(cost[name]):.2f} s/file")
        elif name.startswith("tempo"):
            a1 = [tempo_ok(v, t.bpm, False) for v, t in zip(vals, truths)]
            a2 = [tempo_ok(v, t.bpm, True) for v, t in zip(vals, truths)]
            print(f"{name}: acc1 {pct(a1)} ({halves(a1, truths)}), acc2 {pct(a2)} ({halves(a2, truths)}), "
                  f"{np.mean(cost[name]):.2f} s/file")
    print(f"hpss: {np.mean(cost['hpss']):.2f} s/file")


if __name__ == "__main__":
    raise SystemExit(main())
