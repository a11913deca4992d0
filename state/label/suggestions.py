"""Label suggestions: values an auto-label run measured or heard but did not write.

A value becomes a suggestion instead of a label when its confidence is below what the write
policy asks for (state/label/policy.py), when the user's own value was kept, or when the signal and
the LM disagree and the policy kept the other one. The Dataset page lists them; accepting one is the
user's own edit (it goes through state.dataset.manifest.save_labels like the label editor, so the
track is then marked as the user's), dismissing one forgets it.

One file per dataset, datasets/<name>/label_suggestions.json:
  {"tracks": {track id: {field: {value, confidence, source, reason, alternatives, job, t}}}}
A new run replaces the suggestions of every track it labels. Stdlib only.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from state.fsutil import locked, read_json, write_json

FILE = "label_suggestions.json"


@dataclass
class Suggestion:
    field: str
    value: Any                      # a clean label value (state.dataset.labels normal form)
    source: str                     # dsp (measured) | lm (the 5 Hz LM)
    reason: str                     # why it was not written, in words
    confidence: float | None = None  # 0..1 for measured values; None for the LM, which gives none
    alternatives: list = field(default_factory=list)  # bpm: the other octaves a listener may hear
    job: str | None = None
    t: float = 0.0


def _path(ds_dir: Path) -> Path:
    return Path(ds_dir) / FILE


def load(ds_dir: Path) -> dict[str, dict[str, Suggestion]]:
    try:
        raw = read_json(_path(ds_dir), default=None) or {}
    except ValueError:  # a half-written or hand-edited file: suggestions are advice, the next run rewrites them
        return {}
    out: dict[str, dict[str, Suggestion]] = {}
    for track, by_field in (raw.get("tracks") or {}).items():
        for name, s in (by_field or {}).items():
            try:
                out.setdefault(track, {})[name] = Suggestion(**{**s, "field": name})
            except TypeError:
                continue  # an entry written by another version: not worth failing the page for
    return out


def _save(ds_dir: Path, data: dict[str, dict[str, Suggestion]]) -> None:
    write_json(_path(ds_dir), {"tracks": {t: {f: {k: v for k, v in asdict(s).items() if k != "field"}
                                              for f, s in fs.items()} for t, fs in data.items() if fs}})


def replace_track(ds_dir: Path, track: str, items: list[Suggestion], job: str | None = None) -> None:
    """Set one track's suggestions to `items` (an empty list clears them): called once per labelled track."""
    with locked(_path(ds_dir)):
        data = load(ds_dir)
        now = time.time()
        data[track] = {s.field: Suggestion(**{**asdict(s), "job": job or s.job, "t": s.t or now}) for s in items}
        _save(ds_dir, data)


def dismiss(ds_dir: Path, track: str, name: str) -> None:
    with locked(_path(ds_dir)):
        data = load(ds_dir)
        data.get(track, {}).pop(name, None)
        _save(ds_dir, data)


def pending(ds_dir: Path, rows: list[dict]) -> list[tuple[dict, Suggestion]]:
    """(row, suggestion) for every suggestion that still differs from the track's current value,
    in manifest order; suggestions of tracks no longer in the dataset are left out."""
    data = load(ds_dir)
    out = []
    for row in rows:
        for s in data.get(row["id"], {}).values():
            if row.get(s.field) != s.value:
                out.append((row, s))
    return out


def accept(ds, track: str, name: str, value: Any | None = None) -> dict:
    """Write the suggested value (or `value`, e.g. one of its alternatives) as the user's own edit;
    returns the updated manifest row. Raises state.dataset.manifest's LabelError / SaveError."""
    from state.dataset.manifest import save_labels

    s = load(ds.dir).get(track, {}).get(name)
    if s is None and value is None:
        raise KeyError(f"No suggestion for {name} of {track} any more; rescan the dataset.")
    (row,) = save_labels(ds, {track: {name: s.value if value is None else value}}, labeled_by="user")
    dismiss(ds.dir, track, name)
    return row
