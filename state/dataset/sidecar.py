"""Per-track sidecar JSON (`song.wav` + `song.json`): the source of truth for a track's labels.

Reading never changes the file. A sidecar that cannot be parsed is reported and left exactly as
it is; writing over it needs an explicit `replace_broken=True`, which keeps a backup first.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from state.dataset.labels import LABEL_FIELDS
from state.fsutil import atomic_write_bytes, atomic_write_text


@dataclass
class Sidecar:
    path: Path
    data: dict | None  # None when missing or unreadable
    problem: str | None = None  # why it could not be used, in words, naming the file

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def broken(self) -> bool:
        return self.problem is not None


class SidecarError(ValueError):
    pass


def sidecar_path(audio: Path) -> Path:
    return Path(audio).with_suffix(".json")


def read_sidecar(path: Path) -> Sidecar:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Sidecar(path, None)
    except OSError as exc:
        return Sidecar(path, None, f"{path.name} cannot be read ({exc.strerror}). Check its permissions.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Sidecar(path, None, f"{path.name} is not UTF-8 text (byte {exc.start}). Open it in a text editor "
                       "and save it as UTF-8; it was left untouched.")
    if not text.strip():
        return Sidecar(path, None, f"{path.name} is empty. Delete it or fill in labels; it was left untouched.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Sidecar(path, None, f"{path.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                       f"{exc.msg}). Fix it in a text editor and rescan; it was left untouched.")
    if not isinstance(data, dict):
        return Sidecar(path, None, f"{path.name} holds a JSON {type(data).__name__}, not an object like "
                       "{\"caption\": \"...\"}. Fix it and rescan; it was left untouched.")
    return Sidecar(path, data)


def write_labels(audio: Path, labels: dict, labeled_by: str | None, replace_broken: bool = False) -> Path:
    """Merge `labels` (already normalised) into the sidecar, keeping every key we don't manage.

    A label set to None/"" is removed. Refuses to touch a broken sidecar unless replace_broken,
    in which case the broken bytes are kept as `<name>.json.broken-<time>` first.
    """
    sc = read_sidecar(sidecar_path(audio))
    if sc.broken:
        if not replace_broken:
            raise SidecarError(sc.problem)
        atomic_write_bytes(sc.path.with_name(f"{sc.path.name}.broken-{int(time.time())}"), sc.path.read_bytes())
    data = dict(sc.data or {})
    for key in LABEL_FIELDS:
        if key in labels:
            if labels[key] is None or labels[key] == "":
                data.pop(key, None)
            else:
                data[key] = labels[key]
    if labeled_by:
        data["labeled_by"] = labeled_by
    atomic_write_text(sc.path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return sc.path
