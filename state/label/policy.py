"""Which fields an auto-label run may write: the user-edit policy, shared by the page and the job.

Write policy (what "never overwrite the user's labels" means, precisely):
  * A track is *protected* when its sidecar says `labeled_by: user` (the editor, CSV import), or
    has no `labeled_by` but already holds label values (a sidecar that came with the audio).
  * With `protect_user` on, a protected track keeps every field that has a value; only fields
    that are empty in the sidecar (missing, null or blank) are filled. Its `labeled_by` is left
    as it was, so the protection holds for every later run too.
  * Tracks last labelled by a machine (`dsp` or `lm`) get all proposed fields replaced, and
    `labeled_by` names this run's source ("lm" if any LM value was written, else "dsp").
  * With `protect_user` off, every proposed field is written and `labeled_by` names the source.
  * `only_unlabelled` picks only tracks whose sidecar holds no label field at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state.dataset.labels import LABEL_FIELDS

AUTO_SOURCES = ("dsp", "lm")


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def has_labels(sidecar: dict | None) -> bool:
    return any(not _empty((sidecar or {}).get(k)) for k in LABEL_FIELDS)


def is_protected(sidecar: dict | None) -> bool:
    by = (sidecar or {}).get("labeled_by")
    return by == "user" or (by not in AUTO_SOURCES and has_labels(sidecar))


def plan_edits(sidecar: dict | None, proposed: dict, sources: dict, protect_user: bool) -> tuple[dict, str | None]:
    """(fields to write, labeled_by to record) for one track; see the module docstring.

    `proposed` holds clean label values; `sources` maps each proposed field to "dsp" or "lm".
    labeled_by None means "leave it as it is" (a protected track stays protected).
    """
    data = sidecar or {}
    protected = protect_user and is_protected(data)
    edits = {k: v for k, v in proposed.items()
             if k in LABEL_FIELDS and not _empty(v) and (not protected or _empty(data.get(k)))
             and v != data.get(k)}
    if not edits:
        return {}, None
    if protected:
        return edits, None
    return edits, "lm" if any(sources.get(k) == "lm" for k in edits) else "dsp"


# ---- measured vs heard: which value is written, which is only proposed ----------------------------
#
#   * A measured (signal) value carries a confidence in 0..1. It is written when the confidence reaches
#     WRITE_CONFIDENCE for its field; below that it is proposed (a suggestion on the Dataset page).
#   * Where the LM also gave the field and the two agree, the measured value is written whatever its
#     confidence (two independent sources agreeing is the best evidence there is).
#   * Tempo octave: when the LM's bpm is the measured one doubled, halved, tripled or a third (within
#     TEMPO_TOLERANCE), the measured tempo is written in the LM's octave: the LM learned the beat level
#     ACE-Step's training labels use, the signal measures the value more finely. The measured octave
#     is proposed beside it.
#   * Any other disagreement: PREFER says which source wins when the measured value is confident; an
#     unconfident measured value loses to the LM. The other value is proposed, with the reason.
#   * The file's duration is exact: it is always the measured one.

MEASURED_FIELDS = ("bpm", "keyscale", "timesignature")
# Measured on bench/labels.py. Time signature: the lowest threshold at which >= 90 % of the written
# ones were right on the even-numbered files (12 of 13 at 0.7; the odd ones, held out: 7 of 9). Only a
# triple ("3") or compound ("6") metre gets there: a duple one may be 2/4 or 4/4, which the signal does
# not tell apart, so its "4" stays at 0.5 at most (trainer/label/rhythm.py) and is only proposed.
WRITE_CONFIDENCE = {"bpm": 0.5, "keyscale": 0.5, "timesignature": 0.7}
PREFER = {"duration": "dsp", "bpm": "dsp", "keyscale": "dsp", "timesignature": "dsp"}
TEMPO_TOLERANCE = 0.04   # MIREX's Acc1 window: within 4 % is the same tempo
OCTAVES = (2.0, 0.5, 3.0, 1 / 3)


@dataclass
class Measured:
    value: Any
    confidence: float = 1.0
    alternatives: list = field(default_factory=list)  # bpm: the other octaves a listener may hear


@dataclass
class Merged:
    proposed: dict = field(default_factory=dict)   # field -> value to write (then plan_edits decides)
    sources: dict = field(default_factory=dict)    # field -> dsp | lm
    suggestions: list = field(default_factory=list)  # state.label.suggestions.Suggestion


def same_value(name: str, a, b) -> bool:
    if name == "bpm" and a and b:
        return abs(float(a) / float(b) - 1.0) <= TEMPO_TOLERANCE
    return a == b


def octave_of(measured: float, heard: float) -> float | None:
    """The factor in OCTAVES that takes the measured bpm to the heard one, or None."""
    for k in OCTAVES:
        if abs(measured * k / heard - 1.0) <= TEMPO_TOLERANCE:
            return k
    return None


def merge(measured: dict[str, Measured], heard: dict[str, Any]) -> Merged:
    """Combine clean measured values (with confidences) and clean LM values; see the comment above."""
    from state.label.suggestions import Suggestion

    out = Merged()

    def write(name, value, source):
        out.proposed[name], out.sources[name] = value, source

    def propose(name, value, source, reason, confidence=None, alternatives=()):
        out.suggestions.append(Suggestion(name, value, source, reason, confidence, list(alternatives)))

    for name in sorted(set(measured) | set(heard)):
        m, h = measured.get(name), heard.get(name)
        if m is None:
            write(name, h, "lm")
            continue
        sure = name not in WRITE_CONFIDENCE or m.confidence >= WRITE_CONFIDENCE[name]
        if h is None or same_value(name, m.value, h):
            if sure or h is not None:
                write(name, m.value, "dsp")
            else:
                propose(name, m.value, "dsp", f"measured with confidence {m.confidence:.2f}, below the "
                        f"{WRITE_CONFIDENCE[name]:.2f} needed to write it", m.confidence, m.alternatives)
            continue
        k = octave_of(float(m.value), float(h)) if name == "bpm" else None
        if k is not None:
            write(name, int(round(m.value * k)), "dsp")
            propose(name, m.value, "dsp", f"the beat measured; the LM counts the beat at {h} bpm, so its "
                    "octave was written", m.confidence, m.alternatives)
        elif sure and PREFER.get(name) == "dsp":
            write(name, m.value, "dsp")
            propose(name, h, "lm", f"the LM heard {h}; the measured {m.value} was written")
        else:
            write(name, h, "lm")
            propose(name, m.value, "dsp", f"measured with confidence {m.confidence:.2f}; the LM's {h} was "
                    "written", m.confidence, m.alternatives)
    return out
