"""The evaluation corpus for bench/labels.py: real compositions from music21's bundled corpus,
rendered to audio at run time with FluidSynth and a General-MIDI soundfont (nothing committed).

Ground truth comes from the score, not from any analysis:
  key    the key signature, and which of its two tonics (major or relative minor) the final bass
         note is; a piece whose last bass note is neither (modal tunes, Phrygian endings) is skipped.
         Each piece is transposed by a random interval, and the truth with it, so all keys occur.
  metre  the first time signature (pieces that change metre are skipped). ACE-Step's vocabulary is
         the numerator 2, 3, 4 or 6; 9/8 and 12/8 are rendered (their tempo and key still count)
         but have no ACE-Step time signature to score.
  tempo  the notated beat (a quarter in x/4, a half in 2/2, a dotted quarter in 6/8, 9/8, 12/8), in
         beats per minute: the score's own metronome mark or tempo word where it has one in 60-180,
         else a tempo typical of the genre drawn at random. The rendering plays exactly that tempo.
Instruments vary (21 General-MIDI ensembles) and about a quarter of the files get a drum track that
follows the metre. Everything is seeded: the same arguments build the same corpus.
"""
from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
SR = 44100
CORPUS_VERSION = 2  # bump when the builder changes what it renders, so a stale cache is rebuilt

# (time signature) -> ACE-Step's numerator label; None: rendered but not in ACE-Step's vocabulary.
METRES = {"2/4": "2", "2/2": "2", "3/4": "3", "4/4": "4", "6/8": "6", "9/8": None, "12/8": None}

# General-MIDI programs, cycled over a score's parts from the top voice down.
ENSEMBLES = {
    "string quartet": [40, 40, 41, 42], "church organ": [19], "choir aahs": [52, 52, 53, 52],
    "acoustic piano": [0], "harpsichord": [6], "brass": [56, 60, 57, 58], "woodwinds": [73, 68, 71, 70],
    "nylon guitars": [24, 24, 25, 32], "electric piano": [4, 4, 4, 33], "synth pad + bass": [89, 90, 89, 38],
    "vibraphone + cello": [11, 11, 42, 42], "accordion": [21], "clarinet choir": [71, 71, 71, 70],
    "marimba": [12], "string ensemble": [48, 48, 48, 43], "flute + harp": [73, 46, 46, 46],
    "fiddle": [40], "tin whistle": [78], "bagpipe": [109], "celtic harp": [46], "recorder + lute": [74, 24, 24, 24],
}
MELODY_ENSEMBLES = ["fiddle", "tin whistle", "accordion", "celtic harp", "acoustic piano", "flute + harp", "bagpipe"]

# Where pieces come from. (category, glob prefixes, how many of the corpus to take per 80 files)
SOURCES = [
    ("chorale", ["bach/bwv"], 22),
    ("classical", ["mozart/", "haydn/", "beethoven/", "schumann_robert/", "schumann_clara/", "joplin/",
                   "schubert/", "handel/", "verdi/", "corelli/", "cpebach/", "beach/", "leadSheet/", "weber/"], 26),
    ("folk", ["ryansMammoth/", "oneills1850/0001", "oneills1850/0351", "essenFolksong/erk", "essenFolksong/han1",
              "airdsAirs/book1", "miscFolk/"], 32),
]
# At most this share of the corpus in one metre, so 3/4 and 6/8 are not swamped by 4/4 and 2/4.
METRE_SHARE = {"4/4": 0.30, "2/4": 0.15, "2/2": 0.12, "3/4": 0.30, "6/8": 0.25, "9/8": 0.06, "12/8": 0.06}
# Beat tempo range (bpm of the notated beat) drawn when the score names none, by category and beat.
# Whole multi-movement quartets in one file (opus132, opus133, ...) take minutes to parse; the
# corpus has their single movements, so those files are left out.
MAX_MXL_BYTES = 100_000
TEMPO_RANGES = {"chorale": (60, 96), "classical": (62, 160), "folk": (70, 140)}


class MissingTool(RuntimeError):
    pass


@dataclass
class Truth:
    file: str
    source: str          # corpus path (and tune number in an opus)
    category: str
    key: str             # "A minor"
    metre: str           # "6/8"
    timesignature: str | None  # ACE-Step numerator, None when outside its vocabulary
    bpm: float           # notated beat per minute
    ensemble: str
    drums: bool
    transpose: int
    seconds: float


