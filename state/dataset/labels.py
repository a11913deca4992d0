"""Label fields and their normalisation (ACESTEP.md §5).

`normalise_labels` turns whatever a sidecar, a CSV or the editor holds into the canonical form
the model was trained on ("Am" -> "A minor", "4/4" -> "4"), and says in plain words what it could
not use. Values it cannot use are left out of the clean result but never deleted from the source.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

LABEL_FIELDS = ("caption", "lyrics", "bpm", "keyscale", "timesignature", "vocal_language", "duration")
TEXT_FIELDS = ("caption", "lyrics")
# What the model can use: encode_prompt reads at most max_text_length=256 tokens of the prompt and
# max_lyric_length=2048 of the lyrics, and cuts the rest. Qwen3's byte-level BPE averages about
# 4 characters a token on English, so text past 8 characters a token is cut off on any ordinary
# text: that is the limit, and longer text is refused with a message rather than silently cut.
TOKEN_LIMITS = {"caption": 256, "lyrics": 2048}
CHARS_PER_TOKEN = 8
MAX_CHARS = {k: n * CHARS_PER_TOKEN for k, n in TOKEN_LIMITS.items()}
# control characters (C0 but tab/newline/return, DEL, C1) and lone surrogates: not text, in any language
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
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


def _show(v: Any, limit: int = 60) -> str:
    """A value as it appears in a message: its repr, cut (a 50 MB value must not make a 50 MB message)."""
    if isinstance(v, str) and len(v) > limit:
        return repr(v[:limit]) + f"… ({len(v):,} characters)"
    text = repr(v) if isinstance(v, (str, int, float, bool)) or v is None else f"{type(v).__name__} {str(v)[:200]}"
    return text if len(text) <= limit else text[:limit] + "…"


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
        return None, f"bpm {_show(v)} is not a number; use a whole number between {BPM_RANGE[0]} and {BPM_RANGE[1]}, or leave it empty"
    if not BPM_RANGE[0] <= n <= BPM_RANGE[1]:
        return None, f"bpm {_show(v)} is outside {BPM_RANGE[0]}–{BPM_RANGE[1]}; check it (half or double tempo?) or leave it empty"
    return int(round(n)), None


def norm_keyscale(v: Any) -> tuple[str | None, str | None]:
    if not isinstance(v, str):
        return None, f"keyscale should be text like \"A minor\", got {_show(v)}"
    m = _KEY_RE.match(v)
    if not m:
        return None, f"keyscale {_show(v)} is not a key; write it like \"C major\", \"F# minor\" or \"Bb major\""
    note, acc, mode = m.groups()
    acc = {"♯": "#", "sharp": "#", "♭": "b", "flat": "b"}.get(acc or "", acc or "")
    # "m" is minor and "M" major (chord-symbol convention); words are case-insensitive.
    minor = mode == "m" or (mode or "").lower() in _MINOR
    if mode and not minor and mode != "M" and mode.lower() not in _MAJOR:
        return None, f"keyscale {_show(v)} has an unknown mode {_show(mode)}; use \"major\" or \"minor\""
    return f"{note.upper()}{acc} {'minor' if minor else 'major'}", None


def norm_timesignature(v: Any) -> tuple[str | None, str | None]:
    s = str(v) if isinstance(v, (int, str)) and not isinstance(v, bool) else None
    m = _TS_RE.match(s) if s is not None else None
    if not m or m.group(1) not in TIME_SIGNATURES:
        return None, (f"timesignature {_show(v)} is not supported; use one of {', '.join(TIME_SIGNATURES)} "
                      "(beats per bar, e.g. \"4\" for 4/4, \"6\" for 6/8)")
    return m.group(1), None


def norm_language(v: Any) -> tuple[str | None, str | None]:
    if not isinstance(v, str):
        return None, f"vocal_language should be a language code like \"en\", got {_show(v)}"
    s = v.strip().lower().replace("_", "-")
    code = _LANG_ALIASES.get(s, s)
    if code in LANGUAGES:
        return code, None
    if s in _LANG_BY_NAME:
        return _LANG_BY_NAME[s], None
    return None, f"vocal_language {_show(v)} is not a known language code; use e.g. \"en\", \"zh\", \"ja\" or \"unknown\""


def norm_duration(v: Any) -> tuple[float | None, str | None]:
    n = None
    if isinstance(v, str) and (m := _MMSS_RE.match(v)):
        n = int(m.group(1)) * 60 + float(m.group(2))
    else:
        n = _number(v)
    if n is None or n != n:
        return None, f"duration {_show(v)} is not a number of seconds; use e.g. 180 or \"3:00\""
    if not DURATION_RANGE[0] <= n <= DURATION_RANGE[1]:
        return None, f"duration {_show(v)} is outside {DURATION_RANGE[0]:.0f}–{DURATION_RANGE[1]:.0f} s, which ACE-Step supports"
    return round(n, 2), None


def norm_text(name: str, v: Any) -> tuple[str | None, str | None]:
    if not isinstance(v, str):
        kind = "a list" if isinstance(v, list) else f"a {type(v).__name__}"
        return None, f"{name} should be text, but it is {kind} ({_show(v)}); write it as one string"
    limit = MAX_CHARS.get(name)
    if limit and len(v) > limit:
        return None, (f"{name} is {len(v):,} characters long; the model reads only the first "
                      f"{TOKEN_LIMITS[name]:,} tokens of it (about {TOKEN_LIMITS[name] * 4:,} characters), so at most "
                      f"{limit:,} are accepted. Shorten it")
    if bad := _CONTROL_RE.search(v):
        ch, cat = bad.group(), unicodedata.category(bad.group())
        what = "a lone surrogate (a broken \\u escape)" if cat == "Cs" else "a control character"
        return None, (f"{name} contains {what} U+{ord(ch):04X} at character {bad.start() + 1:,}, which is not text. "
                      "Remove it (retype the text, or save the file again as plain text)")
    return (v.strip() or None), None


_NORMALISERS = {
    "bpm": norm_bpm, "keyscale": norm_keyscale, "timesignature": norm_timesignature,
    "vocal_language": norm_language, "duration": norm_duration,
}


def _is_empty(v: Any) -> bool:
    # NaN is not empty: a sidecar's `"bpm": NaN` is a value that is wrong, and is said to be
    return v is None or (isinstance(v, str) and not v.strip())


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
