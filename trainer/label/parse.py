"""Read the ACE-Step 5 Hz LM's "understand" answer into label fields (pure Python, no torch).

The LM answers (ACESTEP.md §5):

    <think>
    bpm: 92
    caption: A melancholic indie folk ballad with fingerpicked acoustic guitar ...
    duration: 184
    genres: indie folk, acoustic
    keyscale: D minor
    language: en
    timesignature: 4
    </think>

    # Lyric
    [Verse 1]
    ...<|im_end|>

The vocal language is read from `language` (upstream read another key, so its auto-labels always
said "unknown"). Every value goes through state.dataset.labels' normalisers; one it cannot use is dropped
with a note. "unknown", "N/A" and friends mean "not stated" and are dropped silently, except
`language: unknown`, ACE-Step's own value for a track without vocals.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from state.dataset.labels import norm_bpm, norm_duration, norm_keyscale, norm_language, norm_text, norm_timesignature

THINK_FIELDS = ("bpm", "caption", "duration", "genres", "keyscale", "language", "timesignature")
# Spellings seen in the wild for the same fields, mapped to the trained names.
ALIASES = {"time_signature": "timesignature", "key": "keyscale", "key_scale": "keyscale", "tempo": "bpm",
           "vocal_language": "language", "genre": "genres"}
WRAPPING = ("caption", "genres")  # free text the LM may wrap onto following lines
PLACEHOLDERS = {"", "unknown", "n/a", "na", "none", "null", "-", "?", "unk"}
END_MARKERS = ("<|im_end|>", "<|endoftext|>")

_KEY_LINE = re.compile(r"^\s*[-*]?\s*([A-Za-z][A-Za-z_ ]{0,24}?)\s*:\s*(.*)$")
_LYRIC_HEADER = re.compile(r"^\s*#+\s*lyrics?\s*:?\s*\n?", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
# Special-token markup, undecodable bytes or control characters in free text mean the model
# rambled (a wrong or untrained LM); such text would poison the captions the DiT trains on.
_GARBLED = re.compile(r"<\|[a-z_0-9]+\|>|\ufffd|[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class LMAnswer:
    labels: dict = field(default_factory=dict)       # clean values under our field names (vocal_language, ...)
    genres: str | None = None                        # not a label field; reported with the track
    extra: dict = field(default_factory=dict)        # keys the LM added that we do not use
    notes: list[str] = field(default_factory=list)   # what was dropped or missing, in words

    @property
    def usable(self) -> bool:
        return bool(self.labels)


def _split(text: str) -> tuple[str | None, str | None, list[str]]:
    """(think body, text after </think>, notes)."""
    notes = []
    open_at, close_at = text.find("<think>"), text.find("</think>")
    if close_at >= 0:
        start = open_at + len("<think>") if 0 <= open_at < close_at else 0  # the prompt may have opened it
        return text[start:close_at], text[close_at + len("</think>"):], notes
    if open_at >= 0:
        notes.append("The LM's answer has no </think> (cut off or malformed), so no lyrics were read.")
        return text[open_at + len("<think>"):], None, notes
    notes.append("The LM's answer has no <think> block.")
    return text, None, notes


def _fields(body: str, notes: list[str]) -> tuple[dict, dict]:
    """(known fields, extra fields) from `key: value` lines; other lines continue a wrapped caption."""
    known, extra, last = {}, {}, None
    for line in body.splitlines():
        m = _KEY_LINE.match(line)
        key = m.group(1).strip().lower().replace(" ", "_") if m else None
        key = ALIASES.get(key, key)
        if m and key in THINK_FIELDS:
            if key in known:
                notes.append(f"The LM gave {key} twice; the first value was kept.")
                last = None
                continue
            known[key], last = m.group(2).strip(), key
        elif m and " " not in m.group(1).strip() and last not in WRAPPING:
            extra[key], last = m.group(2).strip(), None
        elif last in WRAPPING and line.strip():
            known[last] = f"{known[last]} {line.strip()}".strip()
        else:
            last = None  # a stray line ends a one-line field (bpm, key...) instead of corrupting it
    return known, extra


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
        v = v[1:-1].strip()
    return v


def _clean_lyrics(tail: str) -> str | None:
    text = tail.strip()
    changed = True
    while changed:  # the end marker may repeat, or follow a newline
        changed = False
        for marker in END_MARKERS:
            if text.endswith(marker):
                text, changed = text[: -len(marker)].rstrip(), True
    text = _LYRIC_HEADER.sub("", text, count=1).strip()
    return text or None


def parse_answer(text: str) -> LMAnswer:
    """Everything usable in one LM answer; never raises on malformed text."""
    out = LMAnswer()
    body, tail, out.notes = _split(text or "")
    raw, out.extra = _fields(body or "", out.notes)
    normalisers = {"bpm": norm_bpm, "duration": norm_duration, "keyscale": norm_keyscale,
                   "timesignature": norm_timesignature, "language": norm_language}
    for key, value in raw.items():
        value = _unquote(value)
        if value.lower() in PLACEHOLDERS and not (key == "language" and value.lower() == "unknown"):
            continue  # "language: unknown" is a real answer (no vocals), the others mean "not stated"
        if key in ("genres", "caption") and _GARBLED.search(value):
            out.notes.append(f"LM {key}: it holds special tokens or unreadable characters, so it was dropped.")
            continue
        if key == "genres":
            out.genres = value
            continue
        if key == "caption":
            clean, problem = norm_text("caption", value)
        else:
            if key in ("bpm", "duration") and ":" not in value and (num := _NUMBER.search(value)):
                value = num.group(0)  # "92 bpm", "184 seconds"
            clean, problem = normalisers[key](value)
        if problem:
            out.notes.append(f"LM {key}: {problem}")
        elif clean is not None:
            out.labels["vocal_language" if key == "language" else key] = clean
    if tail is not None and not raw:
        out.notes.append("The <think> block held none of the expected fields, so the text after it "
                         "was not taken as lyrics.")
    elif tail is not None and (lyrics := _clean_lyrics(tail)):
        if _GARBLED.search(lyrics):
            out.notes.append("LM lyrics: they hold special tokens or unreadable characters, so they were dropped.")
        else:
            out.labels["lyrics"] = lyrics
    if out.extra:
        out.notes.append(f"The LM also gave {', '.join(sorted(out.extra))}, which are not label fields (ignored).")
    return out
