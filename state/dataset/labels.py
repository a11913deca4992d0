"""Label fields and their normalisation (ACESTEP.md §5).

`normalise_labels` turns whatever a sidecar, a CSV or the editor holds into the canonical form
the model was trained on ("Am" -> "A minor", "4/4" -> "4"), and says in plain words what it could
not use. Values it cannot use are left out of the clean result but never deleted from the source.
"""
from __future__ import annotations

import re
from typing import Any

LABEL_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language", "duration")
TEXT_FIELDS = ("caption", "lyrics")
BPM_RANGE = (30, 300)
DURATION_RANGE = (10.0, 600.0)
TIME_SIGNATURES = ("2", "3", "4", "6")

# ISO 639-1 codes ACE-Step's tokenizer and LM use, plus common names users type.
LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "es": "Spanish",
    "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese", "ru": "Russian",
    "ar": "Arabic", "hi": "Hindi", "nl": "Dutch", "sv": "Swedish", "pl": "Polish", "tr": "Turkish",
    "vi": "Vietnamese", "th": "Thai", "id": "Indonesian", "ms": "Malay", "uk": "Ukrainian",
    "cs": "Czech", "el": "Greek", "he": "Hebrew", "hu": "Hungarian", "fi": "Finnish", "da": "Danish",
    "no": "Norwegian", "ro": "Romanian", "bg": "Bulgarian", "hr": "Croatian", "sr": "Serbian",
    "sk": "Slovak", "fa": "Persian", "bn": "Bengali", "ta": "Tamil", "te": "Telugu", "ur": "Urdu",
    "tl": "Tagalog", "sw": "Swahili", "la": "Latin", "yue": "Cantonese", "unknown": "unknown",
}
_LANG_BY_NAME = {v.lower(): k for k, v in LANGUAGES.items()}
_LANG_ALIASES = {"instrumental": "unknown", "none": "unknown", "zh-cn": "zh", "zh-tw": "zh",
                 "en-us": "en", "en-gb": "en", "pt-br": "pt", "jp": "ja", "kr": "ko", "cn": "zh"}

_KEY_RE = re.compile(
    r"^\s*([A-Ga-g])\s*(#|♯|b|♭|sharp|flat)?\s*([A-Za-z]+)?\s*$")
_MINOR = {"min", "minor", "moll"}
_MAJOR = {"maj", "major", "dur"}
_TS_RE = re.compile(r"^\s*(\d+)\s*(?:/\s*(\d+))?\s*$")
_MMSS_RE = re.compile(r"^\s*(\d+):([0-5]?\d(?:\.\d+)?)\s*$")


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower().removesuffix("bpm").removesuffix("s").strip()
        try:
            return float(s)
        except ValueError:
            return None
    return None


def norm_bpm(v: Any) -> tuple[int | None, str | None]:
    n = _number(v)
    if n is None or n != n:
        return None, f"bpm {v!r} is not a number; use a whole number between {BPM_RANGE[0]} and {BPM_RANGE[1]}, or leave it empty"
    if not BPM_RANGE[0] <= n <= BPM_RANGE[1]:
        return None, f"bpm {v!r} is outside {BPM_RANGE[0]}–{BPM_RANGE[1]}; check it (half or double tempo?) or leave it empty"
    return int(round(n)), None


def norm_keyscale(v: Any) -> tuple[str | None, str | None]:
    if not isinstance(v, str):
        return None, f"keyscale should be text like \"A minor\", got {type(v).__name__} {v!r}"
    m = _KEY_RE.match(v)
    if not m:
        return None, f"keyscale {v!r} is not a key; write it like \"C major\", \"F# minor\" or \"Bb major\""
    note, acc, mode = m.groups()
    acc = {"♯": "#", "sharp": "#", "♭": "b", "flat": "b"}.get(acc or "", acc or "")
    # "m" is minor and "M" major (chord-symbol convention); words are case-insensitive.
    minor = mode == "m" or (mode or "").lower() in _MINOR
    if mode and not minor and mode != "M" and mode.lower() not in _MAJOR:
        return None, f"keyscale {v!r} has an unknown mode {mode!r}; use \"major\" or \"minor\""
    return f"{note.upper()}{acc} {'minor' if minor else 'major'}", None


def norm_timesignature(v: Any) -> tuple[str | None, str | None]:
    s = str(v) if isinstance(v, (int, str)) and not isinstance(v, bool) else None
    m = _TS_RE.match(s) if s is not None else None
    if not m or m.group(1) not in TIME_SIGNATURES:
        return None, (f"timesignature {v!r} is not supported; use one of {', '.join(TIME_SIGNATURES)} "
                      "(beats per bar, e.g. \"4\" for 4/4, \"6\" for 6/8)")
    return m.group(1), None


def norm_language(v: Any) -> tuple[str | None, str | None]:
    if not isinstance(v, str):
        return None, f"vocal_language should be a language code like \"en\", got {type(v).__name__} {v!r}"
    s = v.strip().lower().replace("_", "-")
    code = _LANG_ALIASES.get(s, s)
    if code in LANGUAGES:
        return code, None
    if s in _LANG_BY_NAME:
        return _LANG_BY_NAME[s], None
    return None, f"vocal_language {v!r} is not a known language code; use e.g. \"en\", \"zh\", \"ja\" or \"unknown\""


def norm_duration(v: Any) -> tuple[float | None, str | None]:
    n = None
    if isinstance(v, str) and (m := _MMSS_RE.match(v)):
        n = int(m.group(1)) * 60 + float(m.group(2))
    else:
        n = _number(v)
    if n is None or n != n:
        return None, f"duration {v!r} is not a number of seconds; use e.g. 180 or \"3:00\""
    if not DURATION_RANGE[0] <= n <= DURATION_RANGE[1]:
        return None, f"duration {v!r} is outside {DURATION_RANGE[0]:.0f}–{DURATION_RANGE[1]:.0f} s, which ACE-Step supports"
    return round(n, 2), None


def norm_text(name: str, v: Any) -> tuple[str | None, str | None]:
    if isinstance(v, str):
        return (v.strip() or None), None
    kind = "a list" if isinstance(v, list) else f"a {type(v).__name__}"
    return None, f"{name} should be text, but it is {kind} ({str(v)[:60]}); write it as one string"


_NORMALISERS = {
    "bpm": norm_bpm, "keyscale": norm_keyscale, "timesignature": norm_timesignature,
    "vocal_language": norm_language, "duration": norm_duration,
}


def _is_empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


def normalise_labels(raw: dict) -> tuple[dict, list[str]]:
    """Clean label values from `raw` and a list of problems (one sentence each)."""
    clean: dict = {}
    problems: list[str] = []
    for key in LABEL_FIELDS:
        v = raw.get(key)
        if _is_empty(v):
            continue
        fn = _NORMALISERS.get(key)
        value, problem = fn(v) if fn else norm_text(key, v)
        if problem:
            problems.append(problem)
        elif value is not None:
            clean[key] = value
    return clean, problems


def labels_hash_input(labels: dict) -> dict:
    """The label subset that affects conditioning, in canonical form (for cache keys)."""
    clean, _ = normalise_labels(labels)
    return {k: clean[k] for k in LABEL_FIELDS if k in clean}