def check_tools() -> str:
    """The soundfont path; raises MissingTool saying how to install what is missing."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the fluidsynth program")
    sf2 = next((p for p in SOUNDFONTS if Path(p).is_file()), None)
    if sf2 is None:
        missing.append("a General-MIDI soundfont")
    try:
        import music21  # noqa: F401
        import pretty_midi  # noqa: F401
    except ImportError:
        missing.append("the music21 and pretty_midi packages")
    if missing:
        raise MissingTool(
            f"bench/labels.py needs {', '.join(missing)}. Install them with:\n"
            "  apt-get install -y fluidsynth fluid-soundfont-gm\n"
            "  .venv/bin/pip install -r bench/requirements-labels.txt")
    return sf2


# ---- ground truth from the score -----------------------------------------------------------------

PITCH_NAMES = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


def _final_bass_pc(score) -> int | None:
    notes = [n for n in score.flatten().notes if n.duration.quarterLength > 0 and not _is_chord_symbol(n)]
    if not notes:
        return None
    last = max(float(n.offset) for n in notes)
    pitches = [p for n in notes if float(n.offset) == last for p in n.pitches]
    return min(pitches, key=lambda p: p.midi).pitchClass if pitches else None


def _is_chord_symbol(n) -> bool:
    from music21 import harmony
    return isinstance(n, harmony.ChordSymbol)


def score_key(score) -> str | None:
    """'G major' / 'E minor' from the key signature and the final bass note, or None (modal, unclear)."""
    from music21 import key

    sigs = list(score.recurse().getElementsByClass(key.KeySignature))
    if not sigs or len({s.sharps for s in sigs}) > 1:
        return None
    major = sigs[0].asKey("major").tonic.pitchClass
    bass = _final_bass_pc(score)
    if bass == major:
        return f"{PITCH_NAMES[major]} major"
    if bass == (major + 9) % 12:
        return f"{PITCH_NAMES[bass]} minor"
    return None


def score_metre(score):
    from music21 import meter

    sigs = list(score.recurse().getElementsByClass(meter.TimeSignature))
    if not sigs or len({s.ratioString for s in sigs}) > 1 or sigs[0].ratioString not in METRES:
        return None
    return sigs[0]


def score_beat_bpm(score, ts, category: str, rng: random.Random) -> float:
    from music21 import tempo

    beat_ql = float(ts.beatDuration.quarterLength)
    for mark in score.recurse().getElementsByClass(tempo.TempoIndication):
        try:
            q = mark.getSoundingMetronomeMark().getQuarterBPM() if isinstance(mark, tempo.TempoText) else mark.getQuarterBPM()
        except Exception:  # noqa: BLE001 - a tempo word music21 cannot map: draw one instead
            q = None
        if q:
            bpm = q / beat_ql
            if 60 <= bpm <= 180:
                return round(bpm, 1)
        break
    lo, hi = TEMPO_RANGES[category]
    if beat_ql == 2.0:  # a half-note beat (2/2): keep the quarters below ~200 bpm
        hi = min(hi, 100)
    return round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 1)


# ---- rendering -----------------------------------------------------------------------------------

def _note_events(score, qbpm: float, transpose: int, max_s: float, rng: random.Random):
    """[(part_index, midi, start_s, end_s, velocity)] from each part, ties merged, humanised a little."""
    events = []
    parts = list(score.parts) or [score]
    for pi, part in enumerate(parts):
        for n in part.stripTies().flatten().notes:
            if _is_chord_symbol(n) or n.duration.quarterLength <= 0:
                continue
            start = float(n.offset) * 60.0 / qbpm
            if start >= max_s:
                continue
            end = start + float(n.duration.quarterLength) * 60.0 / qbpm
            vel = int(n.volume.velocity) if n.volume.velocity else 80
            for p in n.pitches:
                jitter = rng.uniform(-0.008, 0.008)
                events.append((pi, p.midi + transpose, max(0.0, start + jitter), end, max(30, min(120, vel + rng.randint(-8, 8)))))
    return events


def _drum_events(ts, qbpm: float, seconds: float):
    """Kick on the downbeat, snare on the other beats, hi-hat on every subdivision of the beat."""
    beats = int(ts.beatCount)
    beat_s = float(ts.beatDuration.quarterLength) * 60.0 / qbpm
    sub = 3 if ts.ratioString in ("6/8", "9/8", "12/8") else 2
    out, b = [], 0
    while b * beat_s < seconds:
        t = b * beat_s
        pos = b % beats
        kick = pos == 0 or (beats == 4 and pos == 2)
        out.append((36 if kick else 38, t, 100 if pos == 0 else 85))
        for s in range(sub):
            out.append((42, t + s * beat_s / sub, 70 if s == 0 else 50))
        b += 1
    return out


def render(score, truth: Truth, ts, qbpm: float, sf2: str, out: Path, rng: random.Random, max_s: float) -> float:
    """Render the score to a mono FLAC at SR; returns its length in seconds."""
    import numpy as np
    import pretty_midi
    import soundfile as sf

    events = _note_events(score, qbpm, truth.transpose, max_s, rng)
    length = max(e[3] for e in events)
    bar_s = float(ts.barDuration.quarterLength) * 60.0 / qbpm
    if length < 20.0:  # short folk tunes are played twice (or more), as they are at a session
        reps = math.ceil(20.0 / length)
        span = math.ceil(length / bar_s) * bar_s
        events = [(p, m, s + r * span, e + r * span, v) for r in range(reps) for (p, m, s, e, v) in events]
        length = max(e[3] for e in events)
    length = min(length, max_s)
    pm = pretty_midi.PrettyMIDI(initial_tempo=qbpm)
    programs = ENSEMBLES[truth.ensemble]
    insts = {}
    for p, m, s, e, v in events:
        if p not in insts:
            insts[p] = pretty_midi.Instrument(program=programs[p % len(programs)])
        if 0 <= m < 128:
            insts[p].notes.append(pretty_midi.Note(velocity=v, pitch=m, start=s, end=min(e, length)))
    pm.instruments.extend(insts.values())
    if truth.drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        for m, s, v in _drum_events(ts, qbpm, length):
            kit.notes.append(pretty_midi.Note(velocity=v, pitch=m, start=s, end=s + 0.1))
        pm.instruments.append(kit)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "x.mid", Path(tmp) / "x.wav"
        pm.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SR), "-F", str(wav), sf2, str(mid)],
                       check=True, capture_output=True, timeout=300)
        y, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    y = y.mean(axis=1)[: int((length + 1.5) * sr)]
    y = 0.9 * y / max(1e-6, float(np.max(np.abs(y))))
    sf.write(str(out), y, sr, subtype="PCM_16")
    return len(y) / sr


# ---- choosing pieces -----------------------------------------------------------------------------

def _candidates(prefixes: list[str], rng: random.Random):
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getCorePaths() if not str(p).endswith(".krn"))
    picked = [p for p in paths if any(p.split("/corpus/")[1].startswith(x) for x in prefixes)
              and not (p.endswith(".mxl") and Path(p).stat().st_size > MAX_MXL_BYTES)]
    rng.shuffle(picked)
    return picked


def _scores(path: str, rng: random.Random):
    """Yield (source label, score) for a corpus file: one score, or a few tunes of an opus."""
    from music21 import converter, stream

    try:
        parsed = converter.parse(path)
    except Exception:  # noqa: BLE001 - a corpus file music21 cannot parse is simply not used
        return
    rel = path.split("/corpus/")[1]
    if isinstance(parsed, stream.Opus):
        tunes = list(parsed.scores)
        for i in rng.sample(range(len(tunes)), min(8, len(tunes))):
            yield f"{rel}#{i}", tunes[i]
    else:
        yield rel, parsed


def build(cache: Path, files: int = 80, seed: int = 0, max_s: float = 45.0, log=print) -> list[Truth]:
    """Build (or reuse) the corpus in `cache`; returns the truths, in order."""
    sf2 = check_tools()
    cache.mkdir(parents=True, exist_ok=True)
    index = cache / "truth.json"
    want = {"version": CORPUS_VERSION, "files": files, "seed": seed, "max_s": max_s}
    if index.is_file():
        saved = json.loads(index.read_text())
        if saved.get("params") == want and all((cache / t["file"]).is_file() for t in saved["truth"]):
            return [Truth(**t) for t in saved["truth"]]
    rng = random.Random(seed)
    truths: list[Truth] = []
    total_share = sum(n for *_, n in SOURCES)
    for category, prefixes, share in SOURCES:
        need = round(files * share / total_share) if category != SOURCES[-1][0] else files - len(truths)
        got = examined = 0
        for path in _candidates(prefixes, rng):
            if got >= need:
                break
            for source, score in _scores(path, rng):
                if got >= need:
                    break
                ts, key = score_metre(score), score_key(score)
                if ts is None or key is None:
                    continue
                examined += 1
                # the metre quota holds while the search is cheap; a category that has few pieces in
                # the missing metres (folk tunes in 3/4) would otherwise parse the whole corpus
                strict = examined <= 4 * need
                if strict and sum(t.metre == ts.ratioString for t in truths) >= max(1, METRE_SHARE[ts.ratioString] * files):
                    continue
                bpm = score_beat_bpm(score, ts, category, rng)
                qbpm = bpm * float(ts.beatDuration.quarterLength)
                shift = rng.randint(-5, 6)
                tonic, mode = key.split()
                key_t = f"{PITCH_NAMES[(PITCH_NAMES.index(tonic) + shift) % 12]} {mode}"
                melody = len(score.parts) <= 1
                ensemble = rng.choice(MELODY_ENSEMBLES if melody else [e for e in ENSEMBLES if e not in ("fiddle", "tin whistle", "bagpipe", "celtic harp")])
                truth = Truth(file=f"{len(truths):03d}.flac", source=source, category=category, key=key_t,
                              metre=ts.ratioString, timesignature=METRES[ts.ratioString], bpm=bpm,
                              ensemble=ensemble, drums=rng.random() < 0.25, transpose=shift, seconds=0.0)
                try:
                    truth.seconds = round(render(score, truth, ts, qbpm, sf2, cache / truth.file, rng, max_s), 2)
                except (subprocess.SubprocessError, ValueError) as exc:
                    log(f"  skipped {source}: could not render ({exc})")
                    continue
                truths.append(truth)
                got += 1
                log(f"  {truth.file} {source}: {key_t}, {ts.ratioString}, {bpm:g} bpm, {ensemble}"
                    f"{' + drums' if truth.drums else ''}, {truth.seconds:.0f} s")
    index.write_text(json.dumps({"params": want, "truth": [asdict(t) for t in truths]}, indent=1))
    return truths
